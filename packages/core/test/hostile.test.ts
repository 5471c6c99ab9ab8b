import * as Y from 'yjs'
import { describe, expect, it } from 'vitest'
import { collect, putRaw, snapshotRows, tempDir, testStore, peerTx } from './support.js'
import { MAX_ITEM_NUMBER } from '../src/index.js'

const U = (n: number) => `01J${String(n).padStart(23, '0')}`

/**
 * Issue 10, first part: no value a peer can put anywhere in the document makes open, list,
 * show, history, verify or export throw; the well-formed items still read.
 */
describe('total readers: malformed values from a peer', () => {
  const cases: Array<[string, (doc: Y.Doc) => void]> = [
    ['a record that is a string', (doc) => doc.getMap('records').set(U(1), 'not a map')],
    ['a record that is null', (doc) => doc.getMap('records').set(U(2), null)],
    ['a record that is a plain object', (doc) => doc.getMap('records').set(U(3), { uid: U(3), name: 'x' })],
    ['a record that is a Y.Text', (doc) => doc.getMap('records').set(U(4), new Y.Text('hello'))],
    ['a schema 1 item that is null', (doc) => doc.getMap('items').set('777', null)],
    ['a schema 1 item that is a Y.Array', (doc) => doc.getMap('items').set('778', new Y.Array())],
    ['a claim of a malformed record', (doc) => {
      doc.getMap('records').set(U(5), 42)
      doc.getMap('claims').set(`900/${U(5)}`, null)
    }],
    ['a tombstone that is null', (doc) => doc.getMap('tombstones').set('5', null)],
    ['a tombstone that is a string', (doc) => doc.getMap('tombstones').set('6', 'gone')],
    ['an alias that is null', (doc) => doc.getMap('aliases').set(`1/${U(6)}`, null)],
    ['a deleted uid whose value is null', (doc) => doc.getMap('deleted').set(U(7), null)],
    ['an allocator mark that is a string', (doc) => doc.getMap('alloc').set('peer', 'lots')],
    ['a stage log that is a map', (doc) => {
      const first = [...doc.getMap<Y.Map<unknown>>('records').values()].find((m) => m.get('name') === 'other')!
      first.set('stages', new Y.Map())
    }],
    ['stage entries that are nulls and strings', (doc) => {
      const first = [...doc.getMap<Y.Map<unknown>>('records').values()].find((m) => m.get('name') === 'other')!
      ;(first.get('stages') as Y.Array<unknown>).push([null, 'x', 7, { id: 1 }])
    }],
    ['a content map that is a string', (doc) => {
      const first = [...doc.getMap<Y.Map<unknown>>('records').values()].find((m) => m.get('name') === 'other')!
      first.set('content', 'nope')
    }],
  ]
  for (const [name, write] of cases) {
    it(`${name}: the store opens and the well-formed items read`, async () => {
      const dir = await tempDir()
      let store = await testStore({ dir })
      const keep = await store.createItem({ name: 'keep', body: 'kept body' })
      const other = await store.createItem({ name: 'other' })
      await store.apply(other.id, 'start')
      // (Some of these are also refused whole as rewriting history — issue 10's admission check.)
      await store.applyUpdate(peerTx(store.encodeStateAsUpdate(), write), 'peer').catch((err: { code?: string }) => expect(err.code).toBe('UPDATE_REFUSED'))
      await store.flush()
      await store.close()
      store = await testStore({ dir })
      const ids = store.listItems().map((i) => i.id)
      expect(ids).toContain(keep.id)
      expect(await store.readContent(keep.id)).toBe('kept body')
      for (const item of store.listItems()) {
        expect(store.getItem(item.id)).toMatchObject({ id: item.id })
        store.stageHistory(item.id)
        await store.readContent(item.id).catch((err: { code?: string }) => expect(err.code).toBeDefined())
      }
      await store.verify()
      await collect(store.audit())
      expect(store.peekNextId()).toMatch(/^[1-9][0-9]*$/)
    })
  }

  it('a stage log of 50,000 entries chained backwards resolves without a stack overflow', async () => {
    const store = await testStore()
    const item = await store.createItem({ name: 'deep' })
    const [created] = store.stageHistory(item.id)
    await store.applyUpdate(
      peerTx(store.encodeStateAsUpdate(), (doc) => {
        const map = doc.getMap<Y.Map<unknown>>('records').get(item.uid)!
        const entries: unknown[] = []
        // start → demote → start → … each based on the previous: a 50,000-deep basis chain, pushed newest first
        let basedOn = created!.id
        let epoch = 0
        for (let i = 0; i < 50_000; i++) {
          const forward = i % 2 === 0
          const id = `01K${String(i).padStart(23, '0')}`
          if (!forward) epoch++ // a backward event opens the next epoch
          entries.push({ id, epoch, stage: forward ? 'coding' : 'backlog', event: forward ? 'start' : 'demote', basedOn, by: 'peer', at: '' })
          basedOn = id
        }
        ;(map.get('stages') as Y.Array<unknown>).push(entries.reverse())
      }),
      'peer',
    )
    await store.flush()
    // 25,000 start/demote pairs: the last entry of the chain (epoch 25,000, backlog) wins.
    expect(store.getItem(item.id)?.stage).toBe('backlog')
    expect(store.stageHistory(item.id).length).toBeGreaterThan(50_000)
  })
})

describe('total readers: content slots a peer made up', () => {
  it('a slot named ../../x is not content: not listed, not mirrored to the shadow store, never a file name', async () => {
    const store = await testStore()
    const item = await store.createItem({ name: 'target', body: 'body' })
    await store.applyUpdate(
      peerTx(store.encodeStateAsUpdate(), (doc) => {
        const content = doc.getMap<Y.Map<unknown>>('records').get(item.uid)!.get('content') as Y.Map<unknown>
        content.set('../../x', 'evil')
        content.set('Gate Output', 'bad name')
        content.set('gate_output', 12345)
      }),
      'peer',
    )
    await store.flush()
    expect(store.contentSlots(item.id)).toEqual(['body'])
    expect(await store.readContent(item.id)).toBe('body')
    await expect(store.readContent(item.id, '../../x')).rejects.toMatchObject({ code: 'INVALID_INPUT' })
    const slots = []
    for await (const rows of store.maintenance.scanStoredRows({ ids: [item.id] })) slots.push(...rows.slots.map((s) => s.slot))
    expect(slots).toEqual(['body'])
    expect((await store.verify()).ok).toBe(true)
  })
})

describe('a bounded id space', () => {
  it('a mark, a claim or a tombstone above 2^40 − 1 from a peer is refused; one already on disk is not an id: allocation goes on from the real ids', async () => {
    const dir = await tempDir()
    let store = await testStore({ dir })
    await store.createItem({ name: 'one' })
    const update = peerTx(store.encodeStateAsUpdate(), (doc) => {
      doc.getMap('alloc').set('peer', Number.MAX_SAFE_INTEGER)
      doc.getMap('alloc').set('peer-2', 2 ** 40)
      doc.getMap('claims').set(`9007199254740991/${U(9)}`, { at: '', by: 'peer', reason: 'created' })
      doc.getMap('tombstones').set('1099511627776', { uid: U(8), at: '', by: 'peer', reason: null })
    })
    await expect(store.applyUpdate(update, 'peer')).rejects.toMatchObject({ code: 'UPDATE_REFUSED', message: expect.stringContaining('above the highest item id') })
    // One that got onto the disk anyway (written by a docket before this check): the readers bound it.
    await store.close()
    const seqs = [...(await snapshotRows(dir)).keys()].filter((k) => k.startsWith('!doc!')).map((k) => Number.parseInt(k.slice(5), 16))
    await putRaw(dir, `!doc!${(Math.max(...seqs) + 1).toString(16).padStart(16, '0')}`, update)
    store = await testStore({ dir })
    expect(store.peekNextId()).toBe('2')
    expect((await store.createItem({ name: 'two' })).id).toBe('2')
    expect(MAX_ITEM_NUMBER).toBe(2 ** 40 - 1)
    await expect(store.createItem({ name: 'too high', id: String(2 ** 40) })).rejects.toMatchObject({ code: 'INVALID_ID' })
    expect((await store.createItem({ name: 'highest', id: String(2 ** 40 - 1) })).id).toBe(String(2 ** 40 - 1))
    await expect(store.createItem({ name: 'none left' })).rejects.toMatchObject({ code: 'INVALID_INPUT', message: expect.stringContaining('exhausted') })
  })
})

describe('malformed entries are quarantined', () => {
  it('hidden from reads, reported once in the audit log and by verify(), kept as they are', async () => {
    const dir = await tempDir()
    let store = await testStore({ dir })
    const keep = await store.createItem({ name: 'keep' })
    const update = peerTx(store.encodeStateAsUpdate(), (doc) => {
      doc.getMap('records').set(U(1), 'not a map')
      const map = new Y.Map<unknown>()
      map.set('name', 'no uid')
      doc.getMap('records').set(U(2), map)
    })
    await store.applyUpdate(update, 'peer')
    await store.applyUpdate(update, 'peer') // again: reported once
    await store.flush()
    expect(store.listItems().map((i) => i.id)).toEqual([keep.id])
    const events = await collect(store.audit({ kinds: ['malformed_entry'] }))
    expect(events.map((e) => e.data.key).sort()).toEqual([U(1), U(2)])
    expect(store.log.lines.filter((l) => l.includes('malformed entry')).length).toBe(2)
    const report = await store.verify()
    expect(report.malformed.map((m) => m.key).sort()).toEqual([U(1), U(2)])
    expect(report.ok).toBe(true)
    await store.close()
    store = await testStore({ dir })
    expect((await store.verify()).malformed).toHaveLength(2)
    expect(await collect(store.audit({ kinds: ['malformed_entry'] }))).toHaveLength(2)
  })
})

describe('an item a peer made unreadable', () => {
  it('keeps its shadow rows as its last good copy, which recover adopts', async () => {
    const { discoverOrphans, recoverOrphans } = await import('../../recover/src/index.js')
    const store = await testStore()
    const victim = await store.createItem({ name: 'victim', body: 'precious body' })
    await store.apply(victim.id, 'start')
    const other = await store.createItem({ name: 'other' })
    // A field overwritten with something no item holds: the record reads as no item. (Replacing
    // a readable record whole is refused: see admission.test.ts.)
    await store.applyUpdate(peerTx(store.encodeStateAsUpdate(), (doc) => doc.getMap<Y.Map<unknown>>('records').get(victim.uid)!.set('name', 42)), 'peer')
    await store.flush()
    expect(store.getItem(victim.id)).toBeUndefined()
    expect(store.getItem(other.id)?.name).toBe('other')
    expect(await store.maintenance.readShadowRow(victim.id)).toMatchObject({ row: { uid: victim.uid, name: 'victim', stage: 'coding' } })
    const found = await discoverOrphans(store, { ids: [victim.id] })
    expect(found.orphans).toMatchObject([{ id: victim.id, uid: victim.uid, name: 'victim' }])
    const result = await recoverOrphans(store, { ids: [victim.id], dryRun: false })
    expect(result.failed).toEqual([])
    const back = store.getItem(result.recovered[0]!.newId!)
    expect(back).toMatchObject({ uid: victim.uid, name: 'victim', stage: 'coding' })
    expect(await store.readContent(back!.id)).toBe('precious body')
  })
})

describe('refused updates are evidence, counted and bounded', () => {
  it('the same refused update sent again is kept once; the count survives a reopen and verify() reports it', async () => {
    const dir = await tempDir()
    let store = await testStore({ dir })
    const item = await store.createItem({ name: 'deleted later' })
    await store.deleteItem(item.id)
    const rewrite = peerTx(store.encodeStateAsUpdate(), (doc) => doc.getMap('tombstones').delete(item.id))
    for (let i = 0; i < 3; i++) {
      const err = await store.applyUpdate(rewrite, 'a server that resends').catch((e: { code?: string; details?: { key?: string } }) => e)
      expect(err).toMatchObject({ code: 'UPDATE_REFUSED' })
    }
    expect(store.syncState().refusedUpdates).toBe(1)
    expect(await collect(store.audit({ kinds: ['update_refused'] }))).toHaveLength(1)
    await store.close()
    store = await testStore({ dir })
    expect(store.syncState().refusedUpdates).toBe(1)
    const report = await store.verify()
    expect(report.refusedUpdates).toBe(1)
    expect(report.ok).toBe(true)
    // A different refused update is a second piece of evidence.
    const other = peerTx(store.encodeStateAsUpdate(), (doc) => doc.getMap('deleted').delete([...doc.getMap('deleted').keys()][0]!))
    await expect(store.applyUpdate(other, 'peer')).rejects.toMatchObject({ code: 'UPDATE_REFUSED' })
    expect(store.syncState().refusedUpdates).toBe(2)
    expect((await store.verify()).refusedUpdates).toBe(2)
  })
})
