import * as Y from 'yjs'
import { describe, expect, it } from 'vitest'
import { openStore } from '../src/index.js'
import { tempDir } from './support.js'

describe('compaction: open time does not grow with history', () => {
  it('after 20,000 updates to 1,000 items a reopen reads a bounded number of rows', async () => {
    const dir = await tempDir()
    const compactAfterRows = 500
    const store = await openStore({ dir, durability: 'relaxed', compactAfterRows })
    for (let i = 0; i < 1000; i += 100) {
      await Promise.all(Array.from({ length: 100 }, (_, k) => store.createItem({ name: `item ${i + k}`, body: `body ${i + k}` })))
    }
    let updates = 0
    while (updates < 20_000) {
      const batch: Promise<unknown>[] = []
      for (let k = 0; k < 200; k++, updates++) {
        const id = String((updates % 1000) + 1)
        batch.push(updates % 2 === 0 ? store.updateItem(id, { retries: updates }) : store.writeContent(id, 'body', `body v${updates}`))
      }
      await Promise.all(batch)
    }
    expect(store.stats().updateRows).toBeLessThanOrEqual(compactAfterRows)
    expect(store.stats().compactions).toBeGreaterThanOrEqual(20)
    const expected = store.listItems()
    await store.close()

    const reopened = await openStore({ dir, durability: 'relaxed', compactAfterRows })
    try {
      const stats = reopened.stats()
      expect(stats.openedRows).toBeLessThanOrEqual(compactAfterRows)
      expect(reopened.listItems()).toEqual(expected)
      expect(await reopened.readContent('1000')).toBe('body v19999')

      await reopened.compact()
      const stored = await reopened.storedUpdateBytes()
      const compacted = Y.encodeStateAsUpdate(docFrom(reopened.encodeStateAsUpdate())).byteLength
      expect(reopened.stats().updateRows).toBe(1)
      expect(stored).toBeLessThanOrEqual(compacted * 1.05)
    } finally {
      await reopened.close()
    }
  })
})

function docFrom(update: Uint8Array): Y.Doc {
  const doc = new Y.Doc()
  Y.applyUpdate(doc, update)
  return doc
}
