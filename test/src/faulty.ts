import type { StoreHooks, WriteOp } from '@docket/core'

export type FaultMode =
  /** The k-th write fails; the process goes on (the store reloads from disk, the operation throws). */
  | 'fail'
  /** From the k-th write on nothing reaches the disk, as if the process had died there. */
  | 'crash'

/**
 * Faulty storage: wraps the store's persistence layer (every LevelDB batch goes through
 * `hooks.beforeWrite`) and fails or "crashes" at the k-th write. Open a store with
 * `hooks: faulty.hooks`; after a crash, close it and open the directory again — what is there
 * is what reached the disk.
 */
export class FaultyStorage {
  /** Batches written (or attempted) since the last `arm`. */
  writes = 0
  /** Ops of every batch attempted since the last `arm`, for tests that want to look. */
  readonly seen: WriteOp[][] = []
  #armedAt: number | undefined
  #mode: FaultMode = 'fail'
  #tripped = false

  readonly hooks: StoreHooks = {
    beforeWrite: (ops) => {
      this.writes++
      this.seen.push([...ops])
      if (this.#armedAt === undefined) return
      const crashed = this.#mode === 'crash' && this.#tripped
      if (this.writes === this.#armedAt || crashed) {
        this.#tripped = true
        throw new Error(`injected ${this.#mode} at write ${this.writes}`)
      }
    },
  }

  /** The `k`-th write from now (1 = the next one) fails — and, in crash mode, every later one. */
  arm(k: number, mode: FaultMode): void {
    if (!Number.isSafeInteger(k) || k < 1) throw new Error(`k must be a positive integer, got ${k}`)
    this.#armedAt = k
    this.#mode = mode
    this.#tripped = false
    this.writes = 0
    this.seen.length = 0
  }

  /** Counts writes without failing any (to learn how many writes an operation makes). */
  count(): void {
    this.#armedAt = undefined
    this.#tripped = false
    this.writes = 0
    this.seen.length = 0
  }

  disarm(): void {
    this.#armedAt = undefined
  }

  /** Whether the armed fault happened. */
  get tripped(): boolean {
    return this.#tripped
  }
}
