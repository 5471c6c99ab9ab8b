import { chmod, lstat, mkdir, unlink } from 'node:fs/promises'
import { createServer, type Server, type Socket } from 'node:net'
import { DocketError } from '../errors.js'
import type { Logger } from '../store/logger.js'
import type { Store } from '../store/store.js'
import { holderEndpoint, removeStaleSocket } from './endpoint.js'
import { CARRY_BYTES, decodeMessage, encodeMessage, errorOf, LIST_PART, lineSplitter, PROTOCOL_VERSION, type HolderHello, type HolderRequest } from './protocol.js'

/**
 * What a client may call: the store's operations and reports, and what maintenance tools use.
 * Not: close (a client disconnects instead), listeners (they stay the holder's), replication
 * entry points (a peer syncs through the sync server, not through the holder).
 */
const STORE_METHODS = new Set([
  'createItem', 'getItem', 'listItems', 'apply', 'validEvents', 'updateItem', 'deleteItem',
  'readContent', 'readContentBytes', 'contentSlots', 'writeContent', 'missingBlobs',
  'isTombstoned', 'tombstone', 'tombstonedIds', 'peekNextId', 'aliases', 'stageHistory', 'audit',
  'flush', 'syncState', 'whenSynced', 'assertSynced', 'compact', 'storedUpdateBytes', 'stats', 'verify', 'damage',
  'claim', 'claimNext', 'renewClaim', 'releaseClaim', 'idLeases',
  // properties, read as calls without arguments
  'dir', 'replicaId', 'readOnly', 'schema',
])
const MAINTENANCE_METHODS = new Set([
  'scanStoredRows', 'uidAt', 'isDeletedUid', 'pendingReanchors', 'readStoredContent', 'readShadowRow', 'adoptOrphan',
  'recordRun', 'beginIntent', 'endIntent', 'repairShadow', 'importTombstone', 'corruptRows', 'pendingIntents',
])

/**
 * The holder of a store serves it on a Unix socket that only its user can open (mode 0600): a
 * CLI or an agent that finds the store held calls the holder's own store, so the holder's
 * listeners, audit and sync see every change, and nobody waits for the LevelDB's lock.
 */
export class HolderServer {
  readonly #connections = new Set<Socket>()
  readonly #inFlight = new Set<Promise<void>>()
  #closing = false

  private constructor(
    readonly path: string,
    readonly server: Server,
    readonly store: Store,
    readonly logger: Logger,
  ) {
    server.on('connection', (socket) => this.#accept(socket))
  }

  /**
   * Listens for `store`. Any socket file already there is stale by construction: this process
   * holds the LevelDB's lock, so no other process can be serving this store.
   */
  static async listen(store: Store, logger: Logger): Promise<HolderServer> {
    const endpoint = holderEndpoint(store.dir)
    if (endpoint.privateDir) await privateDirectory(endpoint.privateDir)
    await removeStaleSocket(endpoint, store.dir)
    const server = createServer({ allowHalfOpen: false })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      // Owner-only from the moment it exists: bind under a umask that leaves no bits for others.
      const umask = process.platform === 'win32' ? undefined : restrictUmask()
      try {
        server.listen(endpoint.path, () => {
          server.off('error', reject)
          resolve()
        })
      } finally {
        if (umask !== undefined) process.umask(umask)
      }
    })
    if (process.platform !== 'win32') await chmod(endpoint.path, 0o600)
    server.on('error', (err) => logger.warn(`the holder socket of ${store.dir} failed (${err.message}); CLI calls will open the store themselves once it is closed`))
    return new HolderServer(endpoint.path, server, store, logger)
  }

  /** Stops accepting, lets calls under way finish (bounded), and removes the socket. */
  async close(graceMs = 5000): Promise<void> {
    if (this.#closing) return
    this.#closing = true
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()))
    await Promise.race([Promise.allSettled([...this.#inFlight]), new Promise((r) => setTimeout(r, graceMs).unref())])
    for (const socket of this.#connections) socket.destroy()
    await closed
    if (process.platform !== 'win32') await unlink(this.path).catch(() => {})
  }

  #accept(socket: Socket): void {
    if (this.#closing) {
      socket.destroy()
      return
    }
    this.#connections.add(socket)
    socket.on('close', () => this.#connections.delete(socket))
    socket.on('error', () => {})
    socket.setEncoding('utf8')
    const split = lineSplitter((line) => this.#handle(socket, line))
    socket.on('data', (chunk: string) => {
      if (!split(chunk)) socket.destroy()
    })
  }

  #handle(socket: Socket, line: string): void {
    let request: HolderRequest
    try {
      request = decodeMessage(line, false) as HolderRequest
      if (typeof request !== 'object' || request === null || typeof request.id !== 'number' || typeof request.method !== 'string' || !Array.isArray(request.args)) throw new Error('not a request')
      if (CARRY_BYTES.has(request.method)) request = decodeMessage(line) as HolderRequest
    } catch {
      socket.destroy() // not a docket client
      return
    }
    const done = this.#answer(request).then(
      (value) => this.#reply(socket, request, value),
      (err: unknown) => this.#send(socket, { id: request.id, ok: false, error: errorOf(err) }),
    )
    this.#inFlight.add(done)
    void done.finally(() => this.#inFlight.delete(done))
  }

  /** The answer; a long list in parts (each a line of its own), the last part with the answer. */
  #reply(socket: Socket, request: HolderRequest, value: unknown): void {
    const plain = !CARRY_BYTES.has(request.method)
    if (Array.isArray(value) && value.length > LIST_PART) {
      let at = 0
      for (; value.length - at > LIST_PART; at += LIST_PART) this.#send(socket, { id: request.id, more: value.slice(at, at + LIST_PART) }, plain)
      value = value.slice(at)
    }
    this.#send(socket, { id: request.id, ok: true, value }, plain)
  }

  #send(socket: Socket, message: Parameters<typeof encodeMessage>[0], plain = false): void {
    if (!socket.destroyed) socket.write(encodeMessage(message, plain))
  }

  async #answer({ target, method, args }: HolderRequest): Promise<unknown> {
    if (target === 'holder' && method === 'hello') {
      const hello: HolderHello = { protocol: PROTOCOL_VERSION, pid: process.pid, dir: this.store.dir, replicaId: this.store.replicaId, readOnly: this.store.readOnly }
      return hello
    }
    const allowed = target === 'store' ? STORE_METHODS : target === 'maintenance' ? MAINTENANCE_METHODS : undefined
    if (!allowed?.has(method)) {
      throw new DocketError('INVALID_INPUT', `The process holding the store does not serve ${String(target)}.${method}: update the docket that calls it, or the one that holds the store.`)
    }
    const object = (target === 'store' ? this.store : this.store.maintenance) as unknown as Record<string, unknown>
    const member = object[method]
    if (typeof member !== 'function') return member
    if (target === 'maintenance' && method === 'scanStoredRows') {
      // A callback cannot cross the socket: the malformed keys come back beside the rows.
      const malformed: unknown[] = []
      const options = { ...(args[0] as object), onMalformedKey: (key: unknown) => malformed.push(key) }
      return { rows: await collect((member as (o: unknown) => AsyncIterable<unknown>).call(object, options)), malformed }
    }
    const result = (member as (...a: unknown[]) => unknown).apply(object, args)
    if (isAsyncIterable(result)) return collect(result)
    return result
  }
}

async function collect<T>(rows: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = []
  for await (const row of rows) out.push(row)
  return out
}

function isAsyncIterable(value: unknown): value is AsyncIterable<unknown> {
  return typeof value === 'object' && value !== null && typeof (value as AsyncIterable<unknown>)[Symbol.asyncIterator] === 'function'
}

/** This user's directory for sockets whose in-store path is too long: created 0700, refused if anyone else owns it. */
async function privateDirectory(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 })
  // lstat: a symlink planted there is refused, never followed.
  const info = await lstat(dir)
  if (!info.isDirectory() || (typeof process.getuid === 'function' && info.uid !== process.getuid())) {
    throw new DocketError('STORE_UNWRITABLE', `${dir} is not a directory of this user: remove it, or use a shorter store path (the socket then lives in the store directory).`, { details: { dir } })
  }
  if ((info.mode & 0o077) !== 0) await chmod(dir, 0o700)
}

/** The umask for the bind, or undefined where it cannot be set (a worker thread): the chmod right after still applies. */
function restrictUmask(): number | undefined {
  try {
    return process.umask(0o177)
  } catch {
    return undefined
  }
}
