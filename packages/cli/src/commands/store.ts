import { createWriteStream } from 'node:fs'
import { resolve } from 'node:path'
import { once } from 'node:events'
import type { Command } from 'commander'
import { AUDIT_KINDS, DocketError, isDocketError, SCHEMA_VERSION, type StoreHandle } from '@docket/core/client'
import type { AuditEvent, AuditKind, ConsistencyReport } from '@docket/core'
import { parseId, parseNonNegative } from '../args.js'
import type { Context } from '../context.js'
import { EXIT, UsageError } from '../exit.js'
import type { ImportResult } from '../legacy/import.js'
import type { BeadsLinks } from '../legacy/beads.js'
import { table, type Output } from '../output.js'

/** init: a new store. */
export function registerInit(program: Command, ctx: Context): void {
  program
    .command('init')
    .description('create a store in --dir (default ./.docket); refuses to touch an existing one')
    .option('--replica-id <id>', 'name this replica (default: a generated ULID)')
    .addHelpText('after', '\nExamples:\n  docket init\n  docket --dir /srv/pipeline init --replica-id build-host-1')
    .action(async (flags: { replicaId?: string }, command: Command) => {
      const dir = ctx.dir(command)
      const out = ctx.output(command)
      const { openStore } = await import('@docket/core')
      const store = await openStore({ dir, errorIfExists: true, ...(flags.replicaId ? { replicaId: flags.replicaId } : {}), logger: { warn: (m) => out.warn(m) } })
      const result = { dir: store.dir, replicaId: store.replicaId }
      await store.close()
      out.result(result, () => `created a docket store at ${result.dir} (replica ${result.replicaId})`)
    })
}

/** log, doctor, import, export: the store as a whole. */
export function registerStoreCommands(program: Command, ctx: Context): void {
  program
    .command('log')
    .description('the audit log, oldest first (--last: the newest, newest first)')
    .option('--since <ulid>', 'only events after this event id')
    .option('--kind <kinds>', `only these kinds, comma-separated (${AUDIT_KINDS.join(', ')})`)
    .option('--id <id>', 'only events about this item')
    .option('--limit <n>', 'the oldest n events (oldest first)')
    .option('--last <n>', 'the newest n events, newest first')
    .addHelpText('after', '\nExamples:\n  docket log --id 12\n  docket log --last 5\n  docket --json log --kind write_rejected,reanchored --since 01J…')
    .action(async (flags: { since?: string; kind?: string; id?: string; limit?: string; last?: string }, command: Command) => {
      if (flags.limit !== undefined && flags.last !== undefined) throw new UsageError('--limit (the oldest n) and --last (the newest n) contradict each other: give one')
      const kinds = flags.kind?.split(',').map((k) => {
        if (!(AUDIT_KINDS as readonly string[]).includes(k)) throw new UsageError(`unknown kind ${JSON.stringify(k)}: use one of ${AUDIT_KINDS.join(', ')}`)
        return k as AuditKind
      })
      const query = {
        ...(flags.since !== undefined ? { since: flags.since } : {}),
        ...(kinds ? { kinds } : {}),
        ...(flags.id !== undefined ? { itemId: parseId(flags.id, '--id') } : {}),
        ...(flags.limit !== undefined ? { limit: parseNonNegative(flags.limit, '--limit') } : {}),
        ...(flags.last !== undefined ? { limit: parseNonNegative(flags.last, '--last'), newestFirst: true } : {}),
      }
      const out = ctx.output(command)
      const events = await ctx.withReader(command, async (reader) => {
        const all: AuditEvent[] = []
        for await (const event of reader.audit(query)) all.push(event)
        return all
      })
      out.result(events, () =>
        events.length === 0
          ? out.color.dim('no events')
          : table(out.color, ['EVENT', 'AT', 'KIND', 'ITEM', 'DETAIL'], events.map((e) => [e.id, e.at, e.kind, e.itemId ? `#${e.itemId}` : '', summary(e)])),
      )
    })

  program
    .command('doctor')
    .description('check that the shadow content store matches the CRDT; --fix repairs the shadow (never a stage, never an orphan)')
    .option('--fix', 'rewrite missing, stale or damaged shadow rows from the CRDT and settle interrupted operations')
    .option('--offline', 'fix even though this replica cannot confirm it is synced with its server')
    .option('--accept-loss', 'with --fix: go on with what survived when acknowledged work is missing from the LevelDB (a torn or damaged log); the loss is recorded in the audit log')
    .addHelpText(
      'after',
      '\nExamples:\n  docket doctor\n  docket doctor --fix\n\nExit codes: 0 consistent, 1 problems found (not fixed), 3 problems remain after --fix (e.g. orphans: see docket recover), 4 refused.',
    )
    .action(async (flags: { fix?: boolean; offline?: boolean; acceptLoss?: boolean }, command: Command) => {
      if (flags.acceptLoss && !flags.fix) throw new UsageError('--accept-loss goes with --fix: `docket doctor --fix --accept-loss`')
      const out = ctx.output(command)
      const result = await ctx.withStore(command, { readOnly: flags.fix !== true, sync: 'repair', offline: flags.offline === true, acceptDamage: flags.acceptLoss === true, allowDamage: true }, async (store) => {
        // Loaded on demand: a command pays only for the modules it uses (startup time is an agent's latency).
        const { discoverOrphans } = await import('@docket/recover')
        const fixed: { repaired: string[]; settled: string[] } = { repaired: [], settled: [] }
        let before: ConsistencyReport
        if (flags.fix) {
          const repair = await store.maintenance.repairShadow()
          before = repair.before
          fixed.repaired = repair.repaired
          for (const intent of await store.maintenance.pendingIntents()) {
            await store.maintenance.endIntent(intent.key, { kind: 'doctor_fix', data: { settled: intent.kind, key: intent.key, data: intent.data, investigate: false } })
            fixed.settled.push(intent.key)
          }
        } else {
          before = await store.verify()
        }
        // verify() found the ids no live item owns: classify just those (point reads, not a second scan).
        const orphans = before.untracked.length === 0 ? { orphans: [] } : await discoverOrphans(store, { ids: before.untracked })
        const after = flags.fix ? await store.verify() : before
        const byKind: Record<string, number> = {}
        for (const o of orphans.orphans) byKind[o.kind] = (byKind[o.kind] ?? 0) + 1
        return { report: after, before: flags.fix ? before : undefined, fixed: flags.fix ? fixed : undefined, orphans: { count: orphans.orphans.length, byKind } }
      })
      out.result(result, () => renderDoctor(out, result.report, result.orphans, result.fixed))
      // report.ok also counts the untracked ids, which are the orphans
      if (!result.report.ok) ctx.exitCode = flags.fix ? EXIT.partial : EXIT.failure
    })

  program
    .command('migrate')
    .description(`bring a store to schema ${SCHEMA_VERSION} (opening it with this docket does the same); --dry-run reports and writes nothing`)
    .option('--dry-run', 'migrate in memory, check the result, report it, and write nothing')
    .addHelpText('after', '\nExamples:\n  docket migrate --dry-run\n  docket migrate\n\nExit codes: 0 migrated (or already current), 1 the migration could not be verified (nothing was written).')
    .action(async (flags: { dryRun?: boolean }, command: Command) => {
      const out = ctx.output(command)
      const result = await ctx.withStore(command, { readOnly: flags.dryRun === true }, async (store) => {
        const { onDisk, migrated } = await store.schemaInfo()
        return { dryRun: flags.dryRun === true, schema: SCHEMA_VERSION, onDisk, migration: migrated ?? null }
      })
      out.result(result, () => {
        const m = result.migration
        if (!m) return `the store is already schema ${result.schema}; nothing to do`
        const verb = result.dryRun ? 'would migrate' : 'migrated'
        return [
          `${verb} schema ${m.from} → ${m.to}: ${m.liveBefore} live item(s) keep their ids (${m.liveAfter} after), ${m.tombstones} tombstone(s), ${m.aliases} alias(es)`,
          ...m.reanchored.map((r) => `  finished an interrupted re-anchoring: ${r.uid} #${r.oldId} → #${r.newId}`),
          ...(m.unreadable.length > 0 ? [`  ${m.unreadable.length} unreadable schema 1 entr(ies) left as they were (invisible before too): ${m.unreadable.slice(0, 10).join(', ')}`] : []),
          ...(m.content
            ? [`  content moved out of the document: ${m.content.values} slot value(s) and ${m.content.rows} content row(s) now name ${m.content.blobs} blob(s)`]
            : m.to >= 3 && result.dryRun
              ? ['  content moves out of the document into blobs when the store is migrated (a dry run writes no blobs, so it does not move it)']
              : []),
          result.dryRun ? 'Nothing was written.' : '',
        ].filter(Boolean).join('\n')
      })
    })

  program
    .command('import')
    .argument('<source>', 'a legacy pipeline folder (1_backlog or 1_upcoming … 7_frozen; or a project whose work/ folder holds them) or a .jsonl export')
    .description('ingest a legacy file pipeline (or a docket export), keeping ids; re-running it creates no duplicates')
    .option('--dry-run', 'report what would happen and write nothing')
    .option('--from <format>', 'docket (a legacy tree or a docket export; the default) or beads (.beads/issues.jsonl)', 'docket')
    .addHelpText('after', '\nExamples:\n  docket import ./pipeline --dry-run\n  docket import .story_kit          # finds .story_kit/work\n  docket import --from beads .beads/issues.jsonl\n  docket import backup.jsonl\n\nExit codes: 0 every file imported as itself (or already imported by an earlier run); 3 some file was not — renumbered (a duplicate id), skipped (its id is taken), failed, or in a folder that is no stage folder — each listed on stderr; 1 nothing could be imported; 2 no stage folders to read.')
    .action(async (source: string, flags: { dryRun?: boolean; from: string }, command: Command) => {
      if (flags.from !== 'docket' && flags.from !== 'beads') throw new UsageError(`unknown --from ${JSON.stringify(flags.from)}: use docket (a legacy tree or a docket export) or beads`)
      const out = ctx.output(command)
      const path = resolve(ctx.io.cwd, source)
      const { importSource } = await import('../legacy/import.js')
      const { importBeads } = await import('../legacy/beads.js')
      const importer = flags.from === 'beads' ? importBeads : importSource
      const run = async (store: StoreHandle): Promise<ImportResult & { links?: BeadsLinks }> => {
        let bar: ReturnType<Output['progress']> | undefined
        try {
          return await importer(store, path, {
            dryRun: flags.dryRun === true,
            onProgress: ({ phase, done, total }) => {
              if (phase === 'import' && total !== undefined && total > 200) {
                bar ??= out.progress('importing', total)
                bar.update(done)
              }
            },
          })
        } finally {
          bar?.stop()
        }
      }
      // A dry run needs no store: in a directory without one, it runs against an empty store of its own.
      const result = await ctx.withStore(command, { readOnly: flags.dryRun === true }, run).catch(async (err: unknown) => {
        if (flags.dryRun !== true || !isDocketError(err, 'STORE_NOT_FOUND')) throw err
        out.note(`note: there is no store at ${ctx.dir(command)} yet; this dry run reports what an import into a new store would do`)
        return ctx.withScratchStore(run)
      })
      out.result(result, () => renderImport(out, result))
      // Impossible to miss: what was not imported as itself, on stderr, and in the exit code.
      for (const line of importSummary(result)) out.note(line)
      const notAsItself =
        result.renumbered.length + result.unlinked.length + result.skipped.filter((s) => !s.already).length + result.failed.length + result.ignored.reduce((n, i) => n + (i.items ?? 0), 0) + (result.links?.dropped.filter((d) => d.refused).length ?? 0)
      if (result.failed.length > 0 && result.imported.length === 0) ctx.exitCode = EXIT.failure
      else if (notAsItself > 0) ctx.exitCode = EXIT.partial
    })

  program
    .command('export')
    .description('write every item (with its stage, history and content) and the tombstones; round-trips through import')
    .option('--out <path>', 'a file (jsonl) or a new folder (folders); default: stdout for jsonl')
    .option('--format <format>', 'jsonl or folders', 'jsonl')
    .addHelpText('after', '\nExamples:\n  docket export > backup.jsonl\n  docket export --format folders --out ./pipeline-copy')
    .action(async (flags: { out?: string; format: string }, command: Command) => {
      if (flags.format !== 'jsonl' && flags.format !== 'folders') throw new UsageError(`unknown --format ${JSON.stringify(flags.format)}: use jsonl or folders`)
      if (flags.format === 'folders' && flags.out === undefined) throw new UsageError('--format folders needs --out FOLDER')
      const out = ctx.output(command)
      const { exportFolders, exportJsonl } = await import('../legacy/export.js')
      // A slot whose bytes never reached this replica is named, not exported: exit 3, so that a backup script notices.
      const incomplete = (summary: { unavailable: Array<{ id: string; slot: string }> }) => {
        if (summary.unavailable.length === 0) return
        out.warn(`${summary.unavailable.length} content slot(s) were not exported: their bytes were written on another replica and never reached this one (${summary.unavailable.slice(0, 5).map((u) => `#${u.id} ${u.slot}`).join(', ')}${summary.unavailable.length > 5 ? ', …' : ''}); export from a replica that syncs (--sync) to include them`)
        ctx.exitCode = EXIT.partial
      }
      await ctx.withStore(command, { readOnly: true, allowDamage: true }, async (store) => {
        if (flags.format === 'folders') {
          const summary = await exportFolders(store, resolve(ctx.io.cwd, flags.out!)).catch((err: NodeJS.ErrnoException) => {
            if (typeof err.code === 'string' && !(err instanceof DocketError)) throw new UsageError(`cannot write the export to ${flags.out}: ${err.code} (${err.message})`)
            throw err
          })
          out.result(summary, () => `exported ${summary.items} items and ${summary.tombstones} tombstones to ${flags.out} (${summary.files} files)`)
          incomplete(summary)
          return
        }
        if (flags.out === undefined) {
          // JSONL on stdout is the document itself, with --json or without.
          incomplete(await exportJsonl(store, (line) => out.write(line)))
          return
        }
        const file = createWriteStream(resolve(ctx.io.cwd, flags.out), { flags: 'wx' })
        await once(file, 'open').catch((err: NodeJS.ErrnoException) => {
          throw new UsageError(`cannot write ${flags.out}: ${err.code === 'EEXIST' ? 'it exists (export never overwrites)' : err.message}`)
        })
        const summary = await exportJsonl(store, async (line) => {
          if (!file.write(line)) await once(file, 'drain')
        })
        file.end()
        await once(file, 'close')
        out.result(summary, () => `exported ${summary.items} items and ${summary.tombstones} tombstones to ${flags.out}`)
        incomplete(summary)
      })
    })
}

function summary(e: AuditEvent): string {
  const d = e.data
  switch (e.kind) {
    case 'transitioned':
      return `${d.from} → ${d.to} (${d.event})`
    case 'created':
    case 'deleted':
      return String(d.name ?? '')
    case 'write_rejected':
      return `${d.op ?? 'write'} refused: ${d.reason}`
    case 'reanchored':
    case 'orphan_adopted':
      return `#${d.oldId} → #${d.newId}`
    case 'stale_transition_superseded':
      return `${d.event} by ${d.decidedBy} superseded (${d.reason}); stays ${d.currentStage}`
    default:
      return JSON.stringify(d).slice(0, 80)
  }
}

function renderDoctor(out: Output, r: ConsistencyReport, orphans: { count: number; byKind: Record<string, number> }, fixed?: { repaired: string[]; settled: string[] }): string {
  const c = out.color
  const ids = (list: readonly { id: string }[] | readonly string[]) =>
    list.length === 0 ? '' : `: ${list.slice(0, 10).map((x) => `#${typeof x === 'string' ? x : x.id}`).join(', ')}${list.length > 10 ? ', …' : ''}`
  const stageMismatch = r.staleShadow.filter((s) => s.fields.includes('stage'))
  const rows: Array<[string, number, string]> = [
    ['live items in the CRDT', r.items, ''],
    ['CRDT only (no shadow row)', r.crdtOnly.length, ids(r.crdtOnly)],
    ['stale shadow rows', r.staleShadow.length, ids(r.staleShadow)],
    ['  of which the stage differs', stageMismatch.length, ids(stageMismatch)],
    ['missing or different content', r.missingContent.length, ids(r.missingContent)],
    ['stray content rows', r.strayContent.length, ids(r.strayContent)],
    ['damaged rows', r.corrupt.length, r.corrupt.slice(0, 5).map((x) => ` ${x.sublevel}/${x.key}`).join(',')],
    ['interrupted operations', r.pendingIntents.length, r.pendingIntents.map((i) => ` ${i.kind} ${i.key}`).join(',')],
    ['re-anchorings pending', r.pendingReanchors.length, ids(r.pendingReanchors)],
    ['orphans (shadow only)', orphans.count, Object.entries(orphans.byKind).map(([k, n]) => ` ${k} ${n}`).join(',')],
    ['acknowledged work missing', r.damage ? r.damage.findings.length : 0, r.damage ? `: ${r.damage.findings.join('; ')}` : ''],
    ['malformed entries (hidden)', r.malformed.length, r.malformed.slice(0, 5).map((m) => ` ${m.root}/${m.key} (${m.why})`).join(',')],
    ['updates refused (kept aside)', r.refusedUpdates, r.refusedUpdates > 0 ? ': see `docket log --kind update_refused`' : ''],
    ['stale index rows', r.staleIndex.length, r.staleIndex.length > 0 ? `: ${r.staleIndex.slice(0, 5).join(', ')}${r.staleIndex.length > 5 ? ', …' : ''} (\`doctor --fix\` rebuilds them)` : r.indexComplete ? '' : ' (index not complete: reads decode the document until a writable open rebuilds it)'],
    ['content not fetched yet', r.unfetchedContent.length, r.unfetchedContent.length > 0 ? `${ids(r.unfetchedContent)} (fetched from the sync server when read, or by \`docket sync\`)` : ''],
  ]
  const lines = rows.map(([label, n, detail]) => `${label.padEnd(32)} ${n === 0 || label.startsWith('live') ? String(n) : c.yellow(String(n))}${detail}`)
  if (fixed) lines.push('', `repaired ${fixed.repaired.length} item(s) from the CRDT${ids(fixed.repaired)}; settled ${fixed.settled.length} interrupted operation(s)`)
  if (r.damage) lines.push('', c.red('the LevelDB is missing work it had acknowledged:') + ' a replica that syncs gets back from its server what reached it; recover orphans with `docket recover`; then `docket doctor --fix --accept-loss` goes on with what survived.')
  if (orphans.count > 0) lines.push('', `${orphans.count} orphan(s): inspect them with \`docket recover\` (a dry run), re-anchor chosen ones with \`docket recover --story-ids … --apply\`.`)
  else if (r.ok) lines.push('', c.green('the shadow content store matches the CRDT'))
  else if (!fixed) lines.push('', 'run `docket doctor --fix` to repair the shadow rows from the CRDT')
  return lines.join('\n')
}

/** The import's outcome by kind, each with its files (at most 10 named; --json lists all). */
export function importSummary(r: ImportResult & { links?: BeadsLinks }): string[] {
  const files = (list: string[]) => `${list.slice(0, 10).join(', ')}${list.length > 10 ? `, … and ${list.length - 10} more (--json lists them all)` : ''}`
  const lines = [`import summary${r.dryRun ? ' (dry run: nothing was written)' : ''}: ${r.imported.length} imported from ${r.root}`]
  if (r.renumbered.length > 0) lines.push(`  ${r.renumbered.length} renumbered (another file had their id; each keeps it as an alias): ${files(r.renumbered.map((x) => `${x.file} ${x.from}→${x.to}`))}`)
  const conflicts = r.skipped.filter((s) => !s.already)
  if (conflicts.length > 0) lines.push(`  ${conflicts.length} skipped: ${files(conflicts.map((x) => `${x.file} (${x.reason})`))}`)
  const already = r.skipped.length - conflicts.length
  if (already > 0) lines.push(`  ${already} already imported by an earlier run`)
  if (r.failed.length > 0) lines.push(`  ${r.failed.length} failed: ${files(r.failed.map((x) => `${x.file} (${x.error.code})`))}`)
  if (r.unlinked.length > 0) lines.push(`  ${r.unlinked.length} imported without their parent: ${files(r.unlinked.map((x) => `${x.file} (parent ${x.parent}: ${x.reason.slice(0, 80)})`))}`)
  const withItems = r.ignored.filter((i) => (i.items ?? 0) > 0)
  if (withItems.length > 0) lines.push(`  ${withItems.length} ignored that hold markdown files that were NOT imported: ${files(withItems.map((x) => `${x.file} (${x.reason})`))}`)
  const other = r.ignored.length - withItems.length
  if (other > 0) lines.push(`  ${other} ignored, not items: ${files(r.ignored.filter((i) => !(i.items ?? 0)).map((x) => x.file))}`)
  if (r.links) {
    const refused = r.links.dropped.filter((d) => d.refused)
    lines.push(`  links: ${r.links.dependencies} dependencies and ${r.links.parents} parents kept, ${r.links.other} of other kinds kept in the beads slot, ${r.links.dropped.length - refused.length} dropped (their other end is not imported)`)
    if (refused.length > 0) lines.push(`  ${refused.length} links refused by the store (a link to itself, a cycle, a parent loop): ${files(refused.map((d) => `${d.from} ${d.type} ${d.to}`))}`)
  }
  return lines
}

function renderImport(out: Output, r: ImportResult): string {
  const c = out.color
  const lines: string[] = []
  for (const w of r.warnings) lines.push(`${c.yellow('warning')} ${w.file}: ${w.warnings.join('; ')}`)
  for (const x of r.renumbered) lines.push(`${c.yellow('renumbered')} ${x.file}: ${x.from} → ${x.to} (${x.reason})`)
  for (const s of r.skipped) lines.push(`${c.dim('skipped')} ${s.file}: ${s.reason}`)
  for (const i of r.ignored) lines.push(`${c.dim('ignored')} ${i.file}: ${i.reason}`)
  for (const f of r.failed) lines.push(`${c.red('failed')} ${f.file}: ${f.error.code} ${f.error.message}`)
  const verb = r.dryRun ? 'would import' : 'imported'
  lines.push(`${verb} ${r.imported.length} item(s) from ${r.root}; ${r.renumbered.length} renumbered, ${r.skipped.length} skipped, ${r.failed.length} failed, ${r.warnings.length} with warnings, ${r.tombstones} tombstone(s)${r.dryRun ? '. Nothing was written.' : '.'}`)
  return lines.join('\n')
}
