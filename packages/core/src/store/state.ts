import * as Y from 'yjs'
import { IdAllocator } from '../alloc/allocator.js'
import { ClaimIndex, parseClaimKey } from '../crdt/claims.js'
import { decodeRescued, type RescuedItem } from '../crdt/rescue.js'
import { docParts, isDeletedUid, isItemMap, readRecord, type DocParts, type ItemMap, type ItemRecord } from '../crdt/layout.js'
import { idToNumber, isIdNumber, isItemId, isUid, type ItemId, type ReplicaId, type Uid } from '../ids.js'
import type { Databases } from '../storage/db.js'
import { idFromKey, idKey, parseContentKey, seqFromKey } from '../storage/keys.js'
import { shadowUid } from '../storage/scan.js'
import type { Item } from '../types.js'

/** Marks updates replayed from disk at open: they are already persisted. */
export const LOAD_ORIGIN = Symbol('docket:load')

export interface IndexEntry {
  uid: Uid
  createdBy: ReplicaId
}

/** A schema 1 item of this replica rescued from a replaced map, and its journal row. */
export interface Rescue {
  oldId: ItemId
  item: RescuedItem
  journalKey: string
  /** Whether its journal row has been put in a batch yet. */
  journaled: boolean
}

/** A journal row that a later open must settle. */
export interface Intent {
  key: string
  kind: string
  data: Record<string, unknown>
}

export interface CorruptRow {
  sublevel: string
  key: string
  error: string
}

/**
 * Everything derived from the persisted document: the Y.Doc and the indexes that make
 * reads and allocation cheap. Replaced wholesale (a new generation) if a write fails, so
 * that memory never holds what the disk does not.
 */
export class DocState {
  readonly doc: Y.Doc
  readonly parts: DocParts
  readonly allocator = new IdAllocator()
  /** Which item shows which id (crdt/claims.ts). */
  readonly claims = new ClaimIndex()
  /** Every item map by uid: schema 2 records, and schema 1 items where they are. */
  readonly maps = new Map<Uid, ItemMap>()
  /** Claim keys already indexed (a claim is indexed once, however often a transaction touches it). */
  readonly explicit = new Set<string>()
  /** Schema 1 item keys (ids) → the uid of the map there, to follow changes and deletions. */
  readonly legacy = new Map<string, Uid>()
  /** The reverse of `legacy`: the schema 1 keys that hold each uid (one, unless a peer copied it). */
  readonly legacyKeys = new Map<Uid, Set<string>>()
  /** What the shadow store holds per id (the item shown there), as of the last captured transaction. */
  readonly index = new Map<ItemId, IndexEntry>()
  /** The reverse of `index`: where each uid's rows are. */
  readonly byUid = new Map<Uid, ItemId>()
  /** Ids whose item became unreadable while it kept the id: its rows were kept as its last good copy. */
  readonly keptRows = new Map<ItemId, Uid>()
  /** Items of this replica that show no id: the engine claims a fresh id for each. */
  readonly unanchored = new Set<Uid>()
  /**
   * Schema 1 items of this replica whose map a concurrent schema 1 write of the same id
   * replaced (crdt/rescue.ts): re-created under their uid by the next re-anchoring batch.
   */
  readonly rescues = new Map<Uid, Rescue>()
  /** Journal rows of long operations (an import in progress, say). */
  readonly intents: Intent[] = []
  /** Stage entries (and refused writes) whose report has already been made. */
  readonly reported = new Set<string>()
  /** Cache of resolved items; dropped per id whenever a transaction touches it. */
  readonly items = new Map<ItemId, Item | null>()
  /** Sequence numbers of the update rows on disk, oldest first. */
  liveSeqs: number[] = []
  /** Bytes of the live update rows, and of the largest of them (the last snapshot, as a rule). */
  liveBytes = 0
  baseBytes = 0
  /** The update rows written since this process last folded rows (with their bytes), for the next merge. */
  tail: Array<{ seq: number; update: Uint8Array }> = []
  /** Rows that could not be applied; kept on disk (never compacted away) and reported. */
  corrupt: CorruptRow[] = []
  nextSeq = 1
  /** Batches written since the store was created (meta/commit). */
  commit = 0
  /**
   * Whether the index rows on disk are complete (meta/indexed = meta/commit): then every batch
   * keeps them so and says so. False until an open rebuilds them (storage/index-rows.ts).
   */
  indexed = false
  /** Sequence numbers of every update row found at load, damaged ones included. */
  loadedSeqs: number[] = []
  readRows = 0
  readBytes = 0

  constructor(readonly generation: number, readonly replicaId: ReplicaId, clientId?: number) {
    this.doc = new Y.Doc({ gc: true })
    if (clientId !== undefined) this.doc.clientID = clientId
    this.parts = docParts(this.doc)
  }

  track(id: ItemId, entry: IndexEntry): void {
    const old = this.index.get(id)
    if (old && this.byUid.get(old.uid) === id) this.byUid.delete(old.uid)
    const at = this.byUid.get(entry.uid)
    if (at !== undefined && at !== id && this.index.get(at)?.uid === entry.uid) this.index.delete(at)
    this.index.set(id, entry)
    this.byUid.set(entry.uid, id)
  }

  untrack(id: ItemId): void {
    const old = this.index.get(id)
    if (old && this.byUid.get(old.uid) === id) this.byUid.delete(old.uid)
    this.index.delete(id)
  }

  /**
   * Records where an item map lives (a schema 2 record, or a schema 1 item under its id) and
   * keeps the claim a schema 1 item implies. Returns the uids whose id or data may have changed.
   */
  noteMap(root: 'records' | 'items', key: string, map: ItemMap | undefined): Set<Uid> {
    const affected = new Set<Uid>()
    if (!isItemMap(map)) map = undefined // a value that is not an item map is no item (crdt/layout.ts)
    if (root === 'records') {
      if (!isUid(key)) return affected
      affected.add(key)
      if (map) this.maps.set(key, map)
      else {
        // A schema 1 map of the same uid, if any, takes over again.
        const legacyKey = this.legacyKeys.get(key)?.values().next().value
        const legacyMap = legacyKey === undefined ? undefined : this.parts.items.get(legacyKey)
        if (legacyMap) this.maps.set(key, legacyMap)
        else this.maps.delete(key)
      }
      return affected
    }
    const before = this.legacy.get(key)
    // Only a map that reads as a whole item implies a claim — a bare uid claims nothing — and not
    // for an item of schema 2 or later (it lives under its uid in records; schema 1 never saw it).
    // Schema 1 history still arrives from peers that migrated, so such maps are not refused.
    const read = map ? readRecord(map)?.uid : undefined
    const after = read !== undefined && !this.parts.records.has(read) ? read : undefined
    if (before !== undefined) {
      affected.add(before)
      if (before !== after) {
        this.legacy.delete(key)
        this.legacyKeys.get(before)?.delete(key)
        if (this.legacyKeys.get(before)?.size === 0) this.legacyKeys.delete(before)
        if (!this.parts.records.has(before)) this.maps.delete(before)
        if (isItemId(key)) for (const uid of this.claims.remove(key, before)) affected.add(uid)
      }
    }
    if (after !== undefined && map) {
      affected.add(after)
      if (!this.parts.records.has(after)) this.maps.set(after, map)
      if (before !== after) {
        this.legacy.set(key, after)
        this.legacyKeys.set(after, (this.legacyKeys.get(after) ?? new Set()).add(key))
        if (isItemId(key)) for (const uid of this.claims.add(key, after)) affected.add(uid)
      }
    }
    return affected
  }

  destroy(): void {
    this.doc.destroy()
  }
}

/** Builds a DocState from the update rows on disk and the highest ids of the content store. */
export async function loadState(dbs: Databases, generation: number, replicaId: ReplicaId, clientId?: number): Promise<DocState> {
  const state = new DocState(generation, replicaId, clientId)
  const corruptSeqs = new Set<number>()
  const rows: Array<[number, Uint8Array, string]> = []
  for await (const [key, value] of dbs.doc.iterator()) {
    const seq = seqFromKey(key)
    if (seq === undefined) {
      state.corrupt.push({ sublevel: 'doc', key, error: 'not a docket update key' })
      continue
    }
    rows.push([seq, value, key])
  }
  state.doc.transact(() => {
    for (const [seq, value, key] of rows) {
      state.readRows++
      state.readBytes += value.byteLength
      try {
        Y.applyUpdate(state.doc, value, LOAD_ORIGIN)
      } catch (err) {
        corruptSeqs.add(seq)
        state.corrupt.push({ sublevel: 'doc', key, error: `not a Yjs update (${(err as Error).message})` })
      }
    }
  }, LOAD_ORIGIN)
  state.loadedSeqs = rows.map(([seq]) => seq)
  state.liveSeqs = state.loadedSeqs.filter((seq) => !corruptSeqs.has(seq))
  for (const [seq, value] of rows) {
    if (corruptSeqs.has(seq)) continue
    state.liveBytes += value.byteLength
    state.baseBytes = Math.max(state.baseBytes, value.byteLength)
  }
  const commit = Number((await dbs.meta.get('commit')) ?? '0')
  state.commit = Number.isSafeInteger(commit) && commit >= 0 ? commit : 0
  state.indexed = (await dbs.meta.get('indexed')) === String(state.commit)
  state.nextSeq = rows.length === 0 ? 1 : rows[rows.length - 1]![0] + 1
  const unreadable = buildIndexes(state)
  state.allocator.observe('content', await highestStoredId(dbs))
  for await (const key of dbs.reported.keys()) state.reported.add(key)
  await loadJournal(dbs, state)
  for (const uid of state.rescues.keys()) noteAnchoring(state, uid)
  await findKeptRows(dbs, state, unreadable)
  return state
}

async function loadJournal(dbs: Databases, state: DocState): Promise<void> {
  for await (const [key, text] of dbs.journal.iterator()) {
    let data: Record<string, unknown>
    try {
      data = JSON.parse(text) as Record<string, unknown>
    } catch {
      state.corrupt.push({ sublevel: 'journal', key, error: 'not JSON' })
      continue
    }
    const { kind } = data
    const item = kind === 'rescue' ? decodeRescued(data) : undefined
    if (item && isItemId(data.oldId)) {
      state.rescues.set(item.record.uid, { oldId: data.oldId, item, journalKey: key, journaled: true })
      continue
    }
    state.intents.push({ key, kind: typeof kind === 'string' ? kind : 'unknown', data })
  }
}

/**
 * Items that hold their id but cannot be read (a peer's bad value, or a deletion whose record
 * has not arrived): the rows at their id, if they are theirs, are kept as their last good copy.
 */
async function findKeptRows(dbs: Databases, state: DocState, unreadable: ReadonlyArray<[ItemId, Uid]>): Promise<void> {
  for (const [id, uid] of unreadable) {
    const text = await dbs.shadow.get(idKey(id))
    const owner = text === undefined ? undefined : shadowUid(text)
    if (owner && 'uid' in owner && owner.uid === uid) state.keptRows.set(id, uid)
  }
}

/**
 * Indexes the document as loaded: item maps, claims, tombstones, high-water marks, the rows'
 * owners. Returns the items that hold an id but cannot be read (see `findKeptRows`).
 */
export function buildIndexes(state: DocState): Array<[ItemId, Uid]> {
  const { items, records, claims, tombstones, alloc } = state.parts
  for (const [key, map] of items) {
    if (isItemId(key)) state.allocator.observe('items', idToNumber(key))
    if (state.legacy.get(key) === undefined) state.noteMap('items', key, map)
  }
  for (const [key, map] of records) state.noteMap('records', key, map)
  for (const key of claims.keys()) indexClaim(state, key)
  for (const key of tombstones.keys()) indexTombstone(state, key)
  for (const value of alloc.values()) {
    if (isIdNumber(value)) state.allocator.observe('high-water', value)
  }
  const unreadable: Array<[ItemId, Uid]> = []
  for (const [id, uid] of state.claims.shownEntries()) {
    if (isDeletedUid(state.parts, uid)) continue
    const record = recordOf(state, uid)
    if (record) state.track(id, { uid, createdBy: record.createdBy })
    else unreadable.push([id, uid])
  }
  for (const uid of state.maps.keys()) noteAnchoring(state, uid)
  for (const uid of state.rescues.keys()) noteAnchoring(state, uid)
  return unreadable
}

/** Indexes one claim key, once: the claim, and the uids whose shown id may have changed (or undefined: no new claim). */
export function indexClaim(state: DocState, key: string): { claim: { id: ItemId; uid: Uid }; affected: Set<Uid> } | undefined {
  const claim = parseClaimKey(key)
  if (!claim || state.explicit.has(key)) return undefined
  state.explicit.add(key)
  state.allocator.observe('items', idToNumber(claim.id))
  const affected = state.claims.add(claim.id, claim.uid)
  affected.add(claim.uid)
  return { claim, affected }
}

/** Indexes one tombstone, once: the uids that lose the id (or undefined: no new tombstone). */
export function indexTombstone(state: DocState, key: string): Set<Uid> | undefined {
  if (!isItemId(key) || state.claims.isTombstoned(key)) return undefined
  state.allocator.observe('tombstones', idToNumber(key))
  return state.claims.tombstone(key)
}

/** The readable record of an item map, by uid (the map must say the same uid). */
export function recordOf(state: DocState, uid: Uid): ItemRecord | undefined {
  const map = state.maps.get(uid)
  const record = map ? readRecord(map) : undefined
  return record?.uid === uid ? record : undefined
}

/**
 * Keeps `unanchored` right for one item: an item of this replica that is readable, not
 * deleted, has claimed an id (or is a schema 2 record) and shows none must be re-anchored.
 */
export function noteAnchoring(state: DocState, uid: Uid): void {
  // Cheap tests first: at open this runs for every item, and nearly all of them show an id.
  if (state.claims.shownId(uid) !== undefined || isDeletedUid(state.parts, uid)) {
    state.unanchored.delete(uid)
    return
  }
  const record = recordOf(state, uid)
  const rescued = state.rescues.has(uid) && record === undefined
  const candidate = rescued || (record !== undefined && record.createdBy === state.replicaId && (state.claims.hasClaims(uid) || state.parts.records.has(uid)))
  if (candidate) state.unanchored.add(uid)
  else state.unanchored.delete(uid)
}

/**
 * The highest id that has rows in the content or shadow store. Keys are zero-padded, so it
 * is the last well-formed key: a reverse seek that stops at the first key docket wrote.
 */
async function highestStoredId(dbs: Databases): Promise<number> {
  let highest = 0
  for await (const key of dbs.content.keys({ reverse: true })) {
    const parsed = parseContentKey(key)
    if (parsed) {
      highest = Math.max(highest, idToNumber(parsed.id))
      break
    }
  }
  for await (const key of dbs.shadow.keys({ reverse: true })) {
    const id = idFromKey(key)
    if (id) {
      highest = Math.max(highest, idToNumber(id))
      break
    }
  }
  return highest
}
