import { isAlias, tombstoneOf } from '../crdt/layout.js'
import { isItemId, type ItemId } from '../ids.js'
import {
  aliasIndexKey,
  encodeIndexAlias,
  encodeIndexItem,
  encodeIndexTombstone,
  itemIndexKey,
  tombstoneIndexKey,
} from '../storage/index-rows.js'
import type { Alias, Item } from '../types.js'
import { itemAt, liveIds } from './items.js'
import type { Job } from './job.js'
import type { DocState } from './state.js'

type Put = Job['puts'][number]

/** The index row of a live item (storage/index-rows.ts). */
export function itemIndexPut(item: Item): Put {
  return { sublevel: 'index', key: itemIndexKey(item.id), value: encodeIndexItem(item) }
}

/** The index row of the alias under `key`; a value that is no alias (a peer can put anything there) has none: undefined. */
export function aliasIndexPut(key: string, value: unknown): Put | undefined {
  if (!isAlias(value)) return undefined
  const alias: Alias = { uid: value.uid, oldId: value.oldId, newId: value.newId, at: value.at, by: value.by, reason: value.reason }
  return { sublevel: 'index', key: aliasIndexKey(key), value: encodeIndexAlias(alias) }
}

/** The index row of a tombstone; keys that are no id are not readable as one and get none. */
export function tombstoneIndexPut(key: string, value: unknown): Put | undefined {
  if (!isItemId(key)) return undefined
  return { sublevel: 'index', key: tombstoneIndexKey(key), value: encodeIndexTombstone(tombstoneOf(value)) }
}

/** Every index row the document implies: what a complete index holds (the rebuild at open, and verify). */
export function indexRows(state: DocState): Map<string, string> {
  const rows = new Map<string, string>()
  const add = (put: Put | undefined) => {
    if (put) rows.set(put.key, put.value as string)
  }
  for (const id of liveIds(state)) add(itemIndexPut(itemAt(state, id as ItemId)!))
  for (const [key, value] of state.parts.aliases.entries()) add(aliasIndexPut(key, value))
  for (const [key, value] of state.parts.tombstones.entries()) add(tombstoneIndexPut(key, value))
  return rows
}
