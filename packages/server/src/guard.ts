import type { IncomingMessage } from 'node:http'

/** What the guard needs of a ws socket (ws is Hocuspocus's; docket does not depend on it). */
export interface Socket {
  terminate(): void
  close(code?: number, reason?: string): void
  on(event: 'message', listener: (data: Buffer | ArrayBuffer | Buffer[]) => void): unknown
  off(event: 'message', listener: (data: Buffer | ArrayBuffer | Buffer[]) => void): unknown
  once(event: 'close', listener: () => void): unknown
}

export interface GuardLimits {
  authTimeoutMs: number
  maxUnauthenticatedBytes: number
  maxConnectionsPerAddress: number
}

/**
 * What a socket may do before it holds the token, and how many one address may hold.
 * Hocuspocus queues what a connection sends until it authenticates, so a socket that never
 * does gets a deadline and a byte budget; and one address cannot open sockets without bound.
 */
export class ConnectionGuard {
  readonly #limits: GuardLimits
  readonly #warn: (message: string) => void
  /** Connections that have not authenticated yet, and how to stop watching them. */
  readonly #pending = new Map<IncomingMessage, () => void>()
  readonly #perAddress = new Map<string, number>()

  constructor(limits: GuardLimits, warn: (message: string) => void) {
    this.#limits = limits
    this.#warn = warn
  }

  /** A socket opened: count it against its address, and watch it until it authenticates. */
  opened(ws: Socket, request: IncomingMessage): void {
    const from = request.socket.remoteAddress ?? 'unknown'
    const count = (this.#perAddress.get(from) ?? 0) + 1
    this.#perAddress.set(from, count)
    ws.once('close', () => {
      const left = (this.#perAddress.get(from) ?? 1) - 1
      if (left <= 0) this.#perAddress.delete(from)
      else this.#perAddress.set(from, left)
    })
    if (count > this.#limits.maxConnectionsPerAddress) {
      this.#warn(`refused a connection from ${from}: it already holds ${count - 1} (the limit per address is ${this.#limits.maxConnectionsPerAddress}, --max-connections-per-address)`)
      // 1013 "try again later": a legitimate client backs off and retries.
      ws.close(1013, 'too many connections from this address')
      // A peer that never answers the close handshake must not keep the socket for ws's 30 s.
      setTimeout(() => ws.terminate(), 1000).unref()
      return
    }
    let received = 0
    const timer = setTimeout(() => {
      this.#warn(`closed a connection from ${from} that did not authenticate within ${this.#limits.authTimeoutMs} ms`)
      ws.terminate()
    }, this.#limits.authTimeoutMs)
    const onMessage = (data: Buffer | ArrayBuffer | Buffer[]) => {
      received += Array.isArray(data) ? data.reduce((n, b) => n + b.byteLength, 0) : data.byteLength
      if (received <= this.#limits.maxUnauthenticatedBytes) return
      this.#warn(`closed a connection from ${from} that sent ${received} bytes before authenticating (the limit is ${this.#limits.maxUnauthenticatedBytes})`)
      ws.terminate()
    }
    const settled = () => {
      clearTimeout(timer)
      ws.off('message', onMessage)
      this.#pending.delete(request)
    }
    this.#pending.set(request, settled)
    ws.on('message', onMessage)
    ws.once('close', settled)
  }

  /** The connection of `request` authenticated: no deadline or budget any more. */
  authenticated(request: IncomingMessage): void {
    this.#pending.get(request)?.()
  }
}
