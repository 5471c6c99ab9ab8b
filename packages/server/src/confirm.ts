import type { Connection, Document } from '@hocuspocus/server'

/**
 * Store confirmations: a replica counts as synced only once the server has *stored* its
 * changes, not merely applied them (Hocuspocus acknowledges an update when it applies it and
 * stores it up to a debounce later; a server killed in between lost it).
 *
 * The protocol, on Hocuspocus's stateless messages:
 * - once the server has acknowledged everything a replica sent, the replica sends
 *   `{"docket":"mark","n":N}` (N grows per connection);
 * - the server answers `{"docket":"stored","n":N}` once a store has completed that began after
 *   the last update of that replica's connection had been applied (they were all acknowledged
 *   before the mark was sent). Others' updates do not hold it up: a replica that sent nothing
 *   new is answered at once.
 * Counting applied updates (rather than comparing state vectors) covers deletions, which a
 * state vector does not show.
 */
export const MARK = 'mark'
export const STORED = 'stored'

export interface StoredMessage {
  docket: typeof STORED
  n: number
}

/** A replica's mark, or undefined for any other stateless payload. */
export function parseMark(payload: string): number | undefined {
  try {
    const value = JSON.parse(payload) as { docket?: unknown; n?: unknown }
    return value.docket === MARK && Number.isSafeInteger(value.n) && (value.n as number) > 0 ? (value.n as number) : undefined
  } catch {
    return undefined
  }
}

export function storedMessage(n: number): string {
  return JSON.stringify({ docket: STORED, n } satisfies StoredMessage)
}

interface Waiting {
  connection: Connection
  n: number
  /** The count of applied updates a store must cover to answer this mark. */
  needed: number
}

interface Tracked {
  /** Updates applied to the document since it was loaded (the loaded state counts as stored). */
  applied: number
  /** `applied` right after each connection's last update. */
  byOrigin: WeakMap<object, number>
  /** `applied` as of the start of the last store that completed. */
  stored: number
  waiting: Waiting[]
  fallback: NodeJS.Timeout | undefined
  failures: number
  off: () => void
}

export interface ConfirmationsOptions {
  /** Stores the document now (the same path as Hocuspocus's debounced store). */
  storeNow: (document: Document) => Promise<void>
  /**
   * How long a mark may wait for Hocuspocus's own debounced store before the server stores by
   * itself (a store may have been skipped: a Redis lock held elsewhere, or a failure).
   */
  fallbackMs: number
  warn: (message: string) => void
}

export class Confirmations {
  readonly #docs = new Map<Document, Tracked>()
  /** Connections whose close drops their waiting marks. */
  readonly #watched = new WeakSet<Connection>()
  readonly #options: ConfirmationsOptions

  constructor(options: ConfirmationsOptions) {
    this.#options = options
  }

  /** Starts counting a freshly loaded document's updates. */
  track(document: Document): void {
    if (this.#docs.has(document)) return
    const onUpdate = (_update: Uint8Array, origin: unknown) => {
      const t = this.#docs.get(document)
      if (!t) return
      t.applied++
      if (typeof origin === 'object' && origin !== null) t.byOrigin.set(origin, t.applied)
    }
    document.on('update', onUpdate)
    this.#docs.set(document, { applied: 0, byOrigin: new WeakMap(), stored: 0, waiting: [], fallback: undefined, failures: 0, off: () => document.off('update', onUpdate) })
  }

  /** A replica's mark arrived: answer now if a completed store covers it, else after the next one. */
  mark(document: Document, connection: Connection, n: number): void {
    const t = this.#docs.get(document)
    if (!t) return
    const needed = t.byOrigin.get(connection) ?? 0
    if (t.stored >= needed) {
      connection.sendStateless(storedMessage(n))
      return
    }
    if (!this.#watched.has(connection)) {
      this.#watched.add(connection)
      connection.onClose(() => this.dropConnection(connection))
    }
    t.waiting.push({ connection, n, needed })
    this.#arm(document, t, this.#options.fallbackMs)
  }

  /** Called synchronously where a store encodes the document: what that store will cover. */
  storing(document: Document): number {
    return this.#docs.get(document)?.applied ?? 0
  }

  /** A store that covered `covered` updates completed: answer every mark it covers. */
  stored(document: Document, covered: number): void {
    const t = this.#docs.get(document)
    if (!t) return
    t.failures = 0
    t.stored = Math.max(t.stored, covered)
    const still: Waiting[] = []
    for (const w of t.waiting) {
      if (w.needed <= t.stored) w.connection.sendStateless(storedMessage(w.n))
      else still.push(w)
    }
    t.waiting = still
    if (still.length === 0 && t.fallback) {
      clearTimeout(t.fallback)
      t.fallback = undefined
    }
  }

  /** A store failed: marks keep waiting, and the fallback retries with a growing delay. */
  failed(document: Document): void {
    const t = this.#docs.get(document)
    if (!t) return
    t.failures++
    if (t.waiting.length > 0) this.#arm(document, t, Math.min(this.#options.fallbackMs * 2 ** t.failures, 30_000))
  }

  /** A connection left: its marks need no answer. */
  dropConnection(connection: Connection): void {
    for (const t of this.#docs.values()) t.waiting = t.waiting.filter((w) => w.connection !== connection)
  }

  forget(document: Document): void {
    const t = this.#docs.get(document)
    if (!t) return
    if (t.fallback) clearTimeout(t.fallback)
    t.off()
    this.#docs.delete(document)
  }

  /** Forgets every document (the server is stopping; its close stores everything). */
  clear(): void {
    for (const document of [...this.#docs.keys()]) this.forget(document)
  }

  #arm(document: Document, t: Tracked, delayMs: number): void {
    if (t.fallback) return
    t.fallback = setTimeout(() => {
      t.fallback = undefined
      if (t.waiting.length === 0 || this.#docs.get(document) !== t) return
      this.#options.storeNow(document).catch((err: unknown) => {
        this.#options.warn(`storing ${document.name} failed (${(err as Error).message}); replicas waiting for it stay unconfirmed, retrying`)
      })
    }, delayMs)
    t.fallback.unref?.()
  }
}
