import { isContentRef, type ContentRef } from '../crdt/content.js'
import { slotValueOfRow } from '../store/evidence.js'
import type { ContentValue } from '../types.js'
import { isUid, type ItemId, type Uid } from '../ids.js'
import type { Databases } from './db.js'
import { contentRange, idFromKey, idKey, parseContentKey } from './keys.js'
import { decodeShadow, type ShadowRow } from './shadow.js'

/** What the shadow content store holds for one id, whatever the CRDT says. */
export interface StoredRows {
  id: ItemId
  /** The shadow row: absent, readable (with its uid) or unreadable (with why). */
  shadow: { uid: Uid; text: string } | { error: string; text: string } | undefined
  /** Content slots with the size of their content and their raw row (a blob reference, or bytes an older docket wrote). */
  slots: Array<{ slot: string; bytes: number; value: Uint8Array; content: ContentRef | ContentValue }>
}

export interface MalformedKey {
  sublevel: 'shadow' | 'content'
  key: string
}

// Shadow rows are written with `v`, `id` and `uid` first; reading the uid from the prefix
// avoids parsing every row of a large store. Anything else falls back to a full parse.
const UID_PREFIX = /^\{"v":\d+,"id":"\d+","uid":"([0-9A-HJKMNP-TV-Z]{26})"/

export function shadowUid(text: string): { uid: Uid } | { error: string } {
  const match = UID_PREFIX.exec(text)
  if (match && isUid(match[1])) return { uid: match[1] }
  const parsed = decodeShadow(text)
  return parsed.ok ? { uid: parsed.row.uid } : { error: parsed.error }
}

export function parseShadowRow(text: string): { row: ShadowRow } | { error: string } {
  const parsed = decodeShadow(text)
  return parsed.ok ? { row: parsed.row } : { error: parsed.error }
}

/**
 * Walks the shadow and content sublevels together, id by id, in numeric order. With `ids`,
 * only those ids are read (point reads, not a scan). Keys that docket never writes are
 * passed to `malformed` and skipped.
 */
export async function* scanStoredRows(
  dbs: Databases,
  options: { ids?: readonly ItemId[]; malformed?: (key: MalformedKey) => void } = {},
): AsyncGenerator<StoredRows> {
  if (options.ids) {
    const sorted = [...new Set(options.ids)].sort((a, b) => Number(a) - Number(b))
    for (const id of sorted) {
      const rows = await readStoredRows(dbs, id)
      if (rows.shadow || rows.slots.length > 0) yield rows
    }
    return
  }
  const shadowIt = dbs.shadow.iterator()
  const contentIt = dbs.content.iterator()
  const shadows = new Buffered<string>(shadowIt)
  const contents = new Buffered<Uint8Array>(contentIt)
  try {
    let shadowNext = await nextShadow(shadows, options.malformed)
    let contentNext = await nextContent(contents, options.malformed)
    while (shadowNext || contentNext) {
      const id = pickLower(shadowNext?.padded, contentNext?.padded)
      const rows: StoredRows = { id: idFromKey(id)!, shadow: undefined, slots: [] }
      if (shadowNext && shadowNext.padded === id) {
        rows.shadow = withText(shadowUid(shadowNext.text), shadowNext.text)
        shadowNext = await nextShadow(shadows, options.malformed)
      }
      while (contentNext && contentNext.padded === id) {
        rows.slots.push(slotOf(dbs, contentNext.slot, contentNext.value))
        contentNext = await nextContent(contents, options.malformed)
      }
      yield rows
    }
  } finally {
    await Promise.allSettled([shadowIt.close(), contentIt.close()])
  }
}

export async function readStoredRows(dbs: Databases, id: ItemId): Promise<StoredRows> {
  const text = await dbs.shadow.get(idKey(id))
  const rows: StoredRows = { id, shadow: text === undefined ? undefined : withText(shadowUid(text), text), slots: [] }
  for await (const [key, value] of dbs.content.iterator(contentRange(id))) {
    const parsed = parseContentKey(key)
    if (parsed) rows.slots.push(slotOf(dbs, parsed.slot, value))
  }
  return rows
}

function slotOf(dbs: Databases, slot: string, value: Uint8Array): StoredRows['slots'][number] {
  const content = slotValueOfRow(value, dbs.contentRows)
  const bytes = isContentRef(content) ? content.size : typeof content === 'string' ? Buffer.byteLength(content, 'utf8') : content.byteLength
  return { slot, bytes, value, content }
}

function withText(result: { uid: Uid } | { error: string }, text: string): StoredRows['shadow'] {
  return 'uid' in result ? { uid: result.uid, text } : { error: result.error, text }
}

function pickLower(a: string | undefined, b: string | undefined): string {
  if (a === undefined) return b!
  if (b === undefined) return a
  return a <= b ? a : b
}

interface EntryIterator<V> {
  nextv(size: number): Promise<Array<[string, V]>>
}

/** Reads an iterator in chunks: one native round trip per 1,000 entries, not per entry. */
class Buffered<V> {
  #chunk: Array<[string, V]> = []
  #at = 0
  #done = false
  constructor(readonly it: EntryIterator<V>) {}

  async next(): Promise<[string, V] | undefined> {
    if (this.#at >= this.#chunk.length) {
      if (this.#done) return undefined
      this.#chunk = await this.it.nextv(1000)
      this.#at = 0
      if (this.#chunk.length === 0) {
        this.#done = true
        return undefined
      }
    }
    return this.#chunk[this.#at++]
  }
}

async function nextShadow(it: Buffered<string>, malformed?: (key: MalformedKey) => void): Promise<{ padded: string; text: string } | undefined> {
  for (;;) {
    const entry = await it.next()
    if (entry === undefined) return undefined
    const [key, text] = entry
    if (idFromKey(key) !== undefined) return { padded: key, text }
    malformed?.({ sublevel: 'shadow', key })
  }
}

async function nextContent(it: Buffered<Uint8Array>, malformed?: (key: MalformedKey) => void): Promise<{ padded: string; slot: string; value: Uint8Array } | undefined> {
  for (;;) {
    const entry = await it.next()
    if (entry === undefined) return undefined
    const [key, value] = entry
    const parsed = parseContentKey(key)
    if (parsed) return { padded: idKey(parsed.id), slot: parsed.slot, value }
    malformed?.({ sublevel: 'content', key })
  }
}
