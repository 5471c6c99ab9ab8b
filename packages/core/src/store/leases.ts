import { firstFree, isLeaseBlock, LEASE_SIZE, liveBlocks, nextLeaseSize, remainingFrom, topOf, wantsMore, type LeaseBlock } from '../alloc/leases.js'
import { isDocketError } from '../errors.js'
import { idToNumber, numberToId, type ItemId } from '../ids.js'
import type { Databases } from '../storage/db.js'
import type { Logger } from './logger.js'
import type { DocState } from './state.js'

/** How long a replica whose server failed to lease allocates on its own before it asks again. */
const QUIET_AFTER_FAILURE_MS = 30_000

/** The meta row that holds this replica's leased blocks (docs/FORMAT.md). */
export const LEASES_KEY = 'leases'

/** What the leases need of the store around them. */
export interface LeaseEnv {
  dbs: Databases
  logger: Logger
  state: () => DocState
  /** Asks the sync server for a block; undefined when the store does not sync or cannot ask now. */
  ask: () => ((request: Record<string, unknown>) => Promise<unknown>) | undefined
  /**
   * Persists the blocks (meta row) and raises this replica's allocator mark to their top, in one
   * batch; `installed` runs inside the change, so that the mark and the blocks move together.
   */
  persist: (blocks: readonly LeaseBlock[], size: number, top: number, installed: () => void) => Promise<void>
  now: () => number
}

export interface LeaseState {
  /** The blocks this replica holds, lowest first. */
  blocks: LeaseBlock[]
  /** Ids left in them (an upper bound: some may have been taken by explicit ids). */
  remaining: number
  /** The size of the next request. */
  nextSize: number
}

/**
 * The ids this replica leased from its sync server (alloc/leases.ts has the arithmetic). A
 * create takes the lowest free leased id; fewer than half a block left asks for the next one
 * while connected. Blocks are on disk before they are used, so no id of one is ever issued twice
 * across crashes: the claims an id gets are what marks it used.
 */
export class LeasedIds {
  readonly #env: LeaseEnv
  #blocks: LeaseBlock[] = []
  #size: number = LEASE_SIZE.initial
  #cursor = 0
  #grantedAt: number | undefined
  #asking: Promise<boolean> | undefined
  /** Creates waiting in `more` for a block. */
  #waiting = 0
  /** After a server failed to lease (an older docket never answers), none is asked before this time. */
  #quietUntil = 0
  #closed = false

  constructor(env: LeaseEnv) {
    this.#env = env
  }

  async load(): Promise<void> {
    const raw = await this.#env.dbs.meta.get(LEASES_KEY)
    if (raw === undefined) return
    try {
      const value = JSON.parse(raw) as { blocks?: unknown; size?: unknown }
      this.#blocks = Array.isArray(value.blocks) ? value.blocks.filter(isLeaseBlock) : []
      if (Number.isSafeInteger(value.size)) this.#size = nextLeaseSize(value.size as number, undefined)
    } catch {
      // A torn row is a lost lease: its ids are skipped (never reused), the next lease brings more.
      this.#env.logger.warn(`the leased id blocks in ${LEASES_KEY} cannot be read; new ids come from the next lease`)
    }
  }

  /** The lowest free leased id, or undefined (none left). Synchronous: the create that takes it claims it in the same tick. */
  take(state: DocState, planned?: ReadonlySet<ItemId>): ItemId | undefined {
    const found = firstFree(this.#blocks, this.#cursor, (n) => {
      const id = numberToId(n)
      return state.claims.isClaimed(id) || state.parts.tombstones.has(id) || state.parts.items.has(id) || planned?.has(id) === true
    })
    if (!found) {
      this.#cursor = topOf(this.#blocks) + 1
      return undefined
    }
    this.#cursor = found.cursor
    return numberToId(found.id)
  }

  state(): LeaseState {
    const left = this.#left()
    return { blocks: liveBlocks(this.#blocks, this.#cursor), remaining: left, nextSize: this.#size }
  }

  /** Leased ids left: from the lowest free one up (ids above it that explicit creates took still count). */
  #left(): number {
    return this.take(this.#env.state()) === undefined ? 0 : remainingFrom(this.#blocks, this.#cursor)
  }

  /**
   * Waits for the next block: true once one is usable, false when none can be had now (not
   * connected, or the server does not lease). A burst of creates out of ids waits together, and
   * the request is sized for all of them.
   */
  async more(): Promise<boolean> {
    if (this.#closed) return false
    this.#waiting++
    try {
      return await this.#request()
    } finally {
      this.#waiting--
    }
  }

  /** A new connection (perhaps to an upgraded server): a lease may be asked for again at once. */
  reconnected(): void {
    this.#quietUntil = 0
    this.topUp()
  }

  /** After a create: asks for the next block in the background once fewer than half a block are left. */
  topUp(): void {
    if (this.#closed || !wantsMore(this.#left(), this.#size)) return
    void this.#request()
  }

  /** One request at a time; resolves true once a block is on disk and usable. */
  #request(): Promise<boolean> {
    if (this.#asking) return this.#asking
    const ask = this.#env.ask()
    if (!ask || this.#closed || this.#env.now() < this.#quietUntil) return Promise.resolve(false)
    const asking = (async () => {
      const lasted = this.#grantedAt === undefined ? undefined : this.#env.now() - this.#grantedAt
      const adapted = this.#grantedAt === undefined ? this.#size : nextLeaseSize(this.#size, lasted)
      const size = Math.min(LEASE_SIZE.max, Math.max(adapted, this.#waiting))
      const state = this.#env.state()
      const above = Math.max(state.allocator.highest, topOf(this.#blocks))
      let block: unknown
      try {
        block = await ask({ op: 'lease', size, above })
      } catch (err) {
        // Offline or an older server: creates fall back to the allocator's own mark — at once, for
        // a while, rather than each waiting for a server that does not answer.
        if (!isDocketError(err, 'BEHIND_REMOTE')) {
          this.#quietUntil = this.#env.now() + QUIET_AFTER_FAILURE_MS
          this.#env.logger.warn(`no id lease from the sync server (${(err as Error).message}); new ids come from this replica's own allocator, and a lease is asked for again in ${QUIET_AFTER_FAILURE_MS / 1000} s`)
        }
        return false
      }
      if (!isLeaseBlock(block) || block.to - block.from + 1 !== size || block.from <= above) {
        this.#quietUntil = this.#env.now() + QUIET_AFTER_FAILURE_MS
        this.#env.logger.warn(`the sync server answered a lease with ${JSON.stringify(block).slice(0, 100)}, not a fresh block of ${size} ids above ${above}; it is not used, and new ids come from this replica's own allocator for ${QUIET_AFTER_FAILURE_MS / 1000} s`)
        return false
      }
      if (this.#closed) return false
      const blocks = [...liveBlocks(this.#blocks, this.#cursor), block]
      // In use from the change on: the ids a create takes from it are written after the block.
      await this.#env.persist(blocks, size, block.to, () => {
        this.#blocks = blocks
        this.#size = size
        this.#grantedAt = this.#env.now()
      })
      return true
    })()
    this.#asking = asking
    void asking.finally(() => {
      if (this.#asking === asking) this.#asking = undefined
    })
    return asking
  }

  /** Waits (bounded) for a lease in flight: its block is the server's to hand out once only. */
  async close(timeoutMs: number): Promise<void> {
    const asking = this.#asking
    if (asking) await Promise.race([asking.catch(() => false), new Promise((resolve) => setTimeout(resolve, timeoutMs).unref())])
    this.#closed = true
  }
}

/** The blocks' meta row. */
export function leasesRow(blocks: readonly LeaseBlock[], size: number): { sublevel: 'meta'; key: string; value: string } {
  return { sublevel: 'meta', key: LEASES_KEY, value: JSON.stringify({ blocks, size }) }
}

export function isLeasedId(blocks: readonly LeaseBlock[], id: ItemId): boolean {
  const n = idToNumber(id)
  return blocks.some((b) => b.from <= n && n <= b.to)
}
