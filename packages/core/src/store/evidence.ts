import { decodeRef, type ContentRef } from '../crdt/content.js'
import type { ContentValue } from '../types.js'

const utf8 = new TextDecoder('utf-8', { fatal: true })

/** Content rows are bytes; text that was written as text reads back as text. */
export function decodeContent(bytes: Uint8Array): ContentValue {
  try {
    return utf8.decode(bytes)
  } catch {
    return new Uint8Array(bytes)
  }
}

/**
 * What a content row stands for: the reference it holds (schema 3), or — in a store read as
 * schema 2 (`Databases.contentRows`), or a row that holds no reference — the value itself.
 */
export function slotValueOfRow(row: Uint8Array, rows: 'refs' | 'bytes'): ContentRef | ContentValue {
  return (rows === 'refs' ? decodeRef(row) : undefined) ?? decodeContent(row)
}
