import { DocketError } from '../errors.js'
import { MAX_ITEM_NUMBER, numberToId, type ItemId } from '../ids.js'

/**
 * The allocator's arithmetic, kept pure: the next id is one past the highest number ever
 * seen in any source — live CRDT items, tombstones, the content store and the synced
 * high-water marks. Sources only ever raise the mark, so allocation is O(1).
 */
export function nextIdAfter(highest: number): ItemId {
  if (highest >= MAX_ITEM_NUMBER) {
    throw new DocketError(
      'INVALID_INPUT',
      `The id space is exhausted: id ${highest}, the top of the range (2^40 − 1), has been used or claimed (a replica's allocator mark, a claim or an import: \`docket log\` and the sync server's logs say which). No new id can be allocated after it and no id is ever issued twice; items can still be created with an explicit free id (createItem({ id })).`,
      { details: { highest } },
    )
  }
  return numberToId(Math.max(0, highest) + 1)
}

export type IdSource = 'items' | 'tombstones' | 'content' | 'high-water'

/** Tracks the highest id seen per source so that `peek` is O(1) and explainable. */
export class IdAllocator {
  readonly #highest: Record<IdSource, number> = { items: 0, tombstones: 0, content: 0, 'high-water': 0 }
  #max = 0

  /** Records that `n` is taken (or was once) according to `source`. */
  observe(source: IdSource, n: number): void {
    if (n > this.#highest[source]) this.#highest[source] = n
    if (n > this.#max) this.#max = n
  }

  peek(): ItemId {
    return nextIdAfter(this.#max)
  }

  get highest(): number {
    return this.#max
  }

  bySource(): Readonly<Record<IdSource, number>> {
    return { ...this.#highest }
  }
}
