import { createHash, timingSafeEqual } from 'node:crypto'
import { once } from 'node:events'
import type { IncomingMessage } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Database } from '@hocuspocus/extension-database'
import { Server, type Connection, type Document, type Extension } from '@hocuspocus/server'
import * as decoding from 'lib0/decoding'
import * as Y from 'yjs'
import { BlobFiles, handleBlobRequest } from './blobs.js'
import { redisBlobs } from './shared-blobs.js'
import { Arbiter } from './arbiter/arbiter.js'
import type { ArbiterBackend } from './arbiter/backend.js'
import { LocalArbiter } from './arbiter/local.js'
import { Confirmations, parseMark } from './confirm.js'
import { DEFAULT_PORT } from './defaults.js'
import { ConnectionGuard, type Socket } from './guard.js'
import { checkServeOptions } from './options.js'
import { DocumentStore } from './persistence.js'

export interface ServerLogger {
  info(message: string): void
  warn(message: string): void
}

export interface ServeOptions {
  /** Where the server keeps its documents (a y-leveldb directory of its own). */
  dir: string
  /** Where it keeps content blobs (one file each, by SHA-256). Default: `<dir>-blobs`. */
  blobDir?: string
  /** Default: 127.0.0.1 — reachable from this machine only. */
  host?: string
  /** Default: 1234; 0 picks a free port. */
  port?: number
  /** Clients must present this token. Required: an open sync server accepts anyone's writes. */
  token: string
  /** Default: lines on stderr. */
  logger?: ServerLogger
  /** Share documents with other docket servers through Redis (Hocuspocus's Redis extension). */
  redis?: { host: string; port: number; prefix?: string }
  /** Quiet time before a changed document is stored, and the most it may wait. Default: 200 / 1000 ms. */
  debounceMs?: number
  maxDebounceMs?: number
  /** The largest WebSocket message accepted (a whole document travels in one at first sync). Default: 100 MiB. */
  maxPayloadBytes?: number
  /** A connection that has not authenticated within this time is closed. Default: 10,000 ms. */
  authTimeoutMs?: number
  /** What a connection may send before it has authenticated; more closes it. Default: 1 MiB. */
  maxUnauthenticatedBytes?: number
  /**
   * Open connections one address may hold; more are closed at once (code 1013). Behind a
   * reverse proxy every client has the proxy's address: raise it there. Default: 100.
   */
  maxConnectionsPerAddress?: number
  /**
   * A second token for dashboards and auditors: its connections receive every update, and
   * every update they send is refused (not applied, stored or forwarded). Default: none.
   */
  readToken?: string
  /**
   * Checks every document update a client sends, before the server applies, stores or forwards
   * it: a reason refuses it and closes the connection that sent it. `docket serve` passes core's
   * grow-only check (nothing may be removed from a tombstone, a claim, a stage log…). Default: none.
   */
  admit?: (document: Y.Doc, update: Uint8Array) => string | undefined
  /**
   * The arbiter's clock in ms (claims expire by it: packages/server/src/arbiter). Tests pass
   * their own to drive expiry without sleeping. Default: this process's clock, or with `redis`
   * Redis's own (servers sharing one Redis then decide expiry by one clock).
   */
  now?: () => number
}

/** The limits' defaults (README, `docket serve --help`). */
export const SERVER_LIMITS = {
  maxPayloadBytes: 100 * 1024 * 1024,
  authTimeoutMs: 10_000,
  maxUnauthenticatedBytes: 1024 * 1024,
  maxConnectionsPerAddress: 100,
} as const

export interface RunningServer {
  url: string
  host: string
  port: number
  /** Stores every pending document, closes every connection and the store. Idempotent. */
  close(): Promise<void>
}

const stderr: ServerLogger = {
  info: (m) => process.stderr.write(`docket serve: ${m}\n`),
  warn: (m) => process.stderr.write(`docket serve WARN: ${m}\n`),
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest()
}

/**
 * The Yjs update a client message carries (a sync step 2 or an update, in Hocuspocus's framing:
 * document name, message type, sync message type, update), or undefined for any other message.
 */
export function documentUpdateOf(message: Uint8Array): Uint8Array | undefined {
  try {
    const decoder = decoding.createDecoder(message)
    decoding.readVarString(decoder) // the document's name
    const type = decoding.readVarUint(decoder)
    if (type !== MESSAGE_SYNC && type !== MESSAGE_SYNC_REPLY) return undefined
    const sync = decoding.readVarUint(decoder)
    return sync === SYNC_STEP_2 || sync === SYNC_UPDATE ? decoding.readVarUint8Array(decoder) : undefined
  } catch {
    return undefined // not ours to judge: Hocuspocus reports malformed messages itself
  }
}

/**
 * What beforeHandleMessage throws to refuse a message: Hocuspocus then skips it and tells the
 * client why (a docket replica stops there). A plain object, not an Error: Hocuspocus prints
 * what it catches, and a refusal is already logged as one line. The socket is closed too, for
 * a client that ignores the close message.
 */
function expel(connection: Connection, reason: string): { code: number; reason: string } {
  // WebSocket close reasons are at most 123 bytes.
  const short = Buffer.from(reason).subarray(0, 120).toString().replace(/\uFFFD$/, '')
  setImmediate(() => {
    connection.webSocket.close(4403, short)
    setTimeout(() => connection.webSocket.terminate(), 1000).unref()
  })
  return { code: 4403, reason: short }
}

/** The Hocuspocus message type of a client message, or undefined if it has none. */
function messageKindOf(message: Uint8Array): number | undefined {
  try {
    const decoder = decoding.createDecoder(message)
    decoding.readVarString(decoder)
    return decoding.readVarUint(decoder)
  } catch {
    return undefined
  }
}

// Hocuspocus's MessageType.Sync / SyncReply / BroadcastStateless, and y-protocols' sync message types.
const MESSAGE_SYNC = 0
const MESSAGE_SYNC_REPLY = 4
const MESSAGE_BROADCAST_STATELESS = 6
const SYNC_STEP_2 = 1
const SYNC_UPDATE = 2

/** The document schema this server serves (docs/FORMAT.md); replicas say theirs when they connect. */
export const DOCUMENT_SCHEMA = 3

/**
 * A replica authenticates with `{"schema":N,"token":"…"}`; a bare token comes from a docket
 * that predates schema 2 (and is refused, after its token is checked).
 */
export function parseCredentials(text: string): { token: string; schema: number | undefined } {
  if (text.startsWith('{')) {
    try {
      const value = JSON.parse(text) as { token?: unknown; schema?: unknown }
      if (typeof value.token === 'string') return { token: value.token, schema: typeof value.schema === 'number' ? value.schema : -1 }
    } catch {
      // not JSON: a bare token that happens to start with a brace
    }
  }
  return { token: text, schema: undefined }
}

/** Starts a Hocuspocus server persisting to y-leveldb, refusing clients without the token. */
export async function startServer(options: ServeOptions): Promise<RunningServer> {
  checkServeOptions(options)
  if (typeof options.token !== 'string' || options.token.length === 0) {
    throw new Error('docket serve needs a token (--token or DOCKET_TOKEN): clients must present it to read or write.')
  }
  if (options.readToken !== undefined && (typeof options.readToken !== 'string' || options.readToken.length === 0 || options.readToken === options.token)) {
    throw new Error('the read-only token must be a non-empty string different from the token (--read-token or DOCKET_READ_TOKEN).')
  }
  const host = options.host ?? '127.0.0.1'
  const port = options.port ?? DEFAULT_PORT
  const logger = options.logger ?? stderr
  const expected = digest(options.token)
  const expectedRead = options.readToken === undefined ? undefined : digest(options.readToken)
  const debounce = options.debounceMs ?? 200
  const maxDebounce = options.maxDebounceMs ?? 1000
  const documents = await DocumentStore.open(options.dir)
  // With Redis, servers share blobs through it too (a blob uploaded to one is found by the others).
  const shared = options.redis ? await redisBlobs(options.redis).catch(async (err: unknown) => {
    await documents.close()
    throw new Error(`cannot reach Redis at ${options.redis!.host}:${options.redis!.port} to share blobs: ${(err as Error).message}`)
  }) : undefined
  // With Redis, servers decide leases and claims in Redis, so two servers never decide apart.
  let backend: ArbiterBackend
  try {
    backend = options.redis ? await (await import('./arbiter/redis.js')).RedisArbiter.open(options.redis) : new LocalArbiter(documents)
  } catch (err) {
    await documents.close()
    await shared?.close()
    throw new Error(`cannot reach Redis at ${options.redis!.host}:${options.redis!.port} for leases and claims: ${(err as Error).message}`)
  }
  const arbiter = new Arbiter({ backend, now: options.now, warn: (m) => logger.warn(m) })
  const blobs = new BlobFiles(options.blobDir ?? `${options.dir}-blobs`, shared)
  const blobAccess = {
    access: (authorization: string | undefined): 'read' | 'write' | undefined => {
      const presented = digest(/^Bearer (.*)$/s.exec(authorization ?? '')?.[1] ?? '\u0000no token')
      if (timingSafeEqual(presented, expected)) return 'write'
      return expectedRead !== undefined && timingSafeEqual(presented, expectedRead) ? 'read' : undefined
    },
    warn: (m: string) => logger.warn(m),
  }

  // One way to store a document, whoever asks (Hocuspocus's debounce, or a replica waiting for
  // its confirmation): `covered` is read where the state is encoded, so it is what the store holds.
  const persist = async (document: Document, state: Uint8Array, covered: number) => {
    try {
      await documents.store(document.name, state)
    } catch (err) {
      confirmations.failed(document)
      throw err
    }
    confirmations.stored(document, covered)
  }
  const confirmations = new Confirmations({
    storeNow: (document) => persist(document, Y.encodeStateAsUpdate(document), confirmations.storing(document)),
    fallbackMs: maxDebounce + 250,
    warn: (m) => logger.warn(m),
  })

  const extensions: Extension[] = [
    new Database({
      fetch: async ({ documentName, document }) => {
        try {
          return await documents.load(documentName)
        } catch (err) {
          // A document that fails to load must be destroyed, or Hocuspocus leaks its timers.
          document.destroy()
          logger.warn((err as Error).message)
          throw Object.assign(new Error((err as Error).message), { reason: 'storage-unavailable' })
        }
      },
      // The Database extension encodes `state` right before this call, in the same tick.
      store: ({ document, state }) => persist(document, state, confirmations.storing(document)),
    }),
  ]
  if (options.redis) {
    // Loaded only when asked for: it brings ioredis and redlock along.
    const { Redis } = await import('@hocuspocus/extension-redis')
    extensions.push(new Redis({ host: options.redis.host, port: options.redis.port, ...(options.redis.prefix ? { prefix: options.redis.prefix } : {}) }))
  }

  const guard = new ConnectionGuard(
    {
      authTimeoutMs: options.authTimeoutMs ?? SERVER_LIMITS.authTimeoutMs,
      maxUnauthenticatedBytes: options.maxUnauthenticatedBytes ?? SERVER_LIMITS.maxUnauthenticatedBytes,
      maxConnectionsPerAddress: options.maxConnectionsPerAddress ?? SERVER_LIMITS.maxConnectionsPerAddress,
    },
    (m) => logger.warn(m),
  )
  const server = new Server({
    quiet: true,
    stopOnSignals: false,
    debounce,
    maxDebounce,
    extensions,
    async onAuthenticate({ token, documentName, request, connectionConfig }) {
      const from = request.socket.remoteAddress ?? 'a socket'
      const credentials = parseCredentials(typeof token === 'string' ? token : '')
      const presented = digest(credentials.token)
      const readOnly = expectedRead !== undefined && timingSafeEqual(presented, expectedRead)
      if (!readOnly && !timingSafeEqual(presented, expected)) {
        logger.warn(`refused a client for ${documentName} from ${from}: ${token ? 'wrong token' : 'no token'}`)
        throw Object.assign(new Error('invalid token'), { reason: 'invalid-token' })
      }
      // Replicas of two schemas must never merge into one document: the older one would write
      // what the newer one reads differently. Refused with a reason the client shows.
      if (credentials.schema !== DOCUMENT_SCHEMA) {
        const theirs = credentials.schema === undefined ? 'a docket older than schema 2' : `schema ${credentials.schema}`
        logger.warn(`refused a client for ${documentName} from ${from}: it speaks ${theirs}, this server serves schema ${DOCUMENT_SCHEMA}`)
        throw Object.assign(new Error('schema mismatch'), {
          reason: `schema-mismatch: this server serves docket schema ${DOCUMENT_SCHEMA} documents and the replica runs ${theirs}; run the same docket version on the server and every replica (a store migrates when that version first opens it)`,
        })
      }
      // Hocuspocus applies nothing a read-only connection sends (and does not acknowledge it).
      if (readOnly) connectionConfig.readOnly = true
    },
    async beforeHandleMessage({ update: message, document, documentName, connection }) {
      const from = connection.request.socket.remoteAddress ?? 'a client'
      const kind = messageKindOf(message)
      // Stateless messages to every connection would let one client speak for the server (a
      // forged store confirmation): docket replicas never send them.
      if (kind === MESSAGE_BROADCAST_STATELESS) {
        logger.warn(`refused a broadcast from ${from} to ${documentName} and closed its connection: clients may not broadcast`)
        throw expel(connection, 'broadcast-refused: docket clients may not broadcast stateless messages')
      }
      const update = documentUpdateOf(message)
      if (update === undefined) return
      if (connection.readOnly) {
        if (!Y.snapshotContainsUpdate(Y.snapshot(document), update)) logger.warn(`refused an update to ${documentName} from ${from}: it holds the read-only token`)
        return
      }
      const refusal = options.admit?.(document, update)
      if (refusal === undefined) return
      logger.warn(`refused an update to ${documentName} from ${from} and closed its connection: ${refusal}`)
      throw expel(connection, `update-refused: ${refusal}`)
    },
    async onRequest({ request, response }) {
      // Content blobs travel over plain HTTP beside the Yjs connection (packages/server/src/blobs.ts).
      // An empty rejection tells Hocuspocus the request was answered.
      if (await handleBlobRequest(request, response, blobs, blobAccess)) return Promise.reject(null)
    },
    async afterLoadDocument({ document }) {
      confirmations.track(document)
      arbiter.track(document)
    },
    async beforeUnloadDocument({ document }) {
      confirmations.forget(document)
      arbiter.forget(document)
    },
    async onStateless({ payload, document, connection }) {
      if (arbiter.handle(document, connection, payload)) return
      const n = parseMark(payload)
      if (n !== undefined) confirmations.mark(document, connection, n)
    },
    async connected({ documentName, instance, request, connectionConfig }) {
      guard.authenticated(request)
      logger.info(`${connectionConfig.readOnly ? 'read-only client' : 'client'} connected to ${documentName} (${instance.getConnectionsCount()} connected)`)
    },
    async onDisconnect({ documentName, clientsCount }) {
      logger.info(`client left ${documentName} (${clientsCount} still connected)`)
    },
  }, { maxPayload: options.maxPayloadBytes ?? SERVER_LIMITS.maxPayloadBytes })

  server.webSocketServer.on('connection', (ws: Socket, request: IncomingMessage) => guard.opened(ws, request))

  // Hocuspocus's own listen() ignores the host; bind the HTTP server ourselves.
  server.httpServer.listen({ host, port })
  try {
    await Promise.race([once(server.httpServer, 'listening'), once(server.httpServer, 'error').then(([err]) => Promise.reject(err))])
  } catch (err) {
    await backend.close()
    await documents.close()
    await shared?.close()
    const code = (err as NodeJS.ErrnoException).code
    throw new Error(code === 'EADDRINUSE' ? `port ${port} on ${host} is in use: choose another --port.` : `cannot listen on ${host}:${port}: ${(err as Error).message}`)
  }
  const address = server.httpServer.address() as AddressInfo
  const url = `ws://${host.includes(':') ? `[${host}]` : host}:${address.port}`
  logger.info(`listening on ${url}, storing documents in ${options.dir}`)

  let closing: Promise<void> | undefined
  return {
    url,
    host,
    port: address.port,
    close: () =>
      (closing ??= (async () => {
        await server.destroy()
        confirmations.clear()
        arbiter.close()
        await backend.close()
        // destroy() only asks clients to leave; end the sockets so that they reconnect elsewhere.
        for (const socket of server.webSocketServer.clients) socket.terminate()
        await documents.close()
        await shared?.close()
        logger.info('stopped; every document was stored')
      })()),
  }
}
