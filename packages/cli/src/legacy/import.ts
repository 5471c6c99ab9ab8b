import { readFile, realpath, stat } from 'node:fs/promises'
import { resolve } from 'node:path'
import { decodeContent, DocketError, toHandle, isDocketError, isItemId, isStage, ITEM_TYPES, MAX_ITEM_NUMBER, rankOf, type ItemId, type ItemType, type Store, type StoreHandle } from '@docket/core'
import { type ImportEntry } from './entry.js'
import { scanTree } from './tree.js'

export interface ImportOptions {
  /** Report what would happen and write nothing. */
  dryRun?: boolean
  onProgress?: (progress: { phase: 'read' | 'import'; done: number; total?: number }) => void
}

export interface ImportResult {
  source: string
  /** Where the stage folders were read: `source`, or the work/ folder found below it. */
  root: string
  dryRun: boolean
  /** Created items (in a dry run: those that would be). */
  imported: Array<{ file: string; id: ItemId; stage: string; name: string }>
  /**
   * Files not imported. `already`: imported by an earlier run (an import run again); else the
   * file was not imported as itself, and the exit code says so.
   */
  skipped: Array<{ file: string; id?: ItemId; reason: string; already?: true }>
  /** Files whose id another file of the source took: imported under a fresh id, with an alias from theirs (reason `import`). */
  renumbered: Array<{ file: string; from: ItemId; to: ItemId; reason: string }>
  /** Items imported without the parent their file names, with why (no such item, or a loop). */
  unlinked: Array<{ file: string; id: ItemId; parent: string; reason: string }>
  failed: Array<{ file: string; id?: ItemId; error: { code: string; message: string } }>
  /** Files imported with defaults, and what was wrong with them. */
  warnings: Array<{ file: string; warnings: string[] }>
  /** Paths of the tree that are not items (never silently skipped). */
  ignored: Array<{ file: string; reason: string; items?: number }>
  tombstones: number
}

interface Source {
  root: string
  entries: ImportEntry[]
  unreadable: Array<{ file: string; error: string }>
  ignored: ImportResult['ignored']
  tombstones: Array<{ id: string; uid: string; at?: string; by?: string; reason?: string | null }>
}

/** Items are created this many at a time: they share fsyncs (group commit) without unbounded memory. */
const CHUNK = 128

/**
 * Imports a legacy tree or a docket export (a folder tree or a .jsonl file), keeping ids.
 * Idempotent: an id already in the store is skipped, and files without an id get the same
 * id on every run (the assignment is journaled with the run's intent and kept in its audit
 * event), so an import killed half-way and run again creates no duplicates.
 */
export async function importSource(target: Store | StoreHandle, path: string, options: ImportOptions = {}): Promise<ImportResult> {
  const store = toHandle(target)
  const given = resolve(path)
  const info = await stat(given).catch(() => undefined)
  if (!info) throw new DocketError('INVALID_INPUT', `${given} does not exist: give a legacy pipeline folder or a .jsonl export.`, { details: { source: given } })
  const read = info.isDirectory()
    ? await readTree(given, options)
    : await readJsonl(given)
  // One tree, however it is named (its work/ folder, the tool's folder, the project; a symlink):
  // earlier runs are found by the folder actually read.
  const source = await realpath(read.root)
  const result: ImportResult = { source: given, root: read.root, dryRun: options.dryRun === true, imported: [], skipped: [], renumbered: [], unlinked: [], failed: [], warnings: [], ignored: read.ignored, tombstones: 0 }
  for (const u of read.unreadable) result.failed.push({ file: u.file, error: { code: 'INVALID_INPUT', message: `${u.file}: ${u.error}` } })
  for (const entry of read.entries) if (entry.warnings.length > 0) result.warnings.push({ file: entry.file, warnings: entry.warnings })

  const planned = await plan(store, read.entries, result)
  const assigned = { ...(given !== source ? await previousAssignments(store, given) : {}), ...(await previousAssignments(store, source)) }
  const importAliases = (await store.aliases()).filter((a) => a.reason === 'import')
  let highest = 0
  for (const entry of read.entries) if (entry.id) highest = Math.max(highest, Number(entry.id))
  let next = Math.max(Number(await store.peekNextId()), highest + 1)
  const fresh: Record<string, ItemId> = {}
  for (const entry of planned.filter((e) => e.id === undefined)) {
    // A renumbered file imported before (under another path to the tree, say) has its alias.
    if (entry.formerId !== undefined && assigned[entry.file] === undefined) {
      let earlier: ItemId | undefined
      for (const a of importAliases) if (a.oldId === entry.formerId && (await store.getItem(a.newId))?.name === entry.name) earlier = a.newId
      if (earlier !== undefined) {
        result.skipped.push({ file: entry.file, id: earlier, reason: `already imported as #${earlier} (renumbered from ${entry.formerId})`, already: true })
        continue
      }
    }
    const id = assigned[entry.file] ?? (String(next++) as ItemId)
    fresh[entry.file] = id
    if ((await store.getItem(id)) || (await store.isTombstoned(id))) {
      result.skipped.push({ file: entry.file, id, reason: `already imported as #${id} by an earlier run`, already: true })
      continue
    }
    entry.id = id
    if (entry.formerId !== undefined) result.renumbered.push({ file: entry.file, from: entry.formerId, to: id, reason: `id ${entry.formerId} went to ${entry.renumberedBecause}` })
  }
  const todo = planned.filter((e) => e.id !== undefined)
  if (result.dryRun) {
    result.imported = todo.map((e) => ({ file: e.file, id: e.id!, stage: e.stage, name: e.name }))
    result.tombstones = 0
    for (const t of read.tombstones) if (isItemId(t.id) && !(await store.isTombstoned(t.id)) && !(await store.getItem(t.id))) result.tombstones++
    return result
  }

  const intent = await store.maintenance.beginIntent('import', { source, assigned: { ...assigned, ...fresh } })
  let done = 0
  for (let i = 0; i < todo.length; i += CHUNK) {
    const chunk = todo.slice(i, i + CHUNK)
    const settled = await Promise.allSettled(chunk.map((entry) => create(store, entry)))
    settled.forEach((outcome, k) => {
      const entry = chunk[k]!
      if (outcome.status === 'fulfilled') result.imported.push({ file: entry.file, id: outcome.value, stage: entry.stage, name: entry.name })
      else if (isDocketError(outcome.reason)) result.failed.push({ file: entry.file, id: entry.id!, error: { code: outcome.reason.code, message: outcome.reason.message } })
      else throw outcome.reason
    })
    done += chunk.length
    options.onProgress?.({ phase: 'import', done, total: todo.length })
  }
  // Parents once every item exists, each checked as any edit is (a live item, no loop).
  for (const entry of todo) {
    if (entry.parent === undefined || !result.imported.some((i) => i.id === entry.id)) continue
    if (!isItemId(entry.parent)) {
      result.unlinked.push({ file: entry.file, id: entry.id!, parent: entry.parent, reason: `parent ${JSON.stringify(entry.parent.slice(0, 40))} is no item id` })
      continue
    }
    try {
      await store.updateItem(entry.id!, { parent: entry.parent })
    } catch (err) {
      if (!isDocketError(err)) throw err
      result.unlinked.push({ file: entry.file, id: entry.id!, parent: entry.parent, reason: err.message })
    }
  }
  for (const tomb of read.tombstones) {
    if (!isItemId(tomb.id)) {
      result.failed.push({ file: 'tombstones', error: { code: 'INVALID_ID', message: `tombstone ${JSON.stringify(String(tomb.id).slice(0, 40))} is not an item id (1 to ${MAX_ITEM_NUMBER}): it was not imported` } })
      continue
    }
    try {
      if (await store.maintenance.importTombstone(tomb.id, tomb)) result.tombstones++
    } catch (err) {
      if (!isDocketError(err)) throw err
      result.failed.push({ file: 'tombstones', id: tomb.id, error: { code: err.code, message: err.message } })
    }
  }
  const counts = { imported: result.imported.length, skipped: result.skipped.length, failed: result.failed.length, warnings: result.warnings.length, tombstones: result.tombstones }
  // Earlier runs of the same source that were cut off are complete now.
  for (const stale of (await store.maintenance.pendingIntents()).filter((p) => p.kind === 'import' && p.data.source === source && p.key !== intent)) await store.maintenance.endIntent(stale.key)
  await store.maintenance.endIntent(intent, { kind: 'import_run', data: { source, counts, assigned: { ...assigned, ...fresh }, investigate: false } })
  return result
}

async function readTree(given: string, options: ImportOptions): Promise<Source> {
  const scan = await scanTree(given, (done) => options.onProgress?.({ phase: 'read', done }))
  const root = scan.root
  let tombstones: Source['tombstones'] = []
  const manifest = await readFile(resolve(root, 'docket-export.json'), 'utf8').catch(() => undefined)
  if (manifest !== undefined) {
    try {
      const parsed = JSON.parse(manifest) as { tombstones?: Source['tombstones'] }
      tombstones = Array.isArray(parsed.tombstones) ? parsed.tombstones : []
    } catch {
      scan.ignored.push({ file: 'docket-export.json', reason: 'not JSON; its tombstones were not imported' })
    }
  }
  return { root, entries: scan.entries, unreadable: scan.unreadable, ignored: scan.ignored, tombstones }
}

/** A .jsonl export: a header line, then one line per item. */
async function readJsonl(file: string): Promise<Source> {
  const text = await readFile(file, 'utf8')
  const source: Source = { root: file, entries: [], unreadable: [], ignored: [], tombstones: [] }
  let header = false
  for (const [index, line] of text.split('\n').entries()) {
    if (line.trim().length === 0) continue
    const where = `line ${index + 1}`
    let value: Record<string, any>
    try {
      value = JSON.parse(line) as Record<string, any>
    } catch {
      source.ignored.push({ file: where, reason: 'not JSON' })
      continue
    }
    if (value.docket === 'export') {
      header = true
      source.tombstones = Array.isArray(value.tombstones) ? value.tombstones : []
      continue
    }
    const item = value.item as Record<string, any> | undefined
    if (!item || typeof item !== 'object') {
      source.ignored.push({ file: where, reason: 'neither the header nor an item line' })
      continue
    }
    const slots = new Map<string, string | Uint8Array>()
    for (const [slot, v] of Object.entries((value.content ?? {}) as Record<string, unknown>)) {
      slots.set(slot, typeof v === 'string' ? v : decodeContent(new Uint8Array(Buffer.from(String((v as { base64?: string })?.base64 ?? ''), 'base64'))))
    }
    const body = slots.get('body')
    slots.delete('body')
    const entry: ImportEntry = {
      file: where,
      name: typeof item.name === 'string' ? item.name : `Imported ${where}`,
      type: ITEM_TYPES.includes(item.type as ItemType) ? (item.type as ItemType) : 'story',
      stage: isStage(item.stage) ? item.stage : 'backlog',
      frozen: item.frozen === true,
      dependsOn: Array.isArray(item.dependsOn) ? item.dependsOn.map(String) : [],
      body,
      slots,
      warnings: [],
    }
    if (isItemId(item.id)) entry.id = item.id
    if (typeof item.agent === 'string') entry.agent = item.agent
    if (typeof item.retries === 'number') entry.retries = item.retries
    if (item.blocked && typeof item.blocked.reason === 'string') entry.blocked = { reason: item.blocked.reason }
    if (typeof item.priority === 'number') entry.priority = item.priority
    if (Array.isArray(item.labels)) entry.labels = item.labels.filter((l: unknown): l is string => typeof l === 'string')
    if (isItemId(item.parent)) entry.parent = item.parent
    if (Array.isArray(item.externalIds)) entry.externalIds = item.externalIds.filter((x: unknown): x is string => typeof x === 'string')
    source.entries.push(entry)
  }
  if (!header && source.entries.length === 0) {
    const beads = /^\s*\{[^\n]*"id"\s*:\s*"[^"]+"[^\n]*"status"\s*:/.test(text)
    throw new DocketError(
      'INVALID_INPUT',
      beads
        ? `${file} looks like a beads file (issues with ids and statuses), not a docket export: run \`docket import --from beads ${file}\`.`
        : `${file} is not a docket export (no header line, no item line): give a legacy pipeline folder or a file written by \`docket export\` (or --from beads for beads' issues.jsonl).`,
      { details: { file } },
    )
  }
  return source
}

/**
 * Drops what must not be created: ids already here, and duplicates within the source — of
 * which the most advanced stage is kept (taking the earlier folder would move an item back).
 */
async function plan(store: StoreHandle, entries: ImportEntry[], result: ImportResult): Promise<ImportEntry[]> {
  const chosen = new Map<ItemId, ImportEntry>()
  for (const entry of entries) {
    if (entry.id === undefined) continue
    const other = chosen.get(entry.id)
    if (!other || rankOf(entry.stage) > rankOf(other.stage)) chosen.set(entry.id, entry)
  }
  const out: ImportEntry[] = []
  for (const entry of entries) {
    if (entry.id !== undefined) {
      const kept = chosen.get(entry.id)!
      if (kept !== entry) {
        // Both are real work: this one gets a fresh id, and keeps its number as an alias.
        entry.formerId = entry.id
        entry.renumberedBecause = `${kept.file} (${kept.stage}, the most advanced stage, keeps it)`
        delete entry.id
        out.push(entry)
        continue
      }
      const existing = await store.getItem(entry.id)
      if (existing) {
        // The same item imported before (an import run again), or another item holding this id.
        if (existing.name === entry.name) result.skipped.push({ file: entry.file, id: entry.id, reason: `already imported as #${entry.id}`, already: true })
        else result.skipped.push({ file: entry.file, id: entry.id, reason: `id ${entry.id} is taken in the store by another item ("${existing.name.slice(0, 60)}"): rename the file without an id to import it under a fresh one` })
        continue
      }
      if (await store.isTombstoned(entry.id)) {
        result.skipped.push({ file: entry.file, id: entry.id, reason: `id ${entry.id} was deleted in this store; deleted ids are never reused` })
        continue
      }
    }
    const deleted: string[] = []
    for (const dep of entry.dependsOn) if (isItemId(dep) && (await store.isTombstoned(dep))) deleted.push(dep)
    if (deleted.length > 0) {
      entry.dependsOn = entry.dependsOn.filter((dep) => !deleted.includes(dep))
      entry.warnings.push(`depends_on ${deleted.join(', ')} deleted in this store; dropped`)
      if (!result.warnings.some((w) => w.file === entry.file)) result.warnings.push({ file: entry.file, warnings: entry.warnings })
    }
    out.push(entry)
  }
  return out
}

/** What earlier runs of this source assigned to files without an id (pending intents and finished runs). */
async function previousAssignments(store: StoreHandle, source: string): Promise<Record<string, ItemId>> {
  const out: Record<string, ItemId> = {}
  const take = (assigned: unknown) => {
    if (typeof assigned !== 'object' || assigned === null) return
    for (const [file, id] of Object.entries(assigned)) if (isItemId(id)) out[file] = id
  }
  for await (const event of store.audit({ kinds: ['import_run', 'doctor_fix'] })) {
    if (event.kind === 'import_run' && event.data.source === source) take(event.data.assigned)
    // an interrupted import that doctor --fix settled keeps what it had assigned
    const settled = event.data.data as { source?: unknown; assigned?: unknown } | undefined
    if (event.kind === 'doctor_fix' && event.data.settled === 'import' && settled?.source === source) take(settled.assigned)
  }
  for (const intent of await store.maintenance.pendingIntents()) if (intent.kind === 'import' && intent.data.source === source) take(intent.data.assigned)
  return out
}

async function create(store: StoreHandle, entry: ImportEntry): Promise<ItemId> {
  const content: Record<string, string | Uint8Array> = Object.fromEntries(entry.slots)
  const input: Parameters<StoreHandle['createItem']>[0] = {
    id: entry.id!,
    name: entry.name,
    type: entry.type,
    stage: entry.stage,
    dependsOn: entry.dependsOn.filter((d) => d !== entry.id),
    frozen: entry.frozen,
    content,
  }
  if (entry.body !== undefined) input.body = entry.body
  if (entry.agent !== undefined) input.agent = entry.agent
  if (entry.retries !== undefined) input.retries = entry.retries
  if (entry.blocked) input.blocked = entry.blocked
  if (entry.priority !== undefined) input.priority = entry.priority
  if (entry.labels !== undefined) input.labels = entry.labels
  if (entry.externalIds !== undefined) input.externalIds = entry.externalIds
  if (entry.formerId !== undefined) input.formerId = entry.formerId
  if (entry.createdAt !== undefined) input.createdAt = entry.createdAt
  if (entry.updatedAt !== undefined) input.updatedAt = entry.updatedAt
  const item = await store.createItem(input, { allowUnknownDependencies: true })
  return item.id
}
