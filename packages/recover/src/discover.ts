import { DocketError, ITEM_TYPES, toHandle, keysOf, parseItemId, parseShadow, requireKnownKeys, type ItemId, type ItemType, type ShadowRow, type Store, type StoreHandle, type StoredRows, type Tombstone, type Uid } from '@docket/core'
import { parseFrontMatter } from './frontmatter.js'

export type OrphanKind = 'tombstoned' | 'missing' | 'displaced'

/**
 * Rows in the shadow content store that no live CRDT entry with the same id and uid owns,
 * with everything that could be read about them.
 */
export interface Orphan {
  id: ItemId
  /** `tombstoned`: the id is deleted; `missing`: no CRDT entry and no tombstone; `displaced`: the CRDT holds another item there. */
  kind: OrphanKind
  /** The uid in the orphan's shadow row, or null when it has no readable row. */
  uid: Uid | null
  /** For `displaced`: the uid of the live item that holds the id. */
  liveUid?: Uid
  tombstone?: Tombstone
  name: string
  type: ItemType
  /** As written in the front matter (or the shadow row); unknown ids are kept, with a warning. */
  dependsOn: string[]
  /** Size of the `body` slot in bytes, or null if there is none. */
  bodyBytes: number | null
  slots: string[]
  warnings: string[]
  /** The shadow row, when it is readable. */
  shadow: ShadowRow | null
}

export interface DiscoverOptions {
  /** Only these ids (point reads, not a scan). Default: every id in the shadow content store. */
  ids?: readonly (ItemId | string)[]
  /** Called as ids are scanned: for progress bars. */
  onProgress?: (progress: { scanned: number; orphans: number }) => void
}

const DISCOVER_KEYS = keysOf<DiscoverOptions>()(['ids', 'onProgress'])

export interface Discovery {
  /** The ids filter, or null for a full scan. */
  filter: ItemId[] | null
  /** Ids with rows that were looked at. */
  scanned: number
  orphans: Orphan[]
  /** Ids of the filter that are live items with their own rows (not orphans); empty without a filter. */
  live: ItemId[]
  /** Ids of the filter that have no rows at all. */
  unknown: ItemId[]
  /** Ids skipped because this replica is re-anchoring them right now. */
  pending: ItemId[]
}

/** Parses and checks an ids filter: duplicates are a mistake worth stopping for. */
export function checkIds(ids: readonly (ItemId | string)[] | undefined): ItemId[] | null {
  if (ids === undefined) return null
  if (!Array.isArray(ids)) throw new DocketError('INVALID_INPUT', 'ids must be an array of item ids, for example ["989", "1000"].')
  if (ids.length === 0) throw new DocketError('INVALID_INPUT', 'ids is empty: name at least one id, or omit the filter to scan everything.')
  const parsed = ids.map((id) => parseItemId(id))
  const seen = new Set<ItemId>()
  for (const id of parsed) {
    if (seen.has(id)) throw new DocketError('INVALID_INPUT', `ids names ${id} twice: name each id once.`, { details: { id } })
    seen.add(id)
  }
  return parsed
}

/**
 * Finds orphans. Read-only and idempotent: it reads the store's rows and document and writes
 * nothing, so it always may run — on a stale replica too.
 */
export async function discoverOrphans(target: Store | StoreHandle, options: DiscoverOptions = {}): Promise<Discovery> {
  const store = toHandle(target)
  if (typeof options !== 'object' || options === null || Array.isArray(options)) throw new DocketError('INVALID_INPUT', 'discoverOrphans options must be an object.')
  requireKnownKeys(options, DISCOVER_KEYS, 'discoverOrphans()')
  const filter = checkIds(options.ids)
  const pending = new Set(await store.maintenance.pendingReanchors())
  const discovery: Discovery = { filter, scanned: 0, orphans: [], live: [], unknown: [], pending: [] }
  const seen = new Set<ItemId>()
  for await (const rows of store.maintenance.scanStoredRows(filter ? { ids: filter } : {})) {
    discovery.scanned++
    seen.add(rows.id)
    if (pending.has(rows.id)) {
      discovery.pending.push(rows.id)
      continue
    }
    const liveUid = await store.maintenance.uidAt(rows.id)
    const shadowUid = rows.shadow && 'uid' in rows.shadow ? rows.shadow.uid : undefined
    // Rows of a live item — including unreadable ones, which `doctor` reports — are not orphans.
    if (liveUid !== undefined && (shadowUid === undefined || shadowUid === liveUid)) {
      if (filter) discovery.live.push(rows.id)
    } else {
      const deletedUid = shadowUid !== undefined && (await store.maintenance.isDeletedUid(shadowUid))
      const kind: OrphanKind = liveUid !== undefined && !deletedUid ? 'displaced' : (await store.isTombstoned(rows.id)) || deletedUid ? 'tombstoned' : 'missing'
      discovery.orphans.push(await describe(store, rows, kind, liveUid))
    }
    if (discovery.scanned % 256 === 0) options.onProgress?.({ scanned: discovery.scanned, orphans: discovery.orphans.length })
  }
  options.onProgress?.({ scanned: discovery.scanned, orphans: discovery.orphans.length })
  if (filter) discovery.unknown = filter.filter((id) => !seen.has(id))
  return discovery
}

async function describe(store: StoreHandle, rows: StoredRows, kind: OrphanKind, liveUid: Uid | undefined): Promise<Orphan> {
  const warnings: string[] = []
  let shadow: ShadowRow | null = null
  if (rows.shadow && 'uid' in rows.shadow) {
    const read = parseShadow(rows.shadow.text)
    if ('row' in read) shadow = read.row
    else warnings.push(`shadow row unreadable: ${read.error}`)
  } else if (rows.shadow) {
    warnings.push(`shadow row unreadable: ${rows.shadow.error}`)
  } else {
    warnings.push('no shadow row: only content rows')
  }
  const body = rows.slots.find((s) => s.slot === 'body')
  const bytes = body ? await store.maintenance.readStoredContent(rows.id, 'body') : undefined
  const fm = bytes ? parseFrontMatter(bytes) : undefined
  if (fm) warnings.push(...fm.warnings)
  else warnings.push('no body')
  const dependsOn = fm?.dependsOn.length ? fm.dependsOn : (shadow?.dependsOn ?? [])
  for (const dep of dependsOn) {
    if (await store.isTombstoned(dep)) warnings.push(`depends_on ${dep} was deleted; kept as written`)
    else if ((await store.maintenance.uidAt(dep)) === undefined) warnings.push(`depends_on ${dep} is not an item in this store; kept as written`)
  }
  const orphan: Orphan = {
    id: rows.id,
    kind,
    uid: shadow?.uid ?? null,
    name: fm?.name ?? shadow?.name ?? `Recovered item ${rows.id}`,
    type: fm?.type ?? (shadow && ITEM_TYPES.includes(shadow.type) ? shadow.type : 'story'),
    dependsOn,
    bodyBytes: body ? body.bytes : null,
    slots: rows.slots.map((s) => s.slot),
    warnings,
    shadow,
  }
  if (liveUid !== undefined) orphan.liveUid = liveUid
  const tombstone = await store.tombstone(rows.id)
  if (tombstone) orphan.tombstone = tombstone
  return orphan
}
