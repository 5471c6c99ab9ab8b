import { expect } from 'vitest'
import { rankOf, type Store } from '@docket/core'

/** Everything a replica shows of the pipeline, for comparing replicas. */
export async function view(store: Store): Promise<unknown> {
  const items = []
  for (const item of store.listItems()) {
    const content: Record<string, string> = {}
    for (const slot of store.contentSlots(item.id)) content[slot] = Buffer.from((await store.readContentBytes(item.id, slot))!).toString('base64')
    const { updatedAt: _u, ...rest } = item
    items.push({ ...rest, content, history: store.stageHistory(item.id).map((h) => [h.id, h.valid, h.current]) })
  }
  return { items, tombstones: store.tombstonedIds().map((id) => [id, store.tombstone(id)!.uid]), aliases: store.aliases().map((a) => `${a.oldId}/${a.uid}→${a.newId}`).sort() }
}

/** Invariant 5 (convergence) and 4 (no regress) over replicas that exchanged everything. */
export async function expectConverged(stores: readonly Store[]): Promise<void> {
  const views = await Promise.all(stores.map(view))
  for (const v of views.slice(1)) expect(v).toEqual(views[0])
  // What fast reads answer from (the index rows) says what the document says, on every replica.
  for (const s of stores) {
    const report = await s.verify()
    expect(report.indexComplete, 'the index is complete').toBe(true)
    expect(report.staleIndex, 'index rows that differ from the document').toEqual([])
  }
  const store = stores[0]!
  const live = store.listItems()
  expect(new Set(live.map((i) => i.uid)).size, 'two live items share a uid').toBe(live.length)
  for (const item of live) {
    const history = store.stageHistory(item.id)
    const byId = new Map(history.map((h) => [h.id, h]))
    const valid = history.filter((h) => h.valid)
    for (const entry of history) {
      const basis = entry.basedOn === null ? undefined : byId.get(entry.basedOn)
      if (!basis || entry.epoch === basis.epoch || !entry.valid) continue
      // a backward decision only counts if it was made on the highest stage its epoch reached
      expect(rankOf(basis.stage)).toBe(Math.max(...valid.filter((v) => v.epoch === basis.epoch).map((v) => rankOf(v.stage))))
    }
  }
}
