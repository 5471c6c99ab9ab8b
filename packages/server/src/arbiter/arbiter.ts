import type { Connection, Document } from '@hocuspocus/server'
import type { ArbiterBackend } from './backend.js'
import { believedAbove } from './decide.js'
import { DocumentFloor } from './floor.js'
import { errorReply, okReply, parseRequest, toWire, type ArbiterRequest } from './protocol.js'

export interface ArbiterOptions {
  backend: ArbiterBackend
  /** The server's clock (ms), when tests drive it; else the backend's own (Redis's with --redis). */
  now: (() => number) | undefined
  warn: (message: string) => void
}

/**
 * The sync server as arbiter of what a CRDT cannot decide: which replica gets which ids
 * (leases), and which agent works on an item (claims). Replicas ask on the stateless channel;
 * the backend decides atomically and durably before the answer goes out.
 */
export class Arbiter {
  readonly #options: ArbiterOptions
  readonly #floors = new Map<Document, DocumentFloor>()

  constructor(options: ArbiterOptions) {
    this.#options = options
  }

  track(document: Document): void {
    if (!this.#floors.has(document)) this.#floors.set(document, new DocumentFloor(document))
  }

  forget(document: Document): void {
    this.#floors.get(document)?.close()
    this.#floors.delete(document)
  }

  /** Answers an arbiter request; false when the payload is not one. */
  handle(document: Document, connection: Connection, payload: string): boolean {
    const request = parseRequest(payload)
    if (request === undefined) return false
    if ('malformed' in request) {
      connection.sendStateless(errorReply(request.req, 'INVALID_INPUT', `the arbiter refused a request: ${request.malformed}.`))
      return true
    }
    if (connection.readOnly) {
      connection.sendStateless(errorReply(request.req, 'READ_ONLY', 'this connection holds the read-only token: leases and claims need the read-write token.'))
      return true
    }
    this.#decide(document, request).then(
      (result) => connection.sendStateless(okReply(request.req, result)),
      (err: unknown) => {
        const code = (err as { code?: unknown }).code
        this.#options.warn(`the arbiter could not answer a ${request.op} for ${document.name}: ${(err as Error).message}`)
        connection.sendStateless(errorReply(request.req, typeof code === 'string' && /^[A-Z_]+$/.test(code) ? code : 'ARBITER_FAILED', `the server could not decide: ${(err as Error).message}`))
      },
    )
    return true
  }

  async #decide(document: Document, request: ArbiterRequest): Promise<unknown> {
    const { backend } = this.#options
    const now = () => this.#options.now?.()
    const doc = document.name
    switch (request.op) {
      case 'lease': {
        const known = this.#floors.get(document)?.highest ?? 0
        return backend.lease(doc, Math.max(known, believedAbove(request.above, known)), request.size)
      }
      case 'claim': {
        const d = await backend.claim(doc, request.uid, request, now())
        if (!d.granted) return { granted: false, holder: toWire(d.holder) }
        return d.previous ? { granted: true, claim: toWire(d.record), previous: toWire(d.previous) } : { granted: true, claim: toWire(d.record) }
      }
      case 'renew': {
        const d = await backend.renew(doc, request.uid, request, now())
        return d.renewed ? { granted: true, claim: toWire(d.record) } : { granted: false, holder: d.holder ? toWire(d.holder) : null }
      }
      case 'release': {
        const d = await backend.release(doc, request.uid, request, now())
        return d.released ? { released: true, claim: toWire(d.record) } : { released: false, holder: d.holder ? toWire(d.holder) : null }
      }
      case 'next': {
        const d = await backend.next(doc, request.uids, request, now())
        if (!d.granted) return { granted: false, taken: d.taken.map(({ uid, holder }) => ({ uid, holder: toWire(holder) })) }
        const out: Record<string, unknown> = { granted: true, uid: d.uid, claim: toWire(d.record) }
        if (d.previous) out.previous = toWire(d.previous)
        return out
      }
    }
  }

  close(): void {
    for (const floor of this.#floors.values()) floor.close()
    this.#floors.clear()
  }
}
