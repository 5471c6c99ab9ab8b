import { createHash } from 'node:crypto'
import type { ContentValue } from '../types.js'

/**
 * What the index document holds for a content slot (schema 3): a reference to the bytes, which
 * live in the blob store under their SHA-256 (storage: `blob` rows; the sync server's blob
 * directory). The document stays small whatever the bodies and gate logs weigh, and a slot
 * written twice with the same bytes is one blob.
 */
export interface ContentRef {
  /** Lowercase hex SHA-256 of the bytes. */
  sha256: string
  /** Byte length. */
  size: number
  /** Whether the slot was written as text (read back as a string) or as bytes. */
  text: boolean
}

const SHA256 = /^[0-9a-f]{64}$/

export function isContentRef(value: unknown): value is ContentRef {
  if (typeof value !== 'object' || value === null) return false
  const ref = value as ContentRef
  return typeof ref.sha256 === 'string' && SHA256.test(ref.sha256) && Number.isSafeInteger(ref.size) && ref.size >= 0 && typeof ref.text === 'boolean'
}

export function isSha256(value: unknown): value is string {
  return typeof value === 'string' && SHA256.test(value)
}

export function sha256Of(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex')
}

/** A value's bytes as stored (text as UTF-8) and its reference. */
export function blobOf(value: ContentValue): { ref: ContentRef; bytes: Uint8Array } {
  const bytes = typeof value === 'string' ? new Uint8Array(Buffer.from(value, 'utf8')) : value
  return { ref: { sha256: sha256Of(bytes), size: bytes.byteLength, text: typeof value === 'string' }, bytes }
}

/** The value a reference's bytes stand for. */
export function valueOf(ref: ContentRef, bytes: Uint8Array): ContentValue {
  return ref.text ? Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8') : new Uint8Array(bytes)
}

/** Whether `bytes` are the bytes `ref` names (a fetched or stored blob is checked before use). */
export function matches(ref: Pick<ContentRef, 'sha256' | 'size'>, bytes: Uint8Array): boolean {
  return bytes.byteLength === ref.size && sha256Of(bytes) === ref.sha256
}

/** A content row (schema 3) holds the slot's reference as JSON. */
export function encodeRef(ref: ContentRef): string {
  return JSON.stringify({ sha256: ref.sha256, size: ref.size, text: ref.text })
}

export function decodeRef(text: string | Uint8Array): ContentRef | undefined {
  try {
    const value = JSON.parse(typeof text === 'string' ? text : Buffer.from(text).toString('utf8')) as unknown
    return isContentRef(value) ? { sha256: value.sha256, size: value.size, text: value.text } : undefined
  } catch {
    return undefined
  }
}

/** The rows a locally written blob needs: the bytes, and a place in the queue of uploads to the sync server. */
export function blobPuts(blobs: ReadonlyArray<{ ref: ContentRef; bytes: Uint8Array }>): Array<{ sublevel: 'blob' | 'upload'; key: string; value: Uint8Array | string }> {
  return blobs.flatMap((blob) => [
    { sublevel: 'blob' as const, key: blob.ref.sha256, value: blob.bytes },
    { sublevel: 'upload' as const, key: blob.ref.sha256, value: '' },
  ])
}
