import type { StoreReader } from '../store/reader.js'
import type { StoreHandle } from './handle.js'

/** A store handle (one held by another process, as a rule) read as a `StoreReader`: the holder answers from its document. */
export async function readerOf(store: StoreHandle): Promise<StoreReader> {
  const lastSyncedAt = (await store.syncState()).lastSyncedAt
  const damage = await store.damage()
  return {
    dir: store.dir,
    source: 'holder',
    fallback: undefined,
    lastSyncedAt,
    listItems: (options) => store.listItems(options),
    getItem: (id) => store.getItem(id),
    stageHistory: (id) => store.stageHistory(id),
    contentSlots: (id) => store.contentSlots(id),
    readContentBytes: (id, slot) => store.readContentBytes(id, slot),
    readContent: (id, slot) => store.readContent(id, slot),
    aliases: (oldId) => store.aliases(oldId),
    tombstone: (id) => store.tombstone(id),
    audit: (query) => store.audit(query),
    damage: () => damage,
    close: () => store.close(),
  }
}
