import { describe, expect, it } from 'vitest'
import type { Store, StoreEvent } from '../src/index.js'
import { collect, snapshotRows, peerItemUpdate, tempDir, testStore, pull } from './support.js'


async function exchange(...stores: Store[]): Promise<void> {
  for (let round = 0; round < 3; round++) {
    for (const a of stores) for (const b of stores) if (a !== b) await pull(a, b)
  }
}

function shadowOf(dump: Map<string, string>, id: string): Record<string, unknown> | undefined {
  const hex = dump.get(`!shadow!${id.padStart(16, '0')}`)
  return hex === undefined ? undefined : (JSON.parse(Buffer.from(hex, 'hex').toString('utf8')) as Record<string, unknown>)
}

describe('shadow rows follow the CRDT', () => {
  it('for remote creates, transitions, content edits and deletes', async () => {
    const a = await testStore()
    const bDir = await tempDir()
    let b = await testStore({ dir: bDir })
    await a.createItem({ name: 'remote one', body: 'first body' })
    await a.createItem({ name: 'remote two', content: { gate_output: 'g' } })
    await pull(b, a)
    expect(b.listItems().map((i) => i.name)).toEqual(['remote one', 'remote two'])
    await a.apply('1', 'start')
    await a.writeContent('1', 'body', 'second body')
    await a.deleteItem('2')
    await pull(b, a)
    await b.close()

    const dump = await snapshotRows(bDir)
    expect(shadowOf(dump, '1')).toMatchObject({ id: '1', name: 'remote one', stage: 'coding', slots: ['body'], createdBy: a.replicaId })
    // The content row names the blob; the blob holds the bytes.
    const ref = JSON.parse(Buffer.from(dump.get('!content!0000000000000001/body')!, 'hex').toString()) as { sha256: string }
    expect(Buffer.from(dump.get(`!blob!${ref.sha256}`)!, 'hex').toString()).toBe('second body')
    expect(shadowOf(dump, '2')).toBeUndefined()
    expect([...dump.keys()].filter((k) => k.startsWith('!content!0000000000000002'))).toEqual([])

    b = await testStore({ dir: bDir })
    expect(b.getItem('1')?.stage).toBe('coding')
    expect(b.isTombstoned('2')).toBe(true)
    expect(b.peekNextId()).toBe('3')
  })
})

describe('collisions: two replicas create the same id offline', () => {
  it('the creator of the displaced item re-anchors it to a fresh id; nothing is lost', async () => {
    const a = await testStore({ replicaId: 'replica-a' })
    const b = await testStore({ replicaId: 'replica-b' })
    const eventsB: StoreEvent[] = []
    const eventsA: StoreEvent[] = []
    b.subscribe((e) => eventsB.push(e))
    a.subscribe((e) => eventsA.push(e))
    const itemA = await a.createItem({ name: 'from a', body: 'body a' })
    const itemB = await b.createItem({ name: 'from b', body: 'body b' })
    await b.apply(itemB.id, 'start')
    expect(itemA.id).toBe(itemB.id)
    await exchange(a, b)

    for (const store of [a, b]) {
      const items = store.listItems()
      expect(items).toHaveLength(2)
      expect(new Set(items.map((i) => i.uid))).toEqual(new Set([itemA.uid, itemB.uid]))
      expect(new Set(items.map((i) => i.id)).size).toBe(2)
    }
    const winner = a.getItem('1')!
    const loser = winner.uid === itemA.uid ? itemB : itemA
    const loserStore = loser === itemA ? a : b
    const otherStore = loser === itemA ? b : a
    const moved = loserStore.listItems().find((i) => i.uid === loser.uid)!
    expect(moved.id).toBe('2')
    expect(await a.readContent(moved.id)).toBe(loser === itemA ? 'body a' : 'body b')
    expect(await b.readContent('1')).toBe(winner.uid === itemA.uid ? 'body a' : 'body b')
    if (loser === itemB) expect(moved.stage).toBe('coding') // history travels with the item
    expect(a.aliases('1')).toEqual([expect.objectContaining({ uid: loser.uid, oldId: '1', newId: '2', reason: 'collision', by: loserStore.replicaId })])
    expect(b.aliases()).toEqual(a.aliases())
    const reanchored = await collect(loserStore.audit({ kinds: ['reanchored'] }))
    expect(reanchored).toMatchObject([{ itemId: '2', investigate: false, data: { uid: loser.uid, oldId: '1', newId: '2' } }])
    expect(await collect(otherStore.audit({ kinds: ['reanchored'] }))).toEqual([])
    const loserEvents = loser === itemA ? eventsA : eventsB
    expect(loserEvents).toContainEqual({ type: 'reanchored', uid: loser.uid, oldId: '1', newId: '2', reason: 'collision' })
    expect(a.encodeStateVector()).toEqual(b.encodeStateVector())
  })

  it('an item created offline on an id that was deleted elsewhere moves to a fresh id', async () => {
    const a = await testStore({ replicaId: 'replica-a' })
    const b = await testStore({ replicaId: 'replica-b' })
    await a.createItem({ name: 'deleted on a' })
    await a.deleteItem('1')
    const offline = await b.createItem({ name: 'made offline on b', body: 'keep me' })
    expect(offline.id).toBe('1')
    await exchange(a, b)
    for (const store of [a, b]) {
      expect(store.isTombstoned('1')).toBe(true)
      expect(store.getItem('1')).toBeUndefined()
      expect(store.listItems().map((i) => [i.id, i.uid])).toEqual([['2', offline.uid]])
      expect(await store.readContent('2')).toBe('keep me')
    }
    expect(b.aliases('1')).toMatchObject([{ uid: offline.uid, newId: '2', reason: 'tombstoned-id' }])
  })
})

describe('the tombstone guard against remote writes', () => {
  it('hides an item a peer writes on a tombstoned id, with a WARN line and an audit event', async () => {
    const a = await testStore()
    await a.createItem({ name: 'deleted' })
    await a.deleteItem('1')
    // A peer that knows the tombstone and writes the id anyway (a buggy or old replica).
    await a.applyUpdate(peerItemUpdate(a.encodeStateAsUpdate(), '1', { uid: '01ARZ3NDEKTSV4RRFFQ69G5FAV', name: 'zombie' }), 'peer')
    expect(a.getItem('1')).toBeUndefined()
    expect(a.listItems()).toEqual([])
    expect(a.log.lines.filter((l) => l.startsWith('WARN write to tombstoned id 1 rejected'))).toHaveLength(1)
    expect(await collect(a.audit({ kinds: ['write_rejected'] }))).toMatchObject([{ itemId: '1', data: { reason: 'tombstoned', uid: '01ARZ3NDEKTSV4RRFFQ69G5FAV', createdBy: 'peer' } }])
    expect(a.peekNextId()).toBe('2')
  })
})

describe('no regress across replicas', () => {
  it('a stale demote loses to done on both replicas and is reported as superseded', async () => {
    const a = await testStore({ replicaId: 'replica-a' })
    const b = await testStore({ replicaId: 'replica-b' })
    const item = await a.createItem({ name: 'x' })
    await a.apply(item.id, 'start')
    await exchange(a, b)
    for (const e of ['gates_passed', 'accepted', 'merge_succeeded'] as const) await a.apply(item.id, e)
    await b.apply(item.id, 'demote') // b never saw qa/merge/done
    await exchange(a, b)
    expect(a.getItem(item.id)!.stage).toBe('done')
    expect(b.getItem(item.id)!.stage).toBe('done')
    const superseded = await collect(b.audit({ kinds: ['stale_transition_superseded'] }))
    expect(superseded).toMatchObject([{ itemId: item.id, data: { event: 'demote', reason: 'stale', mine: true, currentStage: 'done' } }])
    // A deliberate reopen by a replica that saw done wins.
    await b.apply(item.id, 'reopen')
    await exchange(a, b)
    expect(a.getItem(item.id)!.stage).toBe('coding')
  })
})

describe('review findings: displacement during a create, and parts of updates that must wait', () => {
  /** A peer with a client id that wins every concurrent write, holding item `name` at `id`. */
  const winningPeer = (base: Uint8Array, id: string, name: string): Uint8Array =>
    peerItemUpdate(base, id, { uid: '01JQ00000000000000000000P1', name }, 0xfffffff0)

  it('a create displaced while it is written returns the item under its new id, never the taken one', async () => {
    let inject: (() => void) | undefined
    const store = await testStore({ hooks: { step: (name) => (name === 'create:crdt-written' ? inject?.() : undefined) } })
    const base = store.encodeStateAsUpdate()
    const update = winningPeer(base, '1', 'theirs')
    let applied: Promise<void> | undefined
    inject = () => {
      inject = undefined
      applied = store.applyUpdate(update, 'peer')
    }
    const mine = await store.createItem({ name: 'mine', body: 'my body' })
    await applied
    expect(mine.id).not.toBe('1')
    expect(store.getItem(mine.id)).toMatchObject({ uid: mine.uid, name: 'mine' })
    expect(store.getItem('1')).toMatchObject({ name: 'theirs' })
    expect(await store.readContent(mine.id)).toBe('my body')
  })

  it('keeps the parts of a remote update that wait for missing updates across a restart', async () => {
    const dir = await tempDir()
    let a = await testStore({ dir })
    const b = await testStore()
    const item = await a.createItem({ name: 'to be deleted elsewhere', body: 'x' })
    await pull(b, a)
    await b.createItem({ name: 'something first' }) // a will miss this one (and all b wrote before it)
    const missing = b.encodeStateAsUpdate(a.encodeStateVector())
    const afterFirst = b.encodeStateVector()
    await b.deleteItem(item.id)
    const deletion = b.encodeStateAsUpdate(afterFirst) // depends on `missing`
    await a.applyUpdate(deletion, 'peer') // out of order: parked
    await a.close()
    a = await testStore({ dir }) // …and the parked part survives the restart
    await a.applyUpdate(missing, 'peer')
    await a.flush()
    expect(a.getItem(item.id)).toBeUndefined()
    expect(a.isTombstoned(item.id)).toBe(true)
    expect(await a.maintenance.readShadowRow(item.id)).toBeUndefined()
    expect(a.aliases()).toEqual([])
    expect((await a.verify()).ok).toBe(true)
  })
})
