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
 * What a content row stands for: the reference it holds (schema 3), or — in a row written by an
 * older docket and not migrated (evidence of an orphan, say) — the value itself.
 */
export function slotValueOfRow(row: Uint8Array): ContentRef | ContentValue {
  return decodeRef(row) ?? decodeContent(row)
}
