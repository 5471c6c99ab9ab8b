import { createHash, timingSafeEqual } from 'node:crypto'
import { once } from 'node:events'
import type { IncomingMessage } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Database } from '@hocuspocus/extension-database'
import { Server, type Extension } from '@hocuspocus/server'
import * as decoding from 'lib0/decoding'
import type * as Y from 'yjs'
import { DEFAULT_PORT } from './defaults.js'
import { DocumentStore } from './persistence.js'

export interface ServerLogger {
  info(message: string): void
  warn(message: string): void
}

export interface ServeOptions {
  /** Where the server keeps its documents (a y-leveldb directory of its own). */
  dir: string
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
   * Checks every document update a client sends, before the server applies, stores or forwards
   * it: a reason refuses it and closes the connection that sent it. `docket serve` passes core's
   * grow-only check (nothing may be removed from a tombstone, a claim, a stage log…). Default: none.
   */
  admit?: (document: Y.Doc, update: Uint8Array) => string | undefined
}

/** What the server needs of a ws socket (ws is Hocuspocus's; docket does not depend on it). */
interface Socket {
  terminate(): void
  on(event: 'message', listener: (data: Buffer | ArrayBuffer | Buffer[]) => void): unknown
  off(event: 'message', listener: (data: Buffer | ArrayBuffer | Buffer[]) => void): unknown
  once(event: 'close', listener: () => void): unknown
}

/** The limits' defaults (README, `docket serve --help`). */
export const SERVER_LIMITS = { maxPayloadBytes: 100 * 1024 * 1024, authTimeoutMs: 10_000, maxUnauthenticatedBytes: 1024 * 1024 } as const

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

// Hocuspocus's MessageType.Sync / SyncReply, and y-protocols' sync message types.
const MESSAGE_SYNC = 0
const MESSAGE_SYNC_REPLY = 4
const SYNC_STEP_2 = 1
const SYNC_UPDATE = 2

/** The document schema this server serves (docs/FORMAT.md); replicas say theirs when they connect. */
export const DOCUMENT_SCHEMA = 2

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
  if (typeof options.token !== 'string' || options.token.length === 0) {
    throw new Error('docket serve needs a token (--token or DOCKET_TOKEN): clients must present it to read or write.')
  }
  const host = options.host ?? '127.0.0.1'
  const port = options.port ?? DEFAULT_PORT
  const logger = options.logger ?? stderr
  const expected = digest(options.token)
  const documents = await DocumentStore.open(options.dir)

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
      store: async ({ documentName, state }) => {
        await documents.store(documentName, state)
      },
    }),
  ]
  if (options.redis) {
    // Loaded only when asked for: it brings ioredis and redlock along.
    const { Redis } = await import('@hocuspocus/extension-redis')
    extensions.push(new Redis({ host: options.redis.host, port: options.redis.port, ...(options.redis.prefix ? { prefix: options.redis.prefix } : {}) }))
  }

  const limits = {
    maxPayloadBytes: options.maxPayloadBytes ?? SERVER_LIMITS.maxPayloadBytes,
    authTimeoutMs: options.authTimeoutMs ?? SERVER_LIMITS.authTimeoutMs,
    maxUnauthenticatedBytes: options.maxUnauthenticatedBytes ?? SERVER_LIMITS.maxUnauthenticatedBytes,
  }
  // Connections that have not authenticated yet: Hocuspocus queues what they send until they
  // do, so they get a deadline and a budget (a socket that never authenticates cannot pile up memory).
  const unauthenticated = new Map<IncomingMessage, () => void>()
  const server = new Server({
    quiet: true,
    stopOnSignals: false,
    debounce: options.debounceMs ?? 200,
    maxDebounce: options.maxDebounceMs ?? 1000,
    extensions,
    async onAuthenticate({ token, documentName, requestHeaders }) {
      const from = requestHeaders['x-forwarded-for'] ?? 'a socket'
      const credentials = parseCredentials(typeof token === 'string' ? token : '')
      if (!timingSafeEqual(digest(credentials.token), expected)) {
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
    },
    async beforeHandleMessage({ update: message, document, documentName, requestHeaders }) {
      if (!options.admit) return
      const update = documentUpdateOf(message)
      const refusal = update === undefined ? undefined : options.admit(document, update)
      if (refusal === undefined) return
      logger.warn(`refused an update to ${documentName} from ${requestHeaders['x-forwarded-for'] ?? 'a client'} and closed its connection: ${refusal}`)
      throw Object.assign(new Error('update refused'), { code: 4403, reason: `update-refused: ${refusal}`.slice(0, 120) })
    },
    async connected({ documentName, instance, request }) {
      unauthenticated.get(request)?.()
      logger.info(`client connected to ${documentName} (${instance.getConnectionsCount()} connected)`)
    },
    async onDisconnect({ documentName, clientsCount }) {
      logger.info(`client left ${documentName} (${clientsCount} still connected)`)
    },
  }, { maxPayload: limits.maxPayloadBytes })

  server.webSocketServer.on('connection', (ws: Socket, request: IncomingMessage) => {
    const from = request.socket.remoteAddress ?? 'a socket'
    let received = 0
    const timer = setTimeout(() => {
      logger.warn(`closed a connection from ${from} that did not authenticate within ${limits.authTimeoutMs} ms`)
      ws.terminate()
    }, limits.authTimeoutMs)
    const onMessage = (data: Buffer | ArrayBuffer | Buffer[]) => {
      received += Array.isArray(data) ? data.reduce((n, b) => n + b.byteLength, 0) : data.byteLength
      if (received <= limits.maxUnauthenticatedBytes) return
      logger.warn(`closed a connection from ${from} that sent ${received} bytes before authenticating (the limit is ${limits.maxUnauthenticatedBytes})`)
      ws.terminate()
    }
    const settled = () => {
      clearTimeout(timer)
      ws.off('message', onMessage)
      unauthenticated.delete(request)
    }
    unauthenticated.set(request, settled)
    ws.on('message', onMessage)
    ws.once('close', settled)
  })

  // Hocuspocus's own listen() ignores the host; bind the HTTP server ourselves.
  server.httpServer.listen({ host, port })
  try {
    await Promise.race([once(server.httpServer, 'listening'), once(server.httpServer, 'error').then(([err]) => Promise.reject(err))])
  } catch (err) {
    await documents.close()
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
        // destroy() only asks clients to leave; end the sockets so that they reconnect elsewhere.
        for (const socket of server.webSocketServer.clients) socket.terminate()
        await documents.close()
        logger.info('stopped; every document was stored')
      })()),
  }
}
