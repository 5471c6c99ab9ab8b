import * as Y from 'yjs'
import { isStageEntry, recordFrom, type ItemRecord } from './layout.js'
import type { StageEntry } from '../stage/log.js'
import type { ContentValue } from '../types.js'

/** An item re-created from what a transaction just removed (see `readReplacedItem`). */
export interface RescuedItem {
  record: ItemRecord
  entries: StageEntry[]
  content: Map<string, ContentValue>
}

interface Internals {
  _map: Map<string, Y.Item>
  _start: Y.Item | null
}

/**
 * Reads a schema 1 item map that the transaction `tr` has just replaced or deleted, before
 * Yjs collects it: what the map held when the transaction began (its entries deleted by this
 * transaction count, entries deleted earlier do not). Schema 1 kept items under their id, so a
 * concurrent schema 1 write of the same id — merged for the first time after both replicas
 * migrated — replaces one item's map whole; this is the moment its data is still in memory.
 */
export function readReplacedItem(map: Y.Map<unknown>, tr: Y.Transaction): RescuedItem | undefined {
  const fields = readMap(map, tr)
  const record = recordFrom((key) => fields.get(key))
  if (!record) return undefined
  const stages = fields.get('stages')
  const entries = stages instanceof Y.Array ? readArray(stages, tr).filter(isStageEntry) : []
  const slots = fields.get('content')
  const content = new Map<string, ContentValue>()
  if (slots instanceof Y.Map) {
    for (const [slot, value] of readMap(slots, tr)) if (typeof value === 'string' || value instanceof Uint8Array) content.set(slot, value)
  }
  return { record, entries: entries.map((e) => ({ ...e })), content }
}

function present(item: Y.Item, tr: Y.Transaction): boolean {
  return !item.deleted || Y.isDeleted(tr.deleteSet, item.id)
}

function readMap(map: Y.Map<unknown>, tr: Y.Transaction): Map<string, unknown> {
  const out = new Map<string, unknown>()
  for (const [key, item] of (map as unknown as Internals)._map) {
    if (!present(item, tr)) continue
    const values = item.content.getContent()
    out.set(key, values[values.length - 1])
  }
  return out
}

function readArray(array: Y.Array<unknown>, tr: Y.Transaction): unknown[] {
  const out: unknown[] = []
  for (let item = (array as unknown as Internals)._start; item !== null; item = item.right) {
    if (present(item, tr)) out.push(...item.content.getContent())
  }
  return out
}

/** The rescued item as a journal row can hold it (binary content as base64). */
export function encodeRescued(item: RescuedItem): Record<string, unknown> {
  return {
    record: item.record,
    entries: item.entries,
    content: [...item.content].map(([slot, value]) => (typeof value === 'string' ? { slot, text: value } : { slot, base64: Buffer.from(value).toString('base64') })),
  }
}

export function decodeRescued(data: Record<string, unknown>): RescuedItem | undefined {
  const record = data.record as ItemRecord | undefined
  if (!record || typeof record !== 'object' || typeof record.uid !== 'string') return undefined
  const entries = Array.isArray(data.entries) ? (data.entries as unknown[]).filter(isStageEntry) : []
  const content = new Map<string, ContentValue>()
  for (const slot of Array.isArray(data.content) ? (data.content as Array<{ slot?: unknown; text?: unknown; base64?: unknown }>) : []) {
    if (typeof slot.slot !== 'string') continue
    if (typeof slot.text === 'string') content.set(slot.slot, slot.text)
    else if (typeof slot.base64 === 'string') content.set(slot.slot, new Uint8Array(Buffer.from(slot.base64, 'base64')))
  }
  return { record, entries, content }
}
