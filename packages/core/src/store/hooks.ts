import type { ItemId } from '../ids.js'
import type { WriteOp } from './writer.js'

/**
 * Fault-injection seams for tests and the property harness. Production code passes none.
 * Every hook runs synchronously at the point its name gives, so a test can kill the process,
 * apply a concurrent update or make a write fail exactly there.
 */
export interface StoreHooks {
  /**
   * Called at each named step of an operation: `create:validated`, `create:allocated`,
   * `create:before-crdt-write`, `create:crdt-written`, `create:committed`,
   * `commit:before-write`, `commit:after-write`, `reanchor:read`, `adopt:before-commit`.
   */
  step?(name: string, data?: Record<string, unknown>): void
  /**
   * The Yjs client id of each document the store builds (at open and after a failed write).
   * Default: random, as Yjs does. Tests that must replay exactly (concurrent map writes are
   * won by the higher client id) supply a sequence; it must never repeat a value.
   */
  clientId?(): number
  /** Replaces the id the allocator proposes (to test the defences behind it). */
  allocate?(proposed: ItemId): ItemId
  /**
   * Runs before each LevelDB batch. Throwing (or rejecting) makes the write fail; returning
   * ops adds them to the batch (a concurrent writer's rows landing at the same moment).
   */
  beforeWrite?(ops: readonly WriteOp[]): void | readonly WriteOp[] | Promise<void | readonly WriteOp[]>
  /**
   * Stands in for the sync server's arbiter for id leases: the fake-network property gives its
   * replicas one arbiter, reachable or not as the test decides (undefined: not connected), and
   * the benchmark one that never is (today's allocation). Requests and results are the
   * server's (docs/FORMAT.md).
   */
  arbiter?(): ((request: Record<string, unknown>) => Promise<unknown>) | undefined
}
