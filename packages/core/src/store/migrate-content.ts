import { blobOf, encodeRef, isContentRef, sha256Of, type ContentRef } from '../crdt/content.js'
import { contentEntries, contentOf, readContentValue, type ItemMap } from '../crdt/layout.js'
import type { Databases } from '../storage/db.js'
import { parseContentKey } from '../storage/keys.js'
import type { DocState } from './state.js'
import { decodeContent } from './evidence.js'
import { itemAt } from './items.js'
import type { MigrationRow } from './migrate.js'

/** What moving content out of the document did. */
export interface ContentMigration {
  /** Content values in the document that became references. */
  values: number
  /** Content rows (the shadow store's) that became references. */
  rows: number
  /** Distinct blobs written. */
  blobs: number
}

/**
 * Schema 2 → 3, in memory (call inside the migration's transaction): every content value the document holds inline becomes a reference
 * to a blob (in the caller's transaction), and every content row of the shadow store becomes a
 * reference row — orphans' rows too, so recovery reads them as it reads any other. The bytes go
 * to the blob store, and into the upload queue: a replica that joins later fetches them from
 * the server, and only a replica that held them can send them there. Replicas that migrate
 * concurrently write the same references (the hash of the same bytes), so their merge is moot.
 */
export function valuesToRefs(state: DocState, blobs: Map<string, Uint8Array>): number {
  let values = 0
  const convert = (map: ItemMap) => {
    const content = contentOf(map)
    if (!content) return
    for (const [slot, value] of contentEntries(map)) {
      if (isContentRef(value)) continue
      const blob = blobOf(value)
      blobs.set(blob.ref.sha256, blob.bytes)
      content.set(slot, { ...blob.ref })
      values++
    }
  }
  for (const map of state.parts.records.values()) convert(map)
  for (const map of state.parts.items.values()) convert(map)
  return values
}

/**
 * The shadow store's part of schema 2 → 3 (see valuesToRefs): rows for the migration batch. Every
 * row of a store older than schema 3 holds the bytes themselves — even one whose text has the
 * shape of a reference (a body that is such JSON) — so every row is converted. The row of a live
 * item's slot whose bytes are the slot's takes the document's reference (which says whether the
 * slot was written as text or as bytes, as the row cannot); any other row (an orphan's, a stale
 * one) is evidence, converted as its bytes read.
 */
export async function rowsToRefs(dbs: Databases, state: DocState, blobs: Map<string, Uint8Array>, values: number): Promise<{ migration: ContentMigration; rows: MigrationRow[] }> {
  const rows: MigrationRow[] = []
  let converted = 0
  for await (const [key, value] of dbs.content.iterator()) {
    const bytes = new Uint8Array(value)
    const sha256 = sha256Of(bytes)
    const ref = liveRef(state, key, sha256) ?? blobOf(decodeContent(bytes)).ref
    blobs.set(sha256, bytes)
    rows.push({ type: 'put', sublevel: 'content', key, value: Buffer.from(encodeRef(ref)) })
    converted++
  }
  for (const [sha256, bytes] of blobs) {
    rows.push({ type: 'put', sublevel: 'blob', key: sha256, value: bytes })
    rows.push({ type: 'put', sublevel: 'upload', key: sha256, value: '' })
  }
  return { migration: { values, rows: converted, blobs: blobs.size }, rows }
}

/** The document's reference for the slot a content row belongs to, if the item is live and the row holds its bytes. */
function liveRef(state: DocState, key: string, sha256: string): ContentRef | undefined {
  const parsed = parseContentKey(key)
  const item = parsed ? itemAt(state, parsed.id) : undefined
  const map = item ? state.maps.get(item.uid) : undefined
  const value = map ? readContentValue(map, parsed!.slot) : undefined
  return isContentRef(value) && value.sha256 === sha256 ? { sha256: value.sha256, size: value.size, text: value.text } : undefined
}
