import { MAX_ITEM_NUMBER } from '../ids.js'

/**
 * Leased id blocks: the arithmetic, kept pure. A sync server hands out each id range once
 * (packages/server/src/arbiter); a replica allocates from the ranges it holds, lowest free id
 * first, so its ids stay sequential and no other replica online or offline can pick them.
 */

/** An id range a server handed to this replica: `from` to `to`, both included. */
export interface LeaseBlock {
  from: number
  to: number
}

/** How blocks are sized: a documented default that adapts to how fast the replica creates. */
export const LEASE_SIZE = {
  /** The first request, and what a replica that creates at a steady pace keeps asking for. */
  initial: 32,
  min: 8,
  max: 1024,
  /** A block used up faster than this asks for twice as many next time. */
  fastMs: 60_000,
  /** A block that lasted longer than this asks for half as many next time. */
  slowMs: 3_600_000,
} as const

/** Whether a value read back from disk or the wire is a block (defensively: it may be anything). */
export function isLeaseBlock(value: unknown): value is LeaseBlock {
  if (typeof value !== 'object' || value === null) return false
  const { from, to } = value as { from?: unknown; to?: unknown }
  return Number.isSafeInteger(from) && Number.isSafeInteger(to) && (from as number) >= 1 && (from as number) <= (to as number) && (to as number) <= MAX_ITEM_NUMBER
}

/**
 * The lowest id of `blocks` at or above `cursor` that `taken` does not refuse, with the cursor to
 * start from next time (ids below it were free no more, and taken ids never come free again:
 * claims and tombstones only grow). Undefined when every leased id is used.
 */
export function firstFree(blocks: readonly LeaseBlock[], cursor: number, taken: (n: number) => boolean): { id: number; cursor: number } | undefined {
  for (const block of [...blocks].sort((a, b) => a.from - b.from)) {
    for (let n = Math.max(block.from, cursor); n <= block.to; n++) {
      if (!taken(n)) return { id: n, cursor: n }
    }
  }
  return undefined
}

/** How many ids of `blocks` lie at or above `cursor` (taken or not: an upper bound, O(blocks)). */
export function remainingFrom(blocks: readonly LeaseBlock[], cursor: number): number {
  let left = 0
  for (const block of blocks) if (block.to >= cursor) left += block.to - Math.max(block.from, cursor) + 1
  return left
}

/** The blocks that still hold ids at or above `cursor` (used-up ones are forgotten). */
export function liveBlocks(blocks: readonly LeaseBlock[], cursor: number): LeaseBlock[] {
  return blocks.filter((block) => block.to >= cursor).sort((a, b) => a.from - b.from)
}

/** The highest id of any block (a replica's fallback allocation goes above it). */
export function topOf(blocks: readonly LeaseBlock[]): number {
  let top = 0
  for (const block of blocks) if (block.to > top) top = block.to
  return top
}

/**
 * The size of the next request, from the last one and how long its block lasted (undefined:
 * not used up yet, or no block so far). Doubles when a block lasted less than `fastMs`,
 * halves when it lasted more than `slowMs`, within [min, max].
 */
export function nextLeaseSize(last: number, lastedMs: number | undefined): number {
  let size = last
  if (lastedMs !== undefined && lastedMs < LEASE_SIZE.fastMs) size = last * 2
  else if (lastedMs !== undefined && lastedMs > LEASE_SIZE.slowMs) size = Math.floor(last / 2)
  return Math.min(LEASE_SIZE.max, Math.max(LEASE_SIZE.min, size))
}

/** A replica asks for more once fewer than half of its usual block are left. */
export function wantsMore(remaining: number, size: number): boolean {
  return remaining * 2 < size
}
