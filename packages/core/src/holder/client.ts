import { lstat } from 'node:fs/promises'
import { connect, type Socket } from 'node:net'
import { DocketError } from '../errors.js'
import { HANDLE_MARK, type StoreHandle } from './handle.js'
import { checkEndpoint, holderEndpoint } from './endpoint.js'
import { CARRY_BYTES, decodeMessage, encodeMessage, errorFrom, lineSplitter, PROTOCOL_VERSION, type HolderHello, type HolderRequest, type HolderResponse } from './protocol.js'

export interface ConnectHolderOptions {
  /** How long one call may take before the client gives up (HOLDER_UNAVAILABLE). Default 60 s. */
  timeoutMs?: number
  /** How long connecting and the handshake may take. Default 2 s. */
  connectTimeoutMs?: number
}

/**
 * Connects to the process that holds the store at `dir`, or resolves undefined when none does.
 * A socket left behind by a holder that died (kill -9) is removed on the way.
 */
export async function connectHolder(dir: string, options: ConnectHolderOptions = {}): Promise<StoreHandle | undefined> {
  const endpoint = holderEndpoint(dir)
  const { path } = endpoint
  if (process.platform !== 'win32') {
    const found = await lstat(path).catch(() => undefined)
    if (!found?.isSocket()) return undefined
    await checkEndpoint(endpoint, dir)
  }
  let socket: Socket
  try {
    socket = await open(path, options.connectTimeoutMs ?? 2000)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    // Nobody listens: its holder is gone. The socket is left for whoever takes the store's lock
    // next to remove (a client cannot tell a dead holder's socket from one a new holder is binding).
    if (code === 'ECONNREFUSED' || code === 'ENOENT') return undefined
    if (code === 'EACCES' || code === 'EPERM') {
      throw new DocketError('STORE_LOCKED', `The store at ${dir} is held by a process of another user, whose socket you may not open: run docket as that user, or wait for that process to close the store.`, { details: { dir, socket: path } })
    }
    if (code === 'ETIMEDOUT') {
      throw new DocketError('HOLDER_UNAVAILABLE', `The process holding the store at ${dir} does not answer on ${path}: it may be stuck. Try again, or stop that process.`, { details: { dir, socket: path } })
    }
    throw err
  }
  const connection = new Connection(socket, dir, options.timeoutMs ?? 60_000)
  let hello: HolderHello
  try {
    hello = (await connection.call('holder', 'hello', [], options.connectTimeoutMs ?? 2000)) as HolderHello
  } catch (err) {
    connection.close()
    throw err
  }
  if (hello.protocol !== PROTOCOL_VERSION) {
    connection.close()
    throw new DocketError('HOLDER_FAILED', `The process holding the store at ${dir} speaks holder protocol ${hello.protocol}, this docket ${PROTOCOL_VERSION}: use the same docket version for both.`, { details: { dir } })
  }
  return heldStore(connection, hello)
}

function open(path: string, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(path)
    const timer = setTimeout(() => {
      socket.destroy()
      reject(Object.assign(new Error('connect timed out'), { code: 'ETIMEDOUT' }))
    }, timeoutMs)
    socket.once('connect', () => {
      clearTimeout(timer)
      socket.off('error', reject)
      resolve(socket)
    })
    socket.once('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
  })
}

class Connection {
  #next = 1
  readonly #pending = new Map<number, { method: string; parts: unknown[]; resolve: (v: unknown) => void; reject: (e: unknown) => void; timer: NodeJS.Timeout }>()
  #lost: DocketError | undefined

  constructor(
    readonly socket: Socket,
    readonly dir: string,
    readonly timeoutMs: number,
  ) {
    socket.setEncoding('utf8')
    const split = lineSplitter((line) => this.#receive(line))
    socket.on('data', (chunk: string) => {
      if (!split(chunk)) {
        this.#fail('it sent a line longer than any answer')
        socket.destroy()
      }
    })
    socket.on('error', () => {})
    socket.on('close', () => this.#fail('it went away'))
  }

  call(target: HolderRequest['target'], method: string, args: unknown[], timeoutMs = this.timeoutMs): Promise<unknown> {
    if (this.#lost) return Promise.reject(this.#lost)
    const id = this.#next++
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id)
        reject(
          new DocketError('HOLDER_UNAVAILABLE', `The process holding the store at ${this.dir} did not answer ${method} within ${timeoutMs} ms: it may be busy or stuck. The call may still take effect; check before retrying.`, {
            details: { dir: this.dir, method },
          }),
        )
      }, timeoutMs)
      this.#pending.set(id, { method, parts: [], resolve, reject, timer })
      // Functions cannot cross; trailing undefined arguments are left out (the holder's defaults apply).
      const sent = args.map((a) => (typeof a === 'function' ? undefined : a))
      while (sent.length > 0 && sent[sent.length - 1] === undefined) sent.pop()
      this.socket.write(encodeMessage({ id, target, method, args: sent }))
    })
  }

  close(): void {
    this.socket.end()
    this.socket.destroy()
    this.#fail('the client closed the connection')
  }

  #receive(line: string): void {
    let message: HolderResponse
    try {
      message = decodeMessage(line, false) as HolderResponse
      const pending = this.#pending.get(message.id)
      // Bytes are revived only in the answers of methods that carry them (protocol.ts).
      if (pending && CARRY_BYTES.has(pending.method)) message = decodeMessage(line) as HolderResponse
    } catch {
      return this.#fail('it sent something that is not an answer')
    }
    const pending = this.#pending.get(message.id)
    if (!pending) return
    if ('more' in message) {
      if (Array.isArray(message.more)) pending.parts.push(...message.more)
      return
    }
    this.#pending.delete(message.id)
    clearTimeout(pending.timer)
    if (message.ok) pending.resolve(pending.parts.length > 0 && Array.isArray(message.value) ? [...pending.parts, ...message.value] : message.value)
    else pending.reject(errorFrom(message.error))
  }

  #fail(why: string): void {
    this.#lost ??= new DocketError(
      'HOLDER_UNAVAILABLE',
      `The connection to the process holding the store at ${this.dir} was lost (${why}). A call under way may or may not have taken effect: check (docket list, docket log) before retrying.`,
      { details: { dir: this.dir } },
    )
    for (const [, pending] of this.#pending) {
      clearTimeout(pending.timer)
      pending.reject(this.#lost)
    }
    this.#pending.clear()
  }
}

/** Async generators that cross the socket whole (as arrays). */
const STREAMS = new Set(['audit'])

function heldStore(connection: Connection, hello: HolderHello): StoreHandle {
  const known: Record<string | symbol, unknown> = {
    [HANDLE_MARK]: true,
    dir: hello.dir,
    replicaId: hello.replicaId,
    readOnly: hello.readOnly,
    holderPid: hello.pid,
    close: async () => connection.close(),
    schemaInfo: () => connection.call('store', 'schema', []),
    maintenance: new Proxy({} as Record<string, unknown>, {
      get: (_t, method) => {
        if (typeof method !== 'string' || method === 'then') return undefined
        if (method === 'scanStoredRows') {
          return (options: { ids?: unknown; onMalformedKey?: (key: unknown) => void } = {}) =>
            (async function* () {
              const { onMalformedKey, ...rest } = options
              const answer = (await connection.call('maintenance', method, [rest])) as { rows: unknown[]; malformed: unknown[] }
              for (const key of answer.malformed) onMalformedKey?.(key)
              yield* answer.rows
            })()
        }
        return (...args: unknown[]) => connection.call('maintenance', method, args)
      },
    }),
  }
  return new Proxy(known, {
    get: (target, method) => {
      if (method in target) return target[method]
      if (typeof method !== 'string') return undefined
      if (method === 'then') return undefined // not a promise itself
      if (STREAMS.has(method)) {
        return (...args: unknown[]) =>
          (async function* () {
            yield* (await connection.call('store', method, args)) as unknown[]
          })()
      }
      return (...args: unknown[]) => connection.call('store', method, args, callTimeout(connection, method, args))
    },
  }) as unknown as StoreHandle
}

/** Calls that wait by design (for the sync server) get their own wait and a margin. */
function callTimeout(connection: Connection, method: string, args: unknown[]): number {
  const first = args[0]
  const wait = method === 'whenSynced' && typeof first === 'number' ? first : method === 'assertSynced' && typeof first === 'object' && first !== null ? (first as { timeoutMs?: unknown }).timeoutMs : undefined
  return typeof wait === 'number' && Number.isFinite(wait) ? Math.max(connection.timeoutMs, wait + 5000) : connection.timeoutMs
}
