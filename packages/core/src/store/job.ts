import type { ItemId } from '../ids.js'
import type { SublevelName } from '../storage/db.js'
import type { AuditEvent, StoreEvent } from '../types.js'

export type RowValue = string | Uint8Array

/**
 * Everything one transaction (or one operation without a document change) must persist.
 * A job reaches disk in a single LevelDB batch, possibly grouped with the jobs queued
 * behind it: all of it or none of it.
 */
export interface Job {
  generation: number
  /** Whether the update came from another replica (sync) rather than from this store's API. */
  remote: boolean
  /** Where the update came from: 'local', or the source given to applyUpdate. */
  source: string
  /** The Yjs update of the transaction, if it changed the document. */
  update?: Uint8Array
  /** Ids whose content rows are all deleted before this job's puts. */
  clearContent: ItemId[]
  puts: Array<{ sublevel: SublevelName; key: string; value: RowValue }>
  dels: Array<{ sublevel: SublevelName; key: string }>
  audit: AuditEvent[]
  events: StoreEvent[]
  /**
   * Ids where a remote item lands that this replica never held, at or below the highest id
   * its content store had at open: rows another uid left there (an orphan) must be moved
   * aside before the new item's rows are written.
   */
  guard: Array<{ id: ItemId; uid: string }>
  /** Forces the batch to replace every update row with one snapshot. */
  compact?: boolean
  /** Set when, after this job, an item of this replica shows no id and must move to a fresh one. */
  startsReanchor?: boolean
  /** Runs once the job is on disk (before its promise resolves). */
  afterCommit: Array<() => void>
  promise: Promise<void>
  resolve: () => void
  reject: (err: unknown) => void
}

export function newJob(generation: number): Job {
  let resolve!: () => void
  let reject!: (err: unknown) => void
  const promise = new Promise<void>((res, rej) => {
    resolve = res
    reject = rej
  })
  // A job whose caller went away must not surface as an unhandled rejection.
  promise.catch(() => {})
  return { generation, remote: false, source: 'local', guard: [], clearContent: [], puts: [], dels: [], audit: [], events: [], afterCommit: [], promise, resolve, reject }
}

/**
 * The origin of a local transaction: what the operation adds to the job beyond the rows
 * derived from the document (audit events, journal rows), and what it expects.
 */
export class OpContext {
  readonly audit: AuditEvent[] = []
  readonly events: StoreEvent[] = []
  readonly puts: Job['puts'] = []
  readonly dels: Job['dels'] = []
  /** Ids whose rows are rewritten even if the transaction did not touch them. */
  readonly refresh = new Set<ItemId>()
  job?: Job

  constructor(readonly op: string) {}
}

/** The origin of updates that came from another replica. */
export class RemoteOrigin {
  job?: Job
  /** The update as it came (it may hold more than what could be integrated yet). */
  constructor(readonly source: string, readonly raw?: Uint8Array) {}
}
