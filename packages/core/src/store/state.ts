import * as Y from 'yjs'
import { IdAllocator } from '../alloc/allocator.js'
import { docParts, readRecord, type DocParts } from '../crdt/layout.js'
import { idToNumber, isItemId, isReplicaId, isUid, type ItemId, type ReplicaId, type Uid } from '../ids.js'
import type { Databases } from '../storage/db.js'
import { idFromKey, parseContentKey, seqFromKey } from '../storage/keys.js'
import type { Item } from '../types.js'

/** Marks updates replayed from disk at open: they are already persisted. */
export const LOAD_ORIGIN = Symbol('docket:load')

export interface IndexEntry {
  uid: Uid
  createdBy: ReplicaId
}

/** An item of ours that vanished (or went half-delivered) while updates were pending. */
export interface DeferredItem {
  uid: Uid
  createdBy: ReplicaId
  /** The journal row that keeps the deferral across a restart. */
  journalKey: string
}

export interface PendingReanchor {
  uid: Uid
  reason: 'collision' | 'tombstoned-id'
  /** Where the item is still readable: its old rows, or (rarely) the document. */
  source: 'shadow' | 'document'
  /** The journal row that makes the re-anchoring survive a crash. */
  journalKey: string
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
  /** What the shadow store holds per id, as of the last captured transaction. */
  readonly index = new Map<ItemId, IndexEntry>()
  /** The reverse of `index`: where each uid lives. */
  readonly byUid = new Map<Uid, ItemId>()
  /** Ids whose rows hold a displaced item of this replica until it is re-anchored. */
  readonly pendingReanchor = new Map<ItemId, PendingReanchor>()
  /** Journal rows other than re-anchoring (long operations such as an import in progress). */
  readonly intents: Intent[] = []
  /**
   * Ids where an item of ours vanished without a tombstone while updates were still pending
   * (out-of-order delivery: its tombstone may be among them). Re-examined at every change.
   */
  readonly deferred = new Map<ItemId, DeferredItem>()
  /** Stage entries whose supersession has already been reported. */
  readonly reported = new Set<string>()
  /** Cache of resolved items; dropped per id whenever a transaction touches it. */
  readonly items = new Map<ItemId, Item | null>()
  /** Sequence numbers of the update rows on disk, oldest first. */
  liveSeqs: number[] = []
  /** Rows that could not be applied; kept on disk (never compacted away) and reported. */
  corrupt: CorruptRow[] = []
  nextSeq = 1
  readRows = 0
  readBytes = 0

  constructor(readonly generation: number, clientId?: number) {
    this.doc = new Y.Doc({ gc: true })
    if (clientId !== undefined) this.doc.clientID = clientId
    this.parts = docParts(this.doc)
  }

  track(id: ItemId, entry: IndexEntry): void {
    const old = this.index.get(id)
    if (old && this.byUid.get(old.uid) === id) this.byUid.delete(old.uid)
    this.index.set(id, entry)
    this.byUid.set(entry.uid, id)
  }

  untrack(id: ItemId): void {
    const old = this.index.get(id)
    if (old && this.byUid.get(old.uid) === id) this.byUid.delete(old.uid)
    this.index.delete(id)
  }

  destroy(): void {
    this.doc.destroy()
  }
}

/** Builds a DocState from the update rows on disk and the highest ids of the content store. */
export async function loadState(dbs: Databases, generation: number, clientId?: number): Promise<DocState> {
  const state = new DocState(generation, clientId)
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
  state.liveSeqs = rows.map(([seq]) => seq).filter((seq) => !corruptSeqs.has(seq))
  state.nextSeq = rows.length === 0 ? 1 : rows[rows.length - 1]![0] + 1
  buildIndexes(state)
  state.allocator.observe('content', await highestStoredId(dbs))
  for await (const key of dbs.reported.keys()) state.reported.add(key)
  await loadJournal(dbs, state)
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
    const { kind, id, uid, reason, source } = data
    if (kind === 'deferred' && isItemId(id) && isUid(uid) && isReplicaId(data.createdBy)) {
      // The item is not in the document now; what the shadow store holds for it stays tracked.
      state.deferred.set(id, { uid, createdBy: data.createdBy, journalKey: key })
      if (!state.index.has(id)) state.track(id, { uid, createdBy: data.createdBy })
    } else if (kind === 'reanchor' && isItemId(id) && isUid(uid)) {
      state.pendingReanchor.set(id, {
        uid,
        reason: reason === 'tombstoned-id' ? 'tombstoned-id' : 'collision',
        source: source === 'document' ? 'document' : 'shadow',
        journalKey: key,
      })
    } else {
      state.intents.push({ key, kind: typeof kind === 'string' ? kind : 'unknown', data })
    }
  }
}

function buildIndexes(state: DocState): void {
  const { items, tombstones, alloc } = state.parts
  for (const [key, map] of items) {
    if (!isItemId(key)) continue
    state.allocator.observe('items', idToNumber(key))
    const record = readRecord(map)
    if (record) state.track(key, { uid: record.uid, createdBy: record.createdBy })
  }
  for (const key of tombstones.keys()) {
    if (isItemId(key)) state.allocator.observe('tombstones', idToNumber(key))
  }
  for (const value of alloc.values()) {
    if (typeof value === 'number' && Number.isSafeInteger(value)) state.allocator.observe('high-water', value)
  }
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
