import * as Y from 'yjs'
import { describe, expect, it } from 'vitest'
import { openStore, type ItemId, type Store } from '../src/index.js'
import { capturingLogger, collect, snapshotRows, tempDir, testStore } from './support.js'

/** An update from a fake peer that tombstones `id` — a concurrent delete arriving mid-create. */
function remoteTombstone(store: Store, id: string): Uint8Array {
  const peer = new Y.Doc()
  Y.applyUpdate(peer, store.encodeStateAsUpdate())
  peer.getMap('tombstones').set(id, { uid: '01ARZ3NDEKTSV4RRFFQ69G5FAV', at: new Date().toISOString(), by: 'peer', reason: 'deleted elsewhere' })
  return Y.encodeStateAsUpdate(peer, store.encodeStateVector())
}

/** Keys of every row that belongs to an item id (CRDT rows are checked through the document). */
function itemRows(dump: Map<string, string>, id: string): string[] {
  const padded = id.padStart(16, '0')
  return [...dump.keys()].filter((k) => (k.startsWith('!shadow!') || k.startsWith('!content!')) && k.includes(padded))
}

describe('createItem failure paths', () => {
  it('refuses a tombstoned id proposed by the allocator before writing anything of the item', async () => {
    const dir = await tempDir()
    let proposeTombstoned = false
    const logger = capturingLogger()
    const store = await openStore({ dir, durability: 'relaxed', logger, hooks: { allocate: (id) => (proposeTombstoned ? ('2' as ItemId) : id) } })
    await store.createItem({ name: 'one' })
    await store.createItem({ name: 'two', body: 'b' })
    await store.deleteItem('2')
    const before = store.encodeStateAsUpdate()
    proposeTombstoned = true
    await expect(store.createItem({ name: 'bug', body: 'never' })).rejects.toMatchObject({ code: 'TOMBSTONED' })
    expect(Y.encodeStateAsUpdate(docOf(before))).toEqual(Y.encodeStateAsUpdate(docOf(store.encodeStateAsUpdate())))
    expect(logger.lines.some((l) => l.startsWith('WARN create on item 2 rejected'))).toBe(true)
    const rejected = await collect(store.audit({ kinds: ['write_rejected'] }))
    expect(rejected).toMatchObject([{ itemId: '2', data: { op: 'create', reason: 'allocator proposed a tombstoned id' } }])
    await store.close()
    expect(itemRows(await snapshotRows(dir), '2')).toEqual([])
  })

  it('rolls back when the tombstone guard refuses the CRDT write (a concurrent delete)', async () => {
    const dir = await tempDir()
    const logger = capturingLogger()
    let inject: (() => void) | undefined
    const store = await openStore({
      dir,
      durability: 'relaxed',
      logger,
      hooks: { step: (name) => (name === 'create:before-crdt-write' ? inject?.() : undefined) },
    })
    await store.createItem({ name: 'one' })
    const update = remoteTombstone(store, '2')
    let applied: Promise<void> | undefined
    inject = () => {
      inject = undefined
      applied = store.applyUpdate(update, 'peer')
    }
    const err = await store.createItem({ name: 'doomed', body: 'content that must not stay' }).catch((e: unknown) => e)
    await applied
    expect(err).toMatchObject({ code: 'CREATE_NOT_MATERIALIZED', details: { id: '2', reason: 'tombstoned' } })
    expect(logger.lines.some((l) => l.startsWith('WARN create of item 2 refused by the tombstone guard'))).toBe(true)
    const audit = await collect(store.audit({ kinds: ['write_rejected', 'create_rolled_back', 'created'] }))
    expect(audit.map((e) => [e.kind, e.itemId])).toEqual([
      ['created', '1'],
      ['write_rejected', '2'],
      ['create_rolled_back', '2'],
    ])
    expect(store.getItem('2')).toBeUndefined()
    expect(store.isTombstoned('2')).toBe(true)
    expect((await store.createItem({ name: 'after' })).id).toBe('3')
    await store.close()
    const dump = await snapshotRows(dir)
    expect(itemRows(dump, '2')).toEqual([])
    expect(itemRows(dump, '3')).toEqual(['!shadow!0000000000000003'])
  })

  it('keeps nothing when persisting fails, and the store stays usable', async () => {
    const dir = await tempDir()
    let failWrites = false
    const logger = capturingLogger()
    const store = await openStore({
      dir,
      durability: 'relaxed',
      logger,
      hooks: {
        beforeWrite: () => {
          if (failWrites) throw new Error('injected: disk full')
        },
      },
    })
    await store.createItem({ name: 'one', body: 'kept' })
    failWrites = true
    const err = await store.createItem({ name: 'two', body: 'lost' }).catch((e: unknown) => e)
    expect(err).toMatchObject({ code: 'PERSIST_FAILED' })
    expect((err as Error).message).toContain('injected: disk full')
    expect((err as Error).message).toMatch(/retry/)
    expect(store.getItem('2')).toBeUndefined()
    expect(store.listItems().map((i) => i.id)).toEqual(['1'])
    failWrites = false
    const two = await store.createItem({ name: 'two again' })
    expect(two.id).toBe('2')
    await store.close()
    const reopened = await openStore({ dir, durability: 'relaxed' })
    expect(reopened.listItems().map((i) => [i.id, i.name])).toEqual([
      ['1', 'one'],
      ['2', 'two again'],
    ])
    expect(await reopened.readContent('1')).toBe('kept')
    await reopened.close()
  })

  it('fails operations queued behind a failed write instead of persisting them out of order', async () => {
    let failNext = false
    const store = await testStore({
      hooks: {
        beforeWrite: () => {
          if (failNext) {
            failNext = false
            throw new Error('injected')
          }
        },
      },
    })
    const base = await store.createItem({ name: 'base' })
    failNext = true
    const results = await Promise.allSettled([store.updateItem(base.id, { name: 'a' }), store.updateItem(base.id, { retries: 3 }), store.createItem({ name: 'c' })])
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected', 'rejected'])
    expect(store.getItem(base.id)).toMatchObject({ name: 'base', retries: 0 })
    expect(store.listItems()).toHaveLength(1)
  })

  it('gives concurrent creates distinct ids in one process', async () => {
    const store = await testStore()
    const items = await Promise.all(Array.from({ length: 50 }, (_, i) => store.createItem({ name: `n${i}` })))
    expect(new Set(items.map((i) => i.id)).size).toBe(50)
    expect(items.map((i) => Number(i.id)).sort((a, b) => a - b)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1))
  })
})

function docOf(update: Uint8Array): Y.Doc {
  const doc = new Y.Doc()
  Y.applyUpdate(doc, update)
  return doc
}
