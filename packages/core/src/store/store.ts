import * as Y from 'yjs'
import { auditEvent, decodeAudit, isAuditKind, nextUlid } from '../audit/audit.js'
import { buildItemMap, contentOf, F, isDeletedUid, readRecord, readStageEntries, stagesOf, type ItemRecord } from '../crdt/layout.js'
import { DocketError } from '../errors.js'
import { idToNumber, parseItemId, type ItemId, type ReplicaId, type Uid } from '../ids.js'
import type { Databases } from '../storage/db.js'
import { contentKey, idKey, parseSlot } from '../storage/keys.js'
import { parseShadowRow, readStoredRows, scanStoredRows, type MalformedKey, type StoredRows } from '../storage/scan.js'
import type { ShadowRow } from '../storage/shadow.js'
import type { StageEntry } from '../stage/log.js'
import { nextEntry } from '../stage/advance.js'
import { isEventType, transition, validEvents, type StageEvent } from '../stage/machine.js'
import { resolveStage } from '../stage/resolve.js'
import type {
  Alias,
  AuditEvent,
  AuditQuery,
  ContentValue,
  CreateItemInput,
  CreateItemOptions,
  Item,
  ListItemsOptions,
  StageHistoryEntry,
  StoreEvent,
  StoreListener,
  Tombstone,
  UpdateItemInput,
} from '../types.js'
import { captureTransaction, hasPendingUpdates, jobFromContext, pendingOnlyJob, type CaptureEnv } from './capture.js'
import { decodeContent, evidenceFromDocument, evidenceFromShadow, type Evidence } from './evidence.js'
import type { StoreHooks } from './hooks.js'
import { checkDependencies, itemAt, listItems, stageHistory } from './items.js'
import { OpContext, RemoteOrigin, type Job } from './job.js'
import type { Logger } from './logger.js'
import { DocState, LOAD_ORIGIN, loadState, type CorruptRow, type Intent } from './state.js'
import { checkAdoptOptions, planAdoption, type AdoptOrphanOptions } from './adopt.js'
import { checkContentValue, checkCreateInput, checkReason, checkStage, checkType, checkUpdateInput, invalid, requireObject } from './validate.js'
import { verifyStore, type ConsistencyReport } from './verify.js'
import { Writer } from './writer.js'
import { SyncClient, type SyncOptions, type SyncState } from '../sync/client.js'

export interface AdoptResult {
  oldId: ItemId
  newId: ItemId
  uid: Uid
  kind: 'tombstoned' | 'missing' | 'displaced'
  /** What had to be defaulted or dropped. */
  warnings: string[]
  item: Item
}

export interface DeleteItemOptions {
  reason?: string
}

export interface DeleteResult {
  id: ItemId
  uid: Uid
  /** True when the id was already tombstoned: nothing was written. */
  alreadyDeleted: boolean
}

/**
 * A committed update, for replication: `remote` is true for updates that came from a peer,
 * `source` names where it came from ('local', or the source passed to applyUpdate).
 */
export type UpdateListener = (update: Uint8Array, info: { remote: boolean; source: string }) => void

export interface StoreStats {
  items: number
  tombstones: number
  highestId: number
  /** Update rows on disk now, and their total size. */
  updateRows: number
  /** Update rows and bytes read by the last open (or reload). */
  openedRows: number
  openedBytes: number
  compactions: number
  corruptRows: number
  pendingReanchors: number
}

/** @internal The parts openStore assembles; not part of the public API. */
export interface StoreInit {
  dir: string
  replicaId: ReplicaId
  dbs: Databases
  state: DocState
  logger: Logger
  hooks: StoreHooks | undefined
  fsync: boolean
  compactAfterRows: number
  readOnly: boolean
  sync: SyncOptions | undefined
  lastSyncedAt: string | null
}

/**
 * A docket store: one replica of a pipeline. Every mutation is validated, applied to the
 * Y.Doc in one transaction, then persisted — the Yjs update together with the shadow rows,
 * content rows and audit events it implies — in one LevelDB batch before the call returns.
 */
export class Store implements AsyncDisposable {
  readonly dir: string
  readonly replicaId: ReplicaId
  readonly #dbs: Databases
  readonly #logger: Logger
  readonly #hooks: StoreHooks | undefined
  readonly #writer: Writer
  readonly #listeners = new Set<StoreListener>()
  readonly #updateListeners = new Set<UpdateListener>()
  readonly #reanchors = new Map<ItemId, Promise<ItemId | undefined>>()
  readonly #adopting = new Set<ItemId>()
  readonly #compactAfterRows: number
  readonly #readOnly: boolean
  readonly #syncOptions: SyncOptions | undefined
  #sync: SyncClient | undefined
  #lastSyncedAt: string | null
  #syncedNotedAt = 0
  #state: DocState
  #closing: Promise<void> | null = null
  #reloading: Promise<void> | null = null
  #broken: DocketError | null = null

  /** @internal Use `openStore`. */
  constructor(init: StoreInit) {
    this.dir = init.dir
    this.replicaId = init.replicaId
    this.#dbs = init.dbs
    this.#logger = init.logger
    this.#hooks = init.hooks
    this.#state = init.state
    this.#compactAfterRows = init.compactAfterRows
    this.#readOnly = init.readOnly
    this.#syncOptions = init.sync
    this.#lastSyncedAt = init.lastSyncedAt
    this.#writer = new Writer({
      dir: init.dir,
      replicaId: init.replicaId,
      dbs: init.dbs,
      sync: init.fsync,
      logger: init.logger,
      hooks: init.hooks,
      compactAfterRows: init.compactAfterRows,
      current: () => this.#state,
      committed: (job) => this.#committed(job),
      failed: (error) => this.#reload(error),
    })
    this.#attach(this.#state)
  }

  /** @internal Settles what a previous session left in the journal and reports damaged rows. */
  async start(): Promise<void> {
    for (const row of this.#state.corrupt) {
      this.#logger.warn(`corrupt row in ${row.sublevel} at key ${JSON.stringify(row.key)}: ${row.error}; it is kept and skipped`)
    }
    if (this.#readOnly) return
    await this.#reportCorrupt(this.#state.corrupt)
    this.#runPendingReanchors()
    await Promise.all(this.#reanchors.values())
    if (this.#state.liveSeqs.length > this.#compactAfterRows) await this.#writer.compact(this.#state)
    if (this.#syncOptions && !this.#readOnly) {
      await this.#publishContentHighWater()
      this.#sync = new SyncClient(
        this.#syncOptions,
        {
          // The bridge keeps working while the store closes (the client waits for acknowledgements then).
          encodeStateAsUpdate: (sv) => Y.encodeStateAsUpdate(this.#state.doc, sv),
          encodeStateVector: () => Y.encodeStateVector(this.#state.doc),
          applyUpdate: (update, source) => this.applyUpdate(update, source),
          onUpdate: (listener) => this.onUpdate(listener),
          noteSynced: (at) => this.#noteSynced(at),
        },
        this.#logger,
        this.#lastSyncedAt,
      )
    }
  }

  // ───────────────────────────── items ─────────────────────────────

  /**
   * Creates an item: validate, allocate (never a tombstoned id), write the CRDT entry behind
   * the tombstone guard, read it back, and persist entry, shadow row, content and audit
   * event in one batch. Throws CREATE_NOT_MATERIALIZED if the entry did not appear.
   */
  async createItem(input: CreateItemInput, options: CreateItemOptions = {}): Promise<Item> {
    await this.#ready()
    const checked = checkCreateInput(input)
    const allowUnknown = requireObject(options, 'createItem options').allowUnknownDependencies === true
    if (checked.id !== undefined) await this.#refuseStoredRows(checked.id)
    const state = this.#state
    checkDependencies(state, checked.dependsOn, checked.id, allowUnknown)
    this.#hooks?.step?.('create:validated')

    let id: ItemId
    if (checked.id !== undefined) {
      id = checked.id
    } else {
      id = state.allocator.peek()
      if (this.#hooks?.allocate) id = parseItemId(this.#hooks.allocate(id))
    }
    if (state.parts.tombstones.has(id)) {
      await this.#rejectWrite(id, 'create', checked.id !== undefined ? 'requested id is tombstoned' : 'allocator proposed a tombstoned id')
    }
    if (state.parts.items.has(id) || state.pendingReanchor.has(id)) {
      throw new DocketError('ALREADY_EXISTS', `Item ${id} already exists: ${checked.id !== undefined ? 'import it under another id or skip it' : 'this is an allocator bug, please report it'}.`, {
        details: { id },
      })
    }
    this.#hooks?.step?.('create:allocated', { id })

    const uid = nextUlid() as Uid
    const now = new Date().toISOString()
    const record: ItemRecord = {
      uid,
      name: checked.name,
      type: checked.type,
      dependsOn: checked.dependsOn,
      blocked: checked.blocked,
      frozen: checked.frozen,
      agent: checked.agent,
      retries: checked.retries,
      createdAt: now,
      updatedAt: now,
      createdBy: this.replicaId,
    }
    const entry: StageEntry = { id: nextUlid(), epoch: 0, stage: checked.stage, event: 'created', basedOn: null, by: this.replicaId, at: now }
    const ctx = new OpContext('create')
    ctx.audit.push(auditEvent('created', this.replicaId, { uid, name: record.name, type: record.type, stage: checked.stage, slots: [...checked.content.keys()] }, id))
    this.#hooks?.step?.('create:before-crdt-write', { id, uid })

    let refused = false
    state.doc.transact(() => {
      // The tombstone guard: the last check, inside the transaction that writes.
      if (state.parts.tombstones.has(id)) {
        refused = true
        return
      }
      state.parts.items.set(id, buildItemMap(record, [entry], checked.content))
      this.#raiseHighWater(state, id)
    }, ctx)
    this.#hooks?.step?.('create:crdt-written', { id, uid })

    if (refused) {
      ctx.audit.length = 0
      this.#logger.warn(`create of item ${id} refused by the tombstone guard (tombstoned); nothing was kept`)
      ctx.audit.push(auditEvent('write_rejected', this.replicaId, { op: 'create', reason: 'tombstoned', uid }, id))
      ctx.audit.push(auditEvent('create_rolled_back', this.replicaId, { uid, name: record.name, reason: 'tombstoned' }, id))
      ctx.events.push({ type: 'write_rejected', id, reason: 'tombstoned' })
      await this.#commit(state, ctx)
      throw new DocketError(
        'CREATE_NOT_MATERIALIZED',
        `Item ${id} was not created: its id was deleted concurrently (the tombstone guard refused the write). Nothing was kept; create the item again to get a fresh id.`,
        { details: { id, uid, reason: 'tombstoned' } },
      )
    }
    await this.#commit(state, ctx)
    this.#hooks?.step?.('create:committed', { id, uid })
    // Read back, once on disk: the entry must be in the document under its uid — where a
    // concurrent update may have moved it.
    return this.#settleCreated(id, uid, record, checked.stage)
  }

  /**
   * Finds a freshly created item by its uid. If a concurrent remote update displaced it while
   * it was being written, waits for its re-anchoring and returns it under its new id — never
   * under an id that another item holds now.
   */
  async #settleCreated(id: ItemId, uid: Uid, record: ItemRecord, stage: Item['stage']): Promise<Item> {
    for (let round = 0; round < 1000; round++) {
      const state = this.#state
      const where = state.byUid.get(uid)
      const item = where === undefined ? undefined : itemAt(state, where)
      if (item?.uid === uid && !state.pendingReanchor.has(where!)) return item
      if (isDeletedUid(state.parts, uid)) return this.#snapshot(id, record, stage) // created, then deleted by someone
      const moving = [...state.pendingReanchor.entries()].find(([, p]) => p.uid === uid)
      if (moving) {
        await this.#writer.idle()
        await (this.#reanchors.get(moving[0]) ?? Promise.resolve())
        continue
      }
      if (where !== undefined && state.deferred.has(where)) return this.#snapshot(where, record, stage) // half-delivered, not moved
      break
    }
    throw new DocketError('CREATE_NOT_MATERIALIZED', `Item ${id} (${uid}) is not in the document after its write: nothing of it is kept. Create it again.`, {
      details: { id, uid },
    })
  }

  #snapshot(id: ItemId, record: ItemRecord, stage: Item['stage']): Item {
    const item: Item = {
      id,
      uid: record.uid,
      name: record.name,
      type: record.type,
      stage,
      dependsOn: [...record.dependsOn],
      blocked: record.blocked,
      frozen: record.frozen,
      retries: record.retries,
      createdAt: record.createdAt,
      updatedAt: record.updatedAt,
      createdBy: record.createdBy,
    }
    if (record.agent !== null) item.agent = record.agent
    return item
  }

  /** An explicit id must not land on rows nobody owns: they are an orphan's evidence. */
  async #refuseStoredRows(id: ItemId): Promise<void> {
    // Rows are only ever written for items this store tracks; an id past the highest id the
    // content store held at open cannot have rows of its own, so no read is needed.
    if (idToNumber(id) > this.#state.allocator.bySource().content && !this.#state.index.has(id)) return
    const rows = await readStoredRows(this.#dbs, id)
    if ((rows.shadow || rows.slots.length > 0) && !this.#state.parts.items.has(id)) {
      throw new DocketError(
        'ALREADY_EXISTS',
        `Id ${id} has rows in the shadow content store but no item (an orphan): inspect it with \`docket recover --story-ids ${id}\`, or create the item under another id.`,
        { details: { id, orphan: true } },
      )
    }
  }

  getItem(id: ItemId | string): Item | undefined {
    this.#assertOpen()
    return itemAt(this.#state, parseItemId(id))
  }

  listItems(options: ListItemsOptions = {}): Item[] {
    this.#assertOpen()
    const opts = requireObject(options, 'listItems options') as ListItemsOptions
    return listItems(this.#state, checkListOptions(opts))
  }

  /** Sends a stage event: the only way to change a stage. Returns the item as it now is. */
  async apply(id: ItemId | string, event: StageEvent | StageEvent['type']): Promise<Item> {
    await this.#ready()
    const itemId = parseItemId(id)
    const ev: StageEvent = typeof event === 'string' ? { type: event } : requireObject(event, 'event') as unknown as StageEvent
    const reason = ev.reason === undefined ? undefined : checkReason(ev.reason)
    const found = this.#liveNow(itemId)
    if (found === 'tombstoned') return this.#rejectWrite(itemId, 'apply', 'tombstoned')
    const { state, map } = found
    // An unknown event is refused with the events that are valid from the item's stage.
    if (!isEventType(ev.type)) transition(itemAt(state, itemId)!.stage, ev.type)
    const resolution = resolveStage(readStageEntries(map))
    if (!resolution) {
      throw new DocketError('STORE_CORRUPT', `Item ${itemId} has no valid stage entry: run \`docket doctor\` to inspect it.`, { details: { id: itemId } })
    }
    const now = new Date().toISOString()
    const entry = nextEntry(resolution, reason === undefined ? { type: ev.type } : { type: ev.type, reason }, this.replicaId, now, nextUlid())
    const next = entry.stage
    const ctx = new OpContext('apply')
    ctx.audit.push(
      auditEvent('transitioned', this.replicaId, { event: ev.type, from: resolution.stage, to: next, entryId: entry.id, epoch: entry.epoch, ...(reason ? { reason } : {}) }, itemId),
    )
    state.doc.transact(() => {
      stagesOf(map)?.push([entry])
      map.set(F.updatedAt, now)
    }, ctx)
    const written = itemAt(state, itemId)!
    await this.#commit(state, ctx)
    return this.#afterWrite(written)
  }

  /** The valid events from the item's current stage (for UIs and error messages). */
  validEvents(id: ItemId | string): StageEvent['type'][] {
    this.#assertOpen()
    const item = this.#require(parseItemId(id))
    return validEvents(item.stage)
  }

  async updateItem(id: ItemId | string, patch: UpdateItemInput): Promise<Item> {
    await this.#ready()
    const itemId = parseItemId(id)
    const checked = checkUpdateInput(patch)
    const found = this.#liveNow(itemId)
    if (found === 'tombstoned') return this.#rejectWrite(itemId, 'update', 'tombstoned')
    const { state, map } = found
    if (checked.dependsOn) checkDependencies(state, checked.dependsOn, itemId, false, true)
    const before = itemAt(state, itemId)!
    const changes: Record<string, { from: unknown; to: unknown }> = {}
    const now = new Date().toISOString()
    const ctx = new OpContext('update')
    for (const [field, value] of Object.entries(checked)) {
      const old = field === 'agent' ? (before.agent ?? null) : (before as unknown as Record<string, unknown>)[field]
      if (JSON.stringify(old) !== JSON.stringify(value)) changes[field] = { from: old, to: value }
    }
    if (Object.keys(changes).length === 0) return before
    ctx.audit.push(auditEvent('updated', this.replicaId, { changes }, itemId))
    state.doc.transact(() => {
      for (const field of Object.keys(changes)) {
        const value = (checked as Record<string, unknown>)[field]
        if (field === 'agent' && value === null) map.delete(F.agent)
        else map.set(field, Array.isArray(value) ? [...value] : value)
      }
      map.set(F.updatedAt, now)
    }, ctx)
    const written = itemAt(state, itemId)!
    await this.#commit(state, ctx)
    return this.#afterWrite(written)
  }

  /**
   * The item a write just changed, as it is now — found by its uid, since a concurrent update
   * may have moved it meanwhile; as the write left it if it has been deleted since.
   */
  #afterWrite(written: Item): Item {
    const where = this.#state.byUid.get(written.uid)
    const now = where === undefined ? undefined : itemAt(this.#state, where)
    return now?.uid === written.uid ? now : written
  }

  /** Tombstones the id (forever: it is never written or issued again) and clears its content. */
  async deleteItem(id: ItemId | string, options: DeleteItemOptions = {}): Promise<DeleteResult> {
    await this.#ready()
    const itemId = parseItemId(id)
    const opts = requireObject(options, 'deleteItem options') as DeleteItemOptions
    const reason = opts.reason === undefined ? null : checkReason(opts.reason)
    const state = this.#state
    const tomb = state.parts.tombstones.get(itemId)
    if (tomb) return { id: itemId, uid: tomb.uid, alreadyDeleted: true }
    const item = itemAt(state, itemId)
    if (!item) throw notFound(itemId)
    const tombstone: Tombstone = { uid: item.uid, at: new Date().toISOString(), by: this.replicaId, reason }
    const ctx = new OpContext('delete')
    ctx.audit.push(auditEvent('deleted', this.replicaId, { uid: item.uid, name: item.name, stage: item.stage, reason }, itemId))
    state.doc.transact(() => {
      state.parts.tombstones.set(itemId, tombstone)
      state.parts.deleted.set(item.uid, { id: itemId, at: tombstone.at, by: this.replicaId })
      state.parts.items.delete(itemId)
    }, ctx)
    await this.#commit(state, ctx)
    return { id: itemId, uid: item.uid, alreadyDeleted: false }
  }

  // ───────────────────────────── content ─────────────────────────────

  /** The text of a content slot (default `body`), or undefined if the item has no such slot. */
  async readContent(id: ItemId | string, slot = 'body'): Promise<string | undefined> {
    const value = this.#contentValue(parseItemId(id), parseSlot(slot))
    if (value === undefined || typeof value === 'string') return value
    const text = decodeContent(value)
    if (typeof text === 'string') return text
    throw invalid(`Slot "${slot}" of item ${id} holds bytes that are not UTF-8 text: read it with readContentBytes.`, { id, slot })
  }

  async readContentBytes(id: ItemId | string, slot = 'body'): Promise<Uint8Array | undefined> {
    const value = this.#contentValue(parseItemId(id), parseSlot(slot))
    if (value === undefined) return undefined
    return typeof value === 'string' ? new Uint8Array(Buffer.from(value, 'utf8')) : new Uint8Array(value)
  }

  contentSlots(id: ItemId | string): string[] {
    this.#assertOpen()
    const itemId = parseItemId(id)
    if (!itemAt(this.#state, itemId)) throw this.#missing(itemId)
    return [...(contentOf(this.#state.parts.items.get(itemId)!)?.keys() ?? [])].sort()
  }

  #contentValue(id: ItemId, slot: string): ContentValue | undefined {
    this.#assertOpen()
    if (!itemAt(this.#state, id)) throw this.#missing(id)
    const value = contentOf(this.#state.parts.items.get(id)!)?.get(slot)
    return typeof value === 'string' || value instanceof Uint8Array ? value : undefined
  }

  /** Writes a content slot; `null` removes the slot. */
  async writeContent(id: ItemId | string, slot: string, value: ContentValue | null): Promise<void> {
    await this.#ready()
    const itemId = parseItemId(id)
    const name = parseSlot(slot)
    const checked = value === null ? null : checkContentValue(value, name)
    const found = this.#liveNow(itemId)
    if (found === 'tombstoned') return this.#rejectWrite(itemId, 'writeContent', 'tombstoned')
    const { state, map } = found
    const ctx = new OpContext('writeContent')
    const bytes = checked === null ? 0 : typeof checked === 'string' ? Buffer.byteLength(checked, 'utf8') : checked.byteLength
    ctx.audit.push(auditEvent('content_written', this.replicaId, { slot: name, bytes, removed: checked === null }, itemId))
    state.doc.transact(() => {
      let content = contentOf(map)
      if (!content) {
        content = new Y.Map<ContentValue>()
        map.set(F.content, content)
      }
      if (checked === null) content.delete(name)
      else content.set(name, checked)
      map.set(F.updatedAt, new Date().toISOString())
    }, ctx)
    await this.#commit(state, ctx)
  }

  // ───────────────────────────── tombstones, ids, aliases ─────────────────────────────

  isTombstoned(id: ItemId | string): boolean {
    this.#assertOpen()
    return this.#state.parts.tombstones.has(parseItemId(id))
  }

  tombstone(id: ItemId | string): Tombstone | undefined {
    this.#assertOpen()
    const tomb = this.#state.parts.tombstones.get(parseItemId(id))
    return tomb ? { ...tomb } : undefined
  }

  tombstonedIds(): ItemId[] {
    this.#assertOpen()
    return [...this.#state.parts.tombstones.keys()]
      .filter((key): key is ItemId => /^[1-9][0-9]*$/.test(key))
      .sort((a, b) => idToNumber(a) - idToNumber(b))
  }

  /** The id the next createItem will get (unless another replica takes it first). O(1). */
  peekNextId(): ItemId {
    this.#assertOpen()
    return this.#state.allocator.peek()
  }

  /** Re-anchorings recorded for items that lost their id; all, or those of one old id. */
  aliases(oldId?: ItemId | string): Alias[] {
    this.#assertOpen()
    const filter = oldId === undefined ? undefined : parseItemId(oldId)
    return [...this.#state.parts.aliases.values()].filter((a) => filter === undefined || a.oldId === filter).map((a) => ({ ...a }))
  }

  stageHistory(id: ItemId | string): StageHistoryEntry[] {
    this.#assertOpen()
    const itemId = parseItemId(id)
    if (!itemAt(this.#state, itemId)) throw this.#missing(itemId)
    return stageHistory(this.#state, itemId)
  }

  // ───────────────────────────── audit, events ─────────────────────────────

  /** The audit log, oldest first. */
  async *audit(query: AuditQuery = {}): AsyncGenerator<AuditEvent> {
    this.#assertOpen()
    const q = requireObject(query, 'audit query') as AuditQuery
    if (q.since !== undefined && (typeof q.since !== 'string' || !/^[0-9A-HJKMNP-TV-Z]{26}$/.test(q.since))) {
      throw invalid(`since must be the ULID of an audit event, got ${JSON.stringify(q.since)}.`)
    }
    const kinds = q.kinds === undefined ? undefined : new Set(q.kinds)
    for (const kind of kinds ?? []) {
      if (!isAuditKind(kind)) throw invalid(`Unknown audit kind ${JSON.stringify(kind)}.`)
    }
    const itemId = q.itemId === undefined ? undefined : parseItemId(q.itemId)
    if (q.limit !== undefined && (!Number.isSafeInteger(q.limit) || q.limit < 0)) throw invalid(`limit must be a whole number ≥ 0, got ${JSON.stringify(q.limit)}.`)
    const limit = q.limit ?? Infinity
    if (limit === 0) return
    let count = 0
    for await (const [key, text] of this.#dbs.audit.iterator(q.since ? { gt: q.since } : {})) {
      const event = decodeAudit(key, text)
      if (kinds && !kinds.has(event.kind)) continue
      if (itemId !== undefined && event.itemId !== itemId) continue
      yield event
      if (++count >= limit) return
    }
  }

  /** Listens to changes after they are on disk. Returns the function that unsubscribes. */
  subscribe(listener: StoreListener): () => void {
    this.#assertOpen()
    if (typeof listener !== 'function') throw invalid('subscribe needs a function.')
    this.#listeners.add(listener)
    return () => this.#listeners.delete(listener)
  }

  // ───────────────────────────── replication ─────────────────────────────

  encodeStateVector(): Uint8Array {
    this.#assertOpen()
    return Y.encodeStateVector(this.#state.doc)
  }

  /** The document as one update; with a state vector, only what that replica lacks. */
  encodeStateAsUpdate(stateVector?: Uint8Array): Uint8Array {
    this.#assertOpen()
    return Y.encodeStateAsUpdate(this.#state.doc, stateVector)
  }

  /**
   * Applies an update from another replica and resolves once it — and the shadow rows it
   * implies — are on disk. Items it displaces are re-anchored afterwards.
   */
  applyUpdate(update: Uint8Array, source = 'remote'): Promise<void> {
    try {
      this.#assertOpen()
    } catch (err) {
      return Promise.reject(err)
    }
    // Applied synchronously unless a reload is under way, so that callers (and fault
    // injection) can interleave it precisely with local operations.
    if (this.#readOnly) return this.#ready()
    if (this.#reloading) return this.#reloading.then(() => this.applyUpdate(update, source))
    if (!(update instanceof Uint8Array)) return Promise.reject(invalid('applyUpdate needs a Uint8Array holding a Yjs update.'))
    const origin = new RemoteOrigin(source, update)
    const state = this.#state
    try {
      Y.applyUpdate(state.doc, update, origin)
    } catch (err) {
      if (this.#broken) return Promise.reject(this.#broken)
      return Promise.reject(
        new DocketError('INVALID_INPUT', `The update from ${source} is not a valid Yjs update: it was ignored. Check the peer's docket version.`, { cause: err }),
      )
    }
    // Parts of an update that wait for updates not yet received live only in memory: keep the
    // update as it came, so that a restart does not forget them (applying it twice is harmless).
    if (!origin.job && hasPendingUpdates(state)) this.#writer.submit(pendingOnlyJob(state, update))
    return origin.job ? origin.job.promise : Promise.resolve()
  }

  /** Listens to updates once they are on disk (local and remote), for replication. */
  onUpdate(listener: UpdateListener): () => void {
    this.#assertOpen()
    this.#updateListeners.add(listener)
    return () => this.#updateListeners.delete(listener)
  }

  /** Resolves when every write started so far is on disk and every re-anchoring is done. */
  async flush(): Promise<void> {
    this.#assertOpen()
    await this.#settle()
  }

  /** Waits until the writer is idle and no re-anchoring runs (a failed one is retried later). */
  async #settle(): Promise<void> {
    for (;;) {
      await this.#writer.idle()
      const pending = [...this.#reanchors.values()]
      if (pending.length === 0) return
      await Promise.allSettled(pending)
    }
  }

  // ───────────────────────────── orphans (for @docket/recover) ─────────────────────────────

  /**
   * Walks the shadow content store id by id (all ids, or only `ids`): the raw rows, whatever
   * the CRDT says. Read-only; what recovery and `doctor` build on.
   */
  scanStoredRows(options: { ids?: readonly (ItemId | string)[]; onMalformedKey?: (key: MalformedKey) => void } = {}): AsyncGenerator<StoredRows> {
    this.#assertOpen()
    const opts = requireObject(options, 'scanStoredRows options') as { ids?: readonly string[]; onMalformedKey?: (key: MalformedKey) => void }
    const ids = opts.ids?.map((id) => parseItemId(id))
    return scanStoredRows(this.#dbs, { ...(ids ? { ids } : {}), ...(opts.onMalformedKey ? { malformed: opts.onMalformedKey } : {}) })
  }

  /** The uid of the live item at `id`, or undefined. O(1): for scans that must not build items. */
  uidAt(id: ItemId | string): Uid | undefined {
    this.#assertOpen()
    const itemId = parseItemId(id)
    const state = this.#state
    if (state.parts.tombstones.has(itemId) || !state.parts.items.has(itemId)) return undefined
    const uid = state.index.get(itemId)?.uid
    return uid === undefined || isDeletedUid(state.parts, uid) ? undefined : uid
  }

  /** Whether the item with this uid was deleted (wherever it lives now). */
  isDeletedUid(uid: Uid | string): boolean {
    this.#assertOpen()
    return isDeletedUid(this.#state.parts, uid)
  }

  /** Ids whose rows hold an item of this replica that is waiting to be re-anchored. */
  pendingReanchors(): ItemId[] {
    this.#assertOpen()
    return [...this.#state.pendingReanchor.keys()]
  }

  /** One content row of the shadow content store (not the CRDT): raw bytes, or undefined. */
  async readStoredContent(id: ItemId | string, slot = 'body'): Promise<Uint8Array | undefined> {
    this.#assertOpen()
    const value = await this.#dbs.content.get(contentKey(parseItemId(id), parseSlot(slot)))
    return value === undefined ? undefined : new Uint8Array(value)
  }

  /** The shadow row at `id`, parsed defensively: the row, why it is unreadable, or undefined. */
  async readShadowRow(id: ItemId | string): Promise<{ row: ShadowRow } | { error: string; text: string } | undefined> {
    this.#assertOpen()
    const text = await this.#dbs.shadow.get(idKey(parseItemId(id)))
    if (text === undefined) return undefined
    const parsed = parseShadowRow(text)
    return 'row' in parsed ? parsed : { error: parsed.error, text }
  }

  /**
   * Re-anchors an orphan — rows in the shadow content store that no live CRDT entry owns —
   * to a fresh id: the new CRDT entry (its uid, stage log and content kept), the alias
   * `old id → new id`, an `orphan_adopted` audit event and the removal of the old rows go
   * to disk in one batch. A crash leaves the orphan as it was or the adoption complete.
   */
  async adoptOrphan(id: ItemId | string, options: AdoptOrphanOptions = {}): Promise<AdoptResult> {
    await this.#ready()
    const oldId = parseItemId(id)
    const opts = checkAdoptOptions(options)
    // One adoption per id at a time: two concurrent ones would both read the rows and both
    // create an item from them.
    if (this.#adopting.has(oldId)) {
      throw new DocketError('CONFLICT', `Id ${oldId} is being recovered by another call right now: wait for it, then run discovery again.`, { details: { id: oldId } })
    }
    this.#adopting.add(oldId)
    try {
      return await this.#adopt(oldId, opts)
    } finally {
      this.#adopting.delete(oldId)
    }
  }

  async #adopt(oldId: ItemId, opts: AdoptOrphanOptions): Promise<AdoptResult> {
    const rows = await readStoredRows(this.#dbs, oldId)
    const state = this.#state
    const plan = planAdoption(state, oldId, rows, opts, this.replicaId)
    const newId = this.#freshId(state)
    const at = new Date().toISOString()
    const alias: Alias = { uid: plan.record.uid, oldId, newId, at, by: this.replicaId, reason: 'recovery' }
    const ctx = new OpContext('adopt')
    ctx.refresh.add(oldId)
    if (rows.shadow) ctx.dels.push({ sublevel: 'shadow', key: idKey(oldId) })
    for (const { slot } of rows.slots) ctx.dels.push({ sublevel: 'content', key: contentKey(oldId, slot) })
    ctx.audit.push(
      auditEvent('orphan_adopted', this.replicaId, { oldId, newId, uid: plan.record.uid, shadowUid: plan.shadowUid, kind: plan.kind, name: plan.record.name, warnings: plan.warnings }, newId),
    )
    ctx.events.push({ type: 'reanchored', uid: plan.record.uid, oldId, newId, reason: 'recovery' })
    this.#hooks?.step?.('adopt:before-commit', { oldId, newId })
    state.doc.transact(() => {
      state.parts.items.set(newId, buildItemMap(plan.record, plan.entries, plan.content))
      state.parts.aliases.set(`${oldId}/${plan.record.uid}`, alias)
      this.#raiseHighWater(state, newId)
    }, ctx)
    const written = itemAt(state, newId)!
    await this.#commit(state, ctx)
    return { oldId, newId, uid: plan.record.uid, kind: plan.kind, warnings: plan.warnings, item: this.#afterWrite(written) }
  }

  /**
   * Appends one audit event for a run of a tool (recovery, import, doctor). Such events are
   * audit-only: `investigate` is false by construction.
   */
  async recordRun(kind: 'recovery_run' | 'import_run' | 'doctor_fix', data: Record<string, unknown>): Promise<AuditEvent> {
    await this.#ready()
    if (kind !== 'recovery_run' && kind !== 'import_run' && kind !== 'doctor_fix') throw invalid(`recordRun records recovery_run, import_run or doctor_fix, not ${JSON.stringify(kind)}.`)
    const event = auditEvent(kind, this.replicaId, JSON.parse(JSON.stringify(requireObject(data, 'run data'))) as Record<string, unknown>)
    const ctx = new OpContext('record')
    ctx.audit.push(event)
    await this.#commit(this.#state, ctx)
    return event
  }

  // ───────────────────────────── long operations, repair, import ─────────────────────────────

  /**
   * Records that a long operation (an import, say) has started, so that one interrupted by a
   * crash is visible to `doctor` at the next open. Returns the journal key to end it with.
   */
  async beginIntent(kind: string, data: Record<string, unknown>): Promise<string> {
    await this.#ready()
    if (typeof kind !== 'string' || !/^[a-z][a-z0-9_-]{0,40}$/.test(kind) || kind === 'reanchor') {
      throw invalid(`Intent kind ${JSON.stringify(kind)} is invalid: use a short lowercase name (not "reanchor", which docket keeps for itself).`)
    }
    const key = nextUlid()
    const intent: Intent = { key, kind, data: { ...requireObject(data, 'intent data'), startedAt: new Date().toISOString() } }
    const ctx = new OpContext('intent')
    ctx.puts.push({ sublevel: 'journal', key, value: JSON.stringify({ kind, ...intent.data }) })
    await this.#commit(this.#state, ctx)
    this.#state.intents.push(intent)
    return key
  }

  /**
   * Ends an intent: its journal row goes, together with the audit event that records the
   * outcome (if any), in one batch — a completion marker only when the operation completed.
   */
  async endIntent(key: string, outcome?: { kind: 'import_run' | 'recovery_run' | 'doctor_fix'; data: Record<string, unknown> }): Promise<void> {
    await this.#ready()
    const state = this.#state
    const at = state.intents.findIndex((i) => i.key === key)
    if (at < 0) throw new DocketError('NOT_FOUND', `There is no pending intent ${JSON.stringify(key)}: list them with \`docket doctor\`.`, { details: { key } })
    const ctx = new OpContext('intent')
    ctx.dels.push({ sublevel: 'journal', key })
    if (outcome) ctx.audit.push(auditEvent(outcome.kind, this.replicaId, JSON.parse(JSON.stringify(outcome.data)) as Record<string, unknown>))
    await this.#commit(state, ctx)
    const still = state.intents.findIndex((i) => i.key === key)
    if (still >= 0) state.intents.splice(still, 1)
  }

  /**
   * Rewrites the shadow and content rows of live items from the CRDT where they are missing,
   * stale, incomplete or damaged. Never touches rows that another uid owns (orphans are for
   * recovery), never changes the CRDT, so it cannot move a stage or bring anything back.
   */
  async repairShadow(): Promise<{ repaired: ItemId[] }> {
    await this.#ready()
    await this.flush()
    const report = await verifyStore(this.#dbs, this.#state)
    const ids = new Set<ItemId>([
      ...report.crdtOnly,
      ...report.staleShadow.map((s) => s.id),
      ...report.missingContent.map((m) => m.id),
      ...report.strayContent.map((m) => m.id),
    ])
    const untracked = new Set(report.untracked)
    const repaired = [...ids].filter((id) => !untracked.has(id) && itemAt(this.#state, id) !== undefined).sort((a, b) => idToNumber(a) - idToNumber(b))
    if (repaired.length === 0) return { repaired }
    const ctx = new OpContext('repair')
    for (const id of repaired) ctx.refresh.add(id)
    ctx.audit.push(auditEvent('doctor_fix', this.replicaId, { repaired }))
    await this.#commit(this.#state, ctx)
    return { repaired }
  }

  /**
   * Carries a tombstone over from another store (an import of an export): the id stays
   * deleted here too and is never issued. Refused if the id is live here.
   */
  async importTombstone(id: ItemId | string, tombstone: { uid: string; at?: string; by?: string; reason?: string | null }): Promise<boolean> {
    await this.#ready()
    const itemId = parseItemId(id)
    const t = requireObject(tombstone, 'tombstone') as { uid: unknown; at?: unknown; by?: unknown; reason?: unknown }
    if (typeof t.uid !== 'string' || !/^[0-9A-HJKMNP-TV-Z]{26}$/.test(t.uid)) throw invalid('tombstone.uid must be a ULID.')
    const state = this.#state
    if (state.parts.tombstones.has(itemId)) return false
    if (state.parts.items.has(itemId)) throw new DocketError('ALREADY_EXISTS', `Item ${itemId} is live here, so its tombstone from elsewhere was not applied: check which store is right.`, { details: { id: itemId } })
    const tomb: Tombstone = {
      uid: t.uid as Uid,
      at: typeof t.at === 'string' ? t.at : new Date().toISOString(),
      by: (typeof t.by === 'string' && t.by.length > 0 ? t.by : this.replicaId) as ReplicaId,
      reason: typeof t.reason === 'string' ? t.reason : null,
    }
    const ctx = new OpContext('importTombstone')
    ctx.audit.push(auditEvent('deleted', this.replicaId, { uid: tomb.uid, imported: true, reason: tomb.reason }, itemId))
    state.doc.transact(() => {
      state.parts.tombstones.set(itemId, tomb)
      state.parts.deleted.set(tomb.uid, { id: itemId, at: tomb.at, by: tomb.by })
    }, ctx)
    await this.#commit(state, ctx)
    return true
  }

  // ───────────────────────────── sync ─────────────────────────────

  /** Whether and how this replica syncs; `lastSyncedAt` survives across processes. */
  syncState(): SyncState {
    this.#assertOpen()
    if (this.#sync) return this.#sync.state()
    return { configured: this.#syncOptions !== undefined, url: this.#syncOptions?.url ?? null, connected: false, synced: false, lastSyncedAt: this.#lastSyncedAt, error: null }
  }

  /**
   * Resolves once this replica is synced with its server (immediately if it has none).
   * Rejects with BEHIND_REMOTE after `timeoutMs`, SYNC_UNAUTHORIZED if the token was refused.
   */
  async whenSynced(timeoutMs = 10_000): Promise<SyncState> {
    this.#assertOpen()
    if (!this.#syncOptions) return this.syncState()
    if (!this.#sync) {
      throw new DocketError('BEHIND_REMOTE', `The store at ${this.dir} was opened read-only, so it does not sync with ${this.#syncOptions.url}: open it writable to sync.`, {
        details: { url: this.#syncOptions.url },
      })
    }
    return this.#sync.whenSynced(timeoutMs)
  }

  /**
   * The pull gate of repairs: passes when the store has no server, when `offline` is set, or
   * once it is synced; otherwise BEHIND_REMOTE — a stale replica must not repair.
   */
  async assertSynced(options: { timeoutMs?: number; offline?: boolean } = {}): Promise<void> {
    if (options.offline === true || !this.#syncOptions) return
    await this.whenSynced(options.timeoutMs ?? 10_000)
  }

  #noteSynced(at: string): void {
    this.#lastSyncedAt = at
    const now = Date.now()
    // Persisted at most once a second: it is a hint for reports, not a log.
    if (now - this.#syncedNotedAt < 1000 || this.#closing !== null) return
    this.#syncedNotedAt = now
    const ctx = new OpContext('synced')
    ctx.puts.push({ sublevel: 'meta', key: 'lastSyncedAt', value: at })
    this.#commit(this.#state, ctx).catch((err: unknown) => this.#logger.warn(`could not record the sync time: ${(err as Error).message}`))
  }

  // ───────────────────────────── health ─────────────────────────────

  /** Folds every update row into one snapshot row now (the writer also does it on its own). */
  async compact(): Promise<void> {
    await this.#ready()
    await this.#writer.compact(this.#state)
  }

  /** Total bytes of the update rows on disk (what the next open reads). */
  async storedUpdateBytes(): Promise<number> {
    this.#assertOpen()
    let total = 0
    for await (const value of this.#dbs.doc.values()) total += value.byteLength
    return total
  }

  stats(): StoreStats {
    this.#assertOpen()
    const state = this.#state
    return {
      items: [...state.index.entries()].filter(([id, e]) => !state.parts.tombstones.has(id) && !isDeletedUid(state.parts, e.uid)).length,
      tombstones: state.parts.tombstones.size,
      highestId: state.allocator.highest,
      updateRows: state.liveSeqs.length,
      openedRows: state.readRows,
      openedBytes: state.readBytes,
      compactions: this.#writer.compactions,
      corruptRows: state.corrupt.length,
      pendingReanchors: state.pendingReanchor.size,
    }
  }

  /**
   * Compares the shadow content store with the CRDT (read-only): missing or stale shadow rows,
   * missing content, damaged rows, unfinished intents, and ids whose rows no live item owns.
   */
  async verify(): Promise<ConsistencyReport> {
    this.#assertOpen()
    await this.flush()
    return verifyStore(this.#dbs, this.#state)
  }

  /** Rows that could not be read at open (they are kept on disk, never compacted away). */
  corruptRows(): CorruptRow[] {
    this.#assertOpen()
    return this.#state.corrupt.map((row) => ({ ...row }))
  }

  /** Journal rows of long operations that did not finish (an interrupted import, say). */
  pendingIntents(): Intent[] {
    this.#assertOpen()
    return this.#state.intents.map((intent) => ({ ...intent, data: { ...intent.data } }))
  }

  get readOnly(): boolean {
    return this.#readOnly
  }

  get closed(): boolean {
    return this.#closing !== null
  }

  /** Waits for pending writes, then releases the document and the LevelDB. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= this.#close()
    return this.#closing
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close()
  }

  async #close(): Promise<void> {
    try {
      await this.#settle()
      await this.#sync?.close()
      await this.#settle()
    } finally {
      this.#listeners.clear()
      this.#updateListeners.clear()
      this.#state.destroy()
      await this.#dbs.root.close()
    }
  }

  // ───────────────────────────── internals ─────────────────────────────

  #assertOpen(): void {
    if (this.#closing !== null) {
      throw new DocketError('STORE_CLOSED', `The store at ${this.dir} is closed: open it again with openStore().`, { details: { dir: this.dir } })
    }
    if (this.#broken) throw this.#broken
  }

  async #ready(): Promise<void> {
    this.#assertOpen()
    if (this.#readOnly) {
      throw new DocketError('STORE_READ_ONLY', `The store at ${this.dir} was opened read-only: open it without readOnly to change it.`, { details: { dir: this.dir } })
    }
    if (this.#reloading) await this.#reloading
    this.#assertOpen()
  }

  #require(id: ItemId): Item {
    const item = itemAt(this.#state, id)
    if (!item) throw this.#missing(id)
    return item
  }

  #missing(id: ItemId): DocketError {
    if (this.#state.parts.tombstones.has(id)) {
      return new DocketError('TOMBSTONED', `Item ${id} was deleted; deleted ids are never reused. Create a new item instead.`, { details: { id } })
    }
    return notFound(id)
  }

  /**
   * The live item's map, checked synchronously — callers use it in the same tick, so nothing
   * can delete the item between this check and their transaction. 'tombstoned' means the
   * caller must refuse loudly (#rejectWrite); an unknown id is NOT_FOUND.
   */
  #liveNow(id: ItemId): { state: DocState; map: Y.Map<unknown> } | 'tombstoned' {
    const state = this.#state
    if (state.parts.tombstones.has(id)) return 'tombstoned'
    const map = state.parts.items.get(id)
    if (!map || !itemAt(state, id)) throw notFound(id)
    return { state, map }
  }

  async #rejectWrite(id: ItemId, op: string, reason: string): Promise<never> {
    this.#logger.warn(`${op} on item ${id} rejected: ${reason}; deleted ids are never written again`)
    const ctx = new OpContext('reject')
    ctx.audit.push(auditEvent('write_rejected', this.replicaId, { op, reason }, id))
    ctx.events.push({ type: 'write_rejected', id, reason })
    await this.#commit(this.#state, ctx)
    throw new DocketError('TOMBSTONED', `Item ${id} was deleted, so ${op} was refused: deleted ids are never written or reused. Create a new item instead.`, {
      details: { id, op },
    })
  }

  /**
   * Ids that only this replica's content store holds (orphans, an older scheme) are unknown to
   * other replicas: raising this replica's synced mark past them keeps every replica that
   * syncs from allocating them.
   */
  async #publishContentHighWater(): Promise<void> {
    const state = this.#state
    const highest = state.allocator.bySource().content
    const mark = state.parts.alloc.get(this.replicaId)
    if (highest === 0 || (typeof mark === 'number' && mark >= highest)) return
    const ctx = new OpContext('publish-high-water')
    state.doc.transact(() => state.parts.alloc.set(this.replicaId, highest), ctx)
    await this.#commit(state, ctx)
  }

  #raiseHighWater(state: DocState, id: ItemId): void {
    const n = idToNumber(id)
    const mark = state.parts.alloc.get(this.replicaId)
    if (typeof mark !== 'number' || mark < n) state.parts.alloc.set(this.replicaId, n)
  }

  /** Submits the job of a local transaction (or of an operation that changed nothing). */
  async #commit(state: DocState, ctx: OpContext): Promise<void> {
    if (ctx.job) await ctx.job.promise
    else await this.#writer.submit(jobFromContext(this.#env(state), ctx))
  }

  #env(state: DocState): CaptureEnv {
    return { state, replicaId: this.replicaId, logger: this.#logger }
  }

  #attach(state: DocState): void {
    state.doc.on('update', (update: Uint8Array, origin: unknown, _doc: Y.Doc, tr: Y.Transaction) => {
      if (origin === LOAD_ORIGIN || state !== this.#state) return
      let job: Job
      try {
        job = captureTransaction(this.#env(state), tr, update, origin)
      } catch (err) {
        // A bug, not an input problem: memory now differs from disk, so stop writing.
        this.#broken = new DocketError('STORE_CORRUPT', `Internal error while recording a change (${(err as Error).message}): nothing more is written; close and reopen the store, and report this.`, { cause: err })
        throw this.#broken
      }
      if (origin instanceof RemoteOrigin) origin.job = job
      if (job.startsReanchor) job.afterCommit.push(() => this.#runPendingReanchors())
      void this.#writer.submit(job)
    })
  }

  #committed(job: Job): void {
    if (job.update) {
      for (const listener of this.#updateListeners) this.#safely(() => listener(job.update!, { remote: job.remote, source: job.source }))
    }
    for (const event of job.events) this.#emit(event)
  }

  #emit(event: StoreEvent): void {
    for (const listener of this.#listeners) this.#safely(() => listener(event))
  }

  #safely(fn: () => void): void {
    try {
      fn()
    } catch (err) {
      this.#logger.error?.(`a store listener threw: ${(err as Error)?.stack ?? String(err)}`)
    }
  }

  /** After a failed write: throw away memory and rebuild it from what reached the disk. */
  async #reload(error: DocketError): Promise<void> {
    const old = this.#state
    this.#reloading = (async () => {
      try {
        const fresh = await loadState(this.#dbs, old.generation + 1, this.#hooks?.clientId?.())
        this.#state = fresh
        this.#attach(fresh)
        old.destroy()
        this.#logger.warn(`the store at ${this.dir} reloaded its state from disk after a failed write`)
        // A re-anchoring whose batch failed is still in the journal: try it again.
        queueMicrotask(() => this.#runPendingReanchors())
      } catch (err) {
        this.#broken = new DocketError('PERSIST_FAILED', `The store at ${this.dir} cannot read its own disk after a failed write (${(err as Error).message}): close it and open it again.`, {
          cause: error,
        })
      } finally {
        this.#reloading = null
      }
    })()
    await this.#reloading
  }

  async #reportCorrupt(rows: readonly CorruptRow[]): Promise<void> {
    const ctx = new OpContext('corrupt')
    for (const row of rows) {
      const key = `corrupt:${row.sublevel}/${row.key}`
      if (this.#state.reported.has(key)) continue
      this.#state.reported.add(key)
      ctx.puts.push({ sublevel: 'reported', key, value: '' })
      ctx.audit.push(auditEvent('corrupt_row', this.replicaId, { ...row }))
    }
    if (ctx.audit.length > 0) await this.#commit(this.#state, ctx)
  }

  #runPendingReanchors(): void {
    for (const id of this.#state.pendingReanchor.keys()) {
      if (this.#reanchors.has(id)) continue
      const run = this.#reanchor(id).finally(() => this.#reanchors.delete(id))
      this.#reanchors.set(id, run)
    }
  }

  /**
   * Moves our displaced item from `oldId` to a fresh id: the new CRDT entry, its rows, the
   * alias and the journal clean-up go to disk in one batch, so a crash leaves either the
   * displaced item with its intent (redone at the next open) or the finished move.
   */
  async #reanchor(oldId: ItemId): Promise<ItemId | undefined> {
    const state = this.#state
    const pending = state.pendingReanchor.get(oldId)
    if (!pending) return undefined
    let evidence: Evidence | string =
      pending.source === 'shadow' ? await evidenceFromShadow(this.#dbs, oldId, pending.uid) : evidenceFromDocument(state, oldId, pending.uid)
    this.#hooks?.step?.('reanchor:read', { id: oldId, uid: pending.uid })
    if (state !== this.#state || this.#closing || state.pendingReanchor.get(oldId) !== pending) return undefined
    // Decided after the read, in the tick that writes: an earlier move, or a deletion (by uid)
    // while it waited, means nothing is re-created.
    const done = [...state.parts.aliases.values()].find((a) => a.uid === pending.uid && a.oldId === oldId)
    const deleted = isDeletedUid(state.parts, pending.uid)
    if (done) evidence = 'already re-anchored'
    else if (deleted) evidence = 'deleted meanwhile'
    const ctx = new OpContext('reanchor')
    ctx.reanchorOf = oldId
    ctx.refresh.add(oldId)
    ctx.dels.push({ sublevel: 'journal', key: pending.journalKey })
    if (typeof evidence === 'string') {
      if (!done && !deleted) {
        this.#logger.error?.(`cannot re-anchor item ${pending.uid} from id ${oldId}: ${evidence}`)
        ctx.audit.push(auditEvent('reanchored', this.replicaId, { uid: pending.uid, oldId, newId: null, failed: evidence }, oldId))
      }
      await this.#commit(state, ctx)
      return done?.newId
    }
    const newId = this.#freshId(state)
    const alias: Alias = { uid: pending.uid, oldId, newId, at: new Date().toISOString(), by: this.replicaId, reason: pending.reason }
    ctx.audit.push(auditEvent('reanchored', this.replicaId, { uid: pending.uid, oldId, newId, reason: pending.reason, name: evidence.record.name }, newId))
    ctx.events.push({ type: 'reanchored', uid: pending.uid, oldId, newId, reason: pending.reason })
    this.#logger.warn(`item ${pending.uid} lost id ${oldId} (${pending.reason}); re-anchored to ${newId}`)
    const record = { ...evidence.record, updatedAt: alias.at }
    const entries = evidence.entries.length > 0 ? evidence.entries : [initialEntry(evidence.row?.stage ?? 'backlog', this.replicaId, record.createdAt)]
    state.doc.transact(() => {
      state.parts.items.set(newId, buildItemMap(record, entries, evidence.content))
      state.parts.aliases.set(`${oldId}/${pending.uid}`, alias)
      this.#raiseHighWater(state, newId)
      const there = state.parts.items.get(oldId)
      if (pending.source === 'document' && there && readRecord(there)?.uid === pending.uid) state.parts.items.delete(oldId)
    }, ctx)
    await this.#commit(state, ctx)
    return newId
  }

  #freshId(state: DocState): ItemId {
    const id = state.allocator.peek()
    if (state.parts.tombstones.has(id) || state.parts.items.has(id)) {
      throw new DocketError('STORE_CORRUPT', `The allocator proposed id ${id}, which is in use: run \`docket doctor\` and report this.`)
    }
    return id
  }
}

function initialEntry(stage: Item['stage'], by: ReplicaId, at: string): StageEntry {
  return { id: nextUlid(), epoch: 0, stage, event: 'created', basedOn: null, by, at: at || new Date().toISOString() }
}

function notFound(id: ItemId): DocketError {
  return new DocketError('NOT_FOUND', `There is no item ${id}: check the id with \`docket list\`.`, { details: { id } })
}

function checkListOptions(options: ListItemsOptions): ListItemsOptions {
  const out: ListItemsOptions = {}
  if (options.stage !== undefined) {
    const stages = typeof options.stage === 'string' ? [options.stage] : options.stage
    if (!Array.isArray(stages)) throw invalid('stage must be a stage or an array of stages.')
    for (const stage of stages) checkStage(stage)
    out.stage = stages
  }
  if (options.type !== undefined) {
    const types = typeof options.type === 'string' ? [options.type] : options.type
    if (!Array.isArray(types)) throw invalid('type must be an item type or an array of them.')
    for (const type of types) checkType(type)
    out.type = types
  }
  if (options.ready !== undefined) {
    if (typeof options.ready !== 'boolean') throw invalid('ready must be true or false.')
    out.ready = options.ready
  }
  return out
}
