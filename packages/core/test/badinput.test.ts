import { chmod, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { openStore, type Store } from '../src/index.js'
import { delRaw, snapshotRows, putRaw, tempDir, testStore } from './support.js'

const BAD_IDS: unknown[] = ['', '0', '01', '-3', '1.5', 'abc', '9'.repeat(400), ' 1', '1e3', null, 3.5, {}, '9007199254740992']

/** Runs `attempt` and checks it failed with `code` and wrote nothing to the document. */
async function refuses(store: Store, code: string, attempt: () => unknown): Promise<void> {
  const before = store.encodeStateVector()
  let error: unknown
  try {
    await attempt()
  } catch (err) {
    error = err
  }
  expect(error, 'expected a DocketError').toMatchObject({ name: 'DocketError', code })
  expect((error as Error).message.length).toBeGreaterThan(20)
  await store.flush()
  expect(store.encodeStateVector()).toEqual(before)
}

describe('bad ids', () => {
  for (const bad of BAD_IDS) {
    it(`${JSON.stringify(bad)?.slice(0, 30)} → INVALID_ID everywhere, nothing written`, async () => {
      const store = await testStore()
      await store.createItem({ name: 'valid' })
      const id = bad as string
      await refuses(store, 'INVALID_ID', () => store.getItem(id))
      await refuses(store, 'INVALID_ID', () => store.apply(id, 'start'))
      await refuses(store, 'INVALID_ID', () => store.updateItem(id, { name: 'x' }))
      await refuses(store, 'INVALID_ID', () => store.deleteItem(id))
      await refuses(store, 'INVALID_ID', () => store.readContent(id))
      await refuses(store, 'INVALID_ID', () => store.isTombstoned(id))
      if (bad !== null && typeof bad !== 'object') {
        await refuses(store, 'INVALID_ID', () => store.createItem({ name: 'x', id }))
        await refuses(store, 'INVALID_ID', () => store.createItem({ name: 'x', dependsOn: [id] }))
      }
    })
  }
})

describe('bad fields', () => {
  it('refuses unknown types, stages, events, fields and slots', async () => {
    const store = await testStore()
    const item = await store.createItem({ name: 'x' })
    await refuses(store, 'INVALID_INPUT', () => store.createItem({ name: 'x', type: 'task' as never }))
    await refuses(store, 'INVALID_INPUT', () => store.createItem({ name: 'x', stage: 'limbo' as never }))
    await refuses(store, 'INVALID_INPUT', () => store.createItem({ name: 'x', colour: 'red' } as never))
    await refuses(store, 'INVALID_INPUT', () => store.createItem('name' as never))
    await refuses(store, 'INVALID_INPUT', () => store.createItem({ name: 'x', content: { 'Bad Slot': 'x' } }))
    await refuses(store, 'INVALID_INPUT', () => store.createItem({ name: 'x', body: 42 as never }))
    await refuses(store, 'INVALID_INPUT', () => store.createItem({ name: 'x', retries: -1 }))
    await refuses(store, 'INVALID_TRANSITION', () => store.apply(item.id, 'levitate' as never))
    await refuses(store, 'INVALID_INPUT', () => store.updateItem(item.id, {}))
    await refuses(store, 'INVALID_INPUT', () => store.updateItem(item.id, { stage: 'done' } as never))
    await refuses(store, 'INVALID_INPUT', () => store.writeContent(item.id, '../etc', 'x'))
  })

  it('refuses empty, oversized and multi-line names', async () => {
    const store = await testStore()
    for (const name of ['', '   ', 'x'.repeat(100 * 1024), 'line one\nline two', undefined]) {
      await refuses(store, 'INVALID_INPUT', () => store.createItem({ name: name as string }))
    }
    expect(store.listItems()).toEqual([])
  })

  it('refuses dependencies on itself, unknown and tombstoned ids', async () => {
    const store = await testStore()
    const a = await store.createItem({ name: 'a' })
    const b = await store.createItem({ name: 'b' })
    await store.deleteItem(b.id)
    await refuses(store, 'INVALID_INPUT', () => store.updateItem(a.id, { dependsOn: [a.id] }))
    await refuses(store, 'INVALID_INPUT', () => store.createItem({ name: 'c', dependsOn: ['99'] }))
    await refuses(store, 'INVALID_INPUT', () => store.createItem({ name: 'c', dependsOn: [b.id] }))
    await refuses(store, 'INVALID_INPUT', () => store.createItem({ name: 'c', id: '5', dependsOn: ['5'] }))
    // Importers may keep dangling ids, never deleted ones.
    const dangling = await store.createItem({ name: 'c', dependsOn: ['99'] }, { allowUnknownDependencies: true })
    expect(dangling.dependsOn).toEqual(['99'])
    await refuses(store, 'INVALID_INPUT', () => store.createItem({ name: 'd', dependsOn: [b.id] }, { allowUnknownDependencies: true }))
  })
})

describe('bad directories and stores', () => {
  it('refuses a directory that is a file', async () => {
    const file = join(await tempDir(), 'not-a-dir')
    await writeFile(file, 'x')
    await expect(openStore({ dir: file })).rejects.toMatchObject({ code: 'STORE_UNWRITABLE', message: expect.stringContaining(file) })
    await expect(openStore({ dir: join(file, 'below') })).rejects.toMatchObject({ code: 'STORE_UNWRITABLE' })
  })

  it('refuses a directory it cannot write', async () => {
    let dir: string
    if (process.getuid?.() === 0) {
      dir = '/sys/docket-cannot-write-here' // root can write anywhere but sysfs
    } else {
      const parent = await tempDir()
      await chmod(parent, 0o500)
      dir = join(parent, 'store')
    }
    await expect(openStore({ dir })).rejects.toMatchObject({ code: 'STORE_UNWRITABLE', message: expect.stringContaining(dir) })
  })

  it('refuses a store written by a newer schema and changes nothing', async () => {
    const dir = await tempDir()
    const store = await openStore({ dir, durability: 'relaxed' })
    await store.createItem({ name: 'x' })
    await store.close()
    await putRaw(dir, '!meta!schema', '3')
    const before = await snapshotRows(dir)
    await expect(openStore({ dir })).rejects.toMatchObject({ code: 'SCHEMA_TOO_NEW', details: { schema: 3, supported: 2 } })
    expect(await snapshotRows(dir)).toEqual(before)
  })

  it('refuses a LevelDB that is not a docket store, and a missing store when create is false', async () => {
    const dir = await tempDir()
    await expect(openStore({ dir: join(dir, 'none'), create: false })).rejects.toMatchObject({ code: 'STORE_NOT_FOUND', message: expect.stringContaining('docket init') })
    const store = await openStore({ dir, durability: 'relaxed' })
    await store.close()
    await delRaw(dir, '!meta!schema')
    await expect(openStore({ dir })).rejects.toMatchObject({ code: 'STORE_CORRUPT' })
  })

  it('opens despite a corrupted shadow row and reports it with its key', async () => {
    const dir = await tempDir()
    const store = await openStore({ dir, durability: 'relaxed' })
    await store.createItem({ name: 'one', body: 'b1' })
    await store.createItem({ name: 'two', body: 'b2' })
    await store.close()
    await putRaw(dir, '!shadow!0000000000000002', '{not json')
    const reopened = await testStore({ dir })
    expect(reopened.listItems().map((i) => i.name)).toEqual(['one', 'two'])
    expect(await reopened.readContent('2')).toBe('b2')
    const report = await reopened.verify()
    expect(report.ok).toBe(false)
    expect(report.corrupt).toEqual([{ sublevel: 'shadow', key: '0000000000000002', error: expect.stringContaining('not JSON') }])
  })

  it('opens despite a corrupted update row: reported at open with its key, kept on disk', async () => {
    const dir = await tempDir()
    const store = await openStore({ dir, durability: 'relaxed' })
    await store.createItem({ name: 'one' })
    await store.close()
    await putRaw(dir, '!doc!00000000000000ff', new Uint8Array([1, 2, 3, 250, 251]))
    const reopened = await testStore({ dir })
    expect(reopened.getItem('1')?.name).toBe('one')
    expect(reopened.maintenance.corruptRows()).toEqual([{ sublevel: 'doc', key: '00000000000000ff', error: expect.stringContaining('not a Yjs update') }])
    expect(reopened.log.lines.some((l) => l.includes('corrupt row in doc at key "00000000000000ff"'))).toBe(true)
    await reopened.createItem({ name: 'two' })
    await reopened.compact()
    await reopened.close()
    expect((await snapshotRows(dir)).has('!doc!00000000000000ff')).toBe(true)
  })
})
