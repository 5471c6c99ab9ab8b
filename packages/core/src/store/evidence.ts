import { contentOf, readRecord, readStageEntries, type ItemRecord } from '../crdt/layout.js'
import type { ItemId, Uid } from '../ids.js'
import type { Databases } from '../storage/db.js'
import { readStoredRows } from '../storage/scan.js'
import { decodeShadow, type ShadowRow } from '../storage/shadow.js'
import type { StageEntry } from '../stage/log.js'
import type { ContentValue } from '../types.js'
import type { DocState } from './state.js'

/** What is known of an item that lost its place: enough to re-create it elsewhere. */
export interface Evidence {
  record: ItemRecord
  entries: StageEntry[]
  content: Map<string, ContentValue>
  /** The shadow row, when the evidence came from the shadow store. */
  row?: ShadowRow
}

const utf8 = new TextDecoder('utf-8', { fatal: true })

/** Content rows are bytes; text that was written as text reads back as text. */
export function decodeContent(bytes: Uint8Array): ContentValue {
  try {
    return utf8.decode(bytes)
  } catch {
    return new Uint8Array(bytes)
  }
}

/** Reads the rows of `id` and checks that they hold item `uid`; a string says why not. */
export async function evidenceFromShadow(dbs: Databases, id: ItemId, uid: Uid | undefined): Promise<Evidence | string> {
  const rows = await readStoredRows(dbs, id)
  if (rows.shadow === undefined) return `no shadow row for id ${id}`
  const parsed = decodeShadow(rows.shadow.text)
  if (!parsed.ok) return `the shadow row of id ${id} is unreadable (${parsed.error})`
  const row = parsed.row
  if (uid !== undefined && row.uid !== uid) return `the shadow row of id ${id} holds item ${row.uid}, not ${uid}`
  const content = new Map<string, ContentValue>()
  for (const { slot, value } of rows.slots) content.set(slot, decodeContent(value))
  const record: ItemRecord = {
    uid: row.uid,
    name: row.name,
    type: row.type,
    dependsOn: row.dependsOn,
    blocked: row.blocked,
    frozen: row.frozen,
    agent: row.agent,
    retries: row.retries,
    createdAt: row.createdAt,
    updatedAt: row.updatedAt,
    createdBy: row.createdBy,
  }
  return { record, entries: row.stages, content, row }
}

export function evidenceFromDocument(state: DocState, id: ItemId, uid: Uid): Evidence | string {
  const map = state.parts.items.get(id)
  const record = map ? readRecord(map) : undefined
  if (!map || !record) return `no readable item at id ${id} in the document`
  if (record.uid !== uid) return `the document holds item ${record.uid} at id ${id}, not ${uid}`
  const content = new Map<string, ContentValue>()
  for (const [slot, value] of contentOf(map) ?? []) {
    if (typeof value === 'string' || value instanceof Uint8Array) content.set(slot, value)
  }
  return { record, entries: readStageEntries(map), content }
}
