import type { Command } from 'commander'
import type { RecoveryResult } from '@docket/recover'
import { parseIdList } from '../args.js'
import type { Context } from '../context.js'
import { EXIT, UsageError } from '../exit.js'
import { table, type Output } from '../output.js'

interface RecoverFlags {
  storyIds?: string
  apply?: boolean
  includeTombstoned?: boolean
  offline?: boolean
  all?: boolean
}

export function registerRecover(program: Command, ctx: Context): void {
  program
    .command('recover')
    .description('find orphans (rows no live item owns) and re-anchor chosen ones to fresh ids; a dry run unless --apply')
    .option('--story-ids <ids>', 'only these ids, comma-separated (e.g. 989,1000,1001): restricts discovery and repair alike')
    .option('--apply', 'really re-anchor (default: dry run, nothing is written); needs --story-ids or --all')
    .option('--all', 'with --apply and no --story-ids: re-anchor every orphan found (rarely what you want)')
    .option('--include-tombstoned', 'also recover orphans of deleted ids that --story-ids does not name')
    .option('--offline', 'repair even though this replica cannot confirm it is synced with its server (you know the server is gone)')
    .addHelpText(
      'after',
      `
Examples:
  docket recover                                  # dry run over every orphan: what would happen
  docket recover --story-ids 989,1000,1001        # dry run over three ids
  docket recover --story-ids 989,1000,1001 --apply
  docket recover --all --apply                    # every orphan: rarely what you want
  docket --json recover --story-ids 989           # the result as JSON

Exit codes: 0 done, 1 error (or every orphan failed), 2 usage, 3 some orphans failed, 4 refused (store locked, replica behind its server).`,
    )
    .action(async (flags: RecoverFlags, command: Command) => {
      const ids = flags.storyIds === undefined ? undefined : parseIdList(flags.storyIds, '--story-ids')
      if (flags.apply && ids === undefined && !flags.all) {
        throw new UsageError('--apply needs the ids to re-anchor (--story-ids 989,1000,1001) or --all: recovering every orphan at once brings back rows nobody wants; run a dry run first')
      }
      if (flags.all && ids !== undefined) throw new UsageError('--all and --story-ids contradict each other: give one')
      const out = ctx.output(command)
      const { recoverOrphans } = await import('@docket/recover')
      const result = await ctx.withStore(command, { readOnly: flags.apply !== true, sync: 'repair', offline: flags.offline === true, allowDamage: true }, async (store) => {
        const estimate = ids ? ids.length : (await store.stats()).items
        const bar = estimate > 1000 ? out.progress(flags.apply ? 'recovering' : 'scanning', estimate) : undefined
        try {
          return await recoverOrphans(store, {
            ...(ids ? { ids } : {}),
            dryRun: flags.apply !== true,
            includeTombstoned: flags.includeTombstoned === true,
            offline: flags.offline === true,
            all: flags.all === true,
            syncTimeoutMs: ctx.syncTimeoutMs(),
            onProgress: ({ phase, done, total }) => {
              if (total !== undefined) bar?.setTotal(total)
              else if (phase === 'discover' && done > estimate) bar?.setTotal(done)
              bar?.update(done)
            },
          })
        } finally {
          bar?.stop()
        }
      })
      out.result(result, () => render(out, result))
      if (result.failed.length > 0) ctx.exitCode = result.recovered.length === 0 ? EXIT.failure : EXIT.partial
    })
}

function render(out: Output, result: RecoveryResult): string {
  const c = out.color
  const rows: string[][] = []
  const recovered = new Map(result.recovered.map((r) => [r.oldId, r]))
  const failed = new Map(result.failed.map((f) => [f.id, f]))
  const skipped = new Map(result.skipped.map((s) => [s.id, s]))
  for (const orphan of result.discovered) {
    const r = recovered.get(orphan.id)
    const f = failed.get(orphan.id)
    const s = skipped.get(orphan.id)
    const what = r
      ? r.newId
        ? c.green(`re-anchored → #${r.newId}`)
        : 'would re-anchor to a fresh id'
      : f
        ? c.red(`failed: ${f.error.code} ${f.error.message}`)
        : s
          ? c.dim(`skip: ${s.reason}`)
          : ''
    rows.push([`#${orphan.id}`, orphan.kind, orphan.name, what])
  }
  const discovered = new Set(result.discovered.map((o) => o.id))
  for (const s of result.skipped) {
    if (!discovered.has(s.id)) rows.push([`#${s.id}`, '-', '', c.dim(`skip: ${s.reason}`)])
  }
  const lines: string[] = []
  if (rows.length > 0) lines.push(table(c, ['ID', 'KIND', 'NAME', 'WHAT HAPPENS'], rows), '')
  const scope = result.filter ? `ids ${result.filter.join(',')}` : 'the whole store'
  if (result.dryRun) {
    lines.push(`dry run over ${scope}: ${result.discovered.length} orphan(s) found, ${result.recovered.length} would be re-anchored, ${result.skipped.length} skipped. Nothing was written.`)
    if (result.recovered.length > 0) {
      const ids = result.filter ? `--story-ids ${result.filter.join(',')}` : `--story-ids ${result.recovered.slice(0, 3).map((r) => r.oldId).join(',')}${result.recovered.length > 3 ? ',… (the ones you want)' : ''}`
      lines.push(`To re-anchor, run again with ${ids} --apply.`)
    }
  } else {
    lines.push(`recovered ${result.recovered.length}, skipped ${result.skipped.length}, failed ${result.failed.length} over ${scope}.`)
    if (result.rescan.length > 0) {
      lines.push(c.yellow(`${result.rescan.length} new orphan(s) appeared while recovering (a concurrent writer?): ${result.rescan.map((o) => `#${o.id}`).join(', ')}. Run docket recover again to see them.`))
    }
  }
  return lines.join('\n')
}
