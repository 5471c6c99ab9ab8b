import { DocketError } from '../errors.js'
import { matches, type ContentRef } from '../crdt/content.js'
import type { Logger } from '../store/logger.js'
import { encodeFrames, readFrames } from './frames.js'

/** What blob transfer needs from the store. */
export interface BlobBridge {
  /** Blobs written here that the server may lack. */
  pendingUploads(): ReadonlySet<string>
  readBlob(sha256: string): Promise<Uint8Array | undefined>
  uploaded(sha256: string): Promise<void>
  /** Blobs that remote updates named, that may be missing here (checked before fetching). */
  wantedBlobs(): Map<string, ContentRef>
  /** Which of these blobs this replica lacks (any number of them). */
  missingBlobs(refs: ContentRef[]): Promise<ContentRef[]>
  keepBlob(ref: ContentRef, bytes: Uint8Array): Promise<void>
  /** Every blob the document references, for the first catch-up of a session. */
  referencedBlobs(): Iterable<ContentRef>
}

/** The HTTP side of a `docket serve` at a ws:// or wss:// URL (packages/server/src/blobs.ts): one blob, or `fetch`/`store` for batches. */
export function blobUrl(syncUrl: string, sha256: string): string {
  const url = new URL(syncUrl)
  url.protocol = url.protocol === 'wss:' ? 'https:' : 'http:'
  url.pathname = `/docket/blobs/${sha256}`
  url.search = ''
  return url.toString()
}

const CONCURRENCY = 4
/** A batch: at most this many blobs, and about this many bytes (the server takes up to 1,000 and 64 MiB). */
const BATCH_BLOBS = 500
const BATCH_BYTES = 8 * 1024 * 1024

/** Splits items into batches of at most BATCH_BLOBS items and about BATCH_BYTES. */
function batches<T>(items: readonly T[], size: (item: T) => number): T[][] {
  const out: T[][] = []
  let current: T[] = []
  let bytes = 0
  for (const item of items) {
    if (current.length > 0 && (current.length >= BATCH_BLOBS || bytes + size(item) > BATCH_BYTES)) {
      out.push(current)
      current = []
      bytes = 0
    }
    current.push(item)
    bytes += size(item)
  }
  if (current.length > 0) out.push(current)
  return out
}

/**
 * Moves content blobs between this replica and its sync server over HTTP, beside the Yjs
 * connection: blobs are immutable and named by their hash, so a GET or PUT of one is all there
 * is to it — no merge, and nothing the Yjs sync protocol would do better for 16 MiB of bytes.
 * Uploads drain the store's queue whenever connected; fetches bring what remote updates named
 * (and, once per session, everything referenced and missing), so that content is readable
 * offline later; a read that finds a blob missing fetches it at once.
 */
export class BlobTransfer {
  readonly #url: string
  readonly #token: string
  readonly #bridge: BlobBridge
  readonly #logger: Logger
  readonly #timeoutMs: number
  #active = false
  #uploads = true
  #running: Promise<void> | null = null
  #again = false
  #caughtUp = false
  #failures = 0
  #retry: NodeJS.Timeout | undefined
  #closed = false
  readonly #abort = new AbortController()
  /** Set while the last pass failed to upload or fetch something (and will retry). */
  lastError: string | null = null

  constructor(options: { url: string; token: string; timeoutMs: number }, bridge: BlobBridge, logger: Logger) {
    this.#url = options.url
    this.#token = options.token
    this.#timeoutMs = options.timeoutMs
    this.#bridge = bridge
    this.#logger = logger
  }

  /** Connected (with write access: uploads too): start or stop passes. */
  setActive(active: boolean, uploads: boolean): void {
    const was = this.#active
    this.#active = active
    this.#uploads = uploads
    if (active && !was) this.kick()
  }

  /** Something to move: run a pass now (or right after the one under way). */
  kick(): void {
    if (this.#closed || !this.#active) return
    if (this.#running) {
      this.#again = true
      return
    }
    this.#running = this.#pass().finally(() => {
      this.#running = null
      if (this.#again) {
        this.#again = false
        this.kick()
      }
    })
  }

  /** Whether every blob written here has reached the server. */
  get uploadsDone(): boolean {
    return this.#bridge.pendingUploads().size === 0
  }

  /** Fetches one blob now (a read that found it missing). */
  async fetch(ref: ContentRef, where: { id: string; slot: string }): Promise<Uint8Array> {
    const unavailable = (why: string) =>
      new DocketError('CONTENT_UNAVAILABLE', `Slot "${where.slot}" of item ${where.id} was written on another replica and its content (${ref.size} bytes) is not here: ${why}.`, {
        details: { ...where, sha256: ref.sha256, size: ref.size, url: this.#url },
      })
    let response: Response
    try {
      response = await fetch(blobUrl(this.#url, ref.sha256), { headers: this.#headers(), signal: this.#signal() })
    } catch (err) {
      throw unavailable(`the sync server at ${this.#url} cannot be reached (${(err as Error).message}); read it again once it can`)
    }
    if (response.status === 404) throw unavailable('the sync server does not have it yet (the replica that wrote it has not uploaded it); read it again after that replica has synced')
    if (response.status === 401 || response.status === 403) throw unavailable(`the sync server refused this replica's token (${response.status})`)
    if (!response.ok) throw unavailable(`the sync server answered ${response.status}`)
    const bytes = new Uint8Array(await response.arrayBuffer())
    if (!matches(ref, bytes)) throw unavailable('the sync server sent bytes that do not match it (a damaged copy on the server)')
    return bytes
  }

  /** Stops: no new pass, and the requests under way are aborted (see idle()). */
  close(): void {
    this.#closed = true
    if (this.#retry) clearTimeout(this.#retry)
    this.#abort.abort()
  }

  /** Resolves when no pass runs (for close, and tests). */
  async idle(): Promise<void> {
    while (this.#running) await this.#running
  }

  async #pass(): Promise<void> {
    const problems: string[] = []
    try {
      if (this.#uploads) await this.#upload(problems)
      await this.#fetches(problems)
    } catch (err) {
      // The store closing under a pass (its LevelDB is gone), or a read of it failing: the next
      // pass tries again; nothing may escape as an unhandled rejection.
      if (this.#closed) return
      problems.push((err as Error).message)
    }
    if (this.#closed) return
    this.lastError = problems.length > 0 ? problems.slice(0, 3).join('; ') : null
    if (problems.length === 0) {
      this.#failures = 0
      return
    }
    this.#failures++
    const delay = Math.min(250 * 2 ** this.#failures, 30_000)
    this.#logger.warn(`moving content blobs to or from ${this.#url} failed (${this.lastError}); retrying in ${delay} ms`)
    if (this.#retry) clearTimeout(this.#retry)
    this.#retry = setTimeout(() => {
      this.#retry = undefined
      this.kick()
    }, delay)
    this.#retry.unref?.()
  }

  /** Uploads the queue a batch at a time: a large queue (after a migration, say) is never all in memory. */
  async #upload(problems: string[]): Promise<void> {
    let batch: Array<{ sha256: string; bytes: Uint8Array }> = []
    let bytes = 0
    const send = async () => {
      const sending = batch
      batch = []
      bytes = 0
      if (sending.length === 0) return
      try {
        await this.#uploadBatch(sending)
      } catch (err) {
        problems.push((err as Error).message)
      }
    }
    for (const sha256 of [...this.#bridge.pendingUploads()]) {
      if (this.#closed || !this.#active) return
      const blob = await this.#bridge.readBlob(sha256)
      // Gone from the blob store (damage): nothing to send; doctor reports the missing content.
      if (blob === undefined) {
        await this.#bridge.uploaded(sha256)
        continue
      }
      if (batch.length > 0 && (batch.length >= BATCH_BLOBS || bytes + blob.byteLength > BATCH_BYTES)) await send()
      batch.push({ sha256, bytes: blob })
      bytes += blob.byteLength + 36
    }
    await send()
  }

  async #uploadBatch(batch: Array<{ sha256: string; bytes: Uint8Array }>): Promise<void> {
    const response = await fetch(blobUrl(this.#url, 'store'), {
      method: 'POST',
      headers: { ...this.#headers(), 'content-type': 'application/octet-stream' },
      body: encodeFrames(batch),
      signal: this.#signal(),
    })
    await response.arrayBuffer().catch(() => undefined)
    if (response.status === 403) throw new Error('the server accepts no uploads with this token (read-only)')
    if (!response.ok) throw new Error(`an upload of ${batch.length} blob(s) answered ${response.status}`)
    for (const blob of batch) await this.#bridge.uploaded(blob.sha256)
  }

  async #fetches(problems: string[]): Promise<void> {
    const wanted = this.#bridge.wantedBlobs()
    // The first pass of a session looks at every reference (a previous session may have ended
    // before it fetched everything); later passes at what remote updates named since.
    const refs = new Map<string, ContentRef>(wanted)
    wanted.clear()
    if (!this.#caughtUp) for (const ref of this.#bridge.referencedBlobs()) refs.set(ref.sha256, ref)
    const all = [...refs.values()]
    let missing: ContentRef[]
    try {
      missing = await this.#bridge.missingBlobs(all)
    } catch (err) {
      for (const ref of all) wanted.set(ref.sha256, ref) // looked at again on the next pass
      throw err
    }
    const before = problems.length
    await this.#parallel(batches(missing, (ref) => ref.size + 36), async (batch) => {
      const left = new Map(batch.map((ref) => [ref.sha256, ref]))
      try {
        const response = await fetch(blobUrl(this.#url, 'fetch'), {
          method: 'POST',
          headers: { ...this.#headers(), 'content-type': 'application/octet-stream' },
          body: new Uint8Array(Buffer.concat(batch.map((ref) => Buffer.from(ref.sha256, 'hex')))),
          signal: this.#signal(),
        })
        if (!response.ok) throw new Error(`a fetch of ${batch.length} blob(s) answered ${response.status}`)
        // A truncated answer still gives its whole frames; what is missing is asked for again.
        for (const frame of readFrames(new Uint8Array(await response.arrayBuffer())).frames) {
          const ref = left.get(frame.sha256)
          if (!ref || !matches(ref, frame.bytes)) continue
          await this.#bridge.keepBlob(ref, frame.bytes)
          left.delete(frame.sha256)
        }
      } finally {
        // Not there yet (the writer has not uploaded it) or not sent: asked for again on the next pass.
        for (const [sha256, ref] of left) wanted.set(sha256, ref)
      }
      if (left.size > 0) throw new Error(`${left.size} blob(s) are not on the server yet`)
    }, problems)
    if (problems.length === before) this.#caughtUp = true
  }

  async #parallel<T>(items: T[], work: (item: T) => Promise<void>, problems: string[]): Promise<void> {
    let next = 0
    const worker = async () => {
      while (next < items.length && !this.#closed && this.#active) {
        const item = items[next++]!
        try {
          await work(item)
        } catch (err) {
          problems.push((err as Error).message)
        }
      }
    }
    await Promise.all(Array.from({ length: Math.min(CONCURRENCY, items.length) }, worker))
  }

  /** Aborted by the timeout, or by close(). */
  #signal(): AbortSignal {
    return AbortSignal.any([AbortSignal.timeout(this.#timeoutMs), this.#abort.signal])
  }

  #headers(): Record<string, string> {
    return { authorization: `Bearer ${this.#token}` }
  }
}
