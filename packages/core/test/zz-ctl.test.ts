import { describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import type { Store } from '../src/index.js'
import { writeRawRows } from '../src/testing.js'
import { seqKey, idKey } from '../src/storage/keys.js'
import { peerItemUpdate, tempDir, testStore } from './support.js'

/** What a peer that has seen `base` sends after running `fn` on its copy in one transaction. */
function peerTx(base: Uint8Array, fn: (doc: Y.Doc) => void, clientId = 0x7ffffff0): Uint8Array {
  const peer = new Y.Doc()
  peer.clientID = clientId
  Y.applyUpdate(peer, base)
  peer.transact(() => fn(peer))
  const update = Y.encodeStateAsUpdate(peer, Y.encodeStateVectorFromUpdate(base))
  peer.destroy()
  return update
}

async function pull(to: Store, from: Store): Promise<void> {
  await to.applyUpdate(from.encodeStateAsUpdate(to.encodeStateVector()), 'peer')
  await to.flush()
}

async function exchange(...stores: Store[]): Promise<void> {
  for (let round = 0; round < 4; round++) for (const a of stores) for (const b of stores) if (a !== b) await pull(a, b)
}

const X = '01AAAAAAAAAAAAAAAAAAAAAAAA' // older than anything the stores create: wins every claim it makes
const Z = '01BBBBBBBBBBBBBBBBBBBBBBBB'

describe('review: shadow rows when an item moves in the same transaction that displaces another', () => {
  // What should happen: peer item X shows id 1 here; one remote transaction tombstones id 1 and
  // re-anchors X to id 2 (where X's older uid beats this replica's item Y, which moves on to 3).
  // X's rows at id 1 must go (id 1 is dead), and `verify()` must be clean.
  // What happens: capture's buildJob visits id 2 before id 1 (Y was touched first), and
  // DocState.track(2, X) silently drops the index entry `1 → X` (state.ts, track: "index.delete(at)").
  // rowsFor(1) then sees no previous occupant and writes nothing, so X's shadow row stays at the
  // tombstoned id 1 forever: verify() reports id 1 as untracked (an "orphan" of an item that is
  // live at 2, which adoptOrphan refuses), and repairShadow never touches it.
  it('a remote re-anchoring of a peer item leaves no stale rows at its dead old id', async () => {
    const s = await testStore({ replicaId: 'replica-r' })
    await s.applyUpdate(peerItemUpdate(s.encodeStateAsUpdate(), '1', { uid: X, name: 'peer x' }), 'peer')
    await s.flush()
    expect(s.getItem('1')?.uid).toBe(X)
    expect(await s.readShadowRow('1')).toMatchObject({ row: { uid: X } })
    const y = await s.createItem({ name: 'mine' })
    expect(y.id).toBe('2')

    const update = peerTx(s.encodeStateAsUpdate(), (doc) => {
      // A peer edits Y (any field), then deletes id 1 (held by some Z there) and re-anchors X to 2.
      //(doc.getMap("records").get(y.uid) as Y.Map<unknown>).set('updatedAt', new Date().toISOString())
      doc.getMap('tombstones').set('1', { uid: Z, at: '', by: 'peer', reason: null })
      doc.getMap('claims').set(`2/${X}`, { at: '', by: 'peer', reason: 'tombstoned-id', from: '1' })
    })
    await s.applyUpdate(update, 'peer')
    await s.flush()

    expect(s.getItem('2')?.uid).toBe(X)
    expect(s.listItems().find((i) => i.uid === y.uid)?.id).toBe('3')
    expect(await s.readShadowRow('1')).toBeUndefined()
    const report = await s.verify()
    expect(report.untracked).toEqual([])
    expect(report.ok).toBe(true)
  })
})
