import type * as Y from 'yjs'
import { auditEvent, nextUlid } from '../audit/audit.js'
import { contentOf, contentSlots, isDeletedUid, locateInItems, readRecord, readStageEntries, readUid, type ItemMap, type ItemRecord } from '../crdt/layout.js'
import { idToNumber, isItemId, type ItemId, type ReplicaId, type Uid } from '../ids.js'
import { contentKey, idKey } from '../storage/keys.js'
import { encodeShadow, SHADOW_VERSION, type ShadowRow } from '../storage/shadow.js'
import { resolveStage } from '../stage/resolve.js'
import type { ContentValue } from '../types.js'
import { itemFromRecord } from './items.js'
import { newJob, OpContext, RemoteOrigin, type Job } from './job.js'
import type { DocState, IndexEntry } from './state.js'
import type { Logger } from './logger.js'

interface Touch {
  whole: boolean
  stages: boolean
  slots: Set<string>
}

export interface CaptureEnv {
  state: DocState
  replicaId: ReplicaId
  logger: Logger
}

/**
 * Turns one Yjs transaction into the job that persists it: the update itself plus the shadow
 * and content rows that the transaction changed, computed now — from the document as this
 * transaction left it — so that the rows on disk always match the update rows beside them.
 */
export function captureTransaction(env: CaptureEnv, tr: Y.Transaction, update: Uint8Array, origin: unknown): Job {
  const ctx = origin instanceof OpContext ? origin : undefined
  const job = buildJob(env, collectTouched(env, tr), ctx, origin instanceof RemoteOrigin)
  job.update = update
  if (origin instanceof RemoteOrigin) {
    job.source = origin.source
    // What could not be integrated yet lives only in memory: persist the update as it came.
    if (origin.raw && hasPendingUpdates(env.state)) job.update = origin.raw
  }
  return job
}

/**
 * A job for an operation whose transaction changed nothing in the document: its audit
 * events and journal rows, and the rows of the ids it asked to refresh.
 */
export function jobFromContext(env: CaptureEnv, ctx: OpContext): Job {
  return buildJob(env, new Map(), ctx, false)
}

function buildJob(env: CaptureEnv, touched: Map<ItemId, Touch>, ctx: OpContext | undefined, remote: boolean): Job {
  const job = newJob(env.state.generation)
  job.remote = remote
  for (const id of ctx?.refresh ?? []) touch(touched, id).whole = true
  for (const id of env.state.deferred.keys()) touch(touched, id).whole = true
  const changedIds: ItemId[] = []
  for (const [id, t] of touched) {
    env.state.items.delete(id)
    if (applyToRows(env, job, id, t, ctx)) changedIds.push(id)
  }
  if (ctx) {
    job.audit.push(...ctx.audit)
    job.events.push(...ctx.events)
    job.puts.push(...ctx.puts)
    job.dels.push(...ctx.dels)
    ctx.job = job
  }
  if (changedIds.length > 0) job.events.push({ type: 'changed', ids: changedIds, origin: remote ? 'remote' : 'local' })
  return job
}

function touch(touched: Map<ItemId, Touch>, id: ItemId): Touch {
  let t = touched.get(id)
  if (!t) {
    t = { whole: false, stages: false, slots: new Set() }
    touched.set(id, t)
  }
  return t
}

function collectTouched(env: CaptureEnv, tr: Y.Transaction): Map<ItemId, Touch> {
  const { parts, allocator } = env.state
  const touched = new Map<ItemId, Touch>()
  for (const [changedType, keys] of tr.changed) {
    const type: unknown = changedType
    if (type === parts.items || type === parts.tombstones) {
      for (const key of keys) {
        if (key === null || !isItemId(key)) continue
        allocator.observe(type === parts.items ? 'items' : 'tombstones', idToNumber(key))
        touch(touched, key).whole = true
      }
    } else if (type === parts.deleted) {
      for (const uid of keys) {
        const id = uid === null ? undefined : env.state.byUid.get(uid as never)
        if (id !== undefined) touch(touched, id).whole = true
      }
    } else if (type === parts.alloc) {
      for (const key of keys) {
        const value = key === null ? undefined : parts.alloc.get(key)
        if (typeof value === 'number' && Number.isSafeInteger(value)) allocator.observe('high-water', value)
      }
    } else if (type !== parts.aliases && type !== parts.meta) {
      const where = locateInItems(parts.items, changedType as Y.AbstractType<unknown>)
      if (!where || !isItemId(where.id)) continue
      const t = touch(touched, where.id)
      if (where.part === 'stages') t.stages = true
      else if (where.part === 'content' && changedType._item?.parentSub === 'content') {
        for (const key of keys) if (key !== null) t.slots.add(key)
      }
    }
  }
  return touched
}

/** Updates the rows of one touched id, and journals whether it is (still) deferred. */
function applyToRows(env: CaptureEnv, job: Job, id: ItemId, t: Touch, ctx: OpContext | undefined): boolean {
  const before = env.state.deferred.get(id)
  env.state.deferred.delete(id)
  const changed = rowsFor(env, job, id, t, ctx)
  const after = env.state.deferred.get(id)
  if (before && !after) job.dels.push({ sublevel: 'journal', key: before.journalKey })
  if (after && !before) job.puts.push({ sublevel: 'journal', key: after.journalKey, value: JSON.stringify({ kind: 'deferred', id, uid: after.uid, createdBy: after.createdBy }) })
  if (after && before) after.journalKey = before.journalKey
  return changed
}

function defer(env: CaptureEnv, id: ItemId, prev: IndexEntry): void {
  env.state.deferred.set(id, { uid: prev.uid, createdBy: prev.createdBy, journalKey: nextUlid() })
}

/** Updates the rows (and the in-memory index) of one touched id. Returns whether it changed for readers. */
function rowsFor(env: CaptureEnv, job: Job, id: ItemId, t: Touch, ctx: OpContext | undefined): boolean {
  const { state, replicaId } = env
  const map = state.parts.items.get(id)
  const record = map ? readRecord(map) : undefined
  const tomb = state.parts.tombstones.get(id)
  const prev = state.index.get(id)

  const hiddenByTombstone = map !== undefined && record !== undefined && tomb !== undefined && tomb.uid !== record.uid
  if (hiddenByTombstone) rejectTombstonedWrite(env, job, id, record, tomb.uid)
  const live = map !== undefined && record !== undefined && tomb === undefined && !isDeletedUid(state.parts, record.uid)
  /** Deleted on purpose (by id or by uid), as opposed to displaced. */
  const deletedOnPurpose = (uid: Uid) => tomb?.uid === uid || isDeletedUid(state.parts, uid)
  const reanchoring = ctx?.reanchorOf === id
  if (reanchoring) state.pendingReanchor.delete(id)
  else if (state.pendingReanchor.has(id)) return true // rows here are the evidence of our displaced item

  if (!reanchoring && prev !== undefined && map !== undefined && record === undefined && readUid(map) === prev.uid) {
    // The same item, with a field half-delivered (a change whose new value waits for updates
    // that have not arrived, while its deletion of the old value has): not displaced, not
    // deleted. Keep its rows as they are and look again at the next change.
    defer(env, id, prev)
    return false
  }
  if (!reanchoring && prev !== undefined && prev.createdBy === replicaId && !deletedOnPurpose(prev.uid) && tomb === undefined && map === undefined && hasPendingUpdates(state)) {
    // Our item is gone but no tombstone says why, and some updates wait for missing ones:
    // its tombstone is probably among them (messages arrive out of order). Keep the rows and
    // look again at the next change rather than resurrecting an item someone deleted.
    defer(env, id, prev)
    return false
  }
  if (!reanchoring && prev !== undefined && prev.createdBy === replicaId && !deletedOnPurpose(prev.uid) && !(live && record.uid === prev.uid)) {
    // Our item lost its place (a concurrent create won the id, or a tombstone of another
    // item covers it): move it to a fresh id from the rows that still hold it.
    startReanchor(env, job, id, prev.uid, live ? 'collision' : 'tombstoned-id', 'shadow')
    return true
  }
  if (!reanchoring && hiddenByTombstone && record.createdBy === replicaId && !isDeletedUid(state.parts, record.uid)) {
    // Ours, but the shadow never held it under this id: the document is the evidence.
    startReanchor(env, job, id, record.uid, 'tombstoned-id', 'document')
    return true
  }

  if (!live) {
    if (prev !== undefined) {
      state.untrack(id)
      job.dels.push({ sublevel: 'shadow', key: idKey(id) })
      job.clearContent.push(id)
      if (!reanchoring) job.events.push({ type: 'deleted', id, uid: prev.uid, origin: ctx ? 'local' : 'remote' })
    }
    return prev !== undefined
  }

  const fresh = prev === undefined || prev.uid !== record.uid || t.whole
  state.track(id, { uid: record.uid, createdBy: record.createdBy })
  const entries = readStageEntries(map)
  const resolution = resolveStage(entries)
  const stage = resolution?.stage ?? 'backlog'
  // Readers will ask for this item next (the operation returns it): cache what was just resolved.
  state.items.set(id, itemFromRecord(id, record, stage))
  reportSuperseded(env, job, id, resolution)
  job.puts.push({ sublevel: 'shadow', key: idKey(id), value: encodeShadow(shadowRow(id, record, map, stage, entries)) })
  const content = contentOf(map)
  if (fresh) {
    // Rows of a previous occupant go first. An id nobody held here has no rows: the
    // allocator never proposes an id with rows, and explicit ids are checked before writing.
    if (prev !== undefined || ctx?.reanchorOf === id) job.clearContent.push(id)
    else if (job.remote && idToNumber(id) <= state.allocator.bySource().content) job.guard.push({ id, uid: record.uid })
    for (const [slot, value] of content ?? []) putContent(job, id, slot, value)
  } else {
    for (const slot of t.slots) {
      const value = content?.get(slot)
      if (typeof value === 'string' || value instanceof Uint8Array) putContent(job, id, slot, value)
      else job.dels.push({ sublevel: 'content', key: contentKey(id, slot) })
    }
  }
  return true
}

/** A job that only keeps an update whose every part waits for updates not received yet. */
export function pendingOnlyJob(state: DocState, update: Uint8Array): Job {
  const job = newJob(state.generation)
  job.remote = true
  job.update = update
  return job
}

/** Whether the document holds parts of updates that wait for updates not received yet. */
export function hasPendingUpdates(state: DocState): boolean {
  const store = state.doc.store as unknown as { pendingStructs: unknown; pendingDs: unknown }
  return store.pendingStructs !== null || store.pendingDs !== null
}

function putContent(job: Job, id: ItemId, slot: string, value: ContentValue): void {
  job.puts.push({ sublevel: 'content', key: contentKey(id, slot), value: typeof value === 'string' ? Buffer.from(value, 'utf8') : value })
}

export function shadowRow(
  id: ItemId,
  record: ItemRecord,
  map: ItemMap,
  stage: ShadowRow['stage'],
  entries: ShadowRow['stages'],
): ShadowRow {
  return {
    v: SHADOW_VERSION,
    id,
    uid: record.uid,
    name: record.name,
    type: record.type,
    stage,
    dependsOn: record.dependsOn,
    blocked: record.blocked,
    frozen: record.frozen,
    agent: record.agent,
    retries: record.retries,
    createdAt: record.createdAt,
    updatedAt: record.updatedAt,
    createdBy: record.createdBy,
    stages: entries,
    slots: contentSlots(map),
  }
}

function reportSuperseded(env: CaptureEnv, job: Job, id: ItemId, resolution: ReturnType<typeof resolveStage>): void {
  if (!resolution) return
  for (const { entry, reason } of resolution.invalid) {
    if (reason === 'malformed' || env.state.reported.has(entry.id)) continue
    env.state.reported.add(entry.id)
    job.puts.push({ sublevel: 'reported', key: entry.id, value: id })
    const data = {
      entryId: entry.id,
      event: entry.event,
      stage: entry.stage,
      decidedBy: entry.by,
      decidedAt: entry.at,
      reason,
      currentStage: resolution.stage,
      mine: entry.by === env.replicaId,
    }
    job.audit.push(auditEvent('stale_transition_superseded', env.replicaId, data, id))
    job.events.push({ type: 'stale_transition', id, entry })
    env.logger.info?.(`stale transition superseded on item ${id}: ${entry.event} by ${entry.by} (${reason}); the item stays ${resolution.stage}`)
  }
}

function rejectTombstonedWrite(env: CaptureEnv, job: Job, id: ItemId, record: ItemRecord, tombUid: Uid): void {
  const key = `${id}/${record.uid}`
  if (env.state.reported.has(key)) return
  env.state.reported.add(key)
  job.puts.push({ sublevel: 'reported', key, value: id })
  const message = `write to tombstoned id ${id} rejected: item ${record.uid} by ${record.createdBy} is hidden; the id stays deleted`
  env.logger.warn(message)
  job.audit.push(auditEvent('write_rejected', env.replicaId, { reason: 'tombstoned', uid: record.uid, tombstoneUid: tombUid, createdBy: record.createdBy }, id))
  job.events.push({ type: 'write_rejected', id, reason: 'tombstoned' })
}

/**
 * Records the intent to re-anchor our displaced item; the rows at `id` are left as they are
 * (they are the evidence) and the store moves the item to a fresh id after this job commits.
 */
function startReanchor(
  env: CaptureEnv,
  job: Job,
  id: ItemId,
  uid: Uid,
  reason: 'collision' | 'tombstoned-id',
  source: 'shadow' | 'document',
): void {
  const journalKey = nextUlid()
  env.state.pendingReanchor.set(id, { uid, reason, source, journalKey })
  job.puts.push({ sublevel: 'journal', key: journalKey, value: JSON.stringify({ kind: 'reanchor', id, uid, reason, source }) })
  job.startsReanchor = true
}
