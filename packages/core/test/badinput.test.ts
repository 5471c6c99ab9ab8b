import { existsSync } from 'node:fs'
import { chmod, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { openStore, SCHEMA_VERSION, type Store } from '../src/index.js'
import { collect, delRaw, snapshotRows, putRaw, tempDir, testStore } from './support.js'

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
    await putRaw(dir, '!meta!schema', String(SCHEMA_VERSION + 1))
    const before = await snapshotRows(dir)
    await expect(openStore({ dir })).rejects.toMatchObject({ code: 'SCHEMA_TOO_NEW', details: { schema: SCHEMA_VERSION + 1, supported: SCHEMA_VERSION } })
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

/** The audit log and the document, to show that a refused call wrote nothing at all. */
async function footprint(store: Store): Promise<{ sv: Uint8Array; audit: string[]; intents: string[] }> {
  await store.flush()
  return { sv: store.encodeStateVector(), audit: (await collect(store.audit())).map((e) => e.id), intents: store.maintenance.pendingIntents().map((i) => i.key) }
}

/**
 * Runs `attempt` and checks it failed with INVALID_INPUT naming the unknown `key` (and the
 * `hint` when one is expected), listing the accepted keys, with nothing written.
 */
async function refusesKey(store: Store, key: string, attempt: () => unknown, hint?: string): Promise<Error> {
  const before = await footprint(store)
  const error = await Promise.resolve()
    .then(attempt)
    .then(
      () => undefined,
      (err: unknown) => err,
    )
  expect(error, 'expected a DocketError').toMatchObject({ name: 'DocketError', code: 'INVALID_INPUT', details: { key } })
  const message = (error as Error).message
  expect(message).toMatch(new RegExp(`^unknown (option|field) ${key} for `))
  expect(message).toContain('accepted: ')
  if (hint !== undefined) {
    expect(message).toContain(`did you mean ${hint}?`)
    expect((error as { details: { accepted: string[] } }).details.accepted).toContain(hint)
  } else {
    expect(message).not.toContain('did you mean')
  }
  expect(await footprint(store)).toEqual(before)
  return error as Error
}

describe('unknown option keys', () => {
  it('audit({ id }) is refused with the itemId hint, not answered with every event', async () => {
    const store = await testStore()
    await store.createItem({ name: 'a' })
    await store.createItem({ name: 'b' })
    const error = await refusesKey(store, 'id', () => collect(store.audit({ id: '2' } as never)), 'itemId')
    expect(error.message).toBe('unknown option id for audit(): did you mean itemId? accepted: itemId, kinds, since, limit, newestFirst.')
    await refusesKey(store, 'kind', () => collect(store.audit({ kind: ['created'] } as never)), 'kinds')
    await refusesKey(store, 'limt', () => collect(store.audit({ limt: 1 } as never)), 'limit')
    // The right key still works.
    expect((await collect(store.audit({ itemId: '2' }))).map((e) => e.kind)).toEqual(['created'])
  })

  it('every Store method with an options or input object refuses unknown keys and writes nothing', async () => {
    const store = await testStore()
    const item = await store.createItem({ name: 'x', body: 'b' })
    await refusesKey(store, 'colour', () => store.createItem({ name: 'y', colour: 'red' } as never))
    await refusesKey(store, 'depends_on', () => store.createItem({ name: 'y', depends_on: [item.id] } as never), 'dependsOn')
    await refusesKey(store, 'allowUnknownDeps', () => store.createItem({ name: 'y', dependsOn: ['99'] }, { allowUnknownDeps: true } as never), 'allowUnknownDependencies')
    await refusesKey(store, 'why', () => store.createItem({ name: 'y', blocked: { reason: 'r', why: 'w' } as never }))
    await refusesKey(store, 'nmae', () => store.updateItem(item.id, { nmae: 'z' } as never), 'name')
    await refusesKey(store, 'reasn', () => store.updateItem(item.id, { blocked: { reasn: 'r' } as never }), 'reason')
    await refusesKey(store, 'reasn', () => store.apply(item.id, { type: 'start', reasn: 'go' } as never), 'reason')
    await refusesKey(store, 'reson', () => store.deleteItem(item.id, { reson: 'gone' } as never), 'reason')
    await refusesKey(store, 'stages', () => store.listItems({ stages: ['backlog'] } as never), 'stage')
    await refusesKey(store, 'timeout', () => store.assertSynced({ timeout: 10 } as never), 'timeoutMs')
    await refusesKey(store, 'offLine', () => store.assertSynced({ offLine: true } as never), 'offline')
    // whenSynced takes a number of milliseconds, not an options object.
    await refuses(store, 'INVALID_INPUT', () => store.whenSynced({ timeoutMs: 10 } as never))
    await refuses(store, 'INVALID_INPUT', () => store.whenSynced(-1))
    expect(store.getItem(item.id)).toMatchObject({ name: 'x', stage: 'backlog', blocked: null })
  })

  it('the maintenance surface refuses unknown keys and writes nothing', async () => {
    const store = await testStore()
    const item = await store.createItem({ name: 'x' })
    await store.deleteItem(item.id)
    const intent = await store.maintenance.beginIntent('import', { source: 'test' })
    await refusesKey(store, 'id', () => store.maintenance.scanStoredRows({ id: ['1'] } as never), 'ids')
    await refusesKey(store, 'expectUID', () => store.maintenance.adoptOrphan('1', { expectUID: null } as never), 'expectUid')
    const tomb = store.tombstone(item.id)!
    await refusesKey(store, 'reasn', () => store.maintenance.importTombstone('5', { uid: tomb.uid, reasn: 'x' } as never), 'reason')
    await refusesKey(store, 'extra', () => store.maintenance.endIntent(intent, { kind: 'import_run', data: {}, extra: 1 } as never))
    // The shape an export writes (with the tombstone's own id) is accepted; another id is not.
    await refuses(store, 'INVALID_INPUT', () => store.maintenance.importTombstone('5', { id: '6', uid: '01J00000000000000000000001' } as never))
    expect(await store.maintenance.importTombstone('5', { id: '5', uid: '01J00000000000000000000001', reason: 'moved' } as never)).toBe(true)
    expect(store.maintenance.pendingIntents().map((i) => i.key)).toEqual([intent])
  })

  it('openStore refuses unknown keys, in sync and hooks too, before it creates or opens anything', async () => {
    const parent = await tempDir()
    const fresh = join(parent, 'fresh')
    const cases: Array<[Record<string, unknown>, string, string | undefined]> = [
      [{ readonly: true }, 'readonly', 'readOnly'],
      [{ durabilty: 'relaxed' }, 'durabilty', 'durability'],
      [{ sync: { url: 'ws://127.0.0.1:1', tokn: 't' } }, 'tokn', 'token'],
      [{ hooks: { stepp: () => {} } }, 'stepp', 'step'],
      [{ colour: 'red' }, 'colour', undefined],
    ]
    for (const [extra, key, hint] of cases) {
      const error = await openStore({ dir: fresh, ...extra } as never).then(
        () => undefined,
        (err: unknown) => err as Error & { code: string },
      )
      expect(error).toMatchObject({ code: 'INVALID_INPUT', details: { key } })
      expect(error!.message).toContain(`unknown option ${key} for openStore()`)
      if (hint) expect(error!.message).toContain(`did you mean ${hint}?`)
      expect(existsSync(fresh)).toBe(false)
    }
    // An existing store: refused, and not a row changed.
    const dir = await tempDir()
    const store = await openStore({ dir, durability: 'relaxed' })
    await store.createItem({ name: 'x' })
    await store.close()
    const rows = await snapshotRows(dir)
    await expect(openStore({ dir, readonly: true } as never)).rejects.toMatchObject({ code: 'INVALID_INPUT', message: expect.stringContaining('did you mean readOnly?') })
    await expect(openStore({ dir, sync: { url: 'ws://127.0.0.1:1', documentName: 'd' } } as never)).rejects.toMatchObject({ code: 'INVALID_INPUT', message: expect.stringContaining('did you mean document?') })
    expect(await snapshotRows(dir)).toEqual(rows)
    // Every key of the options still opens.
    const again = await testStore({ dir, create: false, errorIfExists: false, readOnly: true, acceptDamage: false, compactAfterRows: 10, hooks: { step: () => {} } })
    expect(again.listItems()).toHaveLength(1)
  })
})

describe('strings that are not well-formed UTF-16', () => {
  const LONE = ['\uD800', 'a\uDC00b', 'clef \uD834', '\uDD1E after']

  it('are refused everywhere a string is stored, with where the bad character is, and nothing is written', async () => {
    const store = await testStore()
    const item = await store.createItem({ name: 'x' })
    for (const bad of LONE) {
      const attempts: Array<() => unknown> = [
        () => store.createItem({ name: bad }),
        () => store.createItem({ name: 'y', agent: bad }),
        () => store.createItem({ name: 'y', blocked: { reason: bad } }),
        () => store.createItem({ name: 'y', body: bad }),
        () => store.createItem({ name: 'y', content: { gate_output: bad } }),
        () => store.updateItem(item.id, { name: bad }),
        () => store.updateItem(item.id, { agent: bad }),
        () => store.updateItem(item.id, { blocked: { reason: bad } }),
        () => store.apply(item.id, { type: 'start', reason: bad }),
        () => store.writeContent(item.id, 'body', bad),
        () => store.deleteItem(item.id, { reason: bad }),
        () => store.maintenance.importTombstone('9', { uid: '01J00000000000000000000001', reason: bad }),
        () => store.maintenance.adoptOrphan('9', { name: bad }),
      ]
      for (const attempt of attempts) {
        const before = await footprint(store)
        const error = await Promise.resolve().then(attempt).then(() => undefined, (err: unknown) => err as Error)
        expect(error).toMatchObject({ code: 'INVALID_INPUT', message: expect.stringMatching(/lone surrogate \(\\u[0-9A-F]{4}\) at index \d+.*well-formed UTF-16 \/ UTF-8/) })
        // Every case holds one surrogate, unpaired: the error points at it.
        expect(error).toMatchObject({ details: { index: bad.search(/[\uD800-\uDFFF]/) } })
        expect(await footprint(store)).toEqual(before)
      }
    }
    expect(store.getItem(item.id)).toMatchObject({ name: 'x', stage: 'backlog', blocked: null })
    expect(await store.readContent(item.id)).toBeUndefined()
  })

  it('well-formed astral characters are kept and survive a reopen with nothing for doctor to find', async () => {
    const dir = await tempDir()
    const store = await openStore({ dir, durability: 'relaxed' })
    const name = 'clef 𝄞 and 🎉'
    const item = await store.createItem({ name, agent: 'bot 🤖', blocked: { reason: 'waits for 🚧' }, body: '# 𝄞\n', content: { gate_output: '✅ 🎉' } })
    await store.apply(item.id, { type: 'start', reason: 'go 🚀' }, { force: true })
    const other = await store.createItem({ name: 'other' })
    await store.updateItem(other.id, { name: '🎈 renamed' })
    await store.deleteItem(other.id, { reason: 'gone 👋' })
    const live = store.getItem(item.id)
    await store.close()
    const reopened = await testStore({ dir })
    expect(reopened.getItem(item.id)).toEqual(live)
    expect(reopened.getItem(item.id)).toMatchObject({ name, agent: 'bot 🤖', blocked: { reason: 'waits for 🚧' } })
    expect(await reopened.readContent(item.id)).toBe('# 𝄞\n')
    expect(await reopened.readContent(item.id, 'gate_output')).toBe('✅ 🎉')
    expect(reopened.stageHistory(item.id).at(-1)).toMatchObject({ reason: 'go 🚀' })
    expect(reopened.tombstone(other.id)).toMatchObject({ reason: 'gone 👋' })
    const report = await reopened.verify()
    expect(report.ok).toBe(true)
    expect(report.staleShadow).toEqual([])
  })
})
