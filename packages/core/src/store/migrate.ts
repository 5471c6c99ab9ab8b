import * as Y from 'yjs'
import { auditEvent, encodeAudit } from '../audit/audit.js'
import { claimKey } from '../crdt/claims.js'
import { buildItemMap, contentEntries, isDeletedUid, readRecord, readStageEntries, type ItemMap, type ItemRecord } from '../crdt/layout.js'
import { DocketError } from '../errors.js'
import { isItemId, isUid, numberToId, type ItemId, type ReplicaId, type Uid } from '../ids.js'
import type { Databases } from '../storage/db.js'
import { contentKey, idKey, seqKey } from '../storage/keys.js'
import { readStoredRows } from '../storage/scan.js'
import { decodeShadow, encodeShadow, recordOfShadow } from '../storage/shadow.js'
import { createdEntry } from '../stage/advance.js'
import { resolveStage } from '../stage/resolve.js'
import type { Alias, ContentValue } from '../types.js'
import { decodeContent } from './evidence.js'
import type { StoreHooks } from './hooks.js'
import { buildIndexes, recordOf, type DocState, type Intent } from './state.js'
import { shadowRow, slotRows } from './capture.js'
import { itemAt } from './items.js'
import { rowsToRefs, valuesToRefs, type ContentMigration } from './migrate-content.js'

/** The on-disk format this code writes. A store with a higher version is refused, not guessed at. */
import { SCHEMA_VERSION } from './schema.js'
export { SCHEMA_VERSION }

/** Marks the migration's own transaction: it is persisted by the migration batch, not by capture. */
export const MIGRATE_ORIGIN = Symbol('docket:migrate')

/** What a migration did (or, in a dry run, would do). */
export interface MigrationReport {
  from: number
  to: number
  /** Schema 1 items, each of which now claims the id it is stored under. */
  claimed: number
  /** Items whose schema 1 re-anchoring had not finished: moved to a fresh id now. */
  reanchored: Array<{ uid: Uid; oldId: ItemId; newId: ItemId }>
  /** Journal rows of schema 1 that schema 2 needs no more (deferrals), with what they held. */
  droppedJournal: Array<{ key: string; kind: string }>
  /** Schema 1 item maps that were unreadable (invisible in schema 1 too), left as they were. */
  unreadable: string[]
  /** Live items before and after; equal, or the migration stops. */
  liveBefore: number
  liveAfter: number
  tombstones: number
  aliases: number
  /** Schema 2 → 3: content moved out of the document into blobs, or null (not done: a read-only open, or nothing to do). */
  content: ContentMigration | null
}

interface Reanchor {
  key: string
  id: ItemId
  uid: Uid
  reason: Alias['reason']
  record: ItemRecord | undefined
  entries: ReturnType<typeof readStageEntries>
  content: Map<string, ContentValue>
  slotsAtOld: string[]
}

/** A row the migration batch writes besides the document: the shadow of the items it moved. */
export interface MigrationRow {
  type: 'put' | 'del'
  sublevel: 'shadow' | 'content' | 'blob' | 'upload'
  key: string
  value?: string | Uint8Array
}

/**
 * Schema 1 → 2, in memory. Every schema 1 item stays where it is, under the id it was stored
 * under, and that place is its claim of the id (crdt/claims.ts): so schema 1's own merge of
 * concurrent writes to one id stands exactly as it was, on every replica, whenever and from
 * whatever copy each replica migrates. An item whose schema 1 re-anchoring was interrupted is
 * moved to a fresh id now, from the rows that held it; the document is marked schema 2. Then
 * every live item is checked against what schema 1 showed: any difference stops the
 * migration (MIGRATION_FAILED) and nothing is written.
 *
 * Why items are neither copied under their uid nor given claims by the migration: several
 * replicas migrate one pipeline, each from its own, possibly stale copy. Copies would be
 * concurrent writes of one key, and the merge would keep one copy whole — a stale copy could
 * win and take stage entries with it. Claims written from a stale copy would assert a stale
 * owner of an id (the item schema 1 had moved away), and take the id from the item that holds it.
 */
export async function migrateInMemory(
  dbs: Databases,
  state: DocState,
  intents: Intent[],
  options: { from: number; content: boolean } = { from: 1, content: true },
): Promise<{ report: MigrationReport; update: Uint8Array | undefined; rows: MigrationRow[] }> {
  const { parts } = state
  const from = options.from
  const before = new Map<ItemId, { uid: Uid; name: string; stage: string; slots?: string }>()
  const unreadable: string[] = []
  if (from < 2) {
    for (const [key, map] of parts.items) {
      const record = readRecord(map)
      if (!record || !isItemId(key)) {
        unreadable.push(key)
        continue
      }
      if (parts.tombstones.has(key) || isDeletedUid(parts, record.uid)) continue
      before.set(key, { uid: record.uid, name: record.name, stage: resolveStage(readStageEntries(map))?.stage ?? 'backlog' })
    }
  } else {
    for (const [id] of state.claims.shownEntries()) {
      const item = itemAt(state, id)
      const map = item ? state.maps.get(item.uid) : undefined
      if (item && map) before.set(id, { uid: item.uid, name: item.name, stage: item.stage, slots: contentSlotsOf(map) })
    }
  }

  const reanchors: Reanchor[] = []
  const droppedJournal: MigrationReport['droppedJournal'] = []
  for (const intent of from < 2 ? intents : []) {
    const { id, uid, reason, source } = intent.data
    if (intent.kind === 'deferred') droppedJournal.push({ key: intent.key, kind: intent.kind })
    if (intent.kind !== 'reanchor') continue
    if (!isItemId(id) || !isUid(uid)) throw failed(`journal row ${intent.key} (an interrupted re-anchoring) names no valid id and uid`, { key: intent.key })
    droppedJournal.push({ key: intent.key, kind: intent.kind })
    // `document`: the item is still in the document (hidden by a tombstone); its claim makes
    // it an item of this replica without an id, which the store moves once it is open.
    if (source === 'document') continue
    const rows = await readStoredRows(dbs, id)
    const parsed = rows.shadow ? decodeShadow(rows.shadow.text) : undefined
    const row = parsed?.ok ? parsed.row : undefined
    if (!row || row.uid !== uid) {
      throw failed(`the interrupted re-anchoring of item ${uid} from id ${id} has no shadow row of that item to move it from; run schema 1's docket once to finish it, or recover the rows with \`docket recover --story-ids ${id}\` before migrating`, { key: intent.key, id, uid })
    }
    const content = new Map<string, ContentValue>()
    for (const { slot, value } of rows.slots) content.set(slot, decodeContent(value))
    const record = recordOfShadow(row)
    reanchors.push({ key: intent.key, id, uid, reason: reason === 'tombstoned-id' ? 'tombstoned-id' : 'collision', record, entries: row.stages, content, slotsAtOld: rows.slots.map((x) => x.slot) })
  }

  let claimed = 0
  const updates: Uint8Array[] = []
  const collect = (update: Uint8Array, origin: unknown) => {
    if (origin === MIGRATE_ORIGIN) updates.push(update)
  }
  state.doc.on('update', collect)
  const moved: MigrationReport['reanchored'] = []
  const blobs = new Map<string, Uint8Array>()
  let values = 0
  try {
    state.doc.transact(() => {
      let highest = state.allocator.highest
      for (const r of reanchors) {
        if (parts.records.has(r.uid) || isDeletedUid(parts, r.uid)) continue
        const newId = numberToId(++highest)
        const at = new Date().toISOString()
        const entries = r.entries.length > 0 && resolveStage(r.entries) ? r.entries : [createdEntry('backlog', state.replicaId, at, r.key)]
        parts.records.set(r.uid, buildItemMap(r.record!, entries, r.content))
        parts.claims.set(claimKey(newId, r.uid), { at, by: state.replicaId, reason: r.reason === 'tombstoned-id' ? 'tombstoned-id' : 'collision', from: r.id })
        parts.aliases.set(`${r.id}/${r.uid}`, { uid: r.uid, oldId: r.id, newId, at, by: state.replicaId, reason: r.reason })
        const mark = parts.alloc.get(state.replicaId)
        if (typeof mark !== 'number' || mark < highest) parts.alloc.set(state.replicaId, highest)
        moved.push({ uid: r.uid, oldId: r.id, newId })
      }
      if (options.content) values = valuesToRefs(state, blobs)
      parts.meta.set('schema', SCHEMA_VERSION)
    }, MIGRATE_ORIGIN)
  } finally {
    state.doc.off('update', collect)
  }
  buildIndexes(state)
  for (const [, map] of parts.items) if (readRecord(map)) claimed++

  // Verify before anything is written: schema 1's live items are live under the same id.
  for (const [id, was] of before) {
    const now = itemAt(state, id)
    const map = now ? state.maps.get(now.uid) : undefined
    const slotsChanged = was.slots !== undefined && (!map || contentSlotsOf(map) !== was.slots)
    if (now?.uid !== was.uid || now.name !== was.name || now.stage !== was.stage || slotsChanged) {
      throw failed(`item ${id} (${was.uid}) would not be the same after the migration (${now ? `it would be ${now.uid} in ${now.stage}` : 'it would not be live'}); nothing was changed`, { id, uid: was.uid })
    }
  }
  let liveAfter = 0
  for (const [id] of state.claims.shownEntries()) if (itemAt(state, id)) liveAfter++
  if (liveAfter !== before.size + moved.length) {
    throw failed(`the migrated document holds ${liveAfter} live items where it showed ${before.size} before (+${moved.length} moved): nothing was changed`, {})
  }
  const content = options.content ? await rowsToRefs(dbs, state, blobs, values) : undefined
  const report: MigrationReport = {
    from,
    to: SCHEMA_VERSION,
    claimed,
    reanchored: moved,
    droppedJournal,
    unreadable,
    liveBefore: before.size,
    liveAfter,
    tombstones: parts.tombstones.size,
    aliases: parts.aliases.size,
    content: content?.migration ?? null,
  }
  // The moved items' rows last: where both write a key, theirs are the rows that stand.
  const rows = [...(content?.rows ?? []), ...movedRows(state, reanchors, moved)]
  return { report, update: updates.length === 0 ? undefined : Y.mergeUpdates(updates), rows }
}

/**
 * The shadow rows of what the migration moved, as schema 1's own re-anchoring would have
 * written them: the moved item's rows at its new id; at its old id, the rows of the item that
 * holds that id now (the moved item's copies there are its stale evidence, superseded).
 */
function contentSlotsOf(map: ItemMap): string {
  return contentEntries(map)
    .map(([slot]) => slot)
    .sort()
    .join(',')
}

function movedRows(state: DocState, reanchors: Reanchor[], moved: MigrationReport['reanchored']): MigrationRow[] {
  const rows: MigrationRow[] = []
  const put = (id: ItemId) => {
    const item = itemAt(state, id)
    const map = item ? state.maps.get(item.uid) : undefined
    const record = item ? recordOf(state, item.uid) : undefined
    if (!item || !map || !record) return
    const entries = readStageEntries(map)
    rows.push({ type: 'put', sublevel: 'shadow', key: idKey(id), value: encodeShadow(shadowRow(id, record, map, item.stage, entries)) })
    for (const [slot, value] of contentEntries(map)) {
      for (const row of slotRows(id, slot, value)) rows.push({ type: 'put', ...row })
    }
  }
  for (const m of moved) {
    const r = reanchors.find((x) => x.uid === m.uid)!
    for (const slot of r.slotsAtOld) rows.push({ type: 'del', sublevel: 'content', key: contentKey(m.oldId, slot) })
    if (itemAt(state, m.oldId) === undefined) rows.push({ type: 'del', sublevel: 'shadow', key: idKey(m.oldId) })
    put(m.oldId)
    put(m.newId)
  }
  return rows
}

/**
 * Writes a verified migration in one batch: the document's update, the schema marker, the
 * journal rows it settled and its audit event. A crash leaves schema 1 untouched (and it is
 * migrated again at the next open) or schema 2 complete — never a mixture.
 */
export async function writeMigration(
  dbs: Databases,
  state: DocState,
  migration: { report: MigrationReport; update: Uint8Array | undefined; rows: MigrationRow[] },
  replicaId: ReplicaId,
  hooks: StoreHooks | undefined,
): Promise<void> {
  const ops: Array<Record<string, unknown>> = []
  if (migration.report.content !== null && migration.report.content.values > 0) {
    // Content left the document: the rows that still hold it inline give way to one snapshot,
    // or every later open would read (and the disk keep) what the migration moved out.
    const snapshot = Y.encodeStateAsUpdate(state.doc)
    const seq = state.nextSeq++
    for (const old of state.liveSeqs) ops.push({ type: 'del', sublevel: dbs.doc, key: seqKey(old) })
    ops.push({ type: 'put', sublevel: dbs.doc, key: seqKey(seq), value: snapshot })
    state.liveSeqs = [seq]
    state.liveBytes = state.baseBytes = snapshot.byteLength
    state.tail = []
  } else if (migration.update) {
    const seq = state.nextSeq++
    state.liveSeqs.push(seq)
    state.liveBytes += migration.update.byteLength
    ops.push({ type: 'put', sublevel: dbs.doc, key: seqKey(seq), value: migration.update })
  }
  for (const row of migration.rows) ops.push({ ...row, sublevel: dbs[row.sublevel] })
  for (const { key } of migration.report.droppedJournal) ops.push({ type: 'del', sublevel: dbs.journal, key })
  ops.push({ type: 'put', sublevel: dbs.audit, ...encodeAudit(auditEvent('schema_migrated', replicaId, { ...migration.report })) })
  ops.push({ type: 'put', sublevel: dbs.meta, key: 'schema', value: String(SCHEMA_VERSION) })
  // The document changed under whatever index rows there are: the open that follows rebuilds them.
  ops.push({ type: 'del', sublevel: dbs.meta, key: 'indexed' })
  state.indexed = false
  hooks?.step?.('migrate:before-write', { ops: ops.length })
  await dbs.root.batch(ops as never, { sync: true })
  hooks?.step?.('migrate:written')
}

/** A Yjs update, by a client of its own, that marks a document as this schema. */
export function schemaMarkerUpdate(): Uint8Array {
  const doc = new Y.Doc()
  doc.getMap('meta').set('schema', SCHEMA_VERSION)
  const update = Y.encodeStateAsUpdate(doc)
  doc.destroy()
  return update
}

function failed(message: string, details: Record<string, unknown>): DocketError {
  return new DocketError('MIGRATION_FAILED', `The store could not be migrated to schema ${SCHEMA_VERSION}: ${message}. It is unchanged (still its old schema); report this with the output of \`docket migrate --dry-run --json\`.`, { details })
}
