import * as Y from 'yjs'
import { describe, expect, it } from 'vitest'
import { openStore } from '../src/index.js'
import { compactionDue } from '../src/store/writer.js'
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
    // Rows beyond the threshold are folded: into a snapshot once they weigh half the document,
    // else merged into one row — so an open reads few rows, and few bytes more than the document.
    const stats = store.stats()
    expect(stats.updateRows).toBeLessThanOrEqual(compactAfterRows + 10)
    expect(stats.compactions).toBeGreaterThanOrEqual(3)
    expect(stats.merges).toBeGreaterThanOrEqual(3)
    expect(stats.updateBytes).toBe(await store.storedUpdateBytes())
    const expected = store.listItems()
    await store.close()

    const reopened = await openStore({ dir, durability: 'relaxed', compactAfterRows })
    try {
      const stats = reopened.stats()
      expect(stats.openedRows).toBeLessThanOrEqual(compactAfterRows + 10)
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

describe('compactionDue (the rule alone)', () => {
  const rows = (n: number) => Array.from({ length: n }, (_, i) => i + 1)
  const tail = (n: number) => Array.from({ length: n }, (_, i) => ({ seq: i + 1, update: new Uint8Array(10) }))
  const job = (bytes: number, compact = false) => ({ update: new Uint8Array(bytes), compact }) as never

  it('nothing below the row threshold, whatever the bytes', () => {
    expect(compactionDue({ liveSeqs: rows(10), liveBytes: 10_000, baseBytes: 10, tail: tail(9) }, [job(10)], 20)).toBeUndefined()
  })
  it('a snapshot once the rows since the last one weigh half the document; a forced one always', () => {
    expect(compactionDue({ liveSeqs: rows(20), liveBytes: 1500, baseBytes: 1000, tail: tail(19) }, [job(1)], 20)).toBe('snapshot')
    expect(compactionDue({ liveSeqs: rows(1), liveBytes: 10, baseBytes: 10, tail: [] }, [job(0, true)], 20)).toBe('snapshot')
  })
  it('else a merge of the recent rows, once there are half a threshold of them', () => {
    expect(compactionDue({ liveSeqs: rows(21), liveBytes: 1_000_200, baseBytes: 1_000_000, tail: tail(10) }, [job(10)], 20)).toBe('merge')
    expect(compactionDue({ liveSeqs: rows(21), liveBytes: 1_000_200, baseBytes: 1_000_000, tail: tail(9) }, [job(10)], 20)).toBeUndefined()
    expect(compactionDue({ liveSeqs: rows(30), liveBytes: 1_000_200, baseBytes: 1_000_000, tail: [] }, [job(10)], 20)).toBeUndefined()
  })
})

describe('compaction: the cost of a write does not grow with the store', () => {
  it('a large document is not rewritten every compactAfterRows rows: recent rows are merged, and a snapshot waits until they weigh half the document', async () => {
    const dir = await tempDir()
    const compactAfterRows = 50
    const store = await openStore({ dir, durability: 'relaxed', compactAfterRows })
    const body = 'x'.repeat(4096)
    for (let i = 0; i < 600; i += 100) await Promise.all(Array.from({ length: 100 }, (_, k) => store.createItem({ name: `item ${i + k}`, body })))
    await store.compact()
    const base = store.stats().updateBytes
    const before = store.stats().compactions
    for (let i = 0; i < 1000; i++) await store.updateItem(String((i % 600) + 1), { retries: i })
    const stats = store.stats()
    // 1,000 small writes: the old rule (a snapshot every 50 rows) wrote the ~2.5 MB document 20 times.
    expect(stats.compactions - before).toBeLessThanOrEqual(1)
    expect(stats.merges).toBeGreaterThanOrEqual(10)
    expect(stats.updateRows).toBeLessThanOrEqual(compactAfterRows + 40)
    expect(stats.updateBytes).toBeLessThanOrEqual(base * 1.6)
    const expected = store.listItems()
    await store.close()
    const reopened = await openStore({ dir, durability: 'relaxed', compactAfterRows })
    try {
      expect(reopened.listItems()).toEqual(expected)
      expect(await reopened.readContent('600')).toBe(body)
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
