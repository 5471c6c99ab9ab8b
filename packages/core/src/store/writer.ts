import * as Y from 'yjs'
import { DocketError } from '../errors.js'
import type { Databases, SublevelName } from '../storage/db.js'
import { contentKey, contentRange, idKey, parseContentKey, seqKey } from '../storage/keys.js'
import { readStoredRows } from '../storage/scan.js'
import { auditEvent, encodeAudit } from '../audit/audit.js'
import { idToNumber, type ItemId, type ReplicaId } from '../ids.js'
import { newJob, type Job, type RowValue } from './job.js'
import type { Logger } from './logger.js'
import type { DocState } from './state.js'
import type { StoreHooks } from './hooks.js'

export interface WriteOp {
  type: 'put' | 'del'
  sublevel: SublevelName
  key: string
  value?: RowValue
}

export interface WriterEnv {
  dir: string
  replicaId: ReplicaId
  dbs: Databases
  sync: boolean
  logger: Logger
  hooks: StoreHooks | undefined
  /** Update rows kept before they are folded into one snapshot row. */
  compactAfterRows: number
  current(): DocState
  committed(job: Job): void
  /** Called after a failed write: the store rebuilds its state from disk. */
  failed(error: DocketError): Promise<void>
}

/**
 * The only code that writes the store's LevelDB. Jobs are written in the order their
 * transactions happened; jobs that queue up while a batch is being written go into the next
 * batch together (group commit), so a burst costs one fsync rather than one each.
 *
 * Compaction rides on the same batches: when the update rows would pass the threshold, the
 * batch carries one snapshot of the document instead of the group's update rows and deletes
 * every older row. The snapshot is taken in the same tick as the group is taken from the
 * queue, when the document holds exactly the disk's state plus that group — so the rows on
 * disk never exceed the threshold, even under a continuous stream of writes.
 */
export class Writer {
  readonly #env: WriterEnv
  readonly #queue: Job[] = []
  #running: Promise<void> | null = null
  /** Snapshots of the whole document written, and merges of recent rows. */
  compactions = 0
  merges = 0

  constructor(env: WriterEnv) {
    this.#env = env
  }

  submit(job: Job): Promise<void> {
    this.#queue.push(job)
    if (this.#running === null) this.#running = this.#run()
    return job.promise
  }

  /** Resolves when everything submitted so far is on disk (or has failed). */
  async idle(): Promise<void> {
    while (this.#running !== null) await this.#running
  }

  async #run(): Promise<void> {
    try {
      while (this.#queue.length > 0) await this.#writeGroup(this.#queue.splice(0))
    } finally {
      // Cleared in the same tick as the last look at the queue: a job submitted after this
      // starts a new run, and none can slip in between and be left waiting.
      this.#running = null
    }
  }

  async #writeGroup(group: Job[]): Promise<void> {
    const state = this.#env.current()
    const jobs: Job[] = []
    for (const job of group) {
      if (job.generation === state.generation) jobs.push(job)
      else job.reject(staleGeneration(this.#env.dir))
    }
    if (jobs.length === 0) return
    const due = compactionDue(state, jobs, this.#env.compactAfterRows)
    const snapshot = due === 'snapshot' ? Y.encodeStateAsUpdate(state.doc) : undefined
    const merged = due === 'merge' ? mergeTail(state, jobs) : undefined
    const seqs: number[] = []
    try {
      const ops = await this.#buildOps(state, jobs, seqs, snapshot ? { snapshot } : merged ? { merged } : undefined)
      this.#env.hooks?.step?.('commit:before-write', { jobs: jobs.length })
      const injected = (await this.#env.hooks?.beforeWrite?.(ops)) ?? []
      await this.#env.dbs.root.batch([...ops, ...injected].map((op) => this.#levelOp(op)) as never, { sync: this.#env.sync })
      this.#env.hooks?.step?.('commit:after-write', { jobs: jobs.length })
    } catch (err) {
      const error = persistError(this.#env.dir, err)
      this.#env.logger.error?.(error.message)
      const failed = [...jobs, ...this.#queue.splice(0)]
      // Memory is rebuilt from disk before anyone hears of the failure, so that a caller
      // who reads right after the rejection never sees what was not kept.
      await this.#env.failed(error)
      for (const job of failed) job.reject(error)
      return
    }
    state.commit++
    if (snapshot) {
      state.liveSeqs = seqs
      state.liveBytes = state.baseBytes = snapshot.byteLength
      state.tail = []
      this.compactions++
    } else if (merged) {
      const folded = new Set(state.tail.map((row) => row.seq))
      state.liveSeqs = [...state.liveSeqs.filter((seq) => !folded.has(seq)), ...seqs].sort((x, y) => x - y)
      state.liveBytes += merged.byteLength - state.tail.reduce((n, row) => n + row.update.byteLength, 0)
      state.tail = []
      this.merges++
    } else {
      const updates = jobs.flatMap((job) => (job.update ? [job.update] : []))
      state.liveSeqs.push(...seqs)
      updates.forEach((update, i) => {
        state.liveBytes += update.byteLength
        state.tail.push({ seq: seqs[i]!, update })
      })
    }
    for (const job of jobs) {
      for (const after of job.afterCommit) after()
      this.#env.committed(job)
      job.resolve()
    }
  }

  /** Folds the ops of several jobs into one batch; the last op on a key wins. */
  async #buildOps(state: DocState, jobs: Job[], seqs: number[], folded: { snapshot: Uint8Array } | { merged: Uint8Array } | undefined): Promise<WriteOp[]> {
    const ops = new Map<string, WriteOp>()
    // Content keys this batch puts, by item: clearing an item's content must also drop them.
    const contentPuts = new Map<ItemId, Set<string>>()
    const set = (op: WriteOp) => {
      const k = `${op.sublevel}\u0000${op.key}`
      ops.delete(k) // re-insert so that the batch keeps the order of the last write
      ops.set(k, op)
      const parsed = op.sublevel === 'content' ? parseContentKey(op.key) : undefined
      if (!parsed) return
      let keys = contentPuts.get(parsed.id)
      if (op.type === 'put') {
        if (!keys) contentPuts.set(parsed.id, (keys = new Set()))
        keys.add(op.key)
      } else {
        keys?.delete(op.key)
      }
    }
    if (folded && 'snapshot' in folded) {
      // The whole document in one row; every older row goes.
      const seq = state.nextSeq++
      seqs.push(seq)
      set({ type: 'put', sublevel: 'doc', key: seqKey(seq), value: folded.snapshot })
      for (const old of state.liveSeqs) set({ type: 'del', sublevel: 'doc', key: seqKey(old) })
    } else if (folded) {
      // The rows written since the last fold — always the last rows on disk — and this batch's
      // updates, as one row in the place of the first of them: the numbering stays without
      // holes, which an open reads as lost batches (storage/health.ts).
      const seq = state.tail[0]!.seq
      state.nextSeq = seq + 1
      seqs.push(seq)
      set({ type: 'put', sublevel: 'doc', key: seqKey(seq), value: folded.merged })
      for (const row of state.tail.slice(1)) set({ type: 'del', sublevel: 'doc', key: seqKey(row.seq) })
    }
    // Every batch advances the commit counter: a checkpoint outside the LevelDB that is ahead
    // of it at the next open means acknowledged batches were lost (storage/health.ts).
    set({ type: 'put', sublevel: 'meta', key: 'commit', value: String(state.commit + 1) })
    // The index rows stay complete with this batch (capture wrote its share): say so, or leave it unsaid.
    if (state.indexed) set({ type: 'put', sublevel: 'meta', key: 'indexed', value: String(state.commit + 1) })
    for (const job of jobs) {
      if (job.update && !folded) {
        const seq = state.nextSeq++
        seqs.push(seq)
        set({ type: 'put', sublevel: 'doc', key: seqKey(seq), value: job.update })
      }
      for (const guarded of job.guard) await this.#moveOrphanRows(state, guarded, set)
      for (const id of job.clearContent) {
        for await (const key of this.#env.dbs.content.keys(contentRange(id))) set({ type: 'del', sublevel: 'content', key })
        for (const key of [...(contentPuts.get(id) ?? [])]) set({ type: 'del', sublevel: 'content', key })
      }
      for (const del of job.dels) set({ type: 'del', ...del })
      for (const put of job.puts) set({ type: 'put', ...put })
      for (const event of job.audit) set({ type: 'put', sublevel: 'audit', ...encodeAudit(event) })
    }
    return [...ops.values()]
  }

  /**
   * A remote item arrives on an id whose rows belong to another uid (an orphan this replica
   * holds, that the other replica could not know of). The orphan's rows move to a fresh id —
   * still an orphan, still recoverable — in the batch that writes the new item's rows.
   */
  async #moveOrphanRows(state: DocState, guarded: { id: ItemId; uid: string }, set: (op: WriteOp) => void): Promise<void> {
    const rows = await readStoredRows(this.#env.dbs, guarded.id)
    const shadowUid = rows.shadow && 'uid' in rows.shadow ? rows.shadow.uid : undefined
    if (rows.shadow === undefined ? rows.slots.length === 0 : shadowUid === guarded.uid) return
    const to = state.allocator.peek()
    state.allocator.observe('content', idToNumber(to))
    if (rows.shadow !== undefined) {
      set({ type: 'del', sublevel: 'shadow', key: idKey(guarded.id) })
      set({ type: 'put', sublevel: 'shadow', key: idKey(to), value: withId(rows.shadow.text, to) })
    }
    for (const { slot, value } of rows.slots) {
      set({ type: 'del', sublevel: 'content', key: contentKey(guarded.id, slot) })
      set({ type: 'put', sublevel: 'content', key: contentKey(to, slot), value })
    }
    const event = auditEvent('orphan_moved', this.#env.replicaId, { from: guarded.id, to, uid: shadowUid ?? null, arriving: guarded.uid }, to)
    set({ type: 'put', sublevel: 'audit', ...encodeAudit(event) })
    this.#env.logger.warn(`an item from another replica arrived on id ${guarded.id}, which held orphan rows here; the orphan moved to id ${to} (see docket recover)`)
  }

  #levelOp(op: WriteOp): object {
    const sublevel = this.#env.dbs[op.sublevel]
    return op.type === 'put' ? { type: 'put', sublevel, key: op.key, value: op.value } : { type: 'del', sublevel, key: op.key }
  }

  /** Folds every update row into one snapshot: a job that changes nothing but forces one. */
  async compact(state: DocState): Promise<void> {
    if (state.liveSeqs.length <= 1) return
    const job = newJob(state.generation)
    job.compact = true
    await this.submit(job)
  }
}

/**
 * Whether this batch folds the rows into a snapshot: past `compactAfterRows` rows, and only once
 * the rows written since the last snapshot weigh half as much as it. A snapshot costs the whole
 * document, so on a large store a fixed row count would make every write pay an ever larger
 * share of it; tied to bytes, the rewriting stays within a constant factor of what was written
 * (each byte is rewritten at most about twice), whatever the size of the store.
 */
export function compactionDue(state: Pick<DocState, 'liveSeqs' | 'liveBytes' | 'baseBytes' | 'tail'>, jobs: readonly Job[], afterRows: number): 'snapshot' | 'merge' | undefined {
  if (jobs.some((job) => job.compact)) return 'snapshot'
  let rows = state.liveSeqs.length
  let bytes = state.liveBytes - state.baseBytes
  for (const job of jobs) {
    if (job.update === undefined) continue
    rows++
    bytes += job.update.byteLength
  }
  if (rows <= afterRows) return undefined
  if (bytes * 2 >= state.baseBytes) return 'snapshot'
  // Not yet worth a snapshot: the rows since the last fold become one (costs what they weigh),
  // so the number of rows an open reads stays bounded too.
  return state.tail.length > 0 && state.tail.length >= afterRows / 2 ? 'merge' : undefined
}

/** The rows written since the last fold, and this batch's updates, as one update. */
function mergeTail(state: DocState, jobs: readonly Job[]): Uint8Array {
  return Y.mergeUpdates([...state.tail.map((row) => row.update), ...jobs.flatMap((job) => (job.update ? [job.update] : []))])
}

function persistError(dir: string, err: unknown): DocketError {
  if (err instanceof DocketError && err.code === 'PERSIST_FAILED') return err
  return new DocketError(
    'PERSIST_FAILED',
    `Writing to the store at ${dir} failed (${(err as Error)?.message ?? String(err)}): nothing of the operation was kept and the store reloaded its state from disk. Check free disk space and permissions, then retry.`,
    { cause: err, details: { dir } },
  )
}

function staleGeneration(dir: string): DocketError {
  return new DocketError(
    'PERSIST_FAILED',
    `An earlier write to the store at ${dir} failed, so this operation was not kept: the store reloaded its state from disk. Retry the operation.`,
    { details: { dir } },
  )
}

/** A shadow row moved to another id says so; an unreadable one moves as it is. */
function withId(text: string, id: ItemId): string {
  try {
    const row = JSON.parse(text) as Record<string, unknown>
    if (row && typeof row === 'object' && !Array.isArray(row)) return JSON.stringify({ ...row, id })
  } catch {
    // not JSON: keep the evidence untouched
  }
  return text
}
