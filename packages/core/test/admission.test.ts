import * as Y from 'yjs'
import { describe, expect, it } from 'vitest'
import type { Store } from '../src/index.js'
import { readRawRows } from '../src/testing.js'
import { collect, tempDir, testStore, peerTx } from './support.js'

async function pull(to: Store, from: Store): Promise<void> {
  await to.applyUpdate(from.encodeStateAsUpdate(to.encodeStateVector()), 'peer')
  await to.flush()
}

/** Issue 10: grow-only means grow-only — no remote update may rewrite history. */
describe('a remote update that would rewrite history is refused whole', () => {
  async function prepared(): Promise<{ store: Store; done: string; deleted: string; uid: string }> {
    const store = await testStore({ dir: await tempDir() })
    const done = await store.createItem({ name: 'done' })
    for (const event of ['start', 'gates_passed', 'accepted', 'merge_succeeded'] as const) await store.apply(done.id, event)
    const gone = await store.createItem({ name: 'gone' })
    await store.deleteItem(gone.id)
    return { store, done: done.id, deleted: gone.id, uid: done.uid }
  }

  const hostile: Array<[string, (doc: Y.Doc, ctx: { done: string; deleted: string; uid: string }) => void]> = [
    ['removing a tombstone', (doc, c) => doc.getMap('tombstones').delete(c.deleted)],
    ['removing a deleted uid', (doc) => doc.getMap('deleted').clear()],
    ['removing an id claim', (doc, c) => doc.getMap('claims').delete(`${c.done}/${c.uid}`)],
    ['removing stage entries of a done item', (doc, c) => {
      const stages = doc.getMap<Y.Map<unknown>>('records').get(c.uid)!.get('stages') as Y.Array<unknown>
      stages.delete(1, stages.length - 1)
    }],
    ['replacing the stage log of a done item', (doc, c) => doc.getMap<Y.Map<unknown>>('records').get(c.uid)!.set('stages', new Y.Array())],
    ['removing an item without recording its deletion', (doc, c) => doc.getMap('records').delete(c.uid)],
  ]
  for (const [name, write] of hostile) {
    it(`${name}: nothing of it is applied, it is kept as evidence and audited`, async () => {
      const { store, done, deleted, uid } = await prepared()
      const before = store.encodeStateVector()
      const update = peerTx(store.encodeStateAsUpdate(), (doc) => {
        doc.getMap('meta').set('note', 'riding along') // refused whole: this does not land either
        write(doc, { done, deleted, uid })
      })
      await expect(store.applyUpdate(update, 'peer-x')).rejects.toMatchObject({ code: 'UPDATE_REFUSED', details: { source: 'peer-x' } })
      expect(Buffer.from(store.encodeStateVector())).toEqual(Buffer.from(before))
      expect(store.getItem(done)?.stage).toBe('done')
      expect(store.isTombstoned(deleted)).toBe(true)
      expect(store.peekNextId()).toBe('3')
      const refused = await collect(store.audit({ kinds: ['update_refused'] }))
      expect(refused).toMatchObject([{ data: { source: 'peer-x', reason: expect.any(String) } }])
      await store.close()
      const rows = (await readRawRows(store.dir)).filter((r) => r.sublevel === 'refused')
      expect(rows.map((r) => Buffer.from(r.value))).toEqual([Buffer.from(update)])
    })
  }

  it('ordinary replication is never refused: deletes, concurrent writes of one key, re-anchorings, stage changes', async () => {
    const a = await testStore({ replicaId: 'replica-a' })
    const b = await testStore({ replicaId: 'replica-b' })
    const one = await a.createItem({ name: 'one' })
    await pull(b, a)
    // concurrent deletes of the same item, concurrent creates of the same id, transitions
    await a.deleteItem(one.id)
    await b.deleteItem(one.id)
    const x = await a.createItem({ name: 'x' })
    const y = await b.createItem({ name: 'y' })
    await a.apply(x.id, 'start')
    await b.apply(y.id, 'start')
    await b.writeContent(y.id, 'body', 'first')
    await b.writeContent(y.id, 'body', null)
    for (let round = 0; round < 3; round++) {
      await pull(a, b)
      await pull(b, a)
    }
    for (const store of [a, b]) {
      expect((await collect(store.audit({ kinds: ['update_refused'] })))).toEqual([])
      expect(store.listItems().map((i) => i.name).sort()).toEqual(['x', 'y'])
    }
  })
})
