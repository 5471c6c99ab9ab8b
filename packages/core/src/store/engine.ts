import { indexRows } from './indexer.js'
import { createHash } from 'node:crypto'
import * as Y from 'yjs'
import { auditEvent, nextUlid } from '../audit/audit.js'
import { nextIdAfter } from '../alloc/allocator.js'
import { claimKey, type ClaimValue } from '../crdt/claims.js'
import { decodeRef, isContentRef, matches, type ContentRef } from '../crdt/content.js'
import { buildItemMap, contentEntries, isItemMap } from '../crdt/layout.js'
import { readReplacedItem } from '../crdt/rescue.js'
import { DocketError } from '../errors.js'
import { idToNumber, isItemId, numberToId, type ItemId, type ReplicaId, type Uid } from '../ids.js'
import { LeasedIds, leasesRow } from './leases.js'
import { reopenDatabases, type Databases } from '../storage/db.js'
import { writeCheckpoint } from '../storage/health.js'

/** How often a running store writes its checkpoint while fsync'd batches are written. */
const CHECKPOINT_EVERY_MS = 2000
/** Refused updates kept as evidence at most; later refusals are audited without their bytes. */
const MAX_REFUSED_KEPT = 1000
import type { Alias, AuditEvent, AuditKind, StoreEvent, StoreListener } from '../types.js'
import { captureTransaction, jobFromContext, type CaptureEnv } from './capture.js'
import type { StoreHooks } from './hooks.js'
import { OpContext, RemoteOrigin, type Job } from './job.js'
import type { Logger } from './logger.js'
import { DocState, LOAD_ORIGIN, loadState, recordOf, type CorruptRow } from './state.js'
import { compactionDue, Writer } from './writer.js'

/** One local mutation, as `Engine.write` takes it. */
export interface Mutation<T = void> {
  /** Audit events, `[kind, data, itemId?]` or made already; a function is evaluated after the change. */
  audit?: Array<AuditSpec | AuditEvent> | (() => AuditSpec[])
  events?: StoreEvent[] | (() => StoreEvent[])
  /** Journal and meta rows. */
  puts?: Job['puts']
  dels?: Job['dels']
  /** Ids whose rows are rewritten even if the change does not touch them. */
  refresh?: Iterable<ItemId>
  /** The document change: one Yjs transaction, synchronous; it must not throw. */
  change?: (state: DocState) => void
  /** Runs right after the change (fault-injection steps). */
  afterChange?: () => void
  /** What the mutation returns, read right after the change. */
  read?: (state: DocState) => T
}

export type AuditSpec = [AuditKind, Record<string, unknown>, ItemId?]

/**
 * A committed update, for replication: `remote` is true for updates that came from a peer,
 * `source` names where it came from, `blobs` the content blobs it references that were written
 * with it (a replica sends the blobs before the update that names them).
 */
export type UpdateListener = (update: Uint8Array, info: { remote: boolean; source: string; blobs: readonly string[] }) => void

/** @internal The parts openStore assembles; not part of the public API. */
export interface EngineInit {
  dir: string
  replicaId: ReplicaId
  dbs: Databases
  state: DocState
  logger: Logger
  hooks: StoreHooks | undefined
  fsync: boolean
  compactAfterRows: number
  readOnly: boolean
}

/**
 * The machinery under a Store: the current document state, the writer, the capture of every
 * transaction, rebuilding from disk after a failed write, re-anchoring displaced items, and
 * the listeners. The Store is the API over it (validation, operations, sync).
 */
export class Engine {
  readonly dir: string
  readonly replicaId: ReplicaId
  readonly dbs: Databases
  readonly logger: Logger
  readonly hooks: StoreHooks | undefined
  readonly compactAfterRows: number
  readonly readOnly: boolean
  readonly writer: Writer
  readonly listeners = new Set<StoreListener>()
  readonly updateListeners = new Set<UpdateListener>()
  /** The re-anchoring batch under way, if any. */
  reanchoring: Promise<void> | null = null
  state: DocState
  reloading: Promise<void> | null = null
  /** Set when the engine can no longer trust its own state: every call fails with it. */
  broken: DocketError | null = null
  /** Set after a failed write until the LevelDB has been reopened: nothing is acknowledged meanwhile. */
  unavailable: DocketError | null = null
  recovering: Promise<void> | null = null
  readonly fsync: boolean
  checkpointed = -1
  checkpointedAt = 0
  checkpointing: Promise<void> | null = null
  /** Set when the store starts closing: background work stops starting. */
  closing = false
  /** Remote updates refused and kept (the `refused` rows), counted at start. */
  refusedUpdates = 0
  /** The updates refused in this process, by digest, with the key they are kept under. */
  readonly refusedDigests = new Map<string, string | null>()
  /** Ids leased from the sync server (store/leases.ts). */
  readonly leases: LeasedIds
  /** How to ask the sync server's arbiter, when this store syncs and is connected (set by the Store). */
  arbiter: (() => ((request: Record<string, unknown>) => Promise<unknown>) | undefined) | undefined

  constructor(init: EngineInit) {
    this.dir = init.dir
    this.replicaId = init.replicaId
    this.dbs = init.dbs
    this.logger = init.logger
    this.hooks = init.hooks
    this.state = init.state
    this.compactAfterRows = init.compactAfterRows
    this.readOnly = init.readOnly
    this.fsync = init.fsync
    this.writer = new Writer({
      dir: init.dir,
      replicaId: init.replicaId,
      dbs: init.dbs,
      sync: init.fsync,
      logger: init.logger,
      hooks: init.hooks,
      compactAfterRows: init.compactAfterRows,
      current: () => this.state,
      committed: (job) => this.committed(job),
      failed: (error) => this.reload(error),
    })
    this.attach(this.state)
    this.leases = new LeasedIds({
      dbs: this.dbs,
      logger: this.logger,
      state: () => this.state,
      ask: () => (this.hooks?.arbiter ?? this.arbiter)?.(),
      now: Date.now,
      persist: (blocks, size, top, installed) =>
        this.write('lease', {
          puts: [leasesRow(blocks, size)],
          // Every replica that syncs allocates above this block even when it falls back to its own mark.
          change: (state) => {
            this.raiseHighWater(state, numberToId(top))
            installed()
          },
        }),
    })
  }

  /** Reports damaged rows, moves this replica's items that show no id (a session may have ended first), compacts if due. */
  async start(): Promise<void> {
    await this.leases.load()
    for await (const _ of this.dbs.refused.keys()) this.refusedUpdates++
    for (const row of this.state.corrupt) {
      this.logger.warn(`corrupt row in ${row.sublevel} at key ${JSON.stringify(row.key)}: ${row.error}; it is kept and skipped`)
    }
    if (this.readOnly) return
    await this.reportCorrupt(this.state.corrupt)
    this.runPendingReanchors()
    await this.reanchoring
    // A damaged update row is skipped by every open: the index rows written with it say more than
    // the document does. Rebuilt once for each set of damaged rows (they are kept, never compacted).
    const damaged = this.state.corrupt.filter((row) => row.sublevel === 'doc').map((row) => row.key).sort().join(',')
    if (!this.state.indexed || (damaged !== '' && (await this.dbs.meta.get('indexedDespite')) !== damaged)) await this.rebuildIndex(damaged)
    if (compactionDue(this.state, [], this.compactAfterRows) === 'snapshot') await this.writer.compact(this.state)
  }

  /**
   * Writes the whole index (storage/index-rows.ts) from the document in one batch, and from then
   * on every batch keeps it complete: at the first open by a docket that keeps it, after a batch
   * written by one that did not, or when `doctor --fix` found it stale. Returns the rows written.
   */
  async rebuildIndex(damaged?: string): Promise<number> {
    const existing: string[] = []
    for await (const key of this.dbs.index.keys()) existing.push(key)
    const state = this.state
    // From here to the submission nothing awaits: the rows are the document's as of this batch.
    const rows = indexRows(state)
    const puts = [...rows].map(([key, value]) => ({ sublevel: 'index' as const, key, value }))
    const dels = existing.filter((key) => !rows.has(key)).map((key) => ({ sublevel: 'index' as const, key }))
    state.indexed = true
    const meta = damaged ? [{ sublevel: 'meta' as const, key: 'indexedDespite', value: damaged }] : []
    await this.write('index', { puts: [...puts, ...meta], dels })
    return puts.length
  }

  /** Waits until the writer is idle and no re-anchoring runs (a failed one is retried later). */
  async settle(): Promise<void> {
    for (;;) {
      await this.writer.idle()
      if (this.#collecting !== null) {
        await this.#collecting
        continue
      }
      if (this.reanchoring === null) return
      await this.reanchoring
    }
  }

  /**
   * A remote update that would rewrite history (crdt/admission.ts) is refused whole: nothing of
   * it is applied; it is kept aside as evidence (`refused` rows), audited and logged.
   */
  async refuseUpdate(update: Uint8Array, source: string, reason: string): Promise<never> {
    const refusal = (key: string | null) =>
      new DocketError('UPDATE_REFUSED', `The update from ${source} was refused: ${reason}. Nothing of it was applied; it is kept as evidence (\`docket log --kind update_refused\`). Find the replica that sent it and check its docket version.`, {
        details: { source, reason, key },
      })
    // A server that keeps sending the same update (on every reconnect) is recorded once per process.
    const digest = createHash('sha256').update(update).digest('base64')
    const seen = this.refusedDigests.get(digest)
    if (seen !== undefined) throw refusal(seen)
    // Evidence is bounded: past the cap a refusal is still audited, without its bytes.
    const keep = this.refusedUpdates < MAX_REFUSED_KEPT
    this.logger.warn(`an update from ${source} was refused: ${reason}; nothing of it was applied${keep ? ' (kept aside as evidence)' : ''}`)
    const key = keep ? nextUlid() : null
    await this.write('refuse', {
      puts: key ? [{ sublevel: 'refused', key, value: update }] : [],
      audit: [['update_refused', { source, reason, bytes: update.byteLength, key }]],
    })
    this.refusedUpdates++
    if (this.refusedDigests.size < MAX_REFUSED_KEPT) this.refusedDigests.set(digest, key)
    throw refusal(key)
  }

  /** Blobs written here that the sync server may lack (the `upload` rows), and blobs remote updates named that may be missing here. */
  readonly pendingUploads = new Set<string>()
  readonly wantedBlobs = new Map<string, ContentRef>()
  readonly blobListeners = new Set<() => void>()

  /** Loads the upload queue (at start: a previous session may have ended before it drained). */
  async loadUploads(): Promise<void> {
    for await (const key of this.dbs.upload.keys()) this.pendingUploads.add(key)
  }

  #noteBlobs(job: Job): void {
    let news = false
    const written = new Set<string>()
    for (const put of job.puts) {
      if (put.sublevel === 'upload') {
        this.pendingUploads.add(put.key)
        news = true
      } else if (put.sublevel === 'blob') written.add(put.key)
    }
    if (job.remote) {
      for (const put of job.puts) {
        if (put.sublevel !== 'content') continue
        const ref = decodeRef(put.value as Uint8Array)
        if (ref && !written.has(ref.sha256)) {
          this.wantedBlobs.set(ref.sha256, ref)
          news = true
        }
      }
    }
    if (news) for (const listener of this.blobListeners) this.safely(listener)
  }

  #collectedAt = 0
  #collecting: Promise<void> | null = null

  /**
   * Deletes the blobs nothing names any more — content overwritten or deleted. Kept: what the
   * document or a content row (an orphan's too) references, what waits to be uploaded or was
   * asked for. The document is looked at again right before the batch: a change made meanwhile
   * keeps what it names, and a local write carries its own blob row, so a batch after this one
   * puts back a blob it needs.
   */
  async collectBlobs(): Promise<number> {
    if (this.readOnly || this.unavailable || this.closing || this.broken) return 0
    // A blob still to be uploaded stays even if overwritten: an update that names it may yet be
    // sent (it waits for the upload), and its receivers will ask the server for it.
    const keep = new Set<string>([...this.pendingUploads, ...this.wantedBlobs.keys()])
    for await (const key of this.dbs.upload.keys()) keep.add(key)
    for await (const value of this.dbs.content.values()) {
      const ref = decodeRef(value)
      if (ref) keep.add(ref.sha256)
    }
    const candidates: string[] = []
    for await (const key of this.dbs.blob.keys()) if (!keep.has(key)) candidates.push(key)
    if (candidates.length === 0 || this.closing) return 0
    const named = documentBlobs(this.state)
    const gone = candidates.filter((sha) => !named.has(sha) && !this.pendingUploads.has(sha))
    if (gone.length === 0) return 0
    await this.write('collectBlobs', { dels: gone.map((key) => ({ sublevel: 'blob' as const, key })) })
    return gone.length
  }

  /** The server has a blob: it leaves the upload queue (a crash before this only repeats an upload). */
  async uploaded(sha256: string): Promise<void> {
    await this.dbs.upload.del(sha256)
    this.pendingUploads.delete(sha256)
    // The updates that waited for it can go now.
    for (const listener of this.blobListeners) this.safely(listener)
  }

  /**
   * Keeps a blob fetched from the sync server. Content-addressed and checked before it is
   * kept, so it needs no place in a batch: a crash loses at most a fetch, done again later.
   */
  async keepBlob(ref: ContentRef, bytes: Uint8Array): Promise<void> {
    if (!matches(ref, bytes)) throw new DocketError('CONTENT_UNAVAILABLE', `The bytes fetched for blob ${ref.sha256} do not match it: the server holds a damaged copy; fetch it again later, or from a replica that wrote it.`, { details: { sha256: ref.sha256 } })
    if (this.readOnly) return
    await this.dbs.blob.put(ref.sha256, bytes)
    this.wantedBlobs.delete(ref.sha256)
  }

  async rejectWrite(id: ItemId, op: string, reason: string): Promise<never> {
    this.logger.warn(`${op} on item ${id} rejected: ${reason}; deleted ids are never written again`)
    await this.write('reject', { audit: [['write_rejected', { op, reason }, id]], events: [{ type: 'write_rejected', id, reason }] })
    throw new DocketError('TOMBSTONED', `Item ${id} was deleted, so ${op} was refused: deleted ids are never written or reused. Create a new item instead.`, {
      details: { id, op },
    })
  }

  /**
   * Ids that only this replica's content store holds (orphans, an older scheme) are unknown to
   * other replicas: raising this replica's synced mark past them keeps every replica that
   * syncs from allocating them.
   */
  async publishContentHighWater(): Promise<void> {
    const state = this.state
    const highest = state.allocator.bySource().content
    const mark = state.parts.alloc.get(this.replicaId)
    if (highest === 0 || (typeof mark === 'number' && mark >= highest)) return
    await this.write('publish-high-water', { change: () => state.parts.alloc.set(this.replicaId, highest) })
  }

  raiseHighWater(state: DocState, id: ItemId): void {
    const n = idToNumber(id)
    const mark = state.parts.alloc.get(this.replicaId)
    if (typeof mark !== 'number' || mark < n) state.parts.alloc.set(this.replicaId, n)
  }

  /**
   * The one way a local mutation reaches disk. Its checks are done (synchronously, in the same
   * tick); `change` edits the document in one Yjs transaction — capture.ts derives the shadow
   * and content rows from it — and the batch (update, rows, audit events, journal rows) goes
   * through the writer. Resolves with `read`'s result, taken right after the change (the item
   * as written), once everything is on disk. `audit` and `events` may be functions, evaluated
   * right after the change, inside its transaction (a change can decide to refuse itself).
   */
  async write<T = void>(op: string, m: Mutation<T>): Promise<T> {
    const state = this.state
    const ctx = new OpContext(op)
    ctx.puts.push(...(m.puts ?? []))
    ctx.dels.push(...(m.dels ?? []))
    for (const id of m.refresh ?? []) ctx.refresh.add(id)
    const toEvents = (specs: Array<AuditSpec | AuditEvent>) => specs.map((spec) => (Array.isArray(spec) ? auditEvent(spec[0], this.replicaId, spec[1], spec[2]) : spec))
    if (Array.isArray(m.audit)) ctx.audit.push(...toEvents(m.audit))
    if (Array.isArray(m.events)) ctx.events.push(...m.events)
    const decided = () => {
      // Known only once the change has run, still inside its transaction: capture reads them.
      if (typeof m.audit === 'function') ctx.audit.push(...toEvents(m.audit()))
      if (typeof m.events === 'function') ctx.events.push(...m.events())
    }
    if (m.change) {
      state.doc.transact(() => {
        m.change!(state)
        decided()
      }, ctx)
    } else decided()
    m.afterChange?.()
    const result = m.read ? m.read(state) : (undefined as T)
    await this.commit(state, ctx)
    return result
  }

  /** Submits the job of a local transaction (or of an operation that changed nothing). */
  async commit(state: DocState, ctx: OpContext): Promise<void> {
    if (ctx.job) await ctx.job.promise
    else await this.writer.submit(jobFromContext(this.env(state), ctx))
  }

  env(state: DocState): CaptureEnv {
    return { state, replicaId: this.replicaId, logger: this.logger }
  }

  attach(state: DocState): void {
    // Before Yjs collects it: a schema 1 item of ours whose map a peer's concurrent schema 1
    // write replaced (both replicas migrated before they met) is read out and rescued.
    state.parts.items.observe((event, tr) => {
      if (!(tr.origin instanceof RemoteOrigin) || state !== this.state) return
      for (const [key, change] of event.changes.keys) {
        if ((change.action !== 'update' && change.action !== 'delete') || !(change.oldValue instanceof Y.Map) || !isItemId(key)) continue
        const item = readReplacedItem(change.oldValue, tr)
        if (!item || item.record.createdBy !== this.replicaId || state.rescues.has(item.record.uid)) continue
        state.rescues.set(item.record.uid, { oldId: key, item, journalKey: nextUlid(), journaled: false })
      }
    })
    state.doc.on('update', (update: Uint8Array, origin: unknown, _doc: Y.Doc, tr: Y.Transaction) => {
      if (origin === LOAD_ORIGIN || state !== this.state) return
      let job: Job
      try {
        job = captureTransaction(this.env(state), tr, update, origin)
      } catch (err) {
        // A bug, not an input problem: memory now differs from disk, so stop writing.
        this.broken = new DocketError('STORE_CORRUPT', `Internal error while recording a change (${(err as Error).message}): nothing more is written; close and reopen the store, and report this.`, { cause: err })
        throw this.broken
      }
      if (origin instanceof RemoteOrigin) origin.job = job
      if (job.startsReanchor) job.afterCommit.push(() => this.runPendingReanchors())
      void this.writer.submit(job)
    })
  }

  /**
   * Writes the commit counter outside the LevelDB (storage/health.ts), so that the next open
   * can tell if acknowledged batches went missing. At close, and at most every few seconds
   * while fsync'd batches are written; never on the path of an acknowledgement.
   */
  async checkpoint(final: boolean): Promise<void> {
    // One at a time, in order: a later mark must never be overwritten by an earlier one.
    const previous = this.#checkpointChain
    const next = previous.then(() => this.#writeCheckpoint(final))
    this.#checkpointChain = next.catch(() => {})
    return next
  }

  #checkpointChain: Promise<void> = Promise.resolve()

  async #writeCheckpoint(final: boolean): Promise<void> {
    if (this.readOnly || this.unavailable || this.broken) return
    const commit = this.state.commit
    if (commit === this.checkpointed) return
    // Relaxed batches may still sit in the page cache: the mark must not get ahead of the log.
    if (!this.fsync) {
      if (!final) return
      await this.dbs.root.batch([{ type: 'put', sublevel: this.dbs.meta, key: 'commit', value: String(commit) }] as never, { sync: true })
    }
    await writeCheckpoint(this.dir, { commit, at: new Date().toISOString() })
    this.checkpointed = commit
  }

  #maybeCheckpoint(): void {
    const now = Date.now()
    if (!this.fsync || this.checkpointing || now - this.checkpointedAt < CHECKPOINT_EVERY_MS) return
    this.checkpointedAt = now
    this.checkpointing = this.checkpoint(false)
      .catch((err: unknown) => this.logger.warn(`could not write the checkpoint of ${this.dir} (${(err as Error).message}); losses after a crash may go unnoticed`))
      .finally(() => (this.checkpointing = null))
  }

  committed(job: Job): void {
    this.#maybeCheckpoint()
    this.#noteBlobs(job)
    // After a snapshot, the blobs overwritten content left behind go too (as rarely as snapshots).
    if (this.writer.compactions !== this.#collectedAt && this.#collecting === null && !job.remote) {
      this.#collectedAt = this.writer.compactions
      this.#collecting = this.collectBlobs()
        .catch((err: unknown) => this.logger.warn(`collecting unused content blobs failed (${(err as Error).message}); it is tried again after the next compaction`))
        .then(() => {
          this.#collecting = null
        })
    }
    if (job.update) {
      const blobs = job.puts.filter((put) => put.sublevel === 'upload').map((put) => put.key)
      for (const listener of this.updateListeners) this.safely(() => listener(job.update!, { remote: job.remote, source: job.source, blobs }))
    }
    for (const event of job.events) this.emit(event)
  }

  emit(event: StoreEvent): void {
    for (const listener of this.listeners) this.safely(() => listener(event))
  }

  safely(fn: () => void): void {
    try {
      fn()
    } catch (err) {
      this.logger.error?.(`a store listener threw: ${(err as Error)?.stack ?? String(err)}`)
    }
  }

  /**
   * After a failed write: memory is rebuilt from what reached the disk (read through the old
   * handle, which still reads), then the LevelDB is reopened — LevelDB must not append behind a
   * record it failed to write. If the reopen fails too (the disk is still full), the store
   * acknowledges nothing until a later call manages to reopen it (`recover`).
   */
  async reload(error: DocketError): Promise<void> {
    const old = this.state
    this.reloading = (async () => {
      try {
        const fresh = await loadState(this.dbs, old.generation + 1, this.replicaId, this.hooks?.clientId?.())
        this.state = fresh
        this.attach(fresh)
        old.destroy()
        this.logger.warn(`the store at ${this.dir} reloaded its state from disk after a failed write`)
      } catch (err) {
        this.broken = new DocketError('PERSIST_FAILED', `The store at ${this.dir} cannot read its own disk after a failed write (${(err as Error).message}): close it and open it again.`, {
          cause: error,
        })
        return
      } finally {
        this.reloading = null
      }
      this.unavailable = error
      await this.recover().catch(() => {})
    })()
    await this.reloading
  }

  /**
   * Reopens the LevelDB after a failed write and checks that what it holds is what memory
   * holds (the commit counter); only then are writes accepted again.
   */
  recover(): Promise<void> {
    if (this.unavailable === null) return Promise.resolve()
    this.recovering ??= (async () => {
      try {
        this.hooks?.step?.('recover:reopen')
        await reopenDatabases(this.dir, this.dbs)
        const onDisk = Number((await this.dbs.meta.get('commit')) ?? '0')
        if (onDisk !== this.state.commit) {
          throw new DocketError('STORE_CORRUPT', `The store at ${this.dir} holds ${onDisk} batches after reopening, memory ${this.state.commit}: close it and run \`docket doctor\`.`, {
            details: { onDisk, inMemory: this.state.commit },
          })
        }
        this.unavailable = null
        this.logger.warn(`the store at ${this.dir} was reopened after a failed write; writes resume`)
        queueMicrotask(() => this.runPendingReanchors())
      } catch (err) {
        if (err instanceof DocketError && err.code === 'STORE_CORRUPT') this.broken = err
        this.unavailable = new DocketError(
          'PERSIST_FAILED',
          `The store at ${this.dir} cannot write (${(err as Error).message}): nothing more is acknowledged until it can. Free disk space or fix permissions; the next call retries.`,
          { cause: err, details: { dir: this.dir } },
        )
        throw this.unavailable
      } finally {
        this.recovering = null
      }
    })()
    return this.recovering
  }

  async reportCorrupt(rows: readonly CorruptRow[]): Promise<void> {
    const fresh = rows.filter((row) => !this.state.reported.has(`corrupt:${row.sublevel}/${row.key}`))
    if (fresh.length === 0) return
    for (const row of fresh) this.state.reported.add(`corrupt:${row.sublevel}/${row.key}`)
    await this.write('corrupt', {
      puts: fresh.map((row) => ({ sublevel: 'reported' as const, key: `corrupt:${row.sublevel}/${row.key}`, value: '' })),
      audit: fresh.map((row): AuditSpec => ['corrupt_row', { ...row }]),
    })
  }

  /**
   * Claims a fresh id for every item of this replica that shows none (it lost its id to a
   * concurrent create, or its id was deleted). The item's data is in the document under its
   * uid, so nothing is read from disk: the claims, the aliases and the audit events go to disk
   * in one batch. Only the creator moves an item, so nobody renumbers it twice; if two moves
   * collide again, the loser simply moves once more.
   */
  runPendingReanchors(): void {
    if (this.reanchoring || this.closing || this.readOnly || this.unavailable || this.state.unanchored.size === 0) return
    this.reanchoring = this.reanchor().then(
      (moved) => {
        this.reanchoring = null
        // Items that lost their id while this batch was written move in the next one. (Only
        // after progress: an item that cannot move now is retried at the next change or open.)
        if (moved > 0 && this.state.unanchored.size > 0 && !this.closing) queueMicrotask(() => this.runPendingReanchors())
      },
      (err: unknown) => {
        this.reanchoring = null
        this.logger.warn(`re-anchoring failed (${(err as Error).message}); it is retried at the next change or open`)
      },
    )
  }

  /** Moves this replica's items that show no id; returns how many it moved. */
  async reanchor(): Promise<number> {
    const state = this.state
    const moves: Array<{ uid: Uid; from: ItemId | undefined; to: ItemId; reason: 'collision' | 'tombstoned-id' | 'unclaimed'; name: string }> = []
    let next = state.allocator.highest
    const planned = new Set<ItemId>()
    for (const uid of [...state.unanchored].sort()) {
      const rescue = state.rescues.get(uid)
      const record = recordOf(state, uid) ?? rescue?.item.record
      if (!record) continue
      const loss = state.claims.lossOf(uid)
      // A leased id first (no other replica can take it); else one past every id seen.
      let to = this.leases.take(state, planned)
      if (to === undefined) {
        next += 1
        to = nextIdAfter(next - 1)
      }
      planned.add(to)
      moves.push({ uid, from: loss?.id ?? rescue?.oldId, to, reason: loss?.reason ?? (rescue ? 'collision' : 'unclaimed'), name: record.name })
    }
    if (moves.length === 0) return 0
    this.hooks?.step?.('reanchor:planned', { count: moves.length })
    const at = new Date().toISOString()
    for (const m of moves) this.logger.warn(`item ${m.uid} lost id ${m.from ?? '(none)'} (${m.reason}); re-anchored to ${m.to}`)
    const rescued = moves.flatMap((m) => {
      const rescue = recordOf(state, m.uid) === undefined ? state.rescues.get(m.uid) : undefined
      return rescue ? [{ uid: m.uid, rescue }] : []
    })
    const reasonOf = (m: (typeof moves)[number]) => (m.reason === 'unclaimed' ? 'collision' : m.reason)
    await this.write('reanchor', {
      dels: rescued.map(({ rescue }) => ({ sublevel: 'journal' as const, key: rescue.journalKey })),
      audit: moves.map((m): AuditSpec => ['reanchored', { uid: m.uid, oldId: m.from ?? null, newId: m.to, reason: reasonOf(m), name: m.name }, m.to]),
      events: moves.flatMap((m) => (m.from === undefined ? [] : [{ type: 'reanchored' as const, uid: m.uid, oldId: m.from, newId: m.to, reason: reasonOf(m) }])),
      change: () => {
        for (const { uid, rescue } of rescued) {
          // Re-created under its uid, from what its replaced schema 1 map held.
          state.parts.records.set(uid, buildItemMap({ ...rescue.item.record, updatedAt: at }, rescue.item.entries, rescue.item.content))
          state.rescues.delete(uid)
        }
        for (const m of moves) {
          const claim: ClaimValue = { at, by: this.replicaId, reason: reasonOf(m) }
          if (m.from !== undefined) claim.from = m.from
          state.parts.claims.set(claimKey(m.to, m.uid), claim)
          if (m.from !== undefined) {
            const alias: Alias = { uid: m.uid, oldId: m.from, newId: m.to, at, by: this.replicaId, reason: reasonOf(m) }
            state.parts.aliases.set(`${m.from}/${m.uid}`, alias)
          }
          this.raiseHighWater(state, m.to)
        }
      },
    })
    return moves.length
  }

  freshId(state: DocState): ItemId {
    const id = state.allocator.peek()
    if (state.parts.tombstones.has(id) || state.claims.isClaimed(id)) {
      throw new DocketError('STORE_CORRUPT', `The allocator proposed id ${id}, which is in use: run \`docket doctor\` and report this.`)
    }
    return id
  }
}

/** Every blob any item map of the document names (readable or not, live or not). */
function documentBlobs(state: DocState): Set<string> {
  const named = new Set<string>()
  for (const root of [state.parts.records, state.parts.items]) {
    for (const map of root.values()) {
      if (!isItemMap(map)) continue
      for (const [, value] of contentEntries(map)) if (isContentRef(value)) named.add(value.sha256)
    }
  }
  return named
}
