import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { ClaimIndex, claimKey, parseClaimKey, shownIdOf, winnerOf } from '../src/crdt/claims.js'
import type { ItemId, Uid } from '../src/index.js'

const U = (n: number) => `01J${String(n).padStart(23, '0')}` as Uid
const I = (n: number) => String(n) as ItemId

describe('the claim rules, alone', () => {
  it('the lowest uid wins an id; a tombstoned id has no winner', () => {
    expect(winnerOf([U(3), U(1), U(2)], false)).toBe(U(1))
    expect(winnerOf([U(3), U(1)], true)).toBeUndefined()
    expect(winnerOf([], false)).toBeUndefined()
  })

  it('an item shows the highest id it wins (numerically, not as text)', () => {
    expect(shownIdOf([I(9), I(10), I(2)])).toBe(I(10))
    expect(shownIdOf([])).toBeUndefined()
  })

  it('claim keys round-trip and refuse what is not an id and a uid', () => {
    expect(parseClaimKey(claimKey(I(12), U(5)))).toEqual({ id: '12', uid: U(5) })
    for (const bad of ['', '12', '12/', '/x', '012/' + U(1), '12/not-a-ulid', '12/' + U(1) + '/x']) expect(parseClaimKey(bad)).toBeUndefined()
  })

  it('a collision, a re-anchoring and a deletion, step by step', () => {
    const c = new ClaimIndex()
    c.add(I(5), U(2))
    expect(c.uidAt(I(5))).toBe(U(2))
    // A concurrent create of 5 by an older item wins it; the newer one shows nothing.
    expect([...c.add(I(5), U(1))].sort()).toEqual([U(1), U(2)])
    expect(c.uidAt(I(5))).toBe(U(1))
    expect(c.shownId(U(2))).toBeUndefined()
    expect(c.lossOf(U(2))).toEqual({ id: I(5), reason: 'collision' })
    // Its creator claims a fresh id.
    c.add(I(6), U(2))
    expect(c.shownId(U(2))).toBe(I(6))
    expect(c.lossOf(U(2))).toBeUndefined()
    // Deleting 5 kills the id; the item that won it shows nothing, the loser of 5 is not brought back.
    c.tombstone(I(5))
    expect(c.uidAt(I(5))).toBeUndefined()
    expect(c.shownId(U(1))).toBeUndefined()
    expect(c.lossOf(U(1))).toEqual({ id: I(5), reason: 'tombstoned-id' })
    expect(c.shownId(U(2))).toBe(I(6))
  })

  it('an implied claim that goes (a schema 1 item replaced) gives the id back only if nothing else holds it', () => {
    const c = new ClaimIndex()
    c.add(I(3), U(4)) // implied by a schema 1 item
    c.add(I(3), U(4)) // and written as a claim too
    c.remove(I(3), U(4))
    expect(c.uidAt(I(3))).toBe(U(4)) // the claim proper still holds it
    c.remove(I(3), U(4))
    expect(c.uidAt(I(3))).toBeUndefined()
    expect(c.isClaimed(I(3))).toBe(false)
    expect([...c.remove(I(3), U(4))]).toEqual([]) // removing what is not there changes nothing
  })

  it('any order of the same claims and tombstones resolves alike (and matches the rules computed from scratch)', () => {
    const op = fc.oneof(
      fc.record({ kind: fc.constant('claim' as const), id: fc.integer({ min: 1, max: 6 }), uid: fc.integer({ min: 1, max: 6 }) }),
      fc.record({ kind: fc.constant('tomb' as const), id: fc.integer({ min: 1, max: 6 }) }),
    )
    fc.assert(
      fc.property(fc.array(op, { maxLength: 30 }), fc.infiniteStream(fc.nat()), (ops, seeds) => {
        const shuffled = [...ops]
        const it = seeds[Symbol.iterator]()
        for (let i = shuffled.length - 1; i > 0; i--) {
          const j = it.next().value! % (i + 1)
          ;[shuffled[i], shuffled[j]] = [shuffled[j]!, shuffled[i]!]
        }
        const apply = (list: typeof ops) => {
          const c = new ClaimIndex()
          for (const o of list) {
            if (o.kind === 'claim') c.add(I(o.id), U(o.uid))
            else c.tombstone(I(o.id))
          }
          return c
        }
        const a = apply(ops)
        const b = apply(shuffled)
        const tombs = new Set(ops.filter((o) => o.kind === 'tomb').map((o) => o.id))
        for (let id = 1; id <= 6; id++) {
          const claimants = ops.filter((o) => o.kind === 'claim' && o.id === id).map((o) => U((o as { uid: number }).uid))
          expect(a.winnerAt(I(id))).toBe(winnerOf(claimants, tombs.has(id)))
          expect(b.winnerAt(I(id))).toBe(a.winnerAt(I(id)))
          expect(b.uidAt(I(id))).toBe(a.uidAt(I(id)))
        }
        for (let uid = 1; uid <= 6; uid++) {
          const won: ItemId[] = []
          for (let id = 1; id <= 6; id++) if (a.winnerAt(I(id)) === U(uid)) won.push(I(id))
          expect(a.shownId(U(uid))).toBe(shownIdOf(won))
          expect(b.shownId(U(uid))).toBe(a.shownId(U(uid)))
        }
      }),
      { seed: 20261130, numRuns: 300 },
    )
  })
})
