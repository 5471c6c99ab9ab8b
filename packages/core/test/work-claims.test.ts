import { describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import { currentClaimOf, readWorkEntries } from '../src/crdt/layout.js'
import { firstFree, LEASE_SIZE, liveBlocks, nextLeaseSize, remainingFrom, topOf, wantsMore } from '../src/alloc/leases.js'
import { currentEntry, latestGrant, lostTo, readWorkEntry, type WorkEntry } from '../src/work/claims.js'

/** The pure rules of claims and leased ids, alone. */

const T = (minutes: number) => new Date(Date.UTC(2026, 0, 1, 0, minutes)).toISOString()
function entry(key: string, fields: Partial<WorkEntry> & { agent: string }): WorkEntry {
  const value = { replica: 'r1', since: T(0), until: T(15), grant: key.startsWith('g') ? Number(key.slice(1)) : null, ...(key.startsWith('p') ? { provisional: true } : {}), ...fields }
  const read = readWorkEntry(key, value)
  if (!read) throw new Error(`${key} ${JSON.stringify(value)} is no entry`)
  return read
}
const P = (n: number) => `p01J${String(n).padStart(23, '0')}`
const L = (n: number) => `l01J${String(n).padStart(23, '0')}`

describe('which claim is current', () => {
  it('the latest grant stands unless released; an earlier grant never comes back', () => {
    const g1 = entry('g1', { agent: 'a' })
    const g2 = entry('g2', { agent: 'b', since: T(20) })
    expect(currentEntry([g1, g2])?.key).toBe('g2')
    expect(currentEntry([g2, g1])?.key).toBe('g2')
    // Released: nobody holds it — not the expired claim it took over.
    expect(currentEntry([g1, { ...g2, released: T(30) }])).toBeUndefined()
    expect(latestGrant([g1, { ...g2, released: T(30) }])?.key).toBe('g2')
  })

  it('no time a replica writes outranks a later grant: a provisional or local claim counts only on top of the latest grant', () => {
    const g3 = entry('g3', { agent: 'honest', since: T(10) })
    const forged = entry(L(9), { agent: 'mallory', since: '9999-01-01T00:00:00.000Z', until: '9999-01-02T00:00:00.000Z', after: 2 })
    expect(currentEntry([g3, forged])?.agent).toBe('honest')
    const onTop = entry(P(1), { agent: 'offline', since: T(40), after: 3 })
    expect(currentEntry([g3, onTop])?.agent).toBe('offline')
    // Settled (confirmed, lost or expired) or released: it no longer counts.
    for (const outcome of ['confirmed', 'lost', 'expired'] as const) expect(currentEntry([g3, { ...onTop, outcome }])?.agent).toBe('honest')
    // Among claims on top of one grant, the latest taken.
    expect(currentEntry([entry(L(1), { agent: 'x', since: T(1) }), entry(L(2), { agent: 'y', since: T(2) })])?.agent).toBe('y')
  })

  it('an entry is read defensively: the key says its kind, and a value that disagrees is no entry', () => {
    const ok = { agent: 'a', replica: 'r', since: T(0), until: T(1), grant: 4 }
    expect(readWorkEntry('g4', ok)).toMatchObject({ key: 'g4', grant: 4, after: 4 })
    for (const [key, value] of [
      ['g5', ok],
      ['g4', { ...ok, grant: null }],
      [P(1), { ...ok, grant: null }],
      [L(1), { ...ok, grant: null, provisional: true }],
      ['x1', ok],
      ['g4', { ...ok, agent: '' }],
      ['g4', { ...ok, since: 'yesterday' }],
      ['g4', null],
      ['g4', [ok]],
    ] as Array<[string, unknown]>) expect(readWorkEntry(key, value), `${key} ${JSON.stringify(value)}`).toBeUndefined()
    expect(readWorkEntry(L(1), { ...ok, grant: null, after: -3 })?.after).toBe(0)
  })
})

describe('who is told that a claim was lost', () => {
  it('the holder of the latest grant, when a later grant of another agent is added — once, whatever came after', () => {
    const g1 = entry('g1', { agent: 'slow', replica: 'me' })
    const g2 = entry('g2', { agent: 'eager', replica: 'them' })
    expect(lostTo([g1, g2], new Set(['g2']), 'me')).toMatchObject({ lost: { key: 'g1' }, to: { key: 'g2' } })
    // The takeover arrived already released (the replica was away): still told.
    expect(lostTo([g1, { ...g2, released: T(5) }], new Set(['g2']), 'me')?.lost.key).toBe('g1')
    // A third grant after the release: the latest before it was g2, not this replica's.
    const g3 = entry('g3', { agent: 'third', replica: 'them' })
    expect(lostTo([g1, { ...g2, released: T(5) }, g3], new Set(['g3']), 'me')).toBeUndefined()
    // Nothing added (a renewal rewrites g2), another replica's claim, the same agent again, a released claim of mine: not told.
    expect(lostTo([g1, g2], new Set(), 'me')).toBeUndefined()
    expect(lostTo([g1, g2], new Set(['g2']), 'someone-else')).toBeUndefined()
    expect(lostTo([g1, entry('g2', { agent: 'slow', replica: 'them' })], new Set(['g2']), 'me')).toBeUndefined()
    expect(lostTo([{ ...g1, released: T(1) }, g2], new Set(['g2']), 'me')).toBeUndefined()
  })
})

describe('leased id blocks', () => {
  const blocks = [{ from: 33, to: 40 }, { from: 1, to: 4 }]
  it('the lowest free id at or above the cursor, in block order; taken ids are skipped', () => {
    expect(firstFree(blocks, 0, () => false)).toEqual({ id: 1, cursor: 1 })
    expect(firstFree(blocks, 2, (n) => n === 2 || n === 3)).toEqual({ id: 4, cursor: 4 })
    expect(firstFree(blocks, 0, (n) => n < 35)).toEqual({ id: 35, cursor: 35 })
    expect(firstFree(blocks, 0, () => true)).toBeUndefined()
    expect(remainingFrom(blocks, 3)).toBe(2 + 8)
    expect(liveBlocks(blocks, 5)).toEqual([{ from: 33, to: 40 }])
    expect(topOf(blocks)).toBe(40)
  })

  it('the next request doubles after a block used within a minute, halves after one that lasted over an hour, within bounds', () => {
    expect(nextLeaseSize(32, undefined)).toBe(32)
    expect(nextLeaseSize(32, 1000)).toBe(64)
    expect(nextLeaseSize(32, 10 * 60_000)).toBe(32)
    expect(nextLeaseSize(32, 2 * 3600_000)).toBe(16)
    expect(nextLeaseSize(LEASE_SIZE.max, 1)).toBe(LEASE_SIZE.max)
    expect(nextLeaseSize(LEASE_SIZE.min, 10 * 3600_000)).toBe(LEASE_SIZE.min)
    expect(wantsMore(15, 32)).toBe(true)
    expect(wantsMore(16, 32)).toBe(false)
  })
})

describe('claims as keys of an item map (Yjs)', () => {
  it('a release and a renewal of one grant written at once on two replicas: the release stands', () => {
    const a = new Y.Doc()
    const item = new Y.Map<unknown>()
    a.getMap('records').set('u', item)
    item.set('claim/g1', { agent: 'x', replica: 'r', since: T(0), until: T(15), grant: 1 })
    const b = new Y.Doc()
    Y.applyUpdate(b, Y.encodeStateAsUpdate(a))
    // a releases; b, which has not heard of it, renews.
    ;(a.getMap('records').get('u') as Y.Map<unknown>).set('claim/r1', { at: T(5), agent: 'x' })
    ;(b.getMap('records').get('u') as Y.Map<unknown>).set('claim/g1', { agent: 'x', replica: 'r', since: T(0), until: T(30), grant: 1 })
    Y.applyUpdate(a, Y.encodeStateAsUpdate(b))
    Y.applyUpdate(b, Y.encodeStateAsUpdate(a))
    for (const doc of [a, b]) {
      const map = doc.getMap('records').get('u') as Y.Map<unknown>
      expect(readWorkEntries(map)).toMatchObject([{ key: 'g1', released: T(5) }])
      expect(currentClaimOf(map)).toBeUndefined()
    }
  })
})
