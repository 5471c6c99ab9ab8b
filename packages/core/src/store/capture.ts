import type * as Y from 'yjs'
import { auditEvent } from '../audit/audit.js'
import { encodeRescued } from '../crdt/rescue.js'
import { addedWorkKeys, CLAIM_FIELD, contentEntries, contentSlots, currentClaimOf, isDeletedUid, readExtras, isItemMap, locateItemPart, readContentValue, readRecord, readStageEntries, readWorkEntries, type ItemMap, type ItemRecord, type SlotValue } from '../crdt/layout.js'
import { claimOfEntry, lostTo } from '../work/claims.js'
import { blobOf, encodeRef, isContentRef, type ContentRef } from '../crdt/content.js'
import { idToNumber, isIdNumber, isItemId, isUid, type ItemId, type ReplicaId, type Uid } from '../ids.js'
import { contentKey, idKey, isSlotName } from '../storage/keys.js'
import { encodeShadow, SHADOW_VERSION, type ShadowRow } from '../storage/shadow.js'
import { resolveStage } from '../stage/resolve.js'
import { itemFromRecord } from './items.js'
import { newJob, OpContext, RemoteOrigin, type Job } from './job.js'
import { aliasIndexPut, itemIndexPut, tombstoneIndexPut } from './indexer.js'
import { aliasIndexKey, itemIndexKey } from '../storage/index-rows.js'
import { indexClaim, indexTombstone, noteAnchoring, recordOf, type DocState, type IndexEntry } from './state.js'
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
 * This is the shadow "observer", for local and remote transactions alike.
 */
export function captureTransaction(env: CaptureEnv, tr: Y.Transaction, update: Uint8Array, origin: unknown): Job {
  const ctx = origin instanceof OpContext ? origin : undefined
  const remote = origin instanceof RemoteOrigin
  const job = newJob(env.state.generation)
  job.remote = remote
  const touched = collectTouched(env, tr, job)
  buildJob(env, job, touched, ctx)
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
  const job = newJob(env.state.generation)
  buildJob(env, job, new Map(), ctx)
  return job
}

function buildJob(env: CaptureEnv, job: Job, touched: Map<Uid, Touch>, ctx: OpContext | undefined): void {
  const { state } = env
  // An item's rows live at the id it shows; a move (or a loss) touches both ids.
  const ids = new Map<ItemId, Touch>()
  for (const id of ctx?.refresh ?? []) touch(ids, id).whole = true
  for (const [uid, t] of touched) {
    for (const [id, owner] of state.keptRows) if (owner === uid) merge(touch(ids, id), t, true)
    const before = state.byUid.get(uid)
    const after = state.claims.shownId(uid)
    if (before !== undefined) merge(touch(ids, before), t, before !== after)
    if (after !== undefined) merge(touch(ids, after), t, before !== after)
    noteAnchoring(state, uid)
  }
  // Who held each id's rows before this job, taken before any id is rewritten: an item that
  // moves is tracked at its new id as soon as that id is processed, and its old id must still
  // see it as the previous occupant, in whatever order the ids come.
  const before = new Map([...ids.keys()].map((id) => [id, state.index.get(id)]))
  const changedIds: ItemId[] = []
  for (const [id, t] of ids) {
    state.items.delete(id)
    if (rowsFor(env, job, id, t, ctx, before.get(id))) changedIds.push(id)
  }
  journalRescues(state, job)
  if (state.unanchored.size > 0) job.startsReanchor = true
  if (ctx) {
    job.audit.push(...ctx.audit)
    job.events.push(...ctx.events)
    job.puts.push(...ctx.puts)
    job.dels.push(...ctx.dels)
    ctx.job = job
  }
  if (changedIds.length > 0) job.events.push({ type: 'changed', ids: changedIds, origin: job.remote ? 'remote' : 'local' })
}

function touch<K>(touched: Map<K, Touch>, key: K): Touch {
  let t = touched.get(key)
  if (!t) {
    t = { whole: false, stages: false, slots: new Set() }
    touched.set(key, t)
  }
  return t
}

function merge(into: Touch, from: Touch, whole: boolean): void {
  into.whole ||= from.whole || whole
  into.stages ||= from.stages
  for (const slot of from.slots) into.slots.add(slot)
}

/** The items a transaction changed, by uid — with the claims and tombstones it added indexed on the way. */
function collectTouched(env: CaptureEnv, tr: Y.Transaction, job: Job): Map<Uid, Touch> {
  const { state } = env
  const { parts, allocator } = state
  const touched = new Map<Uid, Touch>()
  const whole = (uid: Uid | undefined) => {
    if (uid !== undefined) touch(touched, uid).whole = true
  }
  for (const [changedType, keys] of tr.changed) {
    const type: unknown = changedType
    if (type === parts.records || type === parts.items) {
      const root = type === parts.records ? 'records' : 'items'
      for (const key of keys) {
        if (key === null) continue
        if (root === 'items' && isItemId(key)) allocator.observe('items', idToNumber(key))
        const value = (root === 'records' ? parts.records : parts.items).get(key)
        for (const uid of state.noteMap(root, key, value)) whole(uid)
        // `has` tells a removed key from one whose value is `undefined` (a peer's, malformed like any other).
        const why = !(root === 'records' ? parts.records : parts.items).has(key) ? undefined : malformedItem(root, key, value)
        if (why) reportMalformed(env, job, root, key, why)
      }
    } else if (type === parts.claims) {
      for (const key of keys) {
        const indexed = key === null || !parts.claims.has(key) ? undefined : indexClaim(state, key)
        if (!indexed) continue
        const { claim, affected } = indexed
        for (const uid of affected) whole(uid)
        const tomb = parts.tombstones.get(claim.id)
        if (tomb && tomb.uid !== claim.uid) rejectTombstonedClaim(env, job, claim.id, claim.uid, tomb.uid)
      }
    } else if (type === parts.tombstones) {
      for (const key of keys) {
        if (key === null || !parts.tombstones.has(key)) continue
        // Concurrent deletes of one id write its key twice: the value that wins may change later.
        const row = tombstoneIndexPut(key, parts.tombstones.get(key))
        if (row) job.puts.push(row)
        const affected = indexTombstone(state, key)
        if (!affected) continue
        whole(state.index.get(key as ItemId)?.uid)
        for (const uid of affected) whole(uid)
      }
    } else if (type === parts.deleted) {
      for (const uid of keys) if (uid !== null && isUid(uid)) whole(uid)
    } else if (type === parts.alloc) {
      for (const key of keys) {
        const value = key === null ? undefined : parts.alloc.get(key)
        if (isIdNumber(value)) allocator.observe('high-water', value)
      }
    } else if (type === parts.aliases) {
      for (const key of keys) {
        if (key === null) continue
        const row = aliasIndexPut(key, parts.aliases.get(key))
        if (row) job.puts.push(row)
        else job.dels.push({ sublevel: 'index', key: aliasIndexKey(key) })
      }
    } else if (type !== parts.meta) {
      const where = locateItemPart(parts, changedType as Y.AbstractType<unknown>)
      if (!where) continue
      const uid = where.home.root === 'records' ? (isUid(where.home.key) ? where.home.key : undefined) : state.legacy.get(where.home.key)
      if (uid === undefined) continue
      const t = touch(touched, uid)
      if (where.part === 'stages') t.stages = true
      else if (where.part === 'content' && changedType._item?.parentSub === 'content') {
        for (const key of keys) if (key !== null) t.slots.add(key)
      } else if (where.part === 'fields') {
        t.whole ||= keys.has('uid')
        if (tr.origin instanceof RemoteOrigin && changedType._item?.parent === (where.home.root === 'records' ? parts.records : parts.items)) noteLostClaim(env, job, tr, uid, keys)
      }
    }
  }
  return touched
}

/**
 * A remote update that added a claim may have taken one of this replica's away (an expired claim
 * taken over by another agent): its replica is told by an event and an audit event, written with
 * the update that told it — so once, and never lost.
 */
function noteLostClaim(env: CaptureEnv, job: Job, tr: Y.Transaction, uid: Uid, keys: Set<string | null>): void {
  const map = env.state.maps.get(uid)
  const id = env.state.claims.shownId(uid)
  if (!map || id === undefined) return
  const added = addedWorkKeys(map, [...keys].filter((k): k is string => k !== null && k.startsWith(CLAIM_FIELD)), tr)
  if (added.size === 0) return
  const lost = lostTo(readWorkEntries(map), added, env.replicaId)
  if (!lost) return
  const to = claimOfEntry(lost.to)
  job.audit.push(auditEvent('claim_lost', env.replicaId, { uid, agent: lost.lost.agent, grant: lost.lost.grant, reason: 'taken-over', to }, id))
  job.events.push({ type: 'claim_lost', id, uid, agent: lost.lost.agent, to, reason: 'taken-over' })
}

/** Updates the rows (and the in-memory index) of one id. Returns whether it changed for readers. */
function rowsFor(env: CaptureEnv, job: Job, id: ItemId, t: Touch, ctx: OpContext | undefined, prev: IndexEntry | undefined): boolean {
  const { state } = env
  const uid = state.claims.uidAt(id)
  const record = uid === undefined ? undefined : recordOf(state, uid)
  const map = uid === undefined ? undefined : state.maps.get(uid)
  const live = uid !== undefined && record !== undefined && map !== undefined && !isDeletedUid(state.parts, uid)

  if (!live) {
    // Whatever else happens to its rows, the index no longer shows an item here.
    job.dels.push({ sublevel: 'index', key: itemIndexKey(id) })
    const owner = prev?.uid ?? state.keptRows.get(id)
    if (owner === undefined) return false
    if (prev !== undefined && state.index.get(id)?.uid === prev.uid) state.untrack(id)
    if (uid === owner && record === undefined && !isDeletedUid(state.parts, uid)) {
      // Still its id, but its map cannot be read (a peer's bad value, or a field half-delivered):
      // the rows here are its last good copy — kept, for `recover` to adopt if it does not heal.
      state.keptRows.set(id, uid)
      return prev !== undefined
    }
    state.keptRows.delete(id)
    job.dels.push({ sublevel: 'shadow', key: idKey(id) })
    job.clearContent.push(id)
    // Deleted — as opposed to moved to another id, or about to move (its id was taken or deleted).
    if (isDeletedUid(state.parts, owner) || state.parts.tombstones.get(id)?.uid === owner) {
      job.events.push({ type: 'deleted', id, uid: owner, origin: ctx ? 'local' : 'remote' })
    }
    return true
  }

  const fresh = prev === undefined || prev.uid !== uid || t.whole
  state.track(id, { uid, createdBy: record.createdBy })
  const entries = readStageEntries(map)
  const resolution = resolveStage(entries)
  const stage = resolution?.stage ?? 'backlog'
  // Readers will ask for this item next (the operation returns it): cache what was just resolved.
  const item = itemFromRecord(id, record, stage, currentClaimOf(map), readExtras(map))
  state.items.set(id, item)
  job.puts.push(itemIndexPut(item))
  reportSuperseded(env, job, id, resolution)
  job.puts.push({ sublevel: 'shadow', key: idKey(id), value: encodeShadow(shadowRow(id, record, map, stage, entries)) })
  if (fresh) {
    // Rows of a previous occupant go first. An id nobody held here has no rows: the
    // allocator never proposes an id with rows, and explicit ids are checked before writing.
    if (prev !== undefined || state.keptRows.delete(id)) job.clearContent.push(id)
    else if (idToNumber(id) <= state.allocator.bySource().content) job.guard.push({ id, uid })
    for (const [slot, value] of contentEntries(map)) putContent(job, id, slot, value)
  } else {
    for (const slot of t.slots) {
      if (!isSlotName(slot)) continue
      const value = readContentValue(map, slot)
      if (value !== undefined) putContent(job, id, slot, value)
      else job.dels.push({ sublevel: 'content', key: contentKey(id, slot) })
    }
  }
  return true
}

/**
 * Rescued schema 1 items (crdt/rescue.ts) are journaled in the batch of the update that
 * replaced their map, so a crash before their re-creation does not lose them; one that was
 * deleted meanwhile, or whose map is back, needs no rescue.
 */
function journalRescues(state: DocState, job: Job): void {
  for (const [uid, rescue] of state.rescues) {
    if (rescue.journaled) continue
    if (isDeletedUid(state.parts, uid) || recordOf(state, uid) !== undefined) {
      state.rescues.delete(uid)
      continue
    }
    rescue.journaled = true
    job.puts.push({ sublevel: 'journal', key: rescue.journalKey, value: JSON.stringify({ kind: 'rescue', uid, oldId: rescue.oldId, ...encodeRescued(rescue.item) }) })
    noteAnchoring(state, uid)
  }
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

/**
 * A content row holds the slot's reference (schema 3). A value that arrived inline (a schema 2
 * peer's, or an adopted row's) is kept as a blob here, so every row names a blob.
 */
function putContent(job: Job, id: ItemId, slot: string, value: SlotValue): void {
  job.puts.push(...slotRows(id, slot, value))
}

/** The rows a content slot's value implies: its content row, and its blob if it came inline. */
export function slotRows(id: ItemId, slot: string, value: SlotValue): Array<{ sublevel: 'content' | 'blob'; key: string; value: Uint8Array }> {
  if (isContentRef(value)) return [{ sublevel: 'content', key: contentKey(id, slot), value: Buffer.from(encodeRef(value)) }]
  const blob = blobOf(value)
  return [
    { sublevel: 'blob', key: blob.ref.sha256, value: blob.bytes },
    { sublevel: 'content', key: contentKey(id, slot), value: Buffer.from(encodeRef(blob.ref)) },
  ]
}

/** The reference a slot's value stands for (an inline value's is computed). */
export function refOfSlot(value: SlotValue): ContentRef {
  return isContentRef(value) ? value : blobOf(value).ref
}

export function shadowRow(
  id: ItemId,
  record: ItemRecord,
  map: ItemMap,
  stage: ShadowRow['stage'],
  entries: ShadowRow['stages'],
): ShadowRow {
  const row: ShadowRow = {
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
  // Priority, labels, parent and external ids, so that an item re-created from its rows keeps them.
  const extras = readExtras(map)
  if (Object.keys(extras).length > 0) row.extras = extras
  return row
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

/** Why a value where an item belongs is no item (it is hidden from every read), or undefined. */
export function malformedItem(root: 'records' | 'items', key: string, value: unknown): string | undefined {
  if (!isItemMap(value)) return `not an item map (${value === null ? 'null' : value instanceof Object ? value.constructor.name : typeof value})`
  const record = readRecord(value)
  if (!record) return 'an item map without a readable uid, name, type or creator'
  if (root === 'records' && record.uid !== key) return `an item map that says uid ${record.uid} under ${key}`
  return undefined
}

/** A malformed entry from a peer is hidden from reads and reported once (audit and WARN); its value stays in the document. */
function reportMalformed(env: CaptureEnv, job: Job, root: string, key: string, why: string): void {
  const mark = `malformed:${root}/${key}`
  if (env.state.reported.has(mark)) return
  env.state.reported.add(mark)
  job.puts.push({ sublevel: 'reported', key: mark, value: why })
  env.logger.warn(`a malformed entry ${root}/${key} arrived (${why}); it is hidden from every read and kept as it is`)
  job.audit.push(auditEvent('malformed_entry', env.replicaId, { root, key, why }))
}

/** A claim on a deleted id is refused loudly (once per replica): the id stays deleted, the item moves. */
function rejectTombstonedClaim(env: CaptureEnv, job: Job, id: ItemId, uid: Uid, tombUid: Uid): void {
  const key = `${id}/${uid}`
  if (env.state.reported.has(key)) return
  env.state.reported.add(key)
  job.puts.push({ sublevel: 'reported', key, value: id })
  const record = recordOf(env.state, uid)
  const createdBy = record?.createdBy ?? null
  env.logger.warn(`write to tombstoned id ${id} rejected: item ${uid}${createdBy ? ` by ${createdBy}` : ''} does not get the id; it stays deleted`)
  job.audit.push(auditEvent('write_rejected', env.replicaId, { reason: 'tombstoned', uid, tombstoneUid: tombUid, createdBy }, id))
  job.events.push({ type: 'write_rejected', id, reason: 'tombstoned' })
}
