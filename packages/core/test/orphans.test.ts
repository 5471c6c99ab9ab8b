import { describe, expect, it } from 'vitest'
import { openStore, type Uid } from '../src/index.js'
import { rawKeys, writeRawRows } from '../src/testing.js'
import { collect, snapshotRows, peerItemUpdate, tempDir, testStore } from './support.js'

const UID = '01JD00000000000000000000AA' as Uid

function orphanRow(id: string, uid: string, name: string): string {
  return JSON.stringify({ v: 1, id, uid, name, type: 'bug', stage: 'qa', dependsOn: [], blocked: null, frozen: false, agent: 'a9', retries: 2, createdAt: '2025-01-01T00:00:00.000Z', updatedAt: '2025-01-01T00:00:00.000Z', createdBy: 'old-replica', stages: [], slots: ['body'] })
}

async function plant(dir: string, id: string, uid = UID, name = `orphan ${id}`): Promise<void> {
  await writeRawRows(dir, [
    { type: 'put', sublevel: 'shadow', key: rawKeys.shadow(id), value: orphanRow(id, uid, name) },
    { type: 'put', sublevel: 'content', key: rawKeys.content(id), value: `body of ${name}` },
  ])
}

async function storeWith(live: number, deleted: string[] = []): Promise<string> {
  const dir = await tempDir()
  const store = await openStore({ dir, durability: 'relaxed', logger: { warn: () => {} } })
  for (let i = 1; i <= live; i++) await store.createItem({ name: `live ${i}`, body: `live body ${i}` })
  for (const id of deleted) await store.deleteItem(id)
  await store.close()
  return dir
}

describe('adoptOrphan', () => {
  it('moves a missing orphan to a fresh id in one batch, keeping its uid, metadata and content', async () => {
    const dir = await storeWith(2)
    await plant(dir, '50')
    const store = await testStore({ dir })
    const result = await store.maintenance.adoptOrphan('50', { expectUid: UID })
    expect(result).toMatchObject({ oldId: '50', newId: '51', uid: UID, kind: 'missing' })
    expect(result.item).toMatchObject({ id: '51', name: 'orphan 50', type: 'bug', stage: 'qa', agent: 'a9', retries: 2, createdBy: store.replicaId })
    expect(await store.readContent('51')).toBe('body of orphan 50')
    expect(await store.maintenance.readShadowRow('50')).toBeUndefined()
    expect(store.aliases('50')).toMatchObject([{ uid: UID, newId: '51', reason: 'recovery' }])
    expect(await collect(store.audit({ kinds: ['orphan_adopted'] }))).toMatchObject([{ itemId: '51', data: { oldId: '50', kind: 'missing' } }])
    expect((await store.verify()).ok).toBe(true)
  })

  it('leaves the live item of a displaced id whole', async () => {
    const dir = await storeWith(2)
    await plant(dir, '2', UID, 'lost the id')
    const store = await testStore({ dir })
    const before = store.getItem('2')!
    expect((await store.verify()).untracked).toEqual(['2'])
    const result = await store.maintenance.adoptOrphan('2')
    expect(result).toMatchObject({ newId: '3', kind: 'displaced' })
    expect(store.getItem('2')).toEqual(before)
    expect(await store.maintenance.readShadowRow('2')).toMatchObject({ row: { uid: before.uid, name: 'live 2' } })
    expect(await store.maintenance.readStoredContent('2')).toEqual(new Uint8Array(Buffer.from('live body 2')))
    expect((await store.verify()).ok).toBe(true)
  })

  it('refuses what is not an orphan, or not the orphan the caller saw', async () => {
    const dir = await storeWith(3, ['3'])
    await plant(dir, '3')
    const store = await testStore({ dir })
    await expect(store.maintenance.adoptOrphan('1')).rejects.toMatchObject({ code: 'ALREADY_EXISTS' })
    await expect(store.maintenance.adoptOrphan('40')).rejects.toMatchObject({ code: 'NOT_FOUND' })
    await expect(store.maintenance.adoptOrphan('3')).rejects.toMatchObject({ code: 'TOMBSTONED' })
    await expect(store.maintenance.adoptOrphan('3', { allowTombstoned: true, expectUid: '01JD00000000000000000000BB' as Uid })).rejects.toMatchObject({ code: 'CONFLICT' })
    await expect(store.maintenance.adoptOrphan('3', { name: '' })).rejects.toMatchObject({ code: 'INVALID_INPUT' })
    expect(await store.maintenance.readShadowRow('3')).toMatchObject({ row: { uid: UID } })
    const adopted = await store.maintenance.adoptOrphan('3', { allowTombstoned: true, expectUid: UID, name: 'wanted back' })
    expect(adopted.item.name).toBe('wanted back')
    expect(store.isTombstoned('3')).toBe(true)
    // the same uid cannot be adopted twice
    await store.close()
    await plant(dir, '60')
    const again = await testStore({ dir })
    await expect(again.maintenance.adoptOrphan('60')).rejects.toMatchObject({ code: 'ALREADY_EXISTS', details: { liveAs: adopted.newId } })
  })
})

describe('readOnly', () => {
  it('writes nothing: mutations refused, damaged rows not audited, reports still work', async () => {
    const dir = await storeWith(2)
    await writeRawRows(dir, [{ type: 'put', sublevel: 'doc', key: 'ffffffffffffffff', value: new Uint8Array([9, 9, 9]) }])
    const before = await snapshotRows(dir)
    const store = await testStore({ dir, readOnly: true })
    expect(store.readOnly).toBe(true)
    expect(store.listItems()).toHaveLength(2)
    expect(store.maintenance.corruptRows()).toHaveLength(1)
    expect((await store.verify()).corrupt).toHaveLength(1)
    for (const attempt of [
      () => store.createItem({ name: 'x' }),
      () => store.apply('1', 'start'),
      () => store.deleteItem('1'),
      () => store.compact(),
      () => store.applyUpdate(new Uint8Array([0, 0])),
    ]) {
      await expect(attempt()).rejects.toMatchObject({ code: 'STORE_READ_ONLY' })
    }
    await store.close()
    expect(await snapshotRows(dir)).toEqual(before)
    await expect(openStore({ dir: `${dir}-missing`, readOnly: true })).rejects.toMatchObject({ code: 'STORE_NOT_FOUND' })
  })
})

describe('review findings: orphans meeting remote items, deleted uids and concurrent adoptions', () => {
  it('an item from another replica that lands on orphan rows moves the orphan aside instead of overwriting it', async () => {
    const dir = await storeWith(2)
    await plant(dir, '5', UID, 'orphan on five')
    const store = await testStore({ dir })
    await store.applyUpdate(peerItemUpdate(store.encodeStateAsUpdate(), '5', { uid: '01JQ00000000000000000000P2', name: 'remote five' }), 'peer')
    expect(store.getItem('5')?.name).toBe('remote five')
    expect(await store.maintenance.readShadowRow('5')).toMatchObject({ row: { name: 'remote five' } })
    const moved = await collect(store.audit({ kinds: ['orphan_moved'] }))
    expect(moved).toMatchObject([{ data: { from: '5', uid: UID } }])
    const to = moved[0]!.data.to as string
    expect(await store.maintenance.readShadowRow(to)).toMatchObject({ row: { id: to, uid: UID, name: 'orphan on five' } })
    expect(Buffer.from((await store.maintenance.readStoredContent(to))!).toString()).toBe('body of orphan on five')
    expect(store.log.lines.some((l) => l.includes('held orphan rows here'))).toBe(true)
    expect(Number(store.peekNextId())).toBeGreaterThan(Number(to))
  })

  it('adopts the orphan of a deleted uid under a new uid, visibly', async () => {
    const dir = await storeWith(2)
    const seed = await testStore({ dir })
    const gone = seed.getItem('2')!
    await seed.deleteItem('2')
    await seed.close()
    await plant(dir, '40', gone.uid, 'leftover of a deleted item')
    const store = await testStore({ dir })
    const adopted = await store.maintenance.adoptOrphan('40', { allowTombstoned: true })
    expect(adopted.uid).not.toBe(gone.uid)
    expect(adopted.warnings).toContain(`its uid ${gone.uid} was deleted; adopted under a new uid`)
    expect(store.getItem(adopted.newId)).toMatchObject({ name: 'leftover of a deleted item' })
    await expect(store.maintenance.adoptOrphan('40')).rejects.toMatchObject({ code: 'NOT_FOUND' })
  })

  it('refuses a second adoption of the same id while the first runs', async () => {
    const dir = await storeWith(1)
    await writeRawRows(dir, [{ type: 'put', sublevel: 'content', key: rawKeys.content('30'), value: 'content only' }])
    const store = await testStore({ dir })
    const results = await Promise.allSettled([store.maintenance.adoptOrphan('30'), store.maintenance.adoptOrphan('30')])
    expect(results.map((r) => r.status).sort()).toEqual(['fulfilled', 'rejected'])
    expect(results.find((r) => r.status === 'rejected')).toMatchObject({ reason: { code: 'CONFLICT' } })
    expect(store.listItems().filter((i) => i.name === 'Recovered item 30')).toHaveLength(1)
  })
})
