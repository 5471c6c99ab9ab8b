import * as Y from 'yjs'
import { isItemId, isReplicaId, isUid, type ItemId, type ReplicaId, type Uid } from '../ids.js'
import { isStageEntry, type StageEntry } from '../stage/log.js'
import { isSlotName } from '../storage/keys.js'
import type { ClaimValue } from './claims.js'
import { claimOfEntry, currentEntry, readRelease, readWorkEntry, type WorkEntry } from '../work/claims.js'
import { isContentRef, type ContentRef } from './content.js'
import { ITEM_TYPES, type Alias, type Blocked, type ContentValue, type ItemType, type Tombstone, type WorkClaim } from '../types.js'

/**
 * The shape of docket's Y.Doc (docs/FORMAT.md describes it for other tools).
 * One nested Y.Map per item so that concurrent edits of different fields merge field by field.
 */
export const ROOTS = {
  /** Schema 1's home of items, keyed by the id they were created under; no new keys in schema 2. */
  items: 'items',
  /** Schema 2's home of items, keyed by uid: one item's data is never overwritten by another's. */
  records: 'records',
  /** Grow-only id claims `<id>/<uid>` → ClaimValue: which item shows which id (crdt/claims.ts). */
  claims: 'claims',
  tombstones: 'tombstones',
  deleted: 'deleted',
  aliases: 'aliases',
  alloc: 'alloc',
  meta: 'meta',
} as const

/** Keys of an item's nested map. */
export const F = {
  uid: 'uid',
  name: 'name',
  type: 'type',
  dependsOn: 'dependsOn',
  blocked: 'blocked',
  frozen: 'frozen',
  agent: 'agent',
  retries: 'retries',
  createdAt: 'createdAt',
  updatedAt: 'updatedAt',
  createdBy: 'createdBy',
  stages: 'stages',
  content: 'content',
} as const

/** Fields that items gained with issue 14; an item written before them has none (priority reads as 2). */
export const EXTRA = {
  priority: 'priority',
  parent: 'parent',
  externalIds: 'externalIds',
} as const

/**
 * An item's labels are keys of its map, `label/<name>/<tag>` (value `true`, the tag a ULID): a
 * set whose concurrent edits merge as an add-wins set. Adding a label the replica does not see
 * writes a fresh tag; removing one deletes the tags the replica sees. An add concurrent with a
 * remove writes a tag the remove never saw, so it stays; two replicas adding different labels
 * keep both. The label is there while any of its tags is.
 */
export const LABEL_FIELD = 'label/'
const TAG = /^[0-9A-HJKMNP-TV-Z]{26}$/

/** The label a key names, or undefined for a key that is no label tag. */
function labelOfKey(key: string): string | undefined {
  if (!key.startsWith(LABEL_FIELD) || key.length < LABEL_FIELD.length + 28 || key[key.length - 27] !== '/') return undefined
  if (!TAG.test(key.slice(-26))) return undefined
  return key.slice(LABEL_FIELD.length, -27)
}

export interface ItemExtras {
  priority?: number
  parent?: ItemId
  externalIds?: string[]
  labels?: string[]
}

/** The extra fields as stored, read defensively; absent ones stay absent. */
export function readExtras(map: ItemMap): ItemExtras {
  const out: ItemExtras = {}
  const priority = map.get(EXTRA.priority)
  if (typeof priority === 'number' && Number.isInteger(priority) && priority >= 0 && priority <= 4) out.priority = priority
  const parent = map.get(EXTRA.parent)
  if (isItemId(parent)) out.parent = parent
  const external = map.get(EXTRA.externalIds)
  if (Array.isArray(external)) {
    const ids = [...new Set(external.filter((x): x is string => typeof x === 'string' && x.length > 0 && x.length <= 200))].sort()
    if (ids.length > 0) out.externalIds = ids
  }
  const labels = new Set<string>()
  for (const [key, value] of map.entries()) {
    const label = value === true ? labelOfKey(key) : undefined
    if (label) labels.add(label)
  }
  if (labels.size > 0) out.labels = [...labels].sort()
  return out
}

/**
 * Writes extra fields into an item's map (inside a transaction). Labels change tag by tag:
 * `tag()` gives a fresh one (a ULID) for each label added.
 */
export function writeExtras(
  map: ItemMap,
  extras: { priority?: number; parent?: ItemId | null; externalIds?: readonly string[]; addLabels?: readonly string[]; removeLabels?: readonly string[] },
  tag: () => string,
): void {
  if (extras.priority !== undefined) map.set(EXTRA.priority, extras.priority)
  if (extras.parent === null) map.delete(EXTRA.parent)
  else if (extras.parent !== undefined) map.set(EXTRA.parent, extras.parent)
  if (extras.externalIds !== undefined) map.set(EXTRA.externalIds, [...extras.externalIds])
  const remove = new Set(extras.removeLabels ?? [])
  if (remove.size > 0) {
    for (const key of [...map.keys()]) {
      const label = labelOfKey(key)
      if (label !== undefined && remove.has(label)) map.delete(key)
    }
  }
  for (const label of extras.addLabels ?? []) map.set(`${LABEL_FIELD}${label}/${tag()}`, true)
}

/**
 * Claims on the item (work/claims.ts) are keys of its map, `claim/<entry>`: keys, not a nested
 * map, because two replicas that created a nested map at once would lose one of them.
 */
export const CLAIM_FIELD = 'claim/'

export type ItemMap = Y.Map<unknown>

/** A deleted item, by uid: its deletion follows it to whatever id it moved to. */
export interface DeletedUid {
  id: string
  at: string
  by: string
}

export interface DocParts {
  doc: Y.Doc
  /** Schema 1 items (by id), kept where they are: they count only with a claim (docs/FORMAT.md). */
  items: Y.Map<ItemMap>
  records: Y.Map<ItemMap>
  claims: Y.Map<ClaimValue>
  tombstones: Y.Map<Tombstone>
  /** Grow-only, keyed by uid: concurrent deletions of two items that shared an id both stick. */
  deleted: Y.Map<DeletedUid>
  aliases: Y.Map<Alias>
  /** Per-replica high-water marks: each replica only ever raises its own key. */
  alloc: Y.Map<number>
  meta: Y.Map<unknown>
}

export function docParts(doc: Y.Doc): DocParts {
  return {
    doc,
    items: doc.getMap<ItemMap>(ROOTS.items),
    records: doc.getMap<ItemMap>(ROOTS.records),
    claims: doc.getMap<ClaimValue>(ROOTS.claims),
    tombstones: doc.getMap<Tombstone>(ROOTS.tombstones),
    deleted: doc.getMap<DeletedUid>(ROOTS.deleted),
    aliases: doc.getMap<Alias>(ROOTS.aliases),
    alloc: doc.getMap<number>(ROOTS.alloc),
    meta: doc.getMap<unknown>(ROOTS.meta),
  }
}

/** The metadata of an item as stored, before its stage is resolved. */
export interface ItemRecord {
  uid: Uid
  name: string
  type: ItemType
  dependsOn: ItemId[]
  blocked: Blocked | null
  frozen: boolean
  agent: string | null
  retries: number
  createdAt: string
  updatedAt: string
  createdBy: ReplicaId
}

/**
 * Reads an item's metadata defensively: a replica with a bug (or a hand-edited document)
 * can put anything into the CRDT, and one bad item must not break every read.
 */
export function readRecord(map: ItemMap): ItemRecord | undefined {
  if (!isItemMap(map)) return undefined
  return recordFrom((key) => map.get(key))
}

/** The record of an item from its fields, however they are read (a live map, or one being collected). */
export function recordFrom(field: (key: string) => unknown): ItemRecord | undefined {
  const map = { get: field }
  const uid = map.get(F.uid)
  const name = map.get(F.name)
  const type = map.get(F.type)
  const createdBy = map.get(F.createdBy)
  if (!isUid(uid) || typeof name !== 'string' || !ITEM_TYPES.includes(type as ItemType) || !isReplicaId(createdBy)) {
    return undefined
  }
  const dependsOn = map.get(F.dependsOn)
  const blocked = map.get(F.blocked)
  const agent = map.get(F.agent)
  const retries = map.get(F.retries)
  const createdAt = map.get(F.createdAt)
  const updatedAt = map.get(F.updatedAt)
  return {
    uid,
    name,
    type: type as ItemType,
    dependsOn: Array.isArray(dependsOn) ? dependsOn.filter(isItemId) : [],
    blocked: isBlocked(blocked) ? { reason: blocked.reason } : null,
    frozen: map.get(F.frozen) === true,
    agent: typeof agent === 'string' ? agent : null,
    retries: typeof retries === 'number' && Number.isSafeInteger(retries) && retries >= 0 ? retries : 0,
    createdAt: typeof createdAt === 'string' ? createdAt : '',
    updatedAt: typeof updatedAt === 'string' ? updatedAt : typeof createdAt === 'string' ? createdAt : '',
    createdBy,
  }
}

function isBlocked(value: unknown): value is Blocked {
  return typeof value === 'object' && value !== null && typeof (value as Blocked).reason === 'string'
}

/** Whether a value a peer put where an item belongs is an item map at all (anything can arrive). */
export function isItemMap(value: unknown): value is ItemMap {
  return value instanceof Y.Map
}

export function readUid(map: ItemMap): Uid | undefined {
  if (!isItemMap(map)) return undefined
  const uid = map.get(F.uid)
  return isUid(uid) ? uid : undefined
}

export function stagesOf(map: ItemMap): Y.Array<StageEntry> | undefined {
  const stages = map.get(F.stages)
  return stages instanceof Y.Array ? (stages as Y.Array<StageEntry>) : undefined
}

export function contentOf(map: ItemMap): Y.Map<SlotValue> | undefined {
  const content = map.get(F.content)
  return content instanceof Y.Map ? (content as Y.Map<SlotValue>) : undefined
}

/** Stage entries that have the shape of one; anything else is ignored (and shows as malformed elsewhere). */
export function readStageEntries(map: ItemMap): StageEntry[] {
  const stages = stagesOf(map)
  if (!stages) return []
  // Copies of the fields docket knows: a look-alike with more (a BigInt, say) must not carry
  // them into shadow rows and exports.
  return stages
    .toArray()
    .filter(isStageEntry)
    .map((e) => ({ id: e.id, epoch: e.epoch, stage: e.stage, event: e.event, basedOn: e.basedOn, by: e.by, at: e.at, ...(typeof e.reason === 'string' ? { reason: e.reason } : {}) }))
}

export { isStageEntry } from '../stage/log.js'

/**
 * What a content slot holds in the document: a reference to a blob (schema 3), or the value
 * itself (schema 2 wrote values inline; a store migrates them, and a value that still arrives
 * inline from a peer reads as it is).
 */
export type SlotValue = ContentRef | ContentValue

function isSlotValue(value: unknown): value is SlotValue {
  return typeof value === 'string' || value instanceof Uint8Array || isContentRef(value)
}

export function readContentValue(map: ItemMap, slot: string): SlotValue | undefined {
  if (!isSlotName(slot)) return undefined
  const value = contentOf(map)?.get(slot)
  return isSlotValue(value) ? value : undefined
}

/**
 * An item's content slots that docket could have written: a slot name a peer made up (say
 * `../../x`) or a value of another type is not content (it would become a file name in an export).
 */
export function contentEntries(map: ItemMap): Array<[string, SlotValue]> {
  const out: Array<[string, SlotValue]> = []
  for (const [slot, value] of contentOf(map) ?? []) {
    if (isSlotName(slot) && isSlotValue(value)) out.push([slot, value])
  }
  return out
}

export function contentSlots(map: ItemMap): string[] {
  return contentEntries(map)
    .map(([slot]) => slot)
    .sort()
}

/** Builds the nested map of a new item; it is integrated when set into `items`. */
export function buildItemMap(record: ItemRecord, entries: readonly StageEntry[], content: ReadonlyMap<string, SlotValue>): ItemMap {
  const map = new Y.Map<unknown>()
  map.set(F.uid, record.uid)
  map.set(F.name, record.name)
  map.set(F.type, record.type)
  map.set(F.dependsOn, [...record.dependsOn])
  map.set(F.blocked, record.blocked)
  map.set(F.frozen, record.frozen)
  if (record.agent !== null) map.set(F.agent, record.agent)
  map.set(F.retries, record.retries)
  map.set(F.createdAt, record.createdAt)
  map.set(F.updatedAt, record.updatedAt)
  map.set(F.createdBy, record.createdBy)
  const stages = new Y.Array<StageEntry>()
  stages.push(entries.map((entry) => ({ ...entry })))
  map.set(F.stages, stages)
  const slots = new Y.Map<SlotValue>()
  for (const [slot, value] of content) slots.set(slot, isContentRef(value) ? { ...value } : value)
  map.set(F.content, slots)
  return map
}

/** Where an item's map lives: under its uid (schema 2) or, for a schema 1 item, under its id. */
export type ItemHome = { root: 'records'; key: string } | { root: 'items'; key: string }

/** Finds which item map (and which part of it) a changed Yjs type belongs to. */
export function locateItemPart(
  parts: DocParts,
  type: Y.AbstractType<unknown>,
): { home: ItemHome; part: 'fields' | 'stages' | 'content' } | undefined {
  let child: Y.AbstractType<unknown> = type
  let part: 'fields' | 'stages' | 'content' = 'fields'
  for (let depth = 0; depth < 4; depth++) {
    const item = child._item
    if (item === null) return undefined
    const parent = item.parent as Y.AbstractType<unknown>
    if (parent === parts.records || parent === parts.items) {
      if (typeof item.parentSub !== 'string') return undefined
      return { home: { root: parent === parts.records ? 'records' : 'items', key: item.parentSub }, part }
    }
    if (item.parentSub === F.stages) part = 'stages'
    else if (item.parentSub === F.content) part = 'content'
    child = parent
  }
  return undefined
}

/**
 * An item whose uid was deleted is gone wherever it lives: a deletion that crossed a
 * concurrent re-anchoring still deletes the item (at its new id).
 */
export function isDeletedUid(parts: DocParts, uid: string): boolean {
  return parts.deleted.has(uid)
}

/**
 * A tombstone as readers see it: its fields when it has a tombstone's shape, else a tombstone
 * that says only that the id is dead (the key alone makes it so; a peer's value for it may be anything).
 */
export function tombstoneOf(value: unknown): Tombstone {
  const t = (typeof value === 'object' && value !== null && !Array.isArray(value) ? value : {}) as Partial<Record<keyof Tombstone, unknown>>
  return {
    uid: (isUid(t.uid) ? t.uid : '') as Uid,
    at: typeof t.at === 'string' ? t.at.slice(0, 64) : '',
    by: (typeof t.by === 'string' ? t.by.slice(0, 200) : '') as ReplicaId,
    reason: typeof t.reason === 'string' ? t.reason.slice(0, 2000) : null,
  }
}

export function isAlias(value: unknown): value is Alias {
  if (typeof value !== 'object' || value === null) return false
  const a = value as Alias
  return isUid(a.uid) && isItemId(a.oldId) && isItemId(a.newId) && typeof a.at === 'string' && typeof a.by === 'string' && typeof a.reason === 'string'
}

/** An item's claim entries, read defensively (work/claims.ts decides which is current). */
export function readWorkEntries(map: ItemMap): WorkEntry[] {
  const entries: WorkEntry[] = []
  const released = new Map<string, string>()
  for (const [key, value] of map.entries()) {
    if (!key.startsWith(CLAIM_FIELD)) continue
    const name = key.slice(CLAIM_FIELD.length)
    const release = readRelease(name, value)
    if (release) released.set(release.of, release.at)
    const entry = readWorkEntry(name, value)
    if (entry) entries.push(entry)
  }
  // A grant's release is a key of its own: a renewal written at the same moment rewrites the
  // grant's entry, and must not take the release back with it.
  for (const entry of entries) if (entry.released === undefined && released.has(entry.key)) entry.released = released.get(entry.key)!
  return entries
}

/** The item's current claim, if any (live or expired). */
export function currentClaimOf(map: ItemMap): WorkClaim | undefined {
  const entry = currentEntry(readWorkEntries(map))
  return entry === undefined ? undefined : claimOfEntry(entry)
}

/**
 * The claim entries (their keys without the field prefix) a transaction added, as opposed to
 * rewrote: the key's value was created in it and overwrote nothing older. A renewal or a
 * release rewrites an entry; a new claim adds one.
 */
export function addedWorkKeys(map: ItemMap, fields: Iterable<string>, tr: Y.Transaction): Set<string> {
  const internal = (map as unknown as { _map: Map<string, Y.Item> })._map
  const fresh = (item: Y.Item | null) => item !== null && item.id.clock >= (tr.beforeState.get(item.id.client) ?? 0)
  const added = new Set<string>()
  for (const field of fields) {
    if (!field.startsWith(CLAIM_FIELD)) continue
    const item = internal.get(field)
    if (item && fresh(item) && (item.left === null || fresh(item.left))) added.add(field.slice(CLAIM_FIELD.length))
  }
  return added
}
