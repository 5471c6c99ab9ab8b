import { describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import type { ItemId, Store } from '../src/index.js'
import { writeRawRows } from '../src/testing.js'
import { seqKey, idKey } from '../src/storage/keys.js'
import { peerItemUpdate, tempDir, testStore, peerTx as anyPeerTx } from './support.js'

/** A peer's transaction, from a fixed client id (so replays are exact). */
const peerTx = (base: Uint8Array, fn: (doc: Y.Doc) => void) => anyPeerTx(base, fn, 0x7ffffff0)

async function pull(to: Store, from: Store): Promise<void> {
  await to.applyUpdate(from.encodeStateAsUpdate(to.encodeStateVector()), 'peer')
  await to.flush()
}

async function exchange(...stores: Store[]): Promise<void> {
  for (let round = 0; round < 4; round++) for (const a of stores) for (const b of stores) if (a !== b) await pull(a, b)
}

const X = '01AAAAAAAAAAAAAAAAAAAAAAAA' // older than anything the stores create: wins every claim it makes
const Z = '01BBBBBBBBBBBBBBBBBBBBBBBB'

describe('regressions from the review: shadow rows when an item moves in the same transaction that displaces another', () => {
  // What should happen: peer item X shows id 1 here; one remote transaction tombstones id 1 and
  // re-anchors X to id 2 (where X's older uid beats this replica's item Y, which moves on to 3).
  // X's rows at id 1 must go (id 1 is dead), and `verify()` must be clean.
  // What happened before the fix: capture's buildJob visits id 2 before id 1 (Y was touched first), and
  // DocState.track(2, X) silently drops the index entry `1 → X` (state.ts, track: "index.delete(at)").
  // rowsFor(1) then sees no previous occupant and writes nothing, so X's shadow row stays at the
  // tombstoned id 1 forever: verify() reports id 1 as untracked (an "orphan" of an item that is
  // live at 2, which adoptOrphan refuses), and repairShadow never touches it.
  it('a remote re-anchoring of a peer item leaves no stale rows at its dead old id', async () => {
    const s = await testStore({ replicaId: 'replica-r' })
    await s.applyUpdate(peerItemUpdate(s.encodeStateAsUpdate(), '1', { uid: X, name: 'peer x' }), 'peer')
    await s.flush()
    expect(s.getItem('1')?.uid).toBe(X)
    expect(await s.maintenance.readShadowRow('1')).toMatchObject({ row: { uid: X } })
    const y = await s.createItem({ name: 'mine' })
    expect(y.id).toBe('2')

    const update = peerTx(s.encodeStateAsUpdate(), (doc) => {
      // A peer edits Y (any field), then deletes id 1 (held by some Z there) and re-anchors X to 2.
      ;(doc.getMap('records').get(y.uid) as Y.Map<unknown>).set('updatedAt', new Date().toISOString())
      doc.getMap('tombstones').set('1', { uid: Z, at: '', by: 'peer', reason: null })
      doc.getMap('claims').set(`2/${X}`, { at: '', by: 'peer', reason: 'tombstoned-id', from: '1' })
    })
    await s.applyUpdate(update, 'peer')
    await s.flush()

    expect(s.getItem('2')?.uid).toBe(X)
    expect(s.listItems().find((i) => i.uid === y.uid)?.id).toBe('3')
    expect(await s.maintenance.readShadowRow('1')).toBeUndefined()
    const report = await s.verify()
    expect(report.untracked).toEqual([])
    expect(report.ok).toBe(true)
  })
})

/**
 * A schema 1 store written by hand: a fresh store made schema 1 again, with one schema 1 item
 * under `items[id]` (written by a Yjs client of its own, as schema 1 did) and its shadow row.
 */
async function schema1Store(replicaId: string, clientId: number, id: string, uid: string, name: string): Promise<string> {
  const dir = await tempDir()
  const fresh = await testStore({ dir, replicaId })
  await fresh.close()
  const doc = new Y.Doc()
  doc.clientID = clientId
  const at = new Date().toISOString()
  const map = new Y.Map<unknown>()
  for (const [k, v] of Object.entries({ uid, name, type: 'story', dependsOn: [], blocked: null, frozen: false, retries: 0, createdAt: at, updatedAt: at, createdBy: replicaId })) map.set(k, v)
  const stages = new Y.Array<unknown>()
  stages.push([{ id: `${uid.slice(0, 25)}S`, epoch: 0, stage: 'backlog', event: 'created', basedOn: null, by: replicaId, at }])
  map.set('stages', stages)
  map.set('content', new Y.Map())
  doc.getMap('items').set(id, map)
  const update = Y.encodeStateAsUpdate(doc)
  doc.destroy()
  const row = { v: 1, id, uid, name, type: 'story', stage: 'backlog', dependsOn: [], blocked: null, frozen: false, agent: null, retries: 0, createdAt: at, updatedAt: at, createdBy: replicaId, stages: [{ id: `${uid.slice(0, 25)}S`, epoch: 0, stage: 'backlog', event: 'created', basedOn: null, by: replicaId, at }], slots: [] }
  await writeRawRows(dir, [
    { type: 'put', sublevel: 'shadow', key: idKey(id as ItemId), value: JSON.stringify(row) },
    { type: 'put', sublevel: 'doc', key: seqKey(2), value: update },
    { type: 'put', sublevel: 'meta', key: 'schema', value: '1' },
  ])
  return dir
}

describe('regressions from the review: schema 1 items displaced after the migration', () => {
  // What should happen: replicas A and B of a schema 1 pipeline both created id 1 offline (as
  // schema 1 allowed), then both upgraded and migrated before they ever synced. Schema 1's merge
  // of such a collision keeps one map at `items[1]` and its creator's re-anchoring moved the
  // other item to a fresh id (from its rows). After syncing in schema 2 both items must still be
  // live — and A's stage transition, acknowledged after the migration, must still be there.
  // What happened before the fix: the Yjs merge keeps B's map at `items[1]`; A's item X has no map anywhere any
  // more (state.ts noteMap drops it from `maps`, and noteAnchoring needs a readable record), so
  // nobody re-anchors it: X and its acknowledged transition vanish from both replicas, and A's
  // shadow row of X at id 1 is overwritten by B's item, so no evidence is left for recovery —
  // and A's verify() (doctor) then reports ok: true.
  it('two schema 1 replicas that collided offline both keep their item after migrating and syncing', async () => {
    const xUid = '01J0000000000000000000000A'
    const yUid = '01J0000000000000000000000B'
    const a = await testStore({ dir: await schema1Store('replica-a', 1000, '1', xUid, 'from a'), replicaId: 'replica-a' })
    const b = await testStore({ dir: await schema1Store('replica-b', 5_000_000, '1', yUid, 'from b'), replicaId: 'replica-b' })
    expect(a.schema.migrated).toBeDefined()
    expect(a.getItem('1')?.uid).toBe(xUid)
    expect(b.getItem('1')?.uid).toBe(yUid)
    await a.apply('1', 'start') // acknowledged, in schema 2
    await exchange(a, b)
    for (const store of [a, b]) {
      const uids = store.listItems().map((i) => i.uid).sort()
      expect(uids, store.replicaId).toEqual([xUid, yUid])
      expect(store.listItems().find((i) => i.uid === xUid)?.stage).toBe('coding')
    }
    // The item whose map was replaced moved to a fresh id, by its creator, with an alias from 1.
    const moved = [xUid, yUid].find((uid) => a.listItems().find((i) => i.uid === uid)?.id !== '1')!
    expect(a.aliases('1')).toMatchObject([{ uid: moved, oldId: '1' }])
    for (const store of [a, b]) expect((await store.verify()).ok, store.replicaId).toBe(true)
  })
})

describe('regressions from the review of issue 9: importTombstone and adoption', () => {
  it('importTombstone refuses an unchecked `by` and a tombstone that would delete an item live under another id', async () => {
    const store = await testStore()
    const live = await store.createItem({ name: 'live' })
    await expect(store.maintenance.importTombstone('50', { uid: '01ARZ3NDEKTSV4RRFFQ69G5FAV', by: 'not a replica id!' })).rejects.toMatchObject({ code: 'INVALID_INPUT' })
    await expect(store.maintenance.importTombstone('50', { uid: live.uid })).rejects.toMatchObject({ code: 'ALREADY_EXISTS', details: { liveAs: live.id } })
    expect(store.getItem(live.id)?.uid).toBe(live.uid)
    expect(store.isTombstoned('50')).toBe(false)
    expect(await store.maintenance.importTombstone('50', { uid: '01ARZ3NDEKTSV4RRFFQ69G5FAV', by: 'other-replica' })).toBe(true)
    expect(store.tombstone('50')).toMatchObject({ by: 'other-replica' })
  })

  it('adopting an orphan whose stage log does not resolve says so', async () => {
    const dir = await tempDir()
    const seed = await testStore({ dir })
    await seed.createItem({ name: 'one' })
    await seed.close()
    const at = new Date().toISOString()
    const row = { v: 1, id: '30', uid: '01ARZ3NDEKTSV4RRFFQ69G5FAV', name: 'orphan', type: 'story', stage: 'qa', dependsOn: [], blocked: null, frozen: false, agent: null, retries: 0, createdAt: at, updatedAt: at, createdBy: 'elsewhere', stages: [{ id: '01ARZ3NDEKTSV4RRFFQ69G5FB0', epoch: 0, stage: 'qa', event: 'gates_passed', basedOn: '01ARZ3NDEKTSV4RRFFQ69G5FB1', by: 'elsewhere', at }], slots: [] }
    await writeRawRows(dir, [{ type: 'put', sublevel: 'shadow', key: idKey('30' as ItemId), value: JSON.stringify(row) }])
    const store = await testStore({ dir })
    const adopted = await store.maintenance.adoptOrphan('30')
    expect(adopted.warnings.join(' ')).toContain('does not resolve')
    expect(store.getItem(adopted.newId)?.stage).toBe('qa')
  })
})
