import { isItemId, isReplicaId, isUid, type ItemId, type ReplicaId, type Uid } from '../ids.js'
import { isStage } from '../stage/stages.js'
import { ITEM_TYPES, type Alias, type Item, type ItemType, type Tombstone } from '../types.js'
import { idFromKey, idKey, ID_WIDTH } from './keys.js'
import { asWorkClaim } from '../work/claims.js'

/**
 * The materialized index (`index` sublevel): what lists, `show` and the CLI's reads need,
 * as readers see it, written in the same batch as the update that changed it — so that a
 * read never has to decode the document. Three kinds of rows, told apart by a prefix:
 *
 *   `i/<padded id>`          → the live item shown at that id (the `Item` JSON)
 *   `a/<oldId>/<uid>`        → an alias (an item that moved from that id), by its document key
 *   `t/<padded id>`          → a tombstone
 *
 * The index is complete when `meta/indexed` equals `meta/commit`: every batch written by a
 * docket that keeps the index sets both, so a batch written by one that does not (an older
 * docket, a repair tool) leaves them apart, and readers fall back to the document.
 */
export const INDEX_ITEM = 'i/'
export const INDEX_ALIAS = 'a/'
export const INDEX_TOMBSTONE = 't/'

export function itemIndexKey(id: ItemId): string {
  return `${INDEX_ITEM}${idKey(id)}`
}

/** An alias row is keyed by the document's key of the alias (`<oldId>/<uid>`), so that any write of that key rewrites or removes it. */
export function aliasIndexKey(docKey: string): string {
  return `${INDEX_ALIAS}${docKey}`
}

export function tombstoneIndexKey(id: ItemId): string {
  return `${INDEX_TOMBSTONE}${idKey(id)}`
}

/** The bounds of one kind of row (optionally of one id), for range reads. */
export function indexRange(prefix: string, id?: ItemId): { gte: string; lt: string } {
  const from = id === undefined ? prefix : `${prefix}${idKey(id)}`
  return { gte: from, lt: `${from}\uffff` }
}

/** The id an `i/` or `t/` key names, or undefined for a key docket does not write. */
export function idOfIndexKey(key: string, prefix: string): ItemId | undefined {
  if (!key.startsWith(prefix) || key.length !== prefix.length + ID_WIDTH) return undefined
  return idFromKey(key.slice(prefix.length))
}

export function encodeIndexItem(item: Item): string {
  return JSON.stringify(item)
}

/**
 * An item row read back without trusting it: undefined unless every field has the shape docket
 * writes (then the reader answers from the document instead — a damaged row costs time, never a
 * wrong answer, and never a default in place of a value).
 */
export function decodeIndexItem(key: string, text: string): Item | undefined {
  const id = idOfIndexKey(key, INDEX_ITEM)
  const r = parseObject(text)
  if (id === undefined || !r || r.id !== id || !isUid(r.uid) || typeof r.name !== 'string' || !isStage(r.stage)) return undefined
  if (!ITEM_TYPES.includes(r.type as ItemType) || !Array.isArray(r.dependsOn) || !r.dependsOn.every(isItemId)) return undefined
  if (r.blocked !== null && !isBlocked(r.blocked)) return undefined
  if (typeof r.frozen !== 'boolean' || typeof r.retries !== 'number' || !Number.isSafeInteger(r.retries) || r.retries < 0) return undefined
  if (typeof r.createdAt !== 'string' || typeof r.updatedAt !== 'string' || !isReplicaId(r.createdBy)) return undefined
  if (r.agent !== undefined && typeof r.agent !== 'string') return undefined
  const claim = r.claim === undefined ? undefined : asWorkClaim(r.claim)
  if (r.claim !== undefined && claim === undefined) return undefined
  if (r.priority !== undefined && !(typeof r.priority === 'number' && Number.isInteger(r.priority) && r.priority >= 0 && r.priority <= 4)) return undefined
  if (r.parent !== undefined && !isItemId(r.parent)) return undefined
  const strings = (v: unknown) => Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === 'string' && x.length > 0)
  if (r.labels !== undefined && !strings(r.labels)) return undefined
  if (r.externalIds !== undefined && !strings(r.externalIds)) return undefined
  const item: Item = {
    id,
    uid: r.uid,
    name: r.name,
    type: r.type as ItemType,
    stage: r.stage,
    dependsOn: r.dependsOn as ItemId[],
    blocked: r.blocked === null ? null : { reason: (r.blocked as { reason: string }).reason },
    frozen: r.frozen,
    retries: r.retries,
    createdAt: r.createdAt,
    updatedAt: r.updatedAt,
    createdBy: r.createdBy as ReplicaId,
  }
  if (typeof r.agent === 'string') item.agent = r.agent
  if (r.priority !== undefined) item.priority = r.priority as number
  if (r.labels !== undefined) item.labels = [...(r.labels as string[])]
  if (r.parent !== undefined) item.parent = r.parent as ItemId
  if (r.externalIds !== undefined) item.externalIds = [...(r.externalIds as string[])]
  if (claim) item.claim = claim
  return item
}

export function encodeIndexAlias(alias: Alias): string {
  return JSON.stringify(alias)
}

export function decodeIndexAlias(text: string): Alias | undefined {
  const r = parseObject(text)
  if (!r || !isUid(r.uid) || !isItemId(r.oldId) || !isItemId(r.newId) || typeof r.at !== 'string' || typeof r.by !== 'string' || typeof r.reason !== 'string') return undefined
  return { uid: r.uid, oldId: r.oldId, newId: r.newId, at: r.at, by: r.by as ReplicaId, reason: r.reason as Alias['reason'] }
}

export function encodeIndexTombstone(tombstone: Tombstone): string {
  return JSON.stringify(tombstone)
}

/** A tombstone row read back, or undefined when it is not one docket writes (the reader then answers from the document). */
export function decodeIndexTombstone(text: string): Tombstone | undefined {
  const r = parseObject(text)
  if (!r || (r.uid !== '' && !isUid(r.uid)) || typeof r.at !== 'string' || typeof r.by !== 'string' || (r.reason !== null && typeof r.reason !== 'string')) return undefined
  return { uid: r.uid as Uid, at: r.at, by: r.by as ReplicaId, reason: r.reason as string | null }
}

function parseObject(text: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(text)
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined
  } catch {
    return undefined
  }
}

function isBlocked(value: unknown): value is { reason: string } {
  return typeof value === 'object' && value !== null && typeof (value as { reason?: unknown }).reason === 'string'
}
