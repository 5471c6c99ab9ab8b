import { DocketError, ERROR_CODES, isDocketError, type ErrorCode } from '../errors.js'

/**
 * The holder's wire format: one JSON message per line. A request names a method of the store
 * (or of `store.maintenance`) and its arguments; the answer carries the value or the error.
 * Bytes travel as base64 (`{ $bytes }`) and `undefined` inside arrays as `{ $undefined: 1 }`,
 * so that arguments and results come back as they were.
 */
export interface HolderRequest {
  id: number
  target: 'store' | 'maintenance' | 'holder'
  method: string
  args: unknown[]
}

export type HolderResponse =
  | { id: number; ok: true; value: unknown }
  /** Part of a long list (items, audit events): the final answer carries the rest. */
  | { id: number; more: unknown[] }
  | { id: number; ok: false; error: { code?: string; message: string; details?: unknown } }

/** What a client learns when it connects. */
export interface HolderHello {
  protocol: number
  pid: number
  dir: string
  replicaId: string
  readOnly: boolean
}

export const PROTOCOL_VERSION = 1

/** A line longer than this is refused (a 16 MiB slot, base64 and JSON-escaped, fits). */
export const MAX_LINE_BYTES = 64 * 1024 * 1024

/** Long lists travel in parts of this many elements, so that no answer needs a line of its own size. */
export const LIST_PART = 2000

/**
 * Methods whose arguments or answers may hold bytes: only their messages are read with the
 * reviver that turns `{ $bytes }` back into bytes — so that data which merely looks like a marker
 * (an import's file named `$bytes`, say) anywhere else comes back as it was.
 */
export const CARRY_BYTES: ReadonlySet<string> = new Set(['readContentBytes', 'readStoredContent', 'scanStoredRows', 'readContent', 'createItem', 'writeContent', 'updateItem'])

/**
 * `plain` says the message holds no bytes and no `undefined` in an array (most answers: items,
 * lists, reports): it is then encoded without a replacer, which costs a call per value.
 */
export function encodeMessage(message: HolderRequest | HolderResponse, plain = false): string {
  if (plain) return `${JSON.stringify(message)}\n`
  return `${JSON.stringify(message, function (this: unknown, key: string, value: unknown) {
    const original = (this as Record<string, unknown>)[key]
    if (original instanceof Uint8Array) return { $bytes: Buffer.from(original.buffer, original.byteOffset, original.byteLength).toString('base64') }
    if (value === undefined && Array.isArray(this)) return { $undefined: 1 }
    return value
  })}\n`
}

/** `bytes`: whether `{ $bytes }` becomes bytes (only in the messages of CARRY_BYTES methods); `{ $undefined: 1 }` always becomes undefined. */
export function decodeMessage(line: string, bytes = true): unknown {
  // A reviver costs a call per value: only lines that carry bytes or undefined need one.
  const hasBytes = bytes && line.includes('"$bytes"')
  if (!hasBytes && !line.includes('"$undefined"')) return JSON.parse(line)
  return JSON.parse(line, (_key, value: unknown) => {
    if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
      const v = value as Record<string, unknown>
      if (hasBytes && typeof v.$bytes === 'string' && Object.keys(v).length === 1) return new Uint8Array(Buffer.from(v.$bytes, 'base64'))
      if (v.$undefined === 1 && Object.keys(v).length === 1) return undefined
    }
    return value
  })
}

export function errorOf(err: unknown): { code?: string; message: string; details?: unknown } {
  if (isDocketError(err)) return { code: err.code, message: err.message, ...(err.details !== undefined ? { details: err.details } : {}) }
  return { message: err instanceof Error ? err.message : String(err) }
}

/** The holder's error, thrown in the client as the DocketError it was (an unknown failure as HOLDER_FAILED). */
export function errorFrom(error: { code?: string; message: string; details?: unknown }): Error {
  if (error.code !== undefined && (ERROR_CODES as readonly string[]).includes(error.code)) {
    const details = typeof error.details === 'object' && error.details !== null ? (error.details as Record<string, unknown>) : undefined
    return new DocketError(error.code as ErrorCode, error.message, details ? { details } : {})
  }
  return new DocketError('HOLDER_FAILED', `The process holding the store failed on this call: ${error.message}. Check its log; the call may or may not have taken effect.`)
}

/**
 * Splits a stream of text into lines, looking for the end of a line only in what just arrived
 * (a large answer comes in many chunks: searching the whole buffer each time is quadratic).
 * Returns false once the line under way passes `MAX_LINE_BYTES`: the caller drops the peer.
 */
export function lineSplitter(onLine: (line: string) => void): (chunk: string) => boolean {
  let parts: string[] = []
  let length = 0
  return (chunk) => {
    let start = 0
    for (let at = chunk.indexOf('\n'); at >= 0; at = chunk.indexOf('\n', start)) {
      parts.push(chunk.slice(start, at))
      const line = parts.join('')
      parts = []
      length = 0
      start = at + 1
      if (line.length > 0) onLine(line)
    }
    if (start < chunk.length) {
      parts.push(chunk.slice(start))
      length += chunk.length - start
    }
    return length <= MAX_LINE_BYTES
  }
}
