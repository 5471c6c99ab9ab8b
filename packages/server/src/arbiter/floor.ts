import * as Y from 'yjs'

/** The top of docket's id range (core's MAX_ITEM_NUMBER): the server does not depend on core. */
export const MAX_ID = 2 ** 40 - 1

/** The number an id key starts with (`17`, `17/<uid>`), if it is one in range. */
function idOf(key: string): number | undefined {
  const m = /^([1-9][0-9]{0,12})(?:\/|$)/.exec(key)
  if (!m) return undefined
  const n = Number(m[1])
  return n <= MAX_ID ? n : undefined
}

/**
 * The highest id a document knows of (docs/FORMAT.md): claimed (`claims`, schema 1 `items`),
 * tombstoned, or below a replica's allocator mark (`alloc`). A lease starts above it, so the
 * server never hands out an id some replica has already used. Kept up to date as updates
 * arrive, so a lease costs no scan.
 */
export class DocumentFloor {
  #highest = 0
  readonly #off: Array<() => void> = []

  constructor(doc: Y.Doc) {
    for (const root of ['claims', 'items', 'tombstones'] as const) {
      const map = doc.getMap<unknown>(root)
      for (const key of map.keys()) this.#see(idOf(key))
      const watch = (event: Y.YMapEvent<unknown>) => {
        for (const key of event.keysChanged) this.#see(idOf(key))
      }
      map.observe(watch)
      this.#off.push(() => map.unobserve(watch))
    }
    const alloc = doc.getMap<unknown>('alloc')
    for (const value of alloc.values()) this.#seeMark(value)
    const watchAlloc = (event: Y.YMapEvent<unknown>) => {
      for (const key of event.keysChanged) this.#seeMark(alloc.get(key))
    }
    alloc.observe(watchAlloc)
    this.#off.push(() => alloc.unobserve(watchAlloc))
  }

  get highest(): number {
    return this.#highest
  }

  #see(n: number | undefined): void {
    if (n !== undefined && n > this.#highest) this.#highest = n
  }

  #seeMark(value: unknown): void {
    if (typeof value === 'number' && Number.isSafeInteger(value) && value > 0 && value <= MAX_ID) this.#see(value)
  }

  close(): void {
    for (const off of this.#off) off()
  }
}
