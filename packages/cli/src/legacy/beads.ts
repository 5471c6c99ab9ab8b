import { readFile, realpath, stat } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { DocketError, isDocketError, isItemId, isLabelName, MAX_AGENT_LENGTH, MAX_NAME_LENGTH, toHandle, type ItemId, type ItemType, type Stage, type Store, type StoreHandle } from '@docket/core'
import type { ImportOptions, ImportResult } from './import.js'

/**
 * `docket import --from beads`: a beads tracker's `.beads/issues.jsonl` (one issue per line).
 * Every issue becomes an item that keeps the beads id as an external id (`docket show bd-a1b2`);
 * the issue as beads wrote it is kept whole in the item's `beads` slot, so nothing of it is lost
 * even where docket has no field for it. Run again, it creates nothing twice (issues are matched
 * by their external id) and puts back links that a run cut short did not write.
 */

/** A beads status, as a stage and the flags that say the rest (README: "Migrating from beads"). */
export const BEADS_STATUSES: Readonly<Record<string, { stage: Stage; frozen?: true; blocked?: true }>> = {
  open: { stage: 'backlog' },
  in_progress: { stage: 'coding' },
  hooked: { stage: 'coding' },
  blocked: { stage: 'backlog', blocked: true },
  deferred: { stage: 'backlog', frozen: true },
  pinned: { stage: 'backlog' },
  closed: { stage: 'done' },
}

/** beads' issue types as docket's; any other keeps its name as a label `beads:<type>`. */
export const BEADS_TYPES: Readonly<Record<string, ItemType>> = {
  bug: 'bug',
  feature: 'story',
  task: 'story',
  chore: 'refactor',
  epic: 'epic',
  spike: 'spike',
}

/** beads' link types that make an issue wait for another: docket dependencies. */
const BLOCKING: ReadonlySet<string> = new Set(['blocks', 'conditional-blocks', 'waits-for'])

interface BeadsDependency {
  issue_id?: unknown
  depends_on_id?: unknown
  type?: unknown
}

interface BeadsIssue {
  id: string
  title?: unknown
  description?: unknown
  design?: unknown
  acceptance_criteria?: unknown
  notes?: unknown
  close_reason?: unknown
  status?: unknown
  priority?: unknown
  issue_type?: unknown
  assignee?: unknown
  labels?: unknown
  created_at?: unknown
  updated_at?: unknown
  dependencies?: unknown
}

export interface BeadsLinks {
  /** `blocks` links kept as dependencies. */
  dependencies: number
  /** `parent-child` links kept as parents. */
  parents: number
  /** Links of other kinds (discovered-from, related, …): kept in the `beads` slot only. */
  other: number
  /**
   * Links not kept, with why: their other end is not imported (deleted in beads), or the store
   * refused them (`refused`: a link to itself, a dependency cycle, a parent loop).
   */
  dropped: Array<{ from: string; to: string; type: string; reason: string; refused?: true }>
}

export type BeadsImportResult = ImportResult & { links: BeadsLinks }

/** Reads the file (or `<dir>/.beads/issues.jsonl`, `<dir>/issues.jsonl`). */
async function sourceFile(path: string): Promise<string> {
  const info = await stat(path).catch(() => undefined)
  if (!info) throw new DocketError('INVALID_INPUT', `${path} does not exist: give beads' issues.jsonl (usually .beads/issues.jsonl).`, { details: { source: path } })
  if (info.isFile()) return path
  for (const candidate of [join(path, '.beads', 'issues.jsonl'), join(path, 'issues.jsonl')]) if ((await stat(candidate).catch(() => undefined))?.isFile()) return candidate
  throw new DocketError('INVALID_INPUT', `${path} holds no .beads/issues.jsonl: give the file beads writes (bd export, or .beads/issues.jsonl in its repository).`, { details: { source: path } })
}

function text(value: unknown): string | undefined {
  return typeof value === 'string' && value.trim().length > 0 ? value : undefined
}

function time(value: unknown): string | undefined {
  return typeof value === 'string' && value.length <= 64 && !Number.isNaN(Date.parse(value)) ? value : undefined
}

/** A title as a name: one line, no control characters, at most MAX_NAME_LENGTH, never cut inside a character. */
function nameOf(title: string, warnings: string[]): string {
  let name = title.replace(/[\u0000-\u001f\u007f]+/g, ' ').replace(/\s+/g, ' ').trim()
  if (name !== title.trim()) warnings.push('title has line breaks or control characters; they became spaces')
  if (name.length > MAX_NAME_LENGTH) {
    warnings.push(`title longer than ${MAX_NAME_LENGTH} characters; cut (the body keeps the description, the beads slot the whole issue)`)
    let cut = ''
    for (const ch of name) {
      if (cut.length + ch.length > MAX_NAME_LENGTH) break
      cut += ch
    }
    name = cut
  }
  return name.length > 0 ? name : 'untitled'
}

/** The body: the description, then beads' other long fields under headings of their own. */
function bodyOf(issue: BeadsIssue): string {
  const parts = [text(issue.description) ?? '']
  for (const [heading, value] of [['Design', issue.design], ['Acceptance criteria', issue.acceptance_criteria], ['Notes', issue.notes], ['Closed', issue.close_reason]] as const) {
    const t = text(value)
    if (t) parts.push(`## ${heading}\n\n${t}`)
  }
  return `${parts.filter((p) => p.length > 0).join('\n\n')}\n`
}

function linksOf(issue: BeadsIssue): Array<{ to: string; type: string }> {
  if (!Array.isArray(issue.dependencies)) return []
  return (issue.dependencies as BeadsDependency[]).flatMap((d) =>
    typeof d === 'object' && d !== null && typeof d.depends_on_id === 'string' && typeof d.type === 'string' && (d.issue_id === undefined || d.issue_id === issue.id) ? [{ to: d.depends_on_id, type: d.type }] : [],
  )
}

export async function importBeads(target: Store | StoreHandle, path: string, options: ImportOptions = {}): Promise<BeadsImportResult> {
  const store = toHandle(target)
  const file = await sourceFile(resolve(path))
  const result: BeadsImportResult = {
    source: resolve(path),
    root: file,
    dryRun: options.dryRun === true,
    imported: [],
    skipped: [],
    renumbered: [],
    unlinked: [],
    failed: [],
    warnings: [],
    ignored: [],
    tombstones: 0,
    links: { dependencies: 0, parents: 0, other: 0, dropped: [] },
  }
  const issues: BeadsIssue[] = []
  const seen = new Set<string>()
  for (const [index, line] of (await readFile(file, 'utf8')).split('\n').entries()) {
    if (line.trim().length === 0) continue
    const where = `line ${index + 1}`
    let value: unknown
    try {
      value = JSON.parse(line)
    } catch {
      result.failed.push({ file: where, error: { code: 'INVALID_INPUT', message: `${where} is not JSON: it was not imported` } })
      continue
    }
    const issue = value as BeadsIssue
    if (typeof value !== 'object' || value === null || typeof issue.id !== 'string' || issue.id.length === 0 || issue.id.length > 200 || /\s/.test(issue.id)) {
      result.failed.push({ file: where, error: { code: 'INVALID_INPUT', message: `${where} is no beads issue (no id): it was not imported` } })
      continue
    }
    if (seen.has(issue.id)) {
      result.failed.push({ file: where, error: { code: 'ALREADY_EXISTS', message: `${where}: ${issue.id} appears twice in the file; the first one is imported` } })
      continue
    }
    seen.add(issue.id)
    if (issue.status === 'tombstone') {
      result.ignored.push({ file: issue.id, reason: 'deleted in beads (a tombstone): not imported' })
      continue
    }
    issues.push(issue)
  }
  if (issues.length === 0 && result.ignored.length === 0) {
    throw new DocketError('INVALID_INPUT', `${file} holds no beads issue: give beads' issues.jsonl.`, { details: { source: file } })
  }

  // Already here (an import run again, or cut short): matched by external id; and what earlier
  // runs of this file created, so that an item deleted here since is not created again.
  const key = await realpath(file)
  const byExternal = new Map<string, ItemId>()
  for (const item of await store.listItems()) for (const ext of item.externalIds ?? []) byExternal.set(ext, item.id)
  const earlier = new Map<string, ItemId>()
  for await (const event of store.audit({ kinds: ['import_run'] })) {
    const external = event.data.external as Record<string, unknown> | undefined
    if (event.data.source !== key || typeof external !== 'object' || external === null) continue
    for (const [ext, id] of Object.entries(external)) if (isItemId(id)) earlier.set(ext, id)
  }
  const todo: Array<{ issue: BeadsIssue; input: Parameters<StoreHandle['createItem']>[0] }> = []
  for (const issue of issues) {
    const existing = byExternal.get(issue.id)
    if (existing !== undefined) {
      result.skipped.push({ file: issue.id, id: existing, reason: `already imported as #${existing}`, already: true })
      continue
    }
    const before = earlier.get(issue.id)
    if (before !== undefined && (await store.isTombstoned(before))) {
      result.skipped.push({ file: issue.id, id: before, reason: `imported before as #${before}, which was deleted in this store; deleted items are not brought back`, already: true })
      continue
    }
    const { input, warnings } = inputOf(issue)
    if (warnings.length > 0) result.warnings.push({ file: issue.id, warnings })
    todo.push({ issue, input })
  }

  if (result.dryRun) {
    let next = Number(await store.peekNextId())
    for (const { issue, input } of todo) {
      const id = String(next++) as ItemId
      byExternal.set(issue.id, id)
      result.imported.push({ file: issue.id, id, stage: input.stage!, name: input.name })
    }
    for (const wanted of planLinks(issues, byExternal, result.links).values()) {
      result.links.dependencies += wanted.dependsOn.length
      if (wanted.parent !== undefined) result.links.parents++
    }
    return result
  }

  const intent = await store.maintenance.beginIntent('import', { source: key, assigned: {} })
  const CHUNK = 128
  for (let i = 0; i < todo.length; i += CHUNK) {
    const chunk = todo.slice(i, i + CHUNK)
    const settled = await Promise.allSettled(chunk.map(({ input }) => store.createItem(input)))
    settled.forEach((outcome, k) => {
      const { issue, input } = chunk[k]!
      if (outcome.status === 'fulfilled') {
        byExternal.set(issue.id, outcome.value.id)
        result.imported.push({ file: issue.id, id: outcome.value.id, stage: input.stage!, name: input.name })
      } else if (isDocketError(outcome.reason)) result.failed.push({ file: issue.id, error: { code: outcome.reason.code, message: outcome.reason.message } })
      else throw outcome.reason
    })
    options.onProgress?.({ phase: 'import', done: Math.min(i + CHUNK, todo.length), total: todo.length })
  }

  // Links, once every item has its id: dependencies and parents, also for issues imported before
  // (a run cut short between the two passes is completed by the next one).
  const externalOf = new Map([...byExternal].map(([ext, id]) => [id, ext]))
  for (const [issueId, wanted] of planLinks(issues, byExternal, result.links)) {
    const id = byExternal.get(issueId)!
    let item = await store.getItem(id)
    if (!item) continue
    // One link at a time: one the store refuses (a cycle, a loop) takes no other with it.
    const refuse = (to: ItemId, type: string, err: unknown) => {
      if (!isDocketError(err)) throw err
      result.links.dropped.push({ from: issueId, to: externalOf.get(to) ?? to, type, reason: err.message, refused: true })
    }
    for (const dep of wanted.dependsOn) {
      if (item.dependsOn.includes(dep)) continue
      try {
        item = await store.updateItem(id, { dependsOn: [...item.dependsOn, dep] })
      } catch (err) {
        refuse(dep, 'blocks', err)
      }
    }
    if (wanted.parent !== undefined && item.parent !== wanted.parent) {
      try {
        item = await store.updateItem(id, { parent: wanted.parent })
      } catch (err) {
        refuse(wanted.parent, 'parent-child', err)
      }
    }
    // What the store holds now is what counts.
    result.links.dependencies += wanted.dependsOn.filter((d) => item!.dependsOn.includes(d)).length
    if (wanted.parent !== undefined && item.parent === wanted.parent) result.links.parents++
  }
  await store.maintenance.endIntent(intent, { kind: 'import_run', data: { source: key, external: Object.fromEntries(byExternal), counts: { imported: result.imported.length, skipped: result.skipped.length, failed: result.failed.length }, investigate: false } })
  return result
}

/** The item input of an issue, and what of it docket could not take as it is. */
function inputOf(issue: BeadsIssue): { input: Parameters<StoreHandle['createItem']>[0]; warnings: string[] } {
  const warnings: string[] = []
  const status = typeof issue.status === 'string' ? BEADS_STATUSES[issue.status] : undefined
  if (!status) warnings.push(`status ${JSON.stringify(issue.status)} is not one docket knows; imported as backlog`)
  const rawType = typeof issue.issue_type === 'string' ? issue.issue_type : 'task'
  const type = BEADS_TYPES[rawType]
  const labels = Array.isArray(issue.labels) ? issue.labels.filter((l): l is string => typeof l === 'string') : []
  const good = labels.filter((l) => isLabelName(l))
  if (good.length < labels.length) warnings.push(`label(s) ${labels.filter((l) => !isLabelName(l)).map((l) => JSON.stringify(l)).join(', ')} are no docket label names (1 to 64 characters, no commas); kept in the beads slot only`)
  if (!type) good.push(`beads:${rawType.slice(0, 50).replace(/[,\s]/g, '-')}`)
  const name = nameOf(text(issue.title) ?? issue.id, warnings)
  const input: Parameters<StoreHandle['createItem']>[0] = {
    name,
    type: type ?? 'story',
    stage: status?.stage ?? 'backlog',
    body: bodyOf(issue),
    content: { beads: `${JSON.stringify(issue, null, 2)}\n` },
    externalIds: [issue.id],
  }
  if (status?.frozen) input.frozen = true
  if (status?.blocked) input.blocked = { reason: 'blocked in beads' }
  if (typeof issue.priority === 'number' && Number.isInteger(issue.priority) && issue.priority >= 0 && issue.priority <= 4) input.priority = issue.priority
  else if (issue.priority !== undefined) warnings.push(`priority ${JSON.stringify(issue.priority)} is not 0 to 4; none set`)
  const distinct = [...new Set(good)]
  if (distinct.length > 50) warnings.push(`${distinct.length} labels; docket keeps 50 (the rest are in the beads slot)`)
  // beads' own kind first, so that a cut never loses it.
  if (distinct.length > 0) input.labels = [...distinct.filter((l) => l.startsWith('beads:')), ...distinct.filter((l) => !l.startsWith('beads:'))].slice(0, 50)
  const agent = text(issue.assignee)
  if (agent && agent.length <= MAX_AGENT_LENGTH && !/[\u0000-\u001f\u007f]/.test(agent)) input.agent = agent.trim()
  const created = time(issue.created_at)
  const updated = time(issue.updated_at)
  if (created) input.createdAt = created
  if (updated) input.updatedAt = updated
  return { input, warnings }
}

/** What each issue's links say in docket ids (`blocks` → dependsOn, `parent-child` → parent), counting the links of other kinds and those dropped. */
function planLinks(issues: readonly BeadsIssue[], ids: ReadonlyMap<string, ItemId>, links: BeadsLinks): Map<string, { dependsOn: ItemId[]; parent?: ItemId }> {
  const out = new Map<string, { dependsOn: ItemId[]; parent?: ItemId }>()
  for (const issue of issues) {
    if (!ids.has(issue.id)) continue
    const wanted: { dependsOn: ItemId[]; parent?: ItemId } = { dependsOn: [] }
    for (const link of linksOf(issue)) {
      if (!BLOCKING.has(link.type) && link.type !== 'parent-child') {
        links.other++
        continue
      }
      if (link.to === issue.id) {
        links.dropped.push({ from: issue.id, to: link.to, type: link.type, reason: 'a link to itself', refused: true })
        continue
      }
      const to = ids.get(link.to)
      if (to === undefined) {
        links.dropped.push({ from: issue.id, to: link.to, type: link.type, reason: `${link.to} is not imported (deleted in beads, or not in the file)` })
        continue
      }
      if (BLOCKING.has(link.type)) {
        if (!wanted.dependsOn.includes(to)) wanted.dependsOn.push(to)
      } else if (wanted.parent === undefined) {
        wanted.parent = to
      } else links.dropped.push({ from: issue.id, to: link.to, type: link.type, reason: `${issue.id} already has a parent (${wanted.parent}); docket keeps one` })
    }
    if (wanted.dependsOn.length > 0 || wanted.parent !== undefined) out.set(issue.id, wanted)
  }
  return out
}
