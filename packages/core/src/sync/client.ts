import { HocuspocusProvider, HocuspocusProviderWebsocket } from '@hocuspocus/provider'
import WebSocket from 'ws'
import * as Y from 'yjs'
import { DocketError } from '../errors.js'
import type { Logger } from '../store/logger.js'
import { SCHEMA_VERSION } from '../store/migrate.js'
import type { ContentRef } from '../crdt/content.js'
import { BlobTransfer, type BlobBridge } from './blobs.js'

/** How long one blob upload or fetch may take. */
const BLOB_TIMEOUT_MS = 60_000

/** How long the server may take to answer a lease or claim request. */
const ARBITER_TIMEOUT_MS = 10_000

/** A reply of the server's arbiter (packages/server/src/arbiter/protocol.ts). */
interface ArbiterReply {
  req: number
  ok: boolean
  result?: unknown
  code?: string
  message?: string
}

function arbiterReply(payload: string): ArbiterReply | undefined {
  try {
    const value = JSON.parse(payload) as Partial<ArbiterReply> & { docket?: unknown }
    if (value.docket !== 'arbiter' || !Number.isSafeInteger(value.req) || typeof value.ok !== 'boolean') return undefined
    return value as ArbiterReply
  } catch {
    return undefined
  }
}

/** How a store joins a sync server. */
export interface SyncOptions {
  /** The server's WebSocket URL, e.g. ws://127.0.0.1:1234 (`docket serve`). */
  url: string
  /** The server's token. */
  token?: string
  /** The pipeline's document name on the server. Default: "docket". */
  document?: string
  /** Reconnect backoff bounds in ms. Default: 250 / 10,000. */
  minReconnectDelayMs?: number
  maxReconnectDelayMs?: number
  /** How long close() waits for the server to store local changes. Default: 3,000 ms. */
  closeTimeoutMs?: number
}

export interface SyncState {
  /** Whether this store syncs with a server at all. */
  configured: boolean
  url: string | null
  /** A WebSocket is open and the server accepted the token. */
  connected: boolean
  /**
   * Connected, the server's state has been received, and the server has *stored* every change
   * this replica holds (for a read-only replica: the server's state has been received).
   */
  synced: boolean
  /** The server accepted this replica's token as read-only: it receives, and its own changes are refused. */
  readOnly: boolean
  /** When this replica was last known to be synced (persisted across processes), or null. */
  lastSyncedAt: string | null
  /** Remote updates this replica refused and keeps as evidence, across processes: see `docket log --kind update_refused`. */
  refusedUpdates: number
  /** Why syncing stopped for good (a refused token), if it did. */
  error: { code: string; message: string } | null
}

/** What the sync client needs from the store: replication primitives only. */
export interface SyncBridge extends BlobBridge {
  /** Calls `listener` when blobs wait to be uploaded or fetched. */
  onBlobs(listener: () => void): () => void
  encodeStateAsUpdate(stateVector?: Uint8Array): Uint8Array
  encodeStateVector(): Uint8Array
  applyUpdate(update: Uint8Array, source: string): Promise<void>
  onUpdate(listener: (update: Uint8Array, info: { remote: boolean; source: string; blobs: readonly string[] }) => void): () => void
  noteSynced(at: string): void
}

const FROM_STORE = Symbol('docket:from-store')

/** The mark a server's `{"docket":"stored","n":N}` confirms, or undefined for any other payload. */
function storedMark(payload: string): number | undefined {
  try {
    const value = JSON.parse(payload) as { docket?: unknown; n?: unknown }
    return value.docket === 'stored' && Number.isSafeInteger(value.n) ? (value.n as number) : undefined
  } catch {
    return undefined
  }
}

/**
 * Joins a Hocuspocus server through a network Y.Doc of its own. Local changes reach that doc
 * — and so the server — only once they are on disk; what the server sends is applied to the
 * store (and persisted) like any remote update. The store never waits for the network.
 */
export class SyncClient {
  readonly #options: Required<Pick<SyncOptions, 'url' | 'document' | 'closeTimeoutMs'>> & SyncOptions
  readonly #bridge: SyncBridge
  readonly #logger: Logger
  readonly #net = new Y.Doc()
  readonly #socket: HocuspocusProviderWebsocket
  readonly #provider: HocuspocusProvider
  readonly #source: string
  readonly #offUpdate: () => void
  #connected = false
  #handshake = false
  #lastSyncedAt: string | null
  #error: SyncState['error'] = null
  /** Callers of whenSynced/close waiting for a change of state: `check` on every change, `abort` on close. */
  /** Told of every change with whether the replica is synced now (computed once per change: it compares state vectors). */
  #waiters = new Set<{ check: (synced: boolean) => void; abort: () => void }>()
  #closed = false
  /** Set when close() starts: failures to apply are expected from then on. */
  #closing = false
  #resync: NodeJS.Timeout | undefined
  /** Server updates handed to the store and not yet on its disk. */
  #applying = 0
  /**
   * Store confirmations (packages/server/src/confirm.ts): once the server has acknowledged all
   * this replica sent, it sends a mark; the server answers when a store covering it completed.
   */
  #markWanted = true
  #marked = 0
  #confirmed = 0
  /** Content blobs, beside the document (sync/blobs.ts). */
  readonly #blobs: BlobTransfer
  /** Local updates waiting for their blobs to reach the server, oldest first. */
  #outbox: Array<{ update: Uint8Array; blobs: readonly string[] }> = []
  readonly #offBlobs: () => void
  /** Arbiter requests in flight (leases, claims), by request number. */
  readonly #asks = new Map<number, { resolve: (result: unknown) => void; reject: (err: DocketError) => void; timer: NodeJS.Timeout }>()
  #nextAsk = 1
  readonly #readyListeners = new Set<() => void>()
  #wasReady = false

  constructor(options: SyncOptions, bridge: SyncBridge, logger: Logger, lastSyncedAt: string | null) {
    this.#options = { document: 'docket', closeTimeoutMs: 3000, ...options }
    this.#bridge = bridge
    this.#logger = logger
    this.#lastSyncedAt = lastSyncedAt
    this.#source = `sync:${options.url}`
    // What this replica holds goes to the server only after the blobs it names: with uploads
    // pending from an earlier session, the whole state waits in the outbox behind them.
    const pending = [...bridge.pendingUploads()]
    if (pending.length === 0) Y.applyUpdate(this.#net, bridge.encodeStateAsUpdate(), FROM_STORE)
    else this.#outbox.push({ update: bridge.encodeStateAsUpdate(), blobs: pending })
    this.#blobs = new BlobTransfer({ url: options.url, token: options.token ?? '', timeoutMs: BLOB_TIMEOUT_MS }, bridge, logger)
    this.#offBlobs = bridge.onBlobs(() => {
      this.#blobs.kick()
      this.#flushOutbox()
      this.#changed()
    })
    this.#offUpdate = bridge.onUpdate((update, info) => {
      if (info.source === this.#source) return
      // An update goes to the server only after the blobs it names: a replica that sees a
      // reference can then always fetch what it names. Updates keep their order.
      this.#outbox.push({ update, blobs: info.blobs })
      this.#flushOutbox()
    })
    this.#net.on('update', (update: Uint8Array, origin: unknown) => {
      if (origin === FROM_STORE) this.#markWanted = true
      else if (origin === this.#provider && !this.#closed) this.#toStore(update)
    })
    this.#socket = new HocuspocusProviderWebsocket({
      url: options.url,
      WebSocketPolyfill: WebSocket,
      delay: options.minReconnectDelayMs ?? 250,
      minDelay: options.minReconnectDelayMs ?? 250,
      maxDelay: options.maxReconnectDelayMs ?? 10_000,
      factor: 2,
      jitter: true,
    })
    this.#provider = new HocuspocusProvider({
      websocketProvider: this.#socket,
      name: this.#options.document,
      document: this.#net,
      // The schema travels with the token: a server of another schema refuses this replica
      // before anything is merged (packages/server: parseCredentials).
      token: JSON.stringify({ schema: SCHEMA_VERSION, token: options.token ?? '' }),
    })
    this.#provider.on('status', ({ status }: { status: string }) => {
      const connected = status === 'connected'
      if (connected !== this.#connected) this.#logger.info?.(`sync ${connected ? 'connected to' : 'disconnected from'} ${options.url}`)
      this.#connected = connected
      if (!connected) {
        this.#handshake = false
        // An answer in flight is lost with its connection: the caller learns it now, not at a timeout.
        this.#dropAsks()
        // A mark in flight is lost with its connection: confirm again on the next one.
        this.#markWanted = true
      }
      this.#changed()
    })
    this.#provider.on('synced', ({ state }: { state: boolean }) => {
      this.#handshake = state
      this.#changed()
    })
    this.#provider.on('unsyncedChanges', () => this.#changed())
    this.#provider.on('stateless', ({ payload }: { payload: string }) => {
      const reply = arbiterReply(payload)
      if (reply) return this.#answered(reply)
      const n = storedMark(payload)
      if (n === undefined || n <= this.#confirmed) return
      this.#confirmed = n
      this.#changed()
    })
    this.#provider.on('authenticationFailed', ({ reason }: { reason: string }) => {
      this.#error = reason.startsWith('schema-mismatch')
        ? { code: 'SCHEMA_MISMATCH', message: `the server at ${options.url} refused this replica: ${reason.replace(/^schema-mismatch: /, '')}.` }
        : {
            code: 'SYNC_UNAUTHORIZED',
            message: `the server at ${options.url} refused this replica's token (${reason}): pass the server's token (DOCKET_TOKEN); a server that runs a docket older than schema ${SCHEMA_VERSION} refuses newer replicas too.`,
          }
      this.#logger.warn(`sync stopped: ${this.#error.message} The store keeps working offline.`)
      this.#offUpdate()
      this.#destroyConnection()
      this.#changed()
    })
    this.#provider.attach()
  }

  state(): SyncState {
    return {
      configured: true,
      url: this.#options.url,
      connected: this.#connected && this.#error === null,
      synced: this.#isSynced(),
      readOnly: this.#readOnly(),
      lastSyncedAt: this.#lastSyncedAt,
      refusedUpdates: 0, // the store fills in what it refused (it keeps the count across processes)
      error: this.#error ? { ...this.#error } : null,
    }
  }

  #isSynced(): boolean {
    if (this.#error !== null || !this.#connected || !this.#handshake || !this.#provider.isAuthenticated) return false
    if (this.#applying > 0 || !this.#storeHasNetwork()) return false
    // A read-only replica's changes never reach the server: caught up is all it can be.
    return this.#stored()
  }

  /** The server accepted this replica's token as read-only. */
  get readOnly(): boolean {
    return this.#readOnly()
  }

  #readOnly(): boolean {
    return this.#provider.isAuthenticated && this.#provider.authorizedScope === 'readonly'
  }

  /** Everything sent was acknowledged (applied): ask the server to confirm it is stored. */
  #maybeMark(): void {
    if (!this.#markWanted || this.#error !== null || !this.#connected || !this.#handshake) return
    if (!this.#provider.isAuthenticated || this.#provider.hasUnsyncedChanges || this.#readOnly()) return
    this.#markWanted = false
    this.#marked++
    this.#provider.sendStateless(JSON.stringify({ docket: 'mark', n: this.#marked }))
  }

  /** The store holds everything the network doc received (none of it waits to be applied). */
  #storeHasNetwork(): boolean {
    const store = Y.decodeStateVector(this.#bridge.encodeStateVector())
    for (const [client, clock] of Y.decodeStateVector(Y.encodeStateVector(this.#net))) {
      if ((store.get(client) ?? 0) < clock) return false
    }
    return true
  }

  /** Connected, handshake done, accepted read-write: the arbiter can be asked. */
  get arbiterReady(): boolean {
    return this.#error === null && this.#connected && this.#handshake && this.#provider.isAuthenticated && !this.#readOnly() && !this.#closing
  }

  /** Calls `listener` whenever the arbiter becomes reachable (each (re)connection). */
  onArbiterReady(listener: () => void): () => void {
    this.#readyListeners.add(listener)
    return () => this.#readyListeners.delete(listener)
  }

  /**
   * Asks the server's arbiter (a lease or a claim) and resolves with its result. Rejects with
   * BEHIND_REMOTE when not connected (or the connection drops before the answer), and with
   * ARBITER_UNAVAILABLE when the server does not answer in time (a docket server older than
   * leases and claims never does).
   */
  ask(request: Record<string, unknown>, timeoutMs = ARBITER_TIMEOUT_MS): Promise<unknown> {
    if (!this.arbiterReady) {
      return Promise.reject(
        new DocketError(
          'BEHIND_REMOTE',
          `This replica is not connected to ${this.#options.url}${this.#readOnly() ? ' with a read-write token' : ''}, so the server cannot decide: try again once it is, or work offline where the call allows it ({ offline: true }, --offline).`,
          { details: { url: this.#options.url } },
        ),
      )
    }
    const req = this.#nextAsk++
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#asks.delete(req)
        reject(
          new DocketError(
            'ARBITER_UNAVAILABLE',
            `The server at ${this.#options.url} did not answer a ${String(request.op)} request within ${timeoutMs} ms: it may run a docket older than leases and claims (upgrade it), or be overloaded. If this was a claim, claim again with the same agent to learn whether it was granted.`,
            { details: { url: this.#options.url, op: request.op } },
          ),
        )
      }, timeoutMs)
      this.#asks.set(req, { resolve, reject, timer })
      this.#provider.sendStateless(JSON.stringify({ docket: 'arbiter', req, ...request }))
    })
  }

  #answered(reply: ArbiterReply): void {
    const ask = this.#asks.get(reply.req)
    if (!ask) return
    this.#asks.delete(reply.req)
    clearTimeout(ask.timer)
    if (reply.ok) ask.resolve(reply.result)
    else {
      const code = reply.code === 'INVALID_INPUT' ? 'INVALID_INPUT' : reply.code === 'READ_ONLY' ? 'STORE_READ_ONLY' : 'ARBITER_UNAVAILABLE'
      ask.reject(new DocketError(code, `${String(reply.message ?? 'the server refused the request').slice(0, 500)}`, { details: { url: this.#options.url, serverCode: reply.code ?? null } }))
    }
  }

  #dropAsks(): void {
    for (const [req, ask] of this.#asks) {
      this.#asks.delete(req)
      clearTimeout(ask.timer)
      ask.reject(
        new DocketError('BEHIND_REMOTE', `The connection to ${this.#options.url} dropped before the server answered: ask again once connected (a claim asked again by the same agent learns whether it was granted).`, {
          details: { url: this.#options.url },
        }),
      )
    }
  }

  #changed(): void {
    if (this.#closed) return
    const ready = this.arbiterReady
    if (ready && !this.#wasReady) for (const listener of [...this.#readyListeners]) queueMicrotask(listener)
    this.#wasReady = ready
    this.#maybeMark()
    this.#blobs.setActive(this.#error === null && this.#connected && this.#handshake && this.#provider.isAuthenticated, !this.#readOnly())
    const synced = this.#isSynced()
    if (synced) {
      this.#lastSyncedAt = new Date().toISOString()
      this.#bridge.noteSynced(this.#lastSyncedAt)
    }
    for (const waiter of [...this.#waiters]) waiter.check(synced)
  }

  /** Resolves once synced; rejects with BEHIND_REMOTE after `timeoutMs`, SYNC_UNAUTHORIZED if refused. */
  whenSynced(timeoutMs: number): Promise<SyncState> {
    return new Promise((resolve, reject) => {
      const waiter = {
        check: (synced: boolean) => {
          if (this.#error) {
            done()
            reject(new DocketError(this.#error.code === 'SCHEMA_MISMATCH' ? 'SCHEMA_MISMATCH' : 'SYNC_UNAUTHORIZED', this.#error.message, { details: { url: this.#options.url } }))
          } else if (synced) {
            done()
            resolve(this.state())
          }
        },
        abort: () => {
          done()
          reject(new DocketError('STORE_CLOSED', 'The store was closed while waiting for sync: open it again to sync.'))
        },
      }
      const timer = setTimeout(() => {
        done()
        const s = this.state()
        reject(
          new DocketError(
            'BEHIND_REMOTE',
            `This replica could not confirm it is caught up with ${this.#options.url} within ${timeoutMs} ms (${s.connected ? 'connected, still syncing' : 'not connected'}; last synced ${s.lastSyncedAt ?? 'never'}): wait for the server, or pass --offline if you know it is gone.`,
            { details: { ...s } },
          ),
        )
      }, timeoutMs)
      const done = () => {
        this.#waiters.delete(waiter)
        clearTimeout(timer)
      }
      this.#waiters.add(waiter)
      waiter.check(this.#isSynced())
    })
  }

  #toStore(update: Uint8Array): void {
    this.#applying++
    this.#bridge
      .applyUpdate(update, this.#source)
      .catch((err: unknown) => {
        if (this.#closing) return
        // Refused for good (it would rewrite history): audited by the store; sending it again changes nothing.
        if ((err as { code?: unknown })?.code === 'UPDATE_REFUSED') return
        // The store rebuilt itself from disk; send it what the network doc has that it lacks.
        this.#logger.warn(`applying an update from ${this.#options.url} failed (${(err as Error).message}); retrying`)
        this.#scheduleResync()
      })
      .finally(() => {
        this.#applying--
        if (!this.#closing) this.#changed()
      })
  }

  #scheduleResync(): void {
    if (this.#closed || this.#resync) return
    this.#resync = setTimeout(() => {
      this.#resync = undefined
      if (this.#closed) return
      this.#toStore(Y.encodeStateAsUpdate(this.#net, this.#bridge.encodeStateVector()))
    }, 200)
  }

  #flushOutbox(): void {
    const pending = this.#bridge.pendingUploads()
    while (this.#outbox.length > 0 && !this.#closed && this.#outbox[0]!.blobs.every((sha) => !pending.has(sha))) {
      Y.applyUpdate(this.#net, this.#outbox.shift()!.update, FROM_STORE)
    }
  }

  /** Fetches a blob a read found missing (CONTENT_UNAVAILABLE if the server cannot give it). */
  fetchBlob(ref: ContentRef, where: { id: string; slot: string }): Promise<Uint8Array> {
    return this.#blobs.fetch(ref, where)
  }

  /** The server stored everything this replica sent it (a read-only replica sends nothing). */
  #stored(): boolean {
    return this.#readOnly() || (!this.#provider.hasUnsyncedChanges && !this.#markWanted && this.#confirmed >= this.#marked && this.#blobs.uploadsDone && this.#outbox.length === 0)
  }

  /** Waits (bounded) for the server to store local changes, then disconnects. */
  async close(): Promise<void> {
    if (this.#closing) return
    this.#closing = true
    if (this.#connected && this.#error === null && !this.#stored()) {
      await new Promise<void>((resolve) => {
        const waiter = { check: () => (this.#stored() || !this.#connected || this.#error !== null) && finish(), abort: () => finish() }
        const timer = setTimeout(finish, this.#options.closeTimeoutMs)
        const waiters = this.#waiters
        function finish(): void {
          clearTimeout(timer)
          waiters.delete(waiter)
          resolve()
        }
        this.#waiters.add(waiter)
      })
    }
    this.#closed = true
    this.#dropAsks()
    this.#readyListeners.clear()
    this.#blobs.close()
    // The store closes its LevelDB after this: no blob pass may still be reading it.
    await this.#blobs.idle()
    this.#offBlobs()
    if (this.#resync) clearTimeout(this.#resync)
    for (const waiter of [...this.#waiters]) waiter.abort()
    this.#offUpdate()
    this.#destroyConnection()
    this.#net.destroy()
  }

  #destroyConnection(): void {
    // ws reports "closed before the connection was established" as an 'error' event that
    // nobody listens to once the provider has let go of the socket: listen, and ignore it.
    const ws = (this.#socket as unknown as { webSocket?: { on?: (event: string, fn: () => void) => void } }).webSocket
    ws?.on?.('error', () => {})
    this.#provider.destroy()
    this.#socket.destroy()
  }
}
