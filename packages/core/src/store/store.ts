import * as Y from 'yjs'
import { nextUlid } from '../audit/audit.js'
import { claimKey } from '../crdt/claims.js'
import { refusalOf } from '../crdt/admission.js'
import { buildItemMap, contentOf, contentSlots, F, isAlias, isDeletedUid, readContentValue, readStageEntries, stagesOf, tombstoneOf, writeExtras, type ItemRecord, type SlotValue } from '../crdt/layout.js'
import { blobOf, blobPuts, isContentRef, isSha256, matches, type ContentRef } from '../crdt/content.js'
import { DocketError, isDocketError } from '../errors.js'
import { idToNumber, isItemId, parseItemId, type ItemId, type ReplicaId, type Uid } from '../ids.js'
import { parseSlot } from '../storage/keys.js'
import { readStoredRows } from '../storage/scan.js'
import { createdEntry, nextEntry } from '../stage/advance.js'
import type { Stage } from '../stage/stages.js'
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
  ApplyOptions,
  StageHistoryEntry,
  StoreListener,
  Tombstone,
  UpdateItemInput,
  ClaimOptions,
  ClaimNextOptions,
  ClaimResult,
  RenewClaimOptions,
  ReleaseClaimOptions,
} from '../types.js'
import { WorkClaims } from './work.js'
import type { LeaseState } from './leases.js'
import { hasPendingUpdates, pendingOnlyJob } from './capture.js'
import { decodeContent } from './evidence.js'
import { checkDependencies, itemAt, itemFromRecord, listItems, liveIds, referencedBlobs, stageHistory } from './items.js'
import { RemoteOrigin } from './job.js'
import type { DocState } from './state.js'
import { checkContentValue, checkListOptions, missingItem, checkStage, checkCreateInput, checkReason, checkTimeout, checkUpdateInput, invalid, OPTION_KEYS, requireKnownKeys, requireObject } from './validate.js'
import { verifyStore, type ConsistencyReport } from './verify.js'
import { queryAudit } from './audit-query.js'
import { Engine, type EngineInit, type UpdateListener } from './engine.js'
import type { SyncClient, SyncOptions, SyncState } from '../sync/client.js'
import type { HolderServer } from '../holder/server.js'
import type { MigrationReport } from './migrate.js'
import { Maintenance } from './maintenance.js'
import { acknowledgeDamage, type StorageDamage } from '../storage/health.js'
import { absentBlobs, storageError } from '../storage/db.js'

export interface DeleteItemOptions {
  reason?: string
}

export interface DeleteResult {
  id: ItemId
  uid: Uid
  /** True when the id was already tombstoned: nothing was written. */
  alreadyDeleted: boolean
}

export type { UpdateListener } from './engine.js'

export interface StoreStats {
  items: number
  tombstones: number
  highestId: number
  /** Update rows on disk now, and their total size. */
  updateRows: number
  updateBytes: number
  /** Update rows and bytes read by the last open (or reload). */
  openedRows: number
  openedBytes: number
  /** Snapshots of the whole document this process wrote, and merges of recent rows into one. */
  compactions: number
  merges: number
  corruptRows: number
  pendingReanchors: number
}

/** @internal The parts openStore assembles; not part of the public API. */
export interface StoreInit extends EngineInit {
  sync: SyncOptions | undefined
  /** Serve CLI calls on the holder socket (holder/server.ts) while open. */
  serve: boolean
  lastSyncedAt: string | null
  schema: StoreSchema
  damage: StorageDamage | undefined
}

/** The store's schema: what its disk holds, and the migration this open made (or, read-only, made in memory). */
export interface StoreSchema {
  onDisk: number
  migrated: MigrationReport | undefined
}

/**
 * A docket store: one replica of a pipeline. Every mutation is validated, applied to the
 * Y.Doc in one transaction, then persisted — the Yjs update together with the shadow rows,
 * content rows and audit events it implies — in one LevelDB batch before the call returns.
 */
export class Store implements AsyncDisposable {
  readonly dir: string
  readonly replicaId: ReplicaId
  readonly #e: Engine
  readonly #syncOptions: SyncOptions | undefined
  readonly #serve: boolean
  #holder: HolderServer | undefined
  /** The schema on disk, and what this open migrated. */
  readonly schema: StoreSchema
  readonly #maintenance: Maintenance
  readonly #work: WorkClaims
  #damage: StorageDamage | undefined
  #sync: SyncClient | undefined
  #lastSyncedAt: string | null
  #syncedNotedAt = 0
  #closing: Promise<void> | null = null

  /** @internal Use `openStore`. */
  constructor(init: StoreInit) {
    this.dir = init.dir
    this.replicaId = init.replicaId
    this.#e = new Engine(init)
    this.#syncOptions = init.sync
    this.#serve = init.serve
    this.#lastSyncedAt = init.lastSyncedAt
    this.schema = init.schema
    this.#damage = init.damage
    this.#maintenance = new Maintenance({
      engine: this.#e,
      replicaId: this.replicaId,
      dir: this.dir,
      ready: () => this.#ready(),
      assertOpen: () => this.#assertOpen(),
      afterWrite: (item) => this.#afterWrite(item),
      storageError: (err) => this.#storageError(err),
      mapErrors: (rows) => this.#mapErrors(rows),
      damage: () => this.#damage,
      flush: () => this.flush(),
    })
    this.#work = new WorkClaims({
      engine: this.#e,
      replicaId: this.replicaId,
      ready: () => this.#ready(),
      live: (id) => {
        const found = this.#liveNow(id)
        if (found === 'tombstoned') throw missingItem(id, true)
        return found
      },
      syncs: () => this.#syncOptions !== undefined,
      arbiter: () => this.#e.arbiter?.(),
      readyItems: (filter) => this.listItems({ ...filter, ready: true }),
      now: Date.now,
    })
  }

  /** @internal Settles what a previous session left in the journal, then joins the sync server. */
  async start(): Promise<void> {
    await this.#e.start()
    if (this.#damage && !this.#e.readOnly) await this.#acknowledgeDamage(this.#damage)
    if (this.#serve) {
      // Loaded only by stores that serve; a store that cannot listen still works, without CLI access.
      const { HolderServer } = await import('../holder/server.js')
      this.#holder = await HolderServer.listen(this, this.#e.logger).catch((err: unknown) => {
        this.#e.logger.warn(`the store at ${this.dir} does not serve CLI calls (${(err as Error).message}); a \`docket\` command run meanwhile gets STORE_LOCKED`)
        return undefined
      })
    }
    if (this.#syncOptions && !this.#e.readOnly) {
      await this.#e.publishContentHighWater()
      await this.#e.loadUploads()
      // Loaded only by stores that sync: the provider and its WebSocket are not free to load.
      const { SyncClient } = await import('../sync/client.js')
      this.#sync = new SyncClient(
        this.#syncOptions,
        {
          // The bridge keeps working while the store closes (the client waits for acknowledgements then).
          encodeStateAsUpdate: (sv) => Y.encodeStateAsUpdate(this.#e.state.doc, sv),
          encodeStateVector: () => Y.encodeStateVector(this.#e.state.doc),
          applyUpdate: (update, source) => this.applyUpdate(update, source),
          onUpdate: (listener) => this.onUpdate(listener),
          noteSynced: (at) => this.#noteSynced(at),
          onBlobs: (listener) => {
            this.#e.blobListeners.add(listener)
            return () => this.#e.blobListeners.delete(listener)
          },
          pendingUploads: () => this.#e.pendingUploads,
          readBlob: async (sha256) => {
            const bytes = await this.#e.dbs.blob.get(sha256)
            return bytes === undefined ? undefined : new Uint8Array(bytes)
          },
          uploaded: (sha256) => this.#e.uploaded(sha256),
          wantedBlobs: () => this.#e.wantedBlobs,
          missingBlobs: (refs) => absentBlobs(this.#e.dbs, refs),
          keepBlob: (ref, bytes) => this.#e.keepBlob(ref, bytes),
          referencedBlobs: () => referencedBlobs(this.#e.state),
        },
        this.#e.logger,
        this.#lastSyncedAt,
      )
      const sync = this.#sync
      this.#e.arbiter = () => (sync.arbiterReady ? (request) => sync.ask(request) : undefined)
      // Each (re)connection: a block of ids if this replica is short of them, and the
      // provisional claims taken offline checked with the server.
      sync.onArbiterReady(() => {
        this.#e.leases.reconnected()
        this.#work.settleProvisional().catch((err: unknown) => this.#e.logger.warn(`checking provisional claims with ${sync.state().url} failed (${(err as Error).message}); it is tried again at the next connection`))
      })
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
    const allowUnknown = requireKnownKeys(requireObject(options, 'createItem options'), OPTION_KEYS.createItem, 'createItem() options').allowUnknownDependencies === true
    if (checked.id !== undefined) await this.#refuseStoredRows(checked.id)
    let state = this.#e.state
    checkDependencies(state, checked.dependsOn, checked.id, allowUnknown)
    // A leased id (no other replica can be given it). Connected and out of them, the create waits
    // for a block rather than pick an id another replica may pick too; the checks run again after.
    let leased = checked.id === undefined ? this.#e.leases.take(state) : undefined
    while (checked.id === undefined && leased === undefined && (await this.#e.leases.more())) {
      await this.#ready()
      state = this.#e.state
      checkDependencies(state, checked.dependsOn, checked.id, allowUnknown)
      leased = this.#e.leases.take(state)
    }
    this.#e.hooks?.step?.('create:validated')

    let id: ItemId
    if (checked.id !== undefined) {
      id = checked.id
    } else {
      // Else one past every id seen (offline, or a server that does not lease).
      id = leased ?? state.allocator.peek()
      if (this.#e.hooks?.allocate) id = parseItemId(this.#e.hooks.allocate(id))
    }
    if (state.parts.tombstones.has(id)) {
      await this.#e.rejectWrite(id, 'create', checked.id !== undefined ? 'requested id is tombstoned' : 'allocator proposed a tombstoned id')
    }
    if (state.claims.isClaimed(id)) {
      throw new DocketError('ALREADY_EXISTS', `Item ${id} already exists: ${checked.id !== undefined ? 'import it under another id or skip it' : 'this is an allocator bug, please report it'}.`, {
        details: { id },
      })
    }
    this.#e.hooks?.step?.('create:allocated', { id })

    if (checked.parent !== undefined && !allowUnknown) this.#requireParent(state, checked.parent, undefined)
    const uid = nextUlid() as Uid
    const now = new Date().toISOString()
    const created = checked.createdAt ?? now
    const record: ItemRecord = {
      uid,
      name: checked.name,
      type: checked.type,
      dependsOn: checked.dependsOn,
      blocked: checked.blocked,
      frozen: checked.frozen,
      agent: checked.agent,
      retries: checked.retries,
      createdAt: created,
      updatedAt: checked.updatedAt ?? created,
      createdBy: this.replicaId,
    }
    const entry = createdEntry(checked.stage, this.replicaId, now, nextUlid())
    this.#e.hooks?.step?.('create:before-crdt-write', { id, uid })

    const blobs = new Map([...checked.content].map(([slot, value]) => [slot, blobOf(value)]))
    const refs = new Map([...blobs].map(([slot, blob]) => [slot, blob.ref]))
    let refused = false
    await this.#e.write('create', {
      puts: blobPuts([...blobs.values()]),
      change: (state) => {
        // The tombstone guard: the last check, inside the transaction that writes.
        if (state.parts.tombstones.has(id)) {
          refused = true
          return
        }
        // Under its uid, where no other item can overwrite it; the claim says which id it shows.
        const map = buildItemMap(record, [entry], refs)
        writeExtras(map, {
          ...(checked.priority !== undefined ? { priority: checked.priority } : {}),
          ...(checked.parent !== undefined ? { parent: checked.parent } : {}),
          ...(checked.externalIds !== undefined ? { externalIds: checked.externalIds } : {}),
          addLabels: checked.labels,
        }, nextUlid)
        state.parts.records.set(uid, map)
        state.parts.claims.set(claimKey(id, uid), { at: now, by: this.replicaId, reason: 'created' })
        // An importer's item whose number went to another item keeps that number as an alias.
        if (checked.formerId !== undefined && checked.formerId !== id) {
          const alias: Alias = { uid, oldId: checked.formerId, newId: id, at: now, by: this.replicaId, reason: 'import' }
          state.parts.aliases.set(`${checked.formerId}/${uid}`, alias)
        }
        this.#e.raiseHighWater(state, id)
      },
      afterChange: () => this.#e.hooks?.step?.('create:crdt-written', { id, uid }),
      audit: () =>
        refused
          ? [
              ['write_rejected', { op: 'create', reason: 'tombstoned', uid }, id],
              ['create_rolled_back', { uid, name: record.name, reason: 'tombstoned' }, id],
            ]
          : [['created', { uid, name: record.name, type: record.type, stage: checked.stage, slots: [...checked.content.keys()] }, id]],
      events: () => (refused ? [{ type: 'write_rejected', id, reason: 'tombstoned' }] : []),
    })
    if (refused) {
      this.#e.logger.warn(`create of item ${id} refused by the tombstone guard (tombstoned); nothing was kept`)
      throw new DocketError(
        'CREATE_NOT_MATERIALIZED',
        `Item ${id} was not created: its id was deleted concurrently (the tombstone guard refused the write). Nothing was kept; create the item again to get a fresh id.`,
        { details: { id, uid, reason: 'tombstoned' } },
      )
    }
    this.#e.hooks?.step?.('create:committed', { id, uid })
    this.#e.leases.topUp()
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
      const state = this.#e.state
      const where = state.claims.shownId(uid)
      const item = where === undefined ? undefined : itemAt(state, where)
      if (item?.uid === uid) return item
      if (isDeletedUid(state.parts, uid)) return itemFromRecord(id, record, stage) // created, then deleted by someone
      if (!state.unanchored.has(uid) || this.#e.closing) break
      // It lost its id while being written: it moves to a fresh one in the next batch.
      this.#e.runPendingReanchors()
      await this.#e.settle()
    }
    throw new DocketError('CREATE_NOT_MATERIALIZED', `Item ${id} (${uid}) is not in the document after its write: nothing of it is kept. Create it again.`, {
      details: { id, uid },
    })
  }

  /** An explicit id must not land on rows nobody owns: they are an orphan's evidence. */
  async #refuseStoredRows(id: ItemId): Promise<void> {
    // Rows are only ever written for items this store tracks; an id past the highest id the
    // content store held at open cannot have rows of its own, so no read is needed.
    if (idToNumber(id) > this.#e.state.allocator.bySource().content && !this.#e.state.index.has(id)) return
    const rows = await readStoredRows(this.#e.dbs, id)
    if ((rows.shadow || rows.slots.length > 0) && this.#e.state.claims.uidAt(id) === undefined) {
      throw new DocketError(
        'ALREADY_EXISTS',
        `Id ${id} has rows in the shadow content store but no item (an orphan): inspect it with \`docket recover --story-ids ${id}\`, or create the item under another id.`,
        { details: { id, orphan: true } },
      )
    }
  }

  getItem(id: ItemId | string): Item | undefined {
    this.#assertOpen()
    return itemAt(this.#e.state, parseItemId(id))
  }

  listItems(options: ListItemsOptions = {}): Item[] {
    this.#assertOpen()
    const opts = requireKnownKeys(requireObject(options, 'listItems options'), OPTION_KEYS.listItems, 'listItems()') as ListItemsOptions
    return listItems(this.#e.state, checkListOptions(opts))
  }

  // ───────────────────────────── claims ─────────────────────────────

  /**
   * Claims an item for an agent until `ttlMs` from now (default 15 minutes): granted, or refused
   * with who holds it. With a sync server, the server decides — exactly one of any number of
   * concurrent claimants wins — and the claim is recorded where every replica sees it; offline,
   * BEHIND_REMOTE unless `{ offline: true }` (a provisional claim, checked on reconnect).
   * The agent that holds the claim claiming again extends it.
   */
  async claim(id: ItemId | string, options: ClaimOptions): Promise<ClaimResult> {
    this.#assertOpen()
    const opts = requireKnownKeys(requireObject(options, 'claim options'), OPTION_KEYS.claim, 'claim()') as unknown as ClaimOptions
    return this.#work.claim(parseItemId(id), opts)
  }

  /**
   * The orchestrator's dispatch: claims the first ready, unclaimed item (lowest id; optionally of
   * a stage or type) for the agent, atomically — or null when there is none.
   */
  async claimNext(options: ClaimNextOptions): Promise<ClaimResult | null> {
    this.#assertOpen()
    const opts = requireKnownKeys(requireObject(options, 'claimNext options'), OPTION_KEYS.claimNext, 'claimNext()') as unknown as ClaimNextOptions
    if (opts.stage !== undefined || opts.type !== undefined) checkListOptions({ ...(opts.stage !== undefined ? { stage: opts.stage } : {}), ...(opts.type !== undefined ? { type: opts.type } : {}) })
    return this.#work.claimNext(opts)
  }

  /** Extends the agent's claim to `ttlMs` from now; CLAIM_NOT_HELD if the agent does not hold it. */
  async renewClaim(id: ItemId | string, options: RenewClaimOptions): Promise<ClaimResult> {
    this.#assertOpen()
    const opts = requireKnownKeys(requireObject(options, 'renewClaim options'), OPTION_KEYS.renewClaim, 'renewClaim()') as unknown as RenewClaimOptions
    return this.#work.renew(parseItemId(id), opts)
  }

  /** Ends the agent's claim; CLAIM_NOT_HELD if the agent does not hold it. Returns the item. */
  async releaseClaim(id: ItemId | string, options: ReleaseClaimOptions): Promise<Item> {
    this.#assertOpen()
    const opts = requireKnownKeys(requireObject(options, 'releaseClaim options'), OPTION_KEYS.releaseClaim, 'releaseClaim()') as unknown as ReleaseClaimOptions
    return this.#work.release(parseItemId(id), opts)
  }

  /** The id blocks this replica leased from its sync server, and what is left of them. */
  idLeases(): LeaseState {
    this.#assertOpen()
    return this.#e.leases.state()
  }

  /** Sends a stage event: the only way to change a stage. Returns the item as it now is. */
  async apply(id: ItemId | string, event: StageEvent | StageEvent['type'], options: ApplyOptions = {}): Promise<Item> {
    await this.#ready()
    const itemId = parseItemId(id)
    const ev: StageEvent = typeof event === 'string' ? { type: event } : requireKnownKeys(requireObject(event, 'event'), OPTION_KEYS.event, 'apply() event', 'field') as unknown as StageEvent
    const reason = ev.reason === undefined ? undefined : checkReason(ev.reason)
    const opts = requireKnownKeys(requireObject(options, 'apply options'), OPTION_KEYS.apply, 'apply() options') as ApplyOptions
    if (opts.force !== undefined && typeof opts.force !== 'boolean') throw invalid('force must be true or false.')
    const expected = opts.ifStage === undefined ? undefined : expectedStages(opts.ifStage)
    const found = this.#liveNow(itemId)
    if (found === 'tombstoned') return this.#e.rejectWrite(itemId, 'apply', 'tombstoned')
    const { state, map, item } = found
    // An unknown event is refused with the events that are valid from the item's stage.
    if (!isEventType(ev.type)) transition(item.stage, ev.type)
    if (expected && !expected.includes(item.stage)) {
      throw new DocketError('STAGE_CONFLICT', `Item ${itemId} is in ${item.stage}, not ${expected.join(' or ')}: it moved since you read it. Read it again (\`docket show ${itemId}\`) and decide anew; nothing was written.`, {
        details: { id: itemId, stage: item.stage, expected },
      })
    }
    const overridden = heldBy(item)
    if (overridden.length > 0 && opts.force !== true) throw held(item, overridden[0]!)
    const resolution = resolveStage(readStageEntries(map))
    if (!resolution) {
      throw new DocketError('STORE_CORRUPT', `Item ${itemId} has no valid stage entry: run \`docket doctor\` to inspect it.`, { details: { id: itemId } })
    }
    const now = new Date().toISOString()
    const entry = nextEntry(resolution, reason === undefined ? { type: ev.type } : { type: ev.type, reason }, this.replicaId, now, nextUlid())
    const written = await this.#e.write('apply', {
      audit: [['transitioned', { event: ev.type, from: resolution.stage, to: entry.stage, entryId: entry.id, epoch: entry.epoch, ...(reason ? { reason } : {}), ...(overridden.length > 0 ? { forced: overridden } : {}) }, itemId]],
      change: () => {
        stagesOf(map)?.push([entry])
        map.set(F.updatedAt, now)
      },
      read: () => itemAt(state, itemId)!,
    })
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
    if (found === 'tombstoned') return this.#e.rejectWrite(itemId, 'update', 'tombstoned')
    const { state, map, item: before } = found
    if (checked.dependsOn) checkDependencies(state, checked.dependsOn, itemId, false, true)
    if (checked.parent !== undefined && checked.parent !== null) this.#requireParent(state, checked.parent, itemId)
    const { priority, labels, addLabels, removeLabels, parent, externalIds, ...plain } = checked
    const changes: Record<string, { from: unknown; to: unknown }> = {}
    const now = new Date().toISOString()
    for (const [field, value] of Object.entries(plain)) {
      const old = field === 'agent' ? (before.agent ?? null) : (before as unknown as Record<string, unknown>)[field]
      if (JSON.stringify(old) !== JSON.stringify(value)) changes[field] = { from: old, to: value }
    }
    // The label set changes label by label, so that concurrent edits on two replicas merge.
    const had = new Set(before.labels ?? [])
    const add = (labels ? labels.filter((l) => !had.has(l)) : (addLabels ?? []).filter((l) => !had.has(l)))
    const remove = labels ? [...had].filter((l) => !labels.includes(l)) : (removeLabels ?? []).filter((l) => had.has(l))
    if (add.length > 0 || remove.length > 0) changes.labels = { from: [...had].sort(), to: [...new Set([...had, ...add])].filter((l) => !remove.includes(l)).sort() }
    if (priority !== undefined && (before.priority ?? null) !== priority) changes.priority = { from: before.priority ?? null, to: priority }
    if (parent !== undefined && (before.parent ?? null) !== parent) changes.parent = { from: before.parent ?? null, to: parent }
    if (externalIds !== undefined && JSON.stringify(before.externalIds ?? []) !== JSON.stringify(externalIds)) changes.externalIds = { from: before.externalIds ?? [], to: externalIds }
    if (Object.keys(changes).length === 0) return before
    const written = await this.#e.write('update', {
      audit: [['updated', { changes }, itemId]],
      change: () => {
        for (const field of Object.keys(plain)) {
          if (!(field in changes)) continue
          const value = (plain as Record<string, unknown>)[field]
          if (field === 'agent' && value === null) map.delete(F.agent)
          else map.set(field, Array.isArray(value) ? [...value] : value)
        }
        if ('priority' in changes && priority === null) map.delete('priority')
        writeExtras(map, {
          ...('priority' in changes && priority !== null && priority !== undefined ? { priority } : {}),
          ...('parent' in changes ? { parent: parent ?? null } : {}),
          ...('externalIds' in changes && externalIds ? { externalIds } : {}),
          addLabels: add,
          removeLabels: remove,
        }, nextUlid)
        map.set(F.updatedAt, now)
      },
      read: () => itemAt(state, itemId)!,
    })
    return this.#afterWrite(written)
  }

  /**
   * The item a write just changed, as it is now — found by its uid, since a concurrent update
   * may have moved it meanwhile; as the write left it if it has been deleted since.
   */
  #afterWrite(written: Item): Item {
    const where = this.#e.state.claims.shownId(written.uid)
    const now = where === undefined ? undefined : itemAt(this.#e.state, where)
    return now?.uid === written.uid ? now : written
  }

  /** Tombstones the id (forever: it is never written or issued again) and clears its content. */
  async deleteItem(id: ItemId | string, options: DeleteItemOptions = {}): Promise<DeleteResult> {
    await this.#ready()
    const itemId = parseItemId(id)
    const opts = requireKnownKeys(requireObject(options, 'deleteItem options'), OPTION_KEYS.deleteItem, 'deleteItem()') as DeleteItemOptions
    const reason = opts.reason === undefined ? null : checkReason(opts.reason)
    const state = this.#e.state
    const tomb = state.parts.tombstones.get(itemId)
    if (tomb) return { id: itemId, uid: tomb.uid, alreadyDeleted: true }
    const item = itemAt(state, itemId)
    if (!item) throw notFound(itemId)
    const tombstone: Tombstone = { uid: item.uid, at: new Date().toISOString(), by: this.replicaId, reason }
    await this.#e.write('delete', {
      audit: [['deleted', { uid: item.uid, name: item.name, stage: item.stage, reason }, itemId]],
      change: () => {
        state.parts.tombstones.set(itemId, tombstone)
        state.parts.deleted.set(item.uid, { id: itemId, at: tombstone.at, by: this.replicaId })
        // The data goes; the claims, the tombstone and the deleted uid stay (grow-only).
        if (state.parts.records.has(item.uid)) state.parts.records.delete(item.uid)
        for (const key of state.legacyKeys.get(item.uid) ?? []) state.parts.items.delete(key)
      },
    })
    return { id: itemId, uid: item.uid, alreadyDeleted: false }
  }

  // ───────────────────────────── content ─────────────────────────────

  /**
   * The text of a content slot (default `body`), or undefined if the item has no such slot. The
   * bytes come from the blob store; a blob written on another replica and not fetched yet is
   * fetched from the sync server now (CONTENT_UNAVAILABLE if it cannot be).
   */
  async readContent(id: ItemId | string, slot = 'body'): Promise<string | undefined> {
    const itemId = parseItemId(id)
    const name = parseSlot(slot)
    const value = this.#contentValue(itemId, name)
    if (value === undefined || typeof value === 'string') return value
    const bytes = isContentRef(value) ? await this.#blob(value, itemId, name) : value
    const text = decodeContent(bytes)
    if (typeof text === 'string') return text
    throw invalid(`Slot "${slot}" of item ${id} holds bytes that are not UTF-8 text: read it with readContentBytes.`, { id, slot })
  }

  async readContentBytes(id: ItemId | string, slot = 'body'): Promise<Uint8Array | undefined> {
    const itemId = parseItemId(id)
    const name = parseSlot(slot)
    const value = this.#contentValue(itemId, name)
    if (value === undefined) return undefined
    if (isContentRef(value)) return this.#blob(value, itemId, name)
    return typeof value === 'string' ? new Uint8Array(Buffer.from(value, 'utf8')) : new Uint8Array(value)
  }

  /** A referenced blob's bytes: from the blob store, else from the sync server (then kept). */
  async #blob(ref: ContentRef, id: ItemId, slot: string): Promise<Uint8Array> {
    const stored = await this.#e.dbs.blob.get(ref.sha256).catch((err: unknown) => {
      throw this.#storageError(err)
    })
    if (stored !== undefined) return new Uint8Array(stored)
    if (this.#sync) {
      const fetched = await this.#sync.fetchBlob(ref, { id, slot })
      await this.#e.keepBlob(ref, fetched)
      return fetched
    }
    throw new DocketError(
      'CONTENT_UNAVAILABLE',
      `Slot "${slot}" of item ${id} was written on another replica and its content (${ref.size} bytes, sha256 ${ref.sha256.slice(0, 12)}…) has not reached this one: open the store with its sync server (--sync) to fetch it.`,
      { details: { id, slot, sha256: ref.sha256, size: ref.size } },
    )
  }

  // ───────────────────────────── blobs (replication without a server) ─────────────────────────────

  /**
   * The content blobs the live items reference and this replica lacks. A sync server fetches
   * them by itself; replicas that exchange updates directly (`applyUpdate`) exchange these too,
   * with `readBlob` on the replica that has them and `importBlob` here.
   */
  async missingBlobs(): Promise<ContentRef[]> {
    this.#assertOpen()
    const missing = await absentBlobs(this.#e.dbs, [...referencedBlobs(this.#e.state)]).catch((err: unknown) => {
      throw this.#storageError(err)
    })
    return missing.map((ref) => ({ ...ref }))
  }

  /** A blob's bytes, if this replica has them. */
  async readBlob(sha256: string): Promise<Uint8Array | undefined> {
    this.#assertOpen()
    if (!isSha256(sha256)) throw invalid(`sha256 must be 64 lowercase hex digits, got ${JSON.stringify(sha256)}.`)
    const bytes = await this.#e.dbs.blob.get(sha256).catch((err: unknown) => {
      throw this.#storageError(err)
    })
    return bytes === undefined ? undefined : new Uint8Array(bytes)
  }

  /** Keeps a blob another replica sent; INVALID_INPUT if the bytes are not the ones `ref` names. */
  async importBlob(ref: ContentRef, bytes: Uint8Array): Promise<void> {
    this.#assertOpen()
    if (!isContentRef(ref)) throw invalid('ref must be a content reference { sha256, size, text } (see missingBlobs()).')
    if (!(bytes instanceof Uint8Array) || !matches(ref, bytes)) throw invalid(`the bytes given are not blob ${ref.sha256} (${ref.size} bytes): nothing was kept.`, { sha256: ref.sha256 })
    await this.#e.keepBlob(ref, bytes).catch((err: unknown) => {
      throw isDocketError(err) ? err : this.#storageError(err)
    })
  }

  contentSlots(id: ItemId | string): string[] {
    this.#assertOpen()
    const itemId = parseItemId(id)
    if (!itemAt(this.#e.state, itemId)) throw this.#missing(itemId)
    return contentSlots(this.#e.state.maps.get(this.#e.state.claims.uidAt(itemId)!)!)
  }

  #contentValue(id: ItemId, slot: string): SlotValue | undefined {
    this.#assertOpen()
    if (!itemAt(this.#e.state, id)) throw this.#missing(id)
    return readContentValue(this.#e.state.maps.get(this.#e.state.claims.uidAt(id)!)!, slot)
  }

  /** Writes a content slot; `null` removes the slot. */
  async writeContent(id: ItemId | string, slot: string, value: ContentValue | null): Promise<void> {
    await this.#ready()
    const itemId = parseItemId(id)
    const name = parseSlot(slot)
    const checked = value === null ? null : checkContentValue(value, name)
    const found = this.#liveNow(itemId)
    if (found === 'tombstoned') return this.#e.rejectWrite(itemId, 'writeContent', 'tombstoned')
    const { map } = found
    const blob = checked === null ? undefined : blobOf(checked)
    await this.#e.write('writeContent', {
      audit: [['content_written', { slot: name, bytes: blob?.ref.size ?? 0, removed: checked === null, ...(blob ? { sha256: blob.ref.sha256 } : {}) }, itemId]],
      puts: blob ? blobPuts([blob]) : [],
      change: () => {
        let content = contentOf(map)
        if (!content) {
          content = new Y.Map<SlotValue>()
          map.set(F.content, content)
        }
        if (blob === undefined) content.delete(name)
        else content.set(name, { ...blob.ref })
        map.set(F.updatedAt, new Date().toISOString())
      },
    })
  }

  // ───────────────────────────── tombstones, ids, aliases ─────────────────────────────

  isTombstoned(id: ItemId | string): boolean {
    this.#assertOpen()
    return this.#e.state.parts.tombstones.has(parseItemId(id))
  }

  tombstone(id: ItemId | string): Tombstone | undefined {
    this.#assertOpen()
    const itemId = parseItemId(id)
    if (!this.#e.state.parts.tombstones.has(itemId)) return undefined
    return tombstoneOf(this.#e.state.parts.tombstones.get(itemId))
  }

  tombstonedIds(): ItemId[] {
    this.#assertOpen()
    return [...this.#e.state.parts.tombstones.keys()]
      .filter(isItemId)
      .sort((a, b) => idToNumber(a) - idToNumber(b))
  }

  /**
   * The id the next createItem will get: the lowest free leased id, else one past every id seen
   * (which another replica may take first). O(1) amortized.
   */
  peekNextId(): ItemId {
    this.#assertOpen()
    return this.#e.leases.take(this.#e.state) ?? this.#e.state.allocator.peek()
  }

  /** Re-anchorings recorded for items that lost their id; all, or those of one old id. */
  aliases(oldId?: ItemId | string): Alias[] {
    this.#assertOpen()
    const filter = oldId === undefined ? undefined : parseItemId(oldId)
    // Only values with an alias's shape count: a peer can put anything into the map.
    return [...this.#e.state.parts.aliases.values()].flatMap((a) => (isAlias(a) && (filter === undefined || a.oldId === filter) ? [{ uid: a.uid, oldId: a.oldId, newId: a.newId, at: a.at, by: a.by, reason: a.reason }] : []))
  }

  stageHistory(id: ItemId | string): StageHistoryEntry[] {
    this.#assertOpen()
    const itemId = parseItemId(id)
    if (!itemAt(this.#e.state, itemId)) throw this.#missing(itemId)
    return stageHistory(this.#e.state, itemId)
  }

  // ───────────────────────────── audit, events ─────────────────────────────

  /** The audit log, oldest first. */
  async *audit(query: AuditQuery = {}): AsyncGenerator<AuditEvent> {
    this.#assertOpen()
    yield* this.#mapErrors(queryAudit(this.#e.dbs, query))
  }

  /** Listens to changes after they are on disk. Returns the function that unsubscribes. */
  subscribe(listener: StoreListener): () => void {
    this.#assertOpen()
    if (typeof listener !== 'function') throw invalid('subscribe needs a function.')
    this.#e.listeners.add(listener)
    return () => this.#e.listeners.delete(listener)
  }

  // ───────────────────────────── replication ─────────────────────────────

  encodeStateVector(): Uint8Array {
    this.#assertOpen()
    return Y.encodeStateVector(this.#e.state.doc)
  }

  /** The document as one update; with a state vector, only what that replica lacks. */
  encodeStateAsUpdate(stateVector?: Uint8Array): Uint8Array {
    this.#assertOpen()
    return Y.encodeStateAsUpdate(this.#e.state.doc, stateVector)
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
    if (this.#e.readOnly) return this.#ready()
    if (this.#e.reloading) return this.#e.reloading.then(() => this.applyUpdate(update, source))
    if (this.#e.unavailable) return this.#e.recover().then(() => this.applyUpdate(update, source))
    if (!(update instanceof Uint8Array)) return Promise.reject(invalid('applyUpdate needs a Uint8Array holding a Yjs update.'))
    const state = this.#e.state
    const refusal = refusalOf(state.parts, update)
    if (refusal !== undefined) return this.#e.refuseUpdate(update, source, refusal)
    const origin = new RemoteOrigin(source, update)
    try {
      Y.applyUpdate(state.doc, update, origin)
    } catch (err) {
      if (this.#e.broken) return Promise.reject(this.#e.broken)
      return Promise.reject(
        new DocketError('INVALID_INPUT', `The update from ${source} is not a valid Yjs update: it was ignored. Check the peer's docket version.`, { cause: err }),
      )
    }
    // Parts of an update that wait for updates not yet received live only in memory: keep the
    // update as it came, so that a restart does not forget them (applying it twice is harmless).
    if (!origin.job && hasPendingUpdates(state)) this.#e.writer.submit(pendingOnlyJob(state, update))
    return origin.job ? origin.job.promise : Promise.resolve()
  }

  /** Listens to updates once they are on disk (local and remote), for replication. */
  onUpdate(listener: UpdateListener): () => void {
    this.#assertOpen()
    this.#e.updateListeners.add(listener)
    return () => this.#e.updateListeners.delete(listener)
  }

  /** Resolves when every write started so far is on disk and every re-anchoring is done. */
  async flush(): Promise<void> {
    this.#assertOpen()
    await this.#e.settle()
  }


  async *#mapErrors<T>(rows: AsyncGenerator<T>): AsyncGenerator<T> {
    try {
      yield* rows
    } catch (err) {
      throw this.#storageError(err)
    }
  }

  /** A LevelDB failure as the DocketError it stands for: damage, or a store closed under the reader. */
  #storageError(err: unknown): unknown {
    const code = (err as { code?: unknown })?.code
    if (this.#closing !== null && (code === 'LEVEL_ITERATOR_NOT_OPEN' || code === 'LEVEL_DATABASE_NOT_OPEN')) {
      return new DocketError('STORE_CLOSED', `The store at ${this.dir} was closed while it was being read: open it again and retry.`, { cause: err, details: { dir: this.dir } })
    }
    if (this.#e.unavailable && (code === 'LEVEL_ITERATOR_NOT_OPEN' || code === 'LEVEL_DATABASE_NOT_OPEN')) return this.#e.unavailable
    return storageError(this.dir, err)
  }

  /** What recovery, doctor and import call: rows, orphans, repairs, long operations (store/maintenance.ts). */
  get maintenance(): Maintenance {
    this.#assertOpen()
    return this.#maintenance
  }

  // ───────────────────────────── sync ─────────────────────────────

  /** Whether and how this replica syncs; `lastSyncedAt` survives across processes. */
  syncState(): SyncState {
    this.#assertOpen()
    if (this.#sync) return { ...this.#sync.state(), refusedUpdates: this.#e.refusedUpdates }
    return { configured: this.#syncOptions !== undefined, url: this.#syncOptions?.url ?? null, connected: false, synced: false, readOnly: false, lastSyncedAt: this.#lastSyncedAt, refusedUpdates: this.#e.refusedUpdates, error: null }
  }

  /**
   * Resolves once this replica is synced with its server (immediately if it has none).
   * Rejects with BEHIND_REMOTE after `timeoutMs`, SYNC_UNAUTHORIZED if the token was refused.
   */
  async whenSynced(timeoutMs = 10_000): Promise<SyncState> {
    this.#assertOpen()
    checkTimeout(timeoutMs, 'whenSynced(timeoutMs)')
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
    requireKnownKeys(requireObject(options, 'assertSynced options'), OPTION_KEYS.assertSynced, 'assertSynced()')
    if (options.timeoutMs !== undefined) checkTimeout(options.timeoutMs, 'assertSynced() timeoutMs')
    if (options.offline === true || !this.#syncOptions) return
    await this.whenSynced(options.timeoutMs ?? 10_000)
  }

  #noteSynced(at: string): void {
    this.#lastSyncedAt = at
    const now = Date.now()
    // Persisted at most once a second: it is a hint for reports, not a log.
    if (now - this.#syncedNotedAt < 1000 || this.#closing !== null || this.#e.unavailable) return
    this.#syncedNotedAt = now
    this.#e.write('synced', { puts: [{ sublevel: 'meta', key: 'lastSyncedAt', value: at }] }).catch((err: unknown) => this.#e.logger.warn(`could not record the sync time: ${(err as Error).message}`))
  }

  // ───────────────────────────── health ─────────────────────────────

  /** Folds every update row into one snapshot row now (the writer also does it on its own). */
  /** Folds the update rows into one snapshot, then deletes the content blobs nothing names any more. */
  async compact(): Promise<void> {
    await this.#ready()
    await this.#e.writer.compact(this.#e.state)
    await this.#e.collectBlobs()
  }

  /** Total bytes of the update rows on disk (what the next open reads). */
  async storedUpdateBytes(): Promise<number> {
    this.#assertOpen()
    let total = 0
    for await (const value of this.#e.dbs.doc.values()) total += value.byteLength
    return total
  }

  stats(): StoreStats {
    this.#assertOpen()
    const state = this.#e.state
    return {
      items: liveIds(state).length,
      tombstones: state.parts.tombstones.size,
      highestId: state.allocator.highest,
      updateRows: state.liveSeqs.length,
      updateBytes: state.liveBytes,
      openedRows: state.readRows,
      openedBytes: state.readBytes,
      compactions: this.#e.writer.compactions,
      merges: this.#e.writer.merges,
      corruptRows: state.corrupt.length,
      pendingReanchors: state.unanchored.size,
    }
  }

  /**
   * Compares the shadow content store with the CRDT (read-only): missing or stale shadow rows,
   * missing content, damaged rows, unfinished intents, and ids whose rows no live item owns.
   */
  async verify(): Promise<ConsistencyReport> {
    this.#assertOpen()
    await this.flush()
    return verifyStore(this.#e.dbs, this.#e.state, this.#damage).catch((err: unknown) => {
      throw this.#storageError(err)
    })
  }

  get readOnly(): boolean {
    return this.#e.readOnly
  }

  get closed(): boolean {
    return this.#closing !== null
  }

  /** Waits for pending writes, then releases the document and the LevelDB. Idempotent. */
  close(): Promise<void> {
    this.#e.closing = true
    this.#closing ??= this.#close()
    return this.#closing
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close()
  }

  async #close(): Promise<void> {
    try {
      // Clients first: calls under way finish (bounded), later ones find no socket and open the store themselves.
      await this.#holder?.close()
      await this.#e.settle()
      // A lease in flight is persisted before the connection goes: the server handed it out once.
      await this.#e.leases.close(this.#syncOptions?.closeTimeoutMs ?? 3000)
      await this.#e.settle()
      await this.#sync?.close()
      await this.#e.settle()
      await this.#e.checkpointing
      await this.#e.checkpoint(true).catch((err: unknown) => this.#e.logger.warn(`could not write the checkpoint of ${this.dir} (${(err as Error).message})`))
    } finally {
      this.#e.listeners.clear()
      this.#e.updateListeners.clear()
      this.#e.state.destroy()
      await this.#e.dbs.root.close()
    }
  }

  /**
   * Acknowledged work that was found missing at open (storage/health.ts), or undefined. Such a
   * store opens writable only with `acceptDamage: true`, which records the loss.
   */
  damage(): StorageDamage | undefined {
    this.#assertOpen()
    return this.#damage === undefined ? undefined : structuredClone(this.#damage)
  }

  async #acknowledgeDamage(damage: StorageDamage): Promise<void> {
    await this.#e.write('damage', { audit: [['storage_loss_acknowledged', { ...damage }]] })
    const kept = await acknowledgeDamage(this.dir)
    this.#e.logger.warn(`the loss found in ${this.dir} was acknowledged (kept as ${kept}); the store goes on with what survived`)
    this.#damage = undefined
    await this.#e.checkpoint(true)
  }

  // ───────────────────────────── internals ─────────────────────────────

  #assertOpen(): void {
    if (this.#closing !== null) {
      throw new DocketError('STORE_CLOSED', `The store at ${this.dir} is closed: open it again with openStore().`, { details: { dir: this.dir } })
    }
    if (this.#e.broken) throw this.#e.broken
  }

  async #ready(): Promise<void> {
    this.#assertOpen()
    if (this.#e.readOnly) {
      throw new DocketError('STORE_READ_ONLY', `The store at ${this.dir} was opened read-only: open it without readOnly to change it.`, { details: { dir: this.dir } })
    }
    if (this.#sync?.readOnly) {
      throw new DocketError(
        'STORE_READ_ONLY',
        `This replica syncs with ${this.#syncOptions?.url} using the read-only token: its changes would never reach the server. Use the read-write token to change the pipeline.`,
        { details: { dir: this.dir, url: this.#syncOptions?.url } },
      )
    }
    if (this.#e.reloading) await this.#e.reloading
    if (this.#e.unavailable) await this.#e.recover()
    this.#assertOpen()
  }

  #require(id: ItemId): Item {
    const item = itemAt(this.#e.state, id)
    if (!item) throw this.#missing(id)
    return item
  }

  #missing(id: ItemId): DocketError {
    return missingItem(id, this.#e.state.parts.tombstones.has(id))
  }

  /**
   * The live item's map, checked synchronously — callers use it in the same tick, so nothing
   * can delete the item between this check and their transaction. 'tombstoned' means the
   * caller must refuse loudly (Engine.rejectWrite); an unknown id is NOT_FOUND.
   */
  /** A parent must be a live item, and making it one must close no loop (an item its own ancestor). */
  #requireParent(state: DocState, parent: ItemId, child: ItemId | undefined): void {
    if (child !== undefined && parent === child) throw invalid(`item ${child} cannot be its own parent.`)
    let at: ItemId | undefined = parent
    for (let depth = 0; at !== undefined && depth < 10_000; depth++) {
      const item = itemAt(state, at)
      if (!item) {
        if (at === parent) throw new DocketError('NOT_FOUND', `The parent ${parent} is no live item: check the id with \`docket list\`.`, { details: { parent } })
        return
      }
      if (child !== undefined && item.parent === child) throw invalid(`item ${parent} is a descendant of ${child}: making it ${child}'s parent would close a loop.`, { parent, child })
      at = item.parent
    }
  }

  #liveNow(id: ItemId): { state: DocState; map: Y.Map<unknown>; item: Item } | 'tombstoned' {
    const state = this.#e.state
    if (state.parts.tombstones.has(id)) return 'tombstoned'
    const uid = state.claims.uidAt(id)
    const map = uid === undefined ? undefined : state.maps.get(uid)
    const item = map ? itemAt(state, id) : undefined
    if (!map || !item) throw notFound(id)
    return { state, map, item }
  }
}


/** `ifStage`, checked: one stage or a non-empty list of them. */
function expectedStages(value: unknown): Stage[] {
  const list: unknown = typeof value === 'string' ? [value] : value
  if (!Array.isArray(list) || list.length === 0) throw invalid('ifStage must be a stage or a non-empty array of stages.')
  return list.map(checkStage)
}

/** What keeps an item where it is: its blocker, its freeze. */
function heldBy(item: Item): Array<'blocked' | 'frozen'> {
  return [...(item.blocked !== null ? (['blocked'] as const) : []), ...(item.frozen ? (['frozen'] as const) : [])]
}

function held(item: Item, flag: 'blocked' | 'frozen'): DocketError {
  const what = flag === 'blocked' ? `is blocked (${JSON.stringify(item.blocked!.reason)})` : 'is frozen'
  const undo = flag === 'blocked' ? `unblock it (\`docket update ${item.id} --unblock\`)` : `unfreeze it (\`docket update ${item.id} --unfreeze\`)`
  return new DocketError(flag === 'blocked' ? 'ITEM_BLOCKED' : 'ITEM_FROZEN', `Item ${item.id} ${what}: ${undo} first, or move it anyway with { force: true } (\`--force\`), which the audit log records.`, {
    details: { id: item.id, flag, ...(flag === 'blocked' ? { reason: item.blocked!.reason } : {}) },
  })
}

function notFound(id: ItemId): DocketError {
  return missingItem(id, false)
}

