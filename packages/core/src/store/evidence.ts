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
