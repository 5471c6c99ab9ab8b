import { rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { openReader, openStore, type Store, type StoreReader } from '../src/index.js'
import { readRawRows, writeRawRows } from '../src/testing.js'
import { capturingLogger, extractCoreSource, pull, runFixture, tempDir, testStore } from './support.js'

/** The last commit whose docket does not keep the index rows. */
const UNINDEXED_COMMIT = '0127987'

/** Everything the CLI's reads ask of a store, answered by a Store or by a reader. */
type Source = Pick<Store, 'listItems' | 'getItem' | 'stageHistory' | 'contentSlots' | 'readContentBytes' | 'aliases' | 'tombstone'> | StoreReader

async function answers(s: Source, ids: readonly string[]): Promise<unknown> {
  const out: Record<string, unknown> = {
    all: await s.listItems(),
    ready: await s.listItems({ ready: true }),
    notReady: await s.listItems({ ready: false }),
    coding: await s.listItems({ stage: ['coding', 'qa'] }),
    bugs: await s.listItems({ type: 'bug' }),
    aliases: (await s.aliases()).sort((a, b) => `${a.oldId}/${a.uid}`.localeCompare(`${b.oldId}/${b.uid}`)),
  }
  for (const id of ids) {
    const item = await s.getItem(id)
    const attempt = async <T>(fn: () => T | Promise<T>) => {
      try {
        return await fn()
      } catch (err) {
        return { error: (err as { code?: string }).code }
      }
    }
    const slots = await attempt(() => s.contentSlots(id))
    const content: Record<string, unknown> = {}
    if (Array.isArray(slots)) for (const slot of slots) content[slot] = Buffer.from((await s.readContentBytes(id, slot))!).toString('hex')
    out[id] = {
      item,
      history: await attempt(() => s.stageHistory(id)),
      slots,
      content,
      missingSlot: await attempt(() => s.readContentBytes(id, 'nothing_here')),
      tombstone: await s.tombstone(id),
      aliasesOf: await s.aliases(id),
    }
  }
  return out
}

/** A store with most of what a pipeline holds: dependencies, stages back and forth, slots, deletions, a re-anchored item. */
async function pipeline(): Promise<{ dir: string; ids: string[] }> {
  // b's Yjs client id is the higher: its value of a key both write concurrently is the one kept.
  const a = await testStore({ replicaId: 'replica-a', hooks: { clientId: () => 1001 } })
  const b = await testStore({ replicaId: 'replica-b', hooks: { clientId: () => 2002 } })
  const design = await a.createItem({ name: 'Design', body: '---\nname: Design\n---\nthe plan' })
  const parser = await a.createItem({ name: 'Parser', type: 'bug', dependsOn: [design.id], body: 'parse it', content: { gate_output: 'ok', raw: new Uint8Array([0, 255, 1]) } })
  const gone = await a.createItem({ name: 'Dropped' })
  const twice = await a.createItem({ name: 'Deleted on both replicas' })
  await a.apply(design.id, 'start')
  await a.apply(design.id, 'gates_passed')
  await a.apply(parser.id, 'start')
  await a.apply(parser.id, { type: 'demote', reason: 'needs a design first' })
  await a.updateItem(parser.id, { agent: 'coder-7', blocked: { reason: 'waiting on design' } })
  await a.writeContent(parser.id, 'gate_output', 'failed: 3 tests')
  await a.writeContent(parser.id, 'raw', null)
  await a.deleteItem(gone.id, { reason: 'duplicate' })
  await pull(b, a)
  // Offline on both replicas: concurrent decisions on one item, and the same next id created twice.
  await a.apply(design.id, 'accepted')
  await b.apply(design.id, { type: 'demote', reason: 'not what we need' })
  // Two tombstones of one id: which value the key keeps is decided by the merge, later.
  await a.deleteItem(twice.id, { reason: 'done elsewhere' })
  await b.deleteItem(twice.id, { reason: 'obsolete' })
  const fromA = await a.createItem({ name: 'from a', type: 'spike' })
  const fromB = await b.createItem({ name: 'from b', body: 'b body' })
  expect(fromA.id).toBe(fromB.id)
  await pull(b, a)
  await pull(a, b)
  await pull(b, a)
  await b.close()
  expect(a.aliases()).toHaveLength(1)
  expect(a.stageHistory(design.id).some((h) => !h.valid)).toBe(true)
  await a.close()
  return { dir: a.dir, ids: ['1', '2', '3', '4', '5', '6', '7', '99'] }
}

describe('openReader: reads from the index rows', () => {
  it('answers every read as the document does, without decoding it', async () => {
    const { dir, ids } = await pipeline()
    const store = await openStore({ dir, readOnly: true, logger: capturingLogger() })
    const expected = await answers(store, ids)
    expect((await store.verify()).staleIndex).toEqual([])
    await store.close()
    const reader = await openReader({ dir })
    try {
      expect(reader.source).toBe('index')
      expect(reader.fallback).toBeUndefined()
      expect(await answers(reader, ids)).toEqual(expected)
      // The deleted id says so, as a Store does.
      await expect(reader.stageHistory('3')).rejects.toMatchObject({ code: 'TOMBSTONED' })
      await expect(reader.stageHistory('99')).rejects.toMatchObject({ code: 'NOT_FOUND' })
      expect(await reader.readContent('1')).toBe('---\nname: Design\n---\nthe plan')
      await expect(reader.readContent('2', 'raw')).resolves.toBeUndefined()
      const audit = []
      for await (const event of reader.audit({ kinds: ['deleted'] })) audit.push(event)
      expect(audit.map((e) => e.itemId)).toEqual(['3', '4'])
      expect(reader.source).toBe('index')
    } finally {
      await reader.close()
    }
  })

  it('keeps the index of remote changes too: a replica that only received them reads the same', async () => {
    const a = await testStore({ replicaId: 'replica-a' })
    const b = await testStore({ replicaId: 'replica-b' })
    const x = await a.createItem({ name: 'x', body: 'x body' })
    await a.createItem({ name: 'y', dependsOn: [x.id] })
    await a.apply(x.id, 'start')
    await pull(b, a)
    await a.deleteItem('2')
    await a.apply(x.id, 'gates_passed')
    await pull(b, a)
    await a.close()
    const expected = await answers(b, ['1', '2'])
    await b.close()
    const reader = await openReader({ dir: b.dir })
    try {
      expect(reader.source).toBe('index')
      expect(await answers(reader, ['1', '2'])).toEqual(expected)
    } finally {
      await reader.close()
    }
  })

  it('a body written on another replica and not fetched here is CONTENT_UNAVAILABLE, naming what to do', async () => {
    const a = await testStore({ replicaId: 'replica-a' })
    const b = await testStore({ replicaId: 'replica-b' })
    await a.createItem({ name: 'x', body: 'only on a' })
    await b.applyUpdate(a.encodeStateAsUpdate(b.encodeStateVector()), 'peer')
    await b.close()
    const reader = await openReader({ dir: b.dir })
    try {
      expect(reader.source).toBe('index')
      expect(await reader.contentSlots('1')).toEqual(['body'])
      await expect(reader.readContent('1')).rejects.toMatchObject({ code: 'CONTENT_UNAVAILABLE', message: expect.stringContaining('docket sync') })
    } finally {
      await reader.close()
    }
  })
})

describe('openReader: falls back to the document, never to a wrong answer', () => {
  let oldRoot: string | undefined
  afterAll(async () => {
    if (oldRoot) await rm(oldRoot, { recursive: true, force: true })
  })

  it('after a batch written by a docket that does not keep the index; the next writable open rebuilds it', async () => {
    const store = await testStore()
    await store.createItem({ name: 'first', body: 'one' })
    await store.close()
    const old = extractCoreSource(UNINDEXED_COMMIT, 'unindexed', 'the last commit that does not keep the index')
    oldRoot = old.root
    const result = await runFixture('old-writer.ts', [old.src, store.dir, 'written by an old docket'], 50_000)
    expect(result.code, result.stderr).toBe(0)
    const written = JSON.parse(result.stdout.trim()) as { id: string }

    const logger = capturingLogger()
    const stale = await openReader({ dir: store.dir, logger })
    try {
      expect(stale.source).toBe('document')
      expect(stale.fallback).toMatch(/index is not complete/)
      expect((await stale.getItem(written.id))?.name).toBe('written by an old docket')
      expect((await stale.getItem('1'))?.stage).toBe('coding')
    } finally {
      await stale.close()
    }

    const reopened = await openStore({ dir: store.dir, logger })
    const report = await reopened.verify()
    expect(report.indexComplete).toBe(true)
    expect(report.staleIndex).toEqual([])
    await reopened.close()
    const rebuilt = await openReader({ dir: store.dir })
    try {
      expect(rebuilt.source).toBe('index')
      expect((await rebuilt.getItem(written.id))?.name).toBe('written by an old docket')
      expect((await rebuilt.getItem('1'))?.stage).toBe('coding')
    } finally {
      await rebuilt.close()
    }
  }, 60_000)

  it('when the store is missing acknowledged work: the read-only open reports the damage', async () => {
    const store = await testStore()
    await store.createItem({ name: 'x' })
    await store.close()
    await writeFile(join(store.dir, 'CHECKPOINT'), JSON.stringify({ commit: 10_000, at: new Date().toISOString() }))
    const reader = await openReader({ dir: store.dir, logger: capturingLogger() })
    try {
      expect(reader.source).toBe('document')
      expect(reader.fallback).toMatch(/acknowledged batches lost/)
      expect(reader.damage()?.findings.join(' ')).toMatch(/acknowledged batches lost/)
      expect((await reader.getItem('1'))?.name).toBe('x')
    } finally {
      await reader.close()
    }
  })

  it('an unreadable index row: the document answers (with a warning), verify names the row and doctor --fix rebuilds it', async () => {
    const store = await testStore()
    await store.createItem({ name: 'x' })
    await store.createItem({ name: 'y' })
    await store.close()
    await writeRawRows(store.dir, [{ type: 'put', sublevel: 'index', key: 'i/0000000000000002', value: '{"torn' }])
    const logger = capturingLogger()
    const reader = await openReader({ dir: store.dir, logger })
    try {
      expect(reader.source).toBe('index')
      expect((await reader.getItem('1'))?.name).toBe('x')
      expect((await reader.listItems()).map((i) => i.name)).toEqual(['x', 'y'])
      expect(reader.source).toBe('document')
      expect(logger.lines.join('\n')).toMatch(/index row i\/0000000000000002 .*unreadable.*doctor --fix/)
    } finally {
      await reader.close()
    }
    const repaired = await testStore({ dir: store.dir })
    expect((await repaired.verify()).staleIndex).toEqual(['i/0000000000000002'])
    await repaired.maintenance.repairShadow()
    expect((await repaired.verify()).staleIndex).toEqual([])
    await repaired.close()
    const again = await openReader({ dir: store.dir })
    try {
      expect((await again.listItems()).map((i) => i.name)).toEqual(['x', 'y'])
      expect(again.source).toBe('index')
    } finally {
      await again.close()
    }
  })

  it('a row that parses but holds what docket never writes (a damaged type, a tombstone without its fields) sends the read to the document, not to a default', async () => {
    const store = await testStore()
    const bug = await store.createItem({ name: 'a bug', type: 'bug' })
    await store.createItem({ name: 'gone' })
    await store.deleteItem('2', { reason: 'dup' })
    const expected = store.getItem(bug.id)
    await store.close()
    const rows = await readRawRows(store.dir)
    const row = JSON.parse(Buffer.from(rows.find((r) => r.sublevel === 'index' && r.key === 'i/0000000000000001')!.value).toString()) as Record<string, unknown>
    await writeRawRows(store.dir, [
      { type: 'put', sublevel: 'index', key: 'i/0000000000000001', value: JSON.stringify({ ...row, type: 'saga' }) },
      { type: 'put', sublevel: 'index', key: 't/0000000000000002', value: JSON.stringify({ uid: 42 }) },
    ])
    for (const read of [(r: StoreReader) => r.getItem(bug.id), (r: StoreReader) => r.tombstone('2')]) {
      const reader = await openReader({ dir: store.dir, logger: capturingLogger() })
      try {
        expect(reader.source).toBe('index')
        await read(reader)
        expect(reader.source).toBe('document')
      } finally {
        await reader.close()
      }
    }
    const reader = await openReader({ dir: store.dir, logger: capturingLogger() })
    try {
      expect(await reader.getItem(bug.id)).toEqual(expected)
      expect(await reader.tombstone('2')).toMatchObject({ reason: 'dup' })
    } finally {
      await reader.close()
    }
  })

  it('a stale index row (readable, but not what the document says) is found by verify and rebuilt by doctor --fix', async () => {
    const store = await testStore()
    await store.createItem({ name: 'x' })
    await store.close()
    const forged = { id: '1', uid: '01ARZ3NDEKTSV4RRFFQ69G5FAV', name: 'forged', type: 'story', stage: 'done', dependsOn: [], blocked: null, frozen: false, retries: 0, createdAt: '', updatedAt: '', createdBy: 'x' }
    await writeRawRows(store.dir, [
      { type: 'put', sublevel: 'index', key: 'i/0000000000000001', value: JSON.stringify(forged) },
      { type: 'put', sublevel: 'index', key: 'i/0000000000000009', value: JSON.stringify({ ...forged, id: '9' }) },
    ])
    const reopened = await testStore({ dir: store.dir })
    const report = await reopened.verify()
    expect(report.staleIndex.sort()).toEqual(['i/0000000000000001', 'i/0000000000000009'])
    expect(report.ok).toBe(false)
    await reopened.maintenance.repairShadow()
    expect((await reopened.verify()).ok).toBe(true)
    await reopened.close()
    const reader = await openReader({ dir: store.dir })
    try {
      expect(await reader.listItems()).toMatchObject([{ id: '1', name: 'x', stage: 'backlog' }])
    } finally {
      await reader.close()
    }
  })
})

describe('openReader after an update row was damaged', () => {
  it('a writable open rebuilds the index from what the document still says (once), so the reader agrees with the store', async () => {
    const store = await testStore()
    await store.createItem({ name: 'x' })
    await store.apply('1', 'start')
    await store.close()
    // The last update row (the start) is damaged in place: every open skips it, and the index rows written with it say more.
    const rows = await readRawRows(store.dir)
    const last = rows.filter((r) => r.sublevel === 'doc').map((r) => r.key).sort().at(-1)!
    await writeRawRows(store.dir, [{ type: 'put', sublevel: 'doc', key: last, value: new Uint8Array([0xff, 0x00, 0x13, 0x37]) }])
    const reopened = await testStore({ dir: store.dir })
    expect(reopened.getItem('1')?.stage).toBe('backlog')
    expect((await reopened.verify()).staleIndex).toEqual([])
    await reopened.close()
    const reader = await openReader({ dir: store.dir })
    try {
      expect(reader.source).toBe('index')
      expect((await reader.getItem('1'))?.stage).toBe('backlog')
    } finally {
      await reader.close()
    }
    // Rebuilt once for that damaged row, not at every open.
    const before = (await readRawRows(store.dir)).find((r) => r.sublevel === 'meta' && r.key === 'commit')!
    const again = await testStore({ dir: store.dir })
    await again.close()
    const after = (await readRawRows(store.dir)).find((r) => r.sublevel === 'meta' && r.key === 'commit')!
    expect(Buffer.from(after.value).toString()).toBe(Buffer.from(before.value).toString())
  })
})

describe('openReader: checks and errors', () => {
  it('refuses bad options and bad ids, and reads nothing once closed', async () => {
    const store = await testStore()
    await store.createItem({ name: 'x' })
    await store.close()
    await expect(openReader({ dir: store.dir, readOnly: true } as never)).rejects.toMatchObject({ code: 'INVALID_INPUT' })
    const reader = await openReader({ dir: store.dir })
    await expect(reader.getItem('abc')).rejects.toMatchObject({ code: 'INVALID_ID' })
    await expect(reader.listItems({ stage: 'nowhere' as never })).rejects.toMatchObject({ code: 'INVALID_INPUT' })
    await expect(reader.readContent('1', 'Bad Slot')).rejects.toMatchObject({ code: 'INVALID_INPUT' })
    await reader.close()
    await reader.close()
    await expect(reader.getItem('1')).rejects.toMatchObject({ code: 'STORE_CLOSED' })
  })

  it('a directory without a store is STORE_NOT_FOUND, and a held store is STORE_LOCKED, as for openStore', async () => {
    const empty = await tempDir()
    await expect(openReader({ dir: join(empty, 'none') })).rejects.toMatchObject({ code: 'STORE_NOT_FOUND' })
    const held = await testStore({ serve: false }) // a holder that serves would answer instead (holder.test.ts)
    await expect(openReader({ dir: held.dir })).rejects.toMatchObject({ code: 'STORE_LOCKED' })
  })
})
