import { describe, expect, it } from 'vitest'
import { DocketError, openStore, type StoreEvent } from '../src/index.js'
import { collect, snapshotRows, keysWithPrefix, putRaw, tempDir, testStore } from './support.js'

describe('createItem and reads', () => {
  it('creates items with sequential ids, defaults and content', async () => {
    const store = await testStore()
    const a = await store.createItem({ name: 'First', body: '---\nname: First\n---\nhello' })
    const b = await store.createItem({ name: 'Second', type: 'bug', dependsOn: [a.id], content: { gate_output: 'ok' } })
    expect(a).toMatchObject({ id: '1', name: 'First', type: 'story', stage: 'backlog', dependsOn: [], blocked: null, frozen: false, retries: 0 })
    expect(a.createdBy).toBe(store.replicaId)
    expect(a.uid).toMatch(/^[0-9A-HJKMNP-TV-Z]{26}$/)
    expect(b).toMatchObject({ id: '2', type: 'bug', dependsOn: ['1'] })
    expect(await store.readContent('1')).toBe('---\nname: First\n---\nhello')
    expect(await store.readContent('2', 'gate_output')).toBe('ok')
    expect(await store.readContent('2')).toBeUndefined()
    expect(store.contentSlots('2')).toEqual(['gate_output'])
    expect(store.getItem('3')).toBeUndefined()
    expect(store.listItems().map((i) => i.id)).toEqual(['1', '2'])
  })

  it('returns copies: mutating a returned item changes nothing', async () => {
    const store = await testStore()
    const item = await store.createItem({ name: 'x', dependsOn: [] })
    item.dependsOn.push('99' as never)
    item.name = 'changed'
    expect(store.getItem(item.id)).toMatchObject({ name: 'x', dependsOn: [] })
  })

  it('can start an item in a given stage (importers)', async () => {
    const store = await testStore()
    const item = await store.createItem({ name: 'imported', stage: 'done' })
    expect(item.stage).toBe('done')
    expect(store.stageHistory(item.id)).toHaveLength(1)
  })

  it('keeps an explicit id and moves the allocator past it', async () => {
    const store = await testStore()
    await store.createItem({ name: 'kept', id: '989' })
    expect(store.peekNextId()).toBe('990')
    await expect(store.createItem({ name: 'again', id: '989' })).rejects.toMatchObject({ code: 'ALREADY_EXISTS' })
    expect((await store.createItem({ name: 'next' })).id).toBe('990')
  })
})

describe('allocator: the original reissue bug', () => {
  it('create 1..5, delete 5 and 3 → next id is 6, also after reopen and without content rows', async () => {
    const dir = await tempDir()
    const store = await openStore({ dir, durability: 'relaxed' })
    for (let i = 1; i <= 5; i++) expect((await store.createItem({ name: `item ${i}`, body: `b${i}` })).id).toBe(String(i))
    await store.deleteItem('5')
    await store.deleteItem('3')
    expect(store.peekNextId()).toBe('6')
    expect(store.tombstonedIds()).toEqual(['3', '5'])
    await store.close()

    // Deleting clears content and shadow rows: nothing of 3 or 5 is left outside the CRDT.
    const dump = await snapshotRows(dir)
    expect(keysWithPrefix(dump, '!content!').filter((k) => k.includes('0000000000000005') || k.includes('0000000000000003'))).toEqual([])
    expect(keysWithPrefix(dump, '!shadow!')).toEqual(['!shadow!0000000000000001', '!shadow!0000000000000002', '!shadow!0000000000000004'])

    const reopened = await openStore({ dir, durability: 'relaxed' })
    try {
      expect(reopened.peekNextId()).toBe('6')
      const next = await reopened.createItem({ name: 'six' })
      expect(next.id).toBe('6')
      expect(reopened.isTombstoned('5')).toBe(true)
      await expect(reopened.updateItem('5', { name: 'resurrect' })).rejects.toMatchObject({ code: 'TOMBSTONED' })
    } finally {
      await reopened.close()
    }
  })

  it('refuses an explicit id that holds orphan rows (evidence is never overwritten)', async () => {
    const dir = await tempDir()
    const store = await openStore({ dir, durability: 'relaxed' })
    await store.close()
    await putRaw(dir, '!content!0000000000000042/body', 'orphan body')
    const reopened = await openStore({ dir, durability: 'relaxed' })
    await expect(reopened.createItem({ name: 'import', id: '42' })).rejects.toMatchObject({ code: 'ALREADY_EXISTS', details: { orphan: true } })
    await reopened.close()
    expect((await snapshotRows(dir)).get('!content!0000000000000042/body')).toBe(Buffer.from('orphan body').toString('hex'))
  })

  it('counts ids that only the content store holds', async () => {
    const dir = await tempDir()
    const store = await openStore({ dir, durability: 'relaxed' })
    await store.createItem({ name: 'one' })
    await store.close()
    await putRaw(dir, '!content!0000000000000700/body', 'stale row')
    const reopened = await openStore({ dir, durability: 'relaxed' })
    expect(reopened.peekNextId()).toBe('701')
    await reopened.close()
  })
})

describe('updateItem, content and delete', () => {
  it('updates fields and records before/after in the audit log', async () => {
    const store = await testStore()
    const dep = await store.createItem({ name: 'dep' })
    const item = await store.createItem({ name: 'item' })
    const updated = await store.updateItem(item.id, { name: 'renamed', dependsOn: [dep.id], agent: 'agent-7', retries: 2, blocked: { reason: 'waiting' }, frozen: true })
    expect(updated).toMatchObject({ name: 'renamed', dependsOn: [dep.id], agent: 'agent-7', retries: 2, blocked: { reason: 'waiting' }, frozen: true })
    expect(updated.updatedAt >= item.updatedAt).toBe(true)
    const cleared = await store.updateItem(item.id, { agent: null, blocked: null })
    expect(cleared.agent).toBeUndefined()
    expect(cleared.blocked).toBeNull()
    const events = await collect(store.audit({ kinds: ['updated'], itemId: item.id }))
    expect(events).toHaveLength(2)
    expect(events[0]!.data.changes).toMatchObject({ name: { from: 'item', to: 'renamed' } })
    expect(events.every((e) => e.investigate === false)).toBe(true)
  })

  it('refuses dependency cycles', async () => {
    const store = await testStore()
    const a = await store.createItem({ name: 'a' })
    const b = await store.createItem({ name: 'b', dependsOn: [a.id] })
    await expect(store.updateItem(a.id, { dependsOn: [b.id] })).rejects.toMatchObject({ code: 'INVALID_INPUT', details: { cycle: ['1', '2', '1'] } })
  })

  it('writes, replaces and removes content slots', async () => {
    const store = await testStore()
    const item = await store.createItem({ name: 'x', body: 'v1' })
    await store.writeContent(item.id, 'body', 'v2')
    await store.writeContent(item.id, 'gate_output', new Uint8Array([0xff, 0x00, 0xfe]))
    expect(await store.readContent(item.id)).toBe('v2')
    expect(await store.readContentBytes(item.id, 'gate_output')).toEqual(new Uint8Array([0xff, 0x00, 0xfe]))
    await expect(store.readContent(item.id, 'gate_output')).rejects.toMatchObject({ code: 'INVALID_INPUT' })
    await store.writeContent(item.id, 'body', null)
    expect(await store.readContent(item.id)).toBeUndefined()
    expect(store.contentSlots(item.id)).toEqual(['gate_output'])
  })

  it('deletes: tombstone, content cleared, idempotent, never reissued, dependents not ready', async () => {
    const store = await testStore()
    const dep = await store.createItem({ name: 'dep', body: 'x' })
    const user = await store.createItem({ name: 'user', dependsOn: [dep.id] })
    const result = await store.deleteItem(dep.id, { reason: 'duplicate' })
    expect(result).toEqual({ id: dep.id, uid: dep.uid, alreadyDeleted: false })
    expect(await store.deleteItem(dep.id)).toEqual({ id: dep.id, uid: dep.uid, alreadyDeleted: true })
    expect(store.getItem(dep.id)).toBeUndefined()
    expect(store.tombstone(dep.id)).toMatchObject({ uid: dep.uid, reason: 'duplicate', by: store.replicaId })
    expect(store.listItems({ ready: true }).map((i) => i.id)).not.toContain(user.id)
    await expect(store.readContent(dep.id)).rejects.toMatchObject({ code: 'TOMBSTONED' })
    await expect(store.deleteItem('42')).rejects.toMatchObject({ code: 'NOT_FOUND' })
    expect((await store.createItem({ name: 'new' })).id).toBe('3')
  })

  it('rejects every write to a tombstoned id loudly: WARN line and audit event', async () => {
    const store = await testStore()
    const item = await store.createItem({ name: 'gone' })
    await store.deleteItem(item.id)
    const attempts = [
      () => store.updateItem(item.id, { name: 'back' }),
      () => store.apply(item.id, 'start'),
      () => store.writeContent(item.id, 'body', 'text'),
      () => store.createItem({ name: 'same id', id: item.id }),
    ]
    for (const attempt of attempts) await expect(attempt()).rejects.toMatchObject({ code: 'TOMBSTONED' })
    expect(store.log.lines.filter((l) => l.startsWith('WARN') && l.includes(`item ${item.id} rejected`))).toHaveLength(4)
    const rejected = await collect(store.audit({ kinds: ['write_rejected'] }))
    expect(rejected.map((e) => e.data.op)).toEqual(['update', 'apply', 'writeContent', 'create'])
  })
})

describe('listItems', () => {
  it('filters by stage, type and readiness (every dependency done or archived)', async () => {
    const store = await testStore()
    const a = await store.createItem({ name: 'a' })
    const b = await store.createItem({ name: 'b', type: 'bug' })
    const c = await store.createItem({ name: 'c', dependsOn: [a.id, b.id] })
    const d = await store.createItem({ name: 'd', dependsOn: [a.id] })
    for (const event of ['start', 'qa_skipped', 'merge_succeeded'] as const) await store.apply(a.id, event)
    expect(store.listItems({ ready: true }).map((i) => i.id)).toEqual([a.id, b.id, d.id])
    for (const event of ['start', 'qa_skipped', 'merge_succeeded', 'archive'] as const) await store.apply(b.id, event)
    expect(store.listItems({ ready: true }).map((i) => i.id)).toEqual([a.id, b.id, c.id, d.id])
    expect(store.listItems({ stage: 'backlog' }).map((i) => i.id)).toEqual([c.id, d.id])
    expect(store.listItems({ stage: ['done', 'archived'] }).map((i) => i.id)).toEqual([a.id, b.id])
    expect(store.listItems({ type: 'bug' }).map((i) => i.id)).toEqual([b.id])
    expect(store.listItems({ ready: false })).toEqual([])
    expect(() => store.listItems({ stage: 'nope' as never })).toThrow(expect.objectContaining({ code: 'INVALID_INPUT' }))
  })
})

describe('apply', () => {
  it('moves through stages, records history and audits each transition', async () => {
    const store = await testStore()
    const item = await store.createItem({ name: 'x' })
    await store.apply(item.id, 'start')
    await store.apply(item.id, { type: 'demote', reason: 'not ready' })
    const after = await store.apply(item.id, 'start')
    expect(after.stage).toBe('coding')
    const history = store.stageHistory(item.id)
    expect(history.map((h) => [h.event, h.stage, h.epoch])).toEqual([
      ['created', 'backlog', 0],
      ['start', 'coding', 0],
      ['demote', 'backlog', 1],
      ['start', 'coding', 1],
    ])
    expect(history.at(-1)!.current).toBe(true)
    expect(history[2]!.reason).toBe('not ready')
    const audit = await collect(store.audit({ kinds: ['transitioned'] }))
    expect(audit.map((e) => `${e.data.from}->${e.data.to}`)).toEqual(['backlog->coding', 'coding->backlog', 'backlog->coding'])
  })

  it('refuses invalid events with the list of valid ones', async () => {
    const store = await testStore()
    const item = await store.createItem({ name: 'x' })
    const err = await store.apply(item.id, 'archive').catch((e: unknown) => e)
    expect(err).toBeInstanceOf(DocketError)
    expect(err).toMatchObject({ code: 'INVALID_TRANSITION', details: { validEvents: ['start', 'abandon', 'supersede', 'reject'] } })
    await expect(store.apply(item.id, 'teleport' as never)).rejects.toMatchObject({ code: 'INVALID_TRANSITION' })
    await expect(store.apply('77', 'start')).rejects.toMatchObject({ code: 'NOT_FOUND' })
    expect(store.getItem(item.id)!.stage).toBe('backlog')
  })
})

describe('events, audit and lifecycle', () => {
  it('errorIfExists creates a new store and refuses an existing one without writing to it', async () => {
    const dir = await tempDir()
    const created = await openStore({ dir, durability: 'relaxed', errorIfExists: true, replicaId: 'first' })
    await created.createItem({ name: 'kept' })
    await created.close()
    const before = await snapshotRows(dir)
    await expect(openStore({ dir, errorIfExists: true, replicaId: 'second' })).rejects.toMatchObject({ code: 'STORE_EXISTS', message: expect.stringContaining('replica first') })
    expect(await snapshotRows(dir)).toEqual(before)
    await expect(openStore({ dir, errorIfExists: 'yes' as never })).rejects.toMatchObject({ code: 'INVALID_INPUT' })
    const again = await testStore({ dir })
    expect(again.listItems().map((i) => i.name)).toEqual(['kept'])
  })

  it('notifies subscribers after changes are on disk', async () => {
    const store = await testStore()
    const events: StoreEvent[] = []
    const off = store.subscribe((e) => events.push(e))
    const item = await store.createItem({ name: 'x' })
    await store.deleteItem(item.id)
    off()
    await store.createItem({ name: 'y' })
    expect(events).toEqual([
      { type: 'changed', ids: ['1'], origin: 'local' },
      { type: 'deleted', id: '1', uid: item.uid, origin: 'local' },
      { type: 'changed', ids: ['1'], origin: 'local' },
    ])
  })

  it('reads the audit log with since, kinds, itemId and limit', async () => {
    const store = await testStore()
    await store.createItem({ name: 'a' })
    await store.createItem({ name: 'b' })
    const all = await collect(store.audit())
    expect(all.map((e) => e.kind)).toEqual(['store_created', 'created', 'created'])
    const ids = all.map((e) => e.id)
    expect([...ids].sort()).toEqual(ids)
    expect((await collect(store.audit({ since: ids[1] }))).map((e) => e.itemId)).toEqual(['2'])
    expect(await collect(store.audit({ limit: 1 }))).toHaveLength(1)
    await expect(collect(store.audit({ since: 'yesterday' }))).rejects.toMatchObject({ code: 'INVALID_INPUT' })
    await expect(collect(store.audit({ kinds: ['nope' as never] }))).rejects.toMatchObject({ code: 'INVALID_INPUT' })
  })

  it('close is idempotent, disposes, and later calls fail with STORE_CLOSED', async () => {
    const dir = await tempDir()
    {
      await using store = await openStore({ dir, durability: 'relaxed' })
      await store.createItem({ name: 'x' })
    }
    const store = await openStore({ dir, durability: 'relaxed' })
    expect(store.replicaId).toMatch(/^[0-9A-Z]{26}$/)
    const replica = store.replicaId
    const pending = store.createItem({ name: 'in flight' })
    await Promise.all([store.close(), store.close()])
    await expect(pending).resolves.toMatchObject({ id: '2' })
    expect(() => store.getItem('1')).toThrow(expect.objectContaining({ code: 'STORE_CLOSED' }))
    await expect(store.createItem({ name: 'late' })).rejects.toMatchObject({ code: 'STORE_CLOSED' })
    const again = await openStore({ dir, durability: 'relaxed' })
    expect(again.replicaId).toBe(replica)
    expect(again.listItems().map((i) => i.name)).toEqual(['x', 'in flight'])
    await again.close()
    await expect(openStore({ dir, replicaId: 'someone-else' })).rejects.toMatchObject({ code: 'INVALID_INPUT' })
  })
})
