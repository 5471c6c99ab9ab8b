import { describe, expect, it } from 'vitest'
import { openReader, type Store } from '../src/index.js'
import { collect, testStore } from './support.js'

/** Issue 14's fields: priority, labels (a set), parent, external ids; and an import's former id. */

async function exchange(a: Store, b: Store): Promise<void> {
  await b.applyUpdate(a.encodeStateAsUpdate(b.encodeStateVector()), 'peer')
  await a.applyUpdate(b.encodeStateAsUpdate(a.encodeStateVector()), 'peer')
  await Promise.all([a.flush(), b.flush()])
}

describe('priority, labels, parent and external ids', () => {
  it('are set at creation and by update, read back alike from the document and the index rows, and filter lists', async () => {
    const s = await testStore()
    const epic = await s.createItem({ name: 'Epic', type: 'epic', labels: ['q3'] })
    const a = await s.createItem({ name: 'A', priority: 3, labels: ['ui', 'p-low'], parent: epic.id, externalIds: ['bd-a1b2'] })
    const b = await s.createItem({ name: 'B', priority: 0, parent: epic.id, createdAt: '2025-12-13T08:41:34.956552+11:00' })
    const c = await s.createItem({ name: 'C' })
    expect(a).toMatchObject({ priority: 3, labels: ['p-low', 'ui'], parent: epic.id, externalIds: ['bd-a1b2'] })
    expect(b.createdAt).toBe('2025-12-12T21:41:34.956Z')
    expect(c).not.toHaveProperty('priority')
    expect(c).not.toHaveProperty('labels')
    // ready: by priority (none = 2), then id
    expect(s.listItems({ ready: true }).map((i) => i.name)).toEqual(['B', 'Epic', 'C', 'A'])
    expect(s.listItems({ label: 'ui' }).map((i) => i.id)).toEqual([a.id])
    expect(s.listItems({ label: ['q3', 'ui'] }).map((i) => i.id)).toEqual([epic.id, a.id])
    expect(s.listItems({ priority: 2 }).map((i) => i.id)).toEqual([epic.id, c.id])
    expect(s.listItems({ parent: epic.id }).map((i) => i.id)).toEqual([a.id, b.id])
    await s.updateItem(a.id, { addLabels: ['urgent'], removeLabels: ['p-low'], priority: null, parent: null })
    expect(s.getItem(a.id)).toMatchObject({ labels: ['ui', 'urgent'] })
    expect(s.getItem(a.id)).not.toHaveProperty('priority')
    expect(s.getItem(a.id)).not.toHaveProperty('parent')
    await s.updateItem(a.id, { labels: ['x'] })
    expect(s.getItem(a.id)?.labels).toEqual(['x'])
    expect((await collect(s.audit({ kinds: ['updated'], itemId: a.id }))).at(-1)?.data).toEqual({ changes: { labels: { from: ['ui', 'urgent'], to: ['x'] } } })
    const dir = s.dir
    await s.close()
    const reader = await openReader({ dir })
    try {
      expect(reader.source).toBe('index')
      expect(await reader.getItem(a.id)).toMatchObject({ labels: ['x'], externalIds: ['bd-a1b2'] })
      // A lost its priority (null: back to 2), so it comes by id now
      expect((await reader.listItems({ ready: true })).map((i) => i.name)).toEqual(['B', 'Epic', 'A', 'C'])
      expect((await reader.listItems({ parent: epic.id })).map((i) => i.id)).toEqual([b.id])
    } finally {
      await reader.close()
    }
  })

  it('concurrent label edits on two replicas merge as an add-wins set, whichever replica\'s writes Yjs orders first', async () => {
    // Client ids decide which concurrent write of one key wins: both orders are tried.
    for (const [ida, idb] of [[1000, 2000], [2000, 1000], [7, 3], [3, 7]] as Array<[number, number]>) {
      let na = ida
      let nb = idb
      const a = await testStore({ hooks: { clientId: () => na++ * 10 } })
      const b = await testStore({ hooks: { clientId: () => nb++ * 10 + 1 } })
      const item = await a.createItem({ name: 'shared', labels: ['keep', 'gone'] })
      await exchange(a, b)
      // a adds and then removes x, and removes gone; b, not having seen either, adds x and y.
      await a.updateItem(item.id, { addLabels: ['x'] })
      await a.updateItem(item.id, { removeLabels: ['x', 'gone'] })
      await b.updateItem(item.id, { addLabels: ['x', 'y'] })
      await exchange(a, b)
      expect(a.getItem(item.id)?.labels, `client ids ${ida}/${idb}`).toEqual(['keep', 'x', 'y'])
      expect(b.getItem(item.id)?.labels).toEqual(['keep', 'x', 'y'])
      // A remove that has seen every add removes the label on both.
      await b.updateItem(item.id, { labels: ['keep'] })
      await exchange(a, b)
      expect(a.getItem(item.id)?.labels).toEqual(['keep'])
    }
  })

  it('an imported item whose number went to another one keeps it as an alias (reason import)', async () => {
    const s = await testStore()
    const first = await s.createItem({ id: '90', name: 'Fix task list scrolling', stage: 'done' })
    const second = await s.createItem({ name: 'test full flag', stage: 'archived', formerId: '90' })
    expect(second.id).not.toBe('90')
    expect(s.aliases()).toEqual([expect.objectContaining({ uid: second.uid, oldId: '90', newId: second.id, reason: 'import' })])
    expect(s.getItem('90')?.uid).toBe(first.uid)
  })

  it('bad values are refused with what to write instead, and a parent must be live and close no loop', async () => {
    const s = await testStore()
    const a = await s.createItem({ name: 'a' })
    const b = await s.createItem({ name: 'b', parent: a.id })
    for (const bad of [{ priority: 5 }, { priority: 1.5 }, { labels: ['a,b'] }, { labels: [' x'] }, { labels: 'x' }, { externalIds: ['has space'] }, { createdAt: 'yesterday' }, { parent: 'x' }]) {
      await expect(s.createItem({ name: 'n', ...(bad as object) }), JSON.stringify(bad)).rejects.toMatchObject({ code: expect.stringMatching(/INVALID_INPUT|INVALID_ID/) })
    }
    await expect(s.createItem({ name: 'orphan', parent: '999' })).rejects.toMatchObject({ code: 'NOT_FOUND' })
    await expect(s.updateItem(a.id, { parent: b.id })).rejects.toMatchObject({ code: 'INVALID_INPUT', message: expect.stringContaining('loop') })
    await expect(s.updateItem(a.id, { parent: a.id })).rejects.toMatchObject({ code: 'INVALID_INPUT' })
    await expect(s.updateItem(a.id, { labels: ['x'], addLabels: ['y'] })).rejects.toMatchObject({ code: 'INVALID_INPUT' })
    expect(s.listItems().map((i) => i.id)).toEqual([a.id, b.id])
  })
})

describe('the new fields in the shadow rows', () => {
  it('an orphan re-created from its rows keeps its priority, labels, parent and external ids', async () => {
    const a = await testStore()
    const epic = await a.createItem({ name: 'Epic', type: 'epic' })
    const item = await a.createItem({ name: 'Imported', priority: 1, labels: ['web', 'ui'], parent: epic.id, externalIds: ['bd-x1'] })
    const shadow = await a.maintenance.readShadowRow(item.id)
    expect(shadow && 'row' in shadow && shadow.row.extras).toEqual({ priority: 1, labels: ['ui', 'web'], parent: epic.id, externalIds: ['bd-x1'] })
    expect((await a.verify()).staleShadow).toEqual([])
    // The same rows, in another store that has no such item: an orphan there.
    const b = await testStore()
    await b.createItem({ name: 'Epic here', type: 'epic' })
    const dir = b.dir
    await b.close()
    const { writeRawRows, rawKeys } = await import('../src/testing.js')
    await writeRawRows(dir, [{ type: 'put', sublevel: 'shadow', key: rawKeys.shadow('40'), value: JSON.stringify({ ...(shadow as { row: object }).row, id: '40' }) }])
    const { openStore } = await import('../src/index.js')
    const c = await openStore({ dir, durability: 'relaxed', logger: { warn: () => {} } })
    try {
      const adopted = await c.maintenance.adoptOrphan('40')
      expect(adopted.item).toMatchObject({ name: 'Imported', priority: 1, labels: ['ui', 'web'], parent: epic.id, externalIds: ['bd-x1'] })
    } finally {
      await c.close()
    }
  })
})
