import { describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import type { ClaimResult, Item, Store, StoreEvent } from '../src/index.js'
import { collect, tempDir } from './support.js'
import { converged, eventually, freePort, server, synced } from './sync-support.js'

/**
 * The sync server as arbiter, with real replicas on a real Hocuspocus server on 127.0.0.1:
 * leased ids (online creates never collide) and claims (exactly one agent works on an item).
 */

async function reanchors(stores: readonly Store[]): Promise<number> {
  let n = 0
  for (const s of stores) n += (await collect(s.audit({ kinds: ['reanchored'] }))).length
  return n
}

async function allSeen(stores: readonly Store[], ids: readonly string[]): Promise<void> {
  await eventually('every replica has every item', () => stores.every((s) => ids.every((id) => s.getItem(id) !== undefined)))
}

describe('leased id blocks', () => {
  it('three replicas online together, each creating 100 items at the same moment: no collision, no re-anchoring, ids sequential per replica', async () => {
    const srv = await server()
    const stores = await Promise.all([0, 1, 2].map(() => synced(srv.url)))
    await Promise.all(stores.map((s) => s.whenSynced(10_000)))
    const made = await Promise.all(stores.map((s) => Promise.all(Array.from({ length: 100 }, (_, i) => s.createItem({ name: `${s.replicaId.slice(-4)} ${i}` })))))
    const ids = made.flat().map((item) => item.id)
    expect(new Set(ids).size).toBe(300)
    for (const items of made) {
      // Sequential per replica: in the order its creates were called.
      const numbers = items.map((item) => Number(item.id))
      expect(numbers).toEqual([...numbers].sort((a, b) => a - b))
    }
    await eventually('converged', () => converged(stores))
    expect(await reanchors(stores)).toBe(0)
    for (const s of stores) expect(s.listItems().map((i) => i.uid).sort()).toEqual(made.flat().map((i) => i.uid).sort())
    // Each id is where its creator said it is, on every replica.
    for (const item of made.flat()) for (const s of stores) expect(s.getItem(item.id)?.uid).toBe(item.uid)
  }, 60_000)

  it('a replica that goes offline keeps creating within its leased block, and rejoins without a re-anchoring', async () => {
    const srv = await server()
    const dir = await tempDir()
    const a = await synced(srv.url, { dir })
    const b = await synced(srv.url)
    await Promise.all([a.whenSynced(10_000), b.whenSynced(10_000)])
    await a.createItem({ name: 'online' })
    await eventually('a holds a block', () => a.idLeases().remaining >= 16)
    const left = a.idLeases().remaining
    await a.close()
    // Offline: the store opened without its server; the blocks are on disk.
    const offline = await synced(undefined, { dir })
    expect(offline.idLeases().remaining).toBe(left)
    const offlineItems = []
    for (let i = 0; i < left; i++) offlineItems.push(await offline.createItem({ name: `offline ${i}` }))
    // Meanwhile b creates online, from its own blocks.
    const bItems = await Promise.all(Array.from({ length: 40 }, (_, i) => b.createItem({ name: `b ${i}` })))
    await offline.close()
    const back = await synced(srv.url, { dir })
    await eventually('converged', () => converged([back, b]))
    expect(await reanchors([back, b])).toBe(0)
    for (const item of [...offlineItems, ...bItems]) {
      expect(back.getItem(item.id)?.uid).toBe(item.uid)
      expect(b.getItem(item.id)?.uid).toBe(item.uid)
    }
  }, 60_000)

  it('the server never hands out a range twice, also across its restart, and a replica never issues an id twice across its own', async () => {
    const dir = (await server()).dir
    const port = await freePort()
    const first = await server({ port, dir: `${dir}-2` })
    const rdir = await tempDir()
    const a = await synced(first.url, { dir: rdir })
    await a.whenSynced(10_000)
    const one = await a.createItem({ name: 'one' })
    await eventually('a holds its block on disk', () => a.idLeases().blocks.length > 0)
    const before = a.idLeases().blocks
    await a.close()
    await first.close()
    // Restarted on the same directory: the counter is on disk, so the next replica's block lies above a's whole block.
    const again = await server({ port, dir: `${dir}-2` })
    const b = await synced(again.url)
    await b.whenSynced(10_000)
    const bItem = await b.createItem({ name: 'b' })
    expect(Number(bItem.id)).toBeGreaterThan(Math.max(...before.map((block) => block.to)))
    // a reopens (crash-like: nothing but its disk) and continues after `one`, never issuing it again.
    const a2 = await synced(again.url, { dir: rdir })
    const two = await a2.createItem({ name: 'two' })
    expect(Number(two.id)).toBe(Number(one.id) + 1)
  }, 60_000)

  it('when its server is gone and its blocks are used up, a replica falls back to its own allocator above every block it knows', async () => {
    const dir = await tempDir()
    const a = await synced(undefined, { dir })
    expect(a.idLeases()).toEqual({ blocks: [], remaining: 0, nextSize: 32 })
    const item = await a.createItem({ name: 'no server' })
    expect(item.id).toBe('1')
  })
})

describe('claims', () => {
  it('granted to one agent, refused to another with who holds it; visible on every replica; ready leaves it out', async () => {
    const srv = await server()
    const [a, b] = await Promise.all([synced(srv.url), synced(srv.url)])
    await Promise.all([a.whenSynced(10_000), b.whenSynced(10_000)])
    const item = await a.createItem({ name: 'work' })
    await allSeen([b], [item.id])
    const won = await a.claim(item.id, { agent: 'coder-1', ttlMs: 60_000 })
    expect(won).toMatchObject({ granted: true, claim: { agent: 'coder-1', replica: a.replicaId, provisional: false } })
    const lost = await b.claim(item.id, { agent: 'coder-2' })
    expect(lost).toMatchObject({ granted: false, holder: { agent: 'coder-1', replica: a.replicaId } })
    await eventually('b sees the claim', () => b.getItem(item.id)?.claim?.agent === 'coder-1')
    expect(b.listItems({ ready: true }).map((i) => i.id)).not.toContain(item.id)
    expect(b.listItems({ claimed: true }).map((i) => i.id)).toEqual([item.id])
    expect(b.listItems({ claimed: false }).map((i) => i.id)).not.toContain(item.id)
    // The holder claiming again extends it; released, it is ready again everywhere.
    const extended = await a.claim(item.id, { agent: 'coder-1', ttlMs: 120_000 })
    expect(extended.granted && extended.claim.grant).toBe(won.granted && won.claim.grant)
    await expect(b.releaseClaim(item.id, { agent: 'coder-2' })).rejects.toMatchObject({ code: 'CLAIM_NOT_HELD', details: { holder: { agent: 'coder-1' } } })
    await b.releaseClaim(item.id, { agent: 'coder-1' }) // the agent may release from any replica
    await eventually('a sees the release', () => a.getItem(item.id)?.claim === undefined)
    expect(a.listItems({ ready: true }).map((i) => i.id)).toContain(item.id)
    expect((await collect(a.audit({ kinds: ['claimed'] }))).length).toBe(2)
    expect((await collect(b.audit({ kinds: ['claim_released'] }))).length).toBe(1)
  }, 60_000)

  it('8 replicas race claim and claimNext for the same items over hundreds of rounds: exactly one winner each time, every loser told who won', async () => {
    const srv = await server()
    const stores = await Promise.all(Array.from({ length: 8 }, () => synced(srv.url)))
    await Promise.all(stores.map((s) => s.whenSynced(10_000)))
    const items: Item[] = []
    for (let i = 0; i < 200; i++) items.push(await stores[i % 8]!.createItem({ name: `item ${i}` }))
    await allSeen(stores, items.map((i) => i.id))
    // claim: every replica asks for the same item at once.
    for (const item of items) {
      const results = await Promise.all(stores.map((s, r) => s.claim(item.id, { agent: `agent-${r}` })))
      const winners = results.filter((x): x is Extract<ClaimResult, { granted: true }> => x.granted)
      expect(winners, `item ${item.id}`).toHaveLength(1)
      for (const x of results) if (!x.granted) expect(x.holder.agent).toBe(winners[0]!.claim.agent)
    }
    // claimNext: the items above are all claimed; 100 rounds over fresh ones, every replica dispatching at once.
    const pool: Item[] = []
    for (let i = 0; i < 120; i++) pool.push(await stores[i % 8]!.createItem({ name: `pool ${i}` }))
    await allSeen(stores, pool.map((i) => i.id))
    const taken = new Map<string, string>()
    for (let round = 0; round < 100; round++) {
      const results = await Promise.all(stores.map((s, r) => s.claimNext({ agent: `r${round}-${r}`, ttlMs: 600_000 })))
      for (const x of results) {
        if (x === null) continue
        expect(x.granted).toBe(true)
        if (!x.granted) continue
        expect(taken.has(x.item.uid), `item ${x.item.id} granted twice (${taken.get(x.item.uid)} and ${x.claim.agent})`).toBe(false)
        taken.set(x.item.uid, x.claim.agent)
      }
      if (taken.size === pool.length) break
    }
    // Every item of the pool went to exactly one agent.
    expect(taken.size).toBe(pool.length)
    await eventually('converged', () => converged(stores))
    for (const s of stores) for (const item of pool) expect(s.getItem(item.id)?.claim?.agent).toBe(taken.get(item.uid))
  }, 120_000)

  it('expiry, renewal and takeover by the server\'s clock; the previous holder learns it (event and audit)', async () => {
    let clock = Date.now()
    const srv = await server({ now: () => clock })
    const [a, b] = await Promise.all([synced(srv.url), synced(srv.url)])
    await Promise.all([a.whenSynced(10_000), b.whenSynced(10_000)])
    const item = await a.createItem({ name: 'long task' })
    await allSeen([b], [item.id])
    const events: StoreEvent[] = []
    a.subscribe((e) => events.push(e))
    await a.claim(item.id, { agent: 'slow', ttlMs: 60_000 })
    clock += 30_000
    expect(await b.claim(item.id, { agent: 'eager' })).toMatchObject({ granted: false, holder: { agent: 'slow' } })
    const renewed = await a.renewClaim(item.id, { agent: 'slow', ttlMs: 60_000 })
    expect(renewed).toMatchObject({ granted: true, claim: { until: new Date(clock + 60_000).toISOString() } })
    clock += 59_000
    expect(await b.claim(item.id, { agent: 'eager' })).toMatchObject({ granted: false, holder: { agent: 'slow' } })
    clock += 2000 // expired now, and not renewed
    const takeover = await b.claim(item.id, { agent: 'eager', ttlMs: 60_000 })
    expect(takeover).toMatchObject({ granted: true, claim: { agent: 'eager' }, previous: { agent: 'slow' } })
    await eventually('a is told', () => events.some((e) => e.type === 'claim_lost'))
    expect(events.find((e) => e.type === 'claim_lost')).toMatchObject({ type: 'claim_lost', id: item.id, agent: 'slow', reason: 'taken-over', to: { agent: 'eager' } })
    expect(await collect(a.audit({ kinds: ['claim_lost'] }))).toMatchObject([{ itemId: item.id, data: { agent: 'slow', reason: 'taken-over', to: { agent: 'eager' } } }])
    await expect(a.renewClaim(item.id, { agent: 'slow' })).rejects.toMatchObject({ code: 'CLAIM_NOT_HELD', details: { holder: { agent: 'eager' } } })
    await expect(a.releaseClaim(item.id, { agent: 'slow' })).rejects.toMatchObject({ code: 'CLAIM_NOT_HELD' })
    // Told once: a later change to the claim (its renewal) tells a nothing new.
    await b.renewClaim(item.id, { agent: 'eager' })
    await eventually('a sees the renewal', async () => (await a.flush(), a.getItem(item.id)?.claim?.until === new Date(clock + 15 * 60_000).toISOString()))
    expect(events.filter((e) => e.type === 'claim_lost')).toHaveLength(1)
  }, 60_000)

  it('the previous holder is told once: not again when the taker releases and a third agent claims, and also when it was away for all of it', async () => {
    let clock = Date.now()
    const srv = await server({ now: () => clock })
    const aDir = await tempDir()
    let a = await synced(srv.url, { dir: aDir })
    const b = await synced(srv.url)
    await Promise.all([a.whenSynced(10_000), b.whenSynced(10_000)])
    const [one, two] = [await a.createItem({ name: 'one' }), await a.createItem({ name: 'two' })]
    await allSeen([b], [one.id, two.id])
    const events: StoreEvent[] = []
    a.subscribe((e) => events.push(e))
    await a.claim(one.id, { agent: 'slow', ttlMs: 60_000 })
    await a.claim(two.id, { agent: 'slow', ttlMs: 60_000 })
    await a.whenSynced(10_000)
    clock += 61_000
    await b.claim(one.id, { agent: 'eager', ttlMs: 60_000 })
    await eventually('a is told', () => events.some((e) => e.type === 'claim_lost'))
    await b.releaseClaim(one.id, { agent: 'eager' })
    // Released: nobody holds it — not the expired claim that was taken over.
    await eventually('a sees the release', async () => (await a.flush(), a.getItem(one.id)?.claim === undefined))
    await b.claim(one.id, { agent: 'third', ttlMs: 60_000 })
    await eventually('a sees the third claim', async () => (await a.flush(), a.getItem(one.id)?.claim?.agent === 'third'))
    expect(events.filter((e) => e.type === 'claim_lost')).toHaveLength(1)
    // Away while its claim on `two` is taken over and released: told when it comes back.
    await a.close()
    await b.claim(two.id, { agent: 'eager', ttlMs: 60_000 })
    await b.releaseClaim(two.id, { agent: 'eager' })
    await b.whenSynced(10_000)
    a = await synced(srv.url, { dir: aDir })
    await a.whenSynced(10_000)
    await eventually('a is told about two', async () => (await collect(a.audit({ kinds: ['claim_lost'] }))).some((e) => e.itemId === two.id))
    expect((await collect(a.audit({ kinds: ['claim_lost'] }))).map((e) => e.itemId).sort()).toEqual([one.id, two.id].sort())
    expect(a.getItem(two.id)?.claim).toBeUndefined()
  }, 60_000)

  it('a takeover on the same replica tells the previous holder too (one process serving several agents)', async () => {
    let clock = Date.now()
    const srv = await server({ now: () => clock })
    const a = await synced(srv.url)
    await a.whenSynced(10_000)
    const item = await a.createItem({ name: 'shared' })
    const events: StoreEvent[] = []
    a.subscribe((e) => events.push(e))
    await a.claim(item.id, { agent: 'slow', ttlMs: 60_000 })
    clock += 61_000
    expect(await a.claim(item.id, { agent: 'eager' })).toMatchObject({ granted: true, previous: { agent: 'slow' } })
    expect(events.filter((e) => e.type === 'claim_lost')).toMatchObject([{ agent: 'slow', reason: 'taken-over', to: { agent: 'eager' } }])
    expect(await collect(a.audit({ kinds: ['claim_lost'] }))).toHaveLength(1)
  }, 60_000)

  it('claim entries a replica forges into the document — times far in the future — never hide a later grant', async () => {
    const srv = await server()
    const [a, b] = await Promise.all([synced(srv.url), synced(srv.url)])
    await Promise.all([a.whenSynced(10_000), b.whenSynced(10_000)])
    const item = await a.createItem({ name: 'target' })
    await allSeen([b], [item.id])
    // A hostile peer (it holds the token) writes a claim entry no server granted, dated in 9999.
    const peer = new Y.Doc()
    Y.applyUpdate(peer, b.encodeStateAsUpdate())
    const before = Y.encodeStateVector(peer)
    peer.getMap<Y.Map<unknown>>('records').get(item.uid)!.set('claim/l01J00000000000000000000099', { agent: 'mallory', replica: 'evil', since: '9999-01-01T00:00:00.000Z', until: '9999-01-02T00:00:00.000Z', grant: null, after: 99 })
    await b.applyUpdate(Y.encodeStateAsUpdate(peer, before), 'hostile')
    expect(b.getItem(item.id)?.claim).toBeUndefined() // taken on top of a grant that does not exist: no claim
    expect(await a.claim(item.id, { agent: 'honest' })).toMatchObject({ granted: true })
    await eventually('b shows the real grant', () => b.getItem(item.id)?.claim?.agent === 'honest')
  }, 60_000)

  it('a provisional claim released (or renewed) once online is checked with the server first, and a released one is never granted after', async () => {
    const srv = await server()
    const dir = await tempDir()
    let a = await synced(srv.url, { dir })
    await a.whenSynced(10_000)
    const items = []
    for (let i = 0; i < 3; i++) items.push(await a.createItem({ name: `p${i}` }))
    await a.close()
    a = await synced(`ws://127.0.0.1:${await freePort()}`, { dir })
    for (const item of items) await a.claim(item.id, { agent: 'off', offline: true, ttlMs: 600_000 })
    await a.close()
    a = await synced(srv.url, { dir })
    await a.whenSynced(10_000)
    const released = await a.releaseClaim(items[2]!.id, { agent: 'off' })
    expect(released.claim).toBeUndefined()
    const renewed = await a.renewClaim(items[1]!.id, { agent: 'off', ttlMs: 900_000 })
    expect(renewed).toMatchObject({ granted: true, claim: { provisional: false, grant: expect.any(Number) } })
    await a.flush()
    expect(a.getItem(items[2]!.id)?.claim).toBeUndefined()
    const b = await synced(srv.url)
    await b.whenSynced(10_000)
    await allSeen([b], [items[2]!.id])
    expect(await b.claim(items[2]!.id, { agent: 'next' })).toMatchObject({ granted: true })
  }, 60_000)

  it('offline: refused with BEHIND_REMOTE, or a provisional claim that the server confirms or refuses on reconnect', async () => {
    const srv = await server()
    const aDir = await tempDir()
    const bDir = await tempDir()
    let a = await synced(srv.url, { dir: aDir })
    const b = await synced(srv.url, { dir: bDir })
    await Promise.all([a.whenSynced(10_000), b.whenSynced(10_000)])
    const contested = await a.createItem({ name: 'contested' })
    const free = await a.createItem({ name: 'free' })
    await a.whenSynced(10_000)
    await a.close()
    // a's server is unreachable: it syncs with a port nobody listens on.
    const dead = `ws://127.0.0.1:${await freePort()}`
    a = await synced(dead, { dir: aDir })
    await expect(a.claim(contested.id, { agent: 'offline-agent' })).rejects.toMatchObject({ code: 'BEHIND_REMOTE' })
    const p1 = await a.claim(contested.id, { agent: 'offline-agent', offline: true })
    const p2 = await a.claim(free.id, { agent: 'offline-agent', offline: true })
    expect(p1).toMatchObject({ granted: true, claim: { provisional: true, grant: null } })
    expect(p2.granted).toBe(true)
    expect(a.listItems({ claimed: true }).map((i) => i.id).sort()).toEqual([contested.id, free.id].sort())
    // Meanwhile the server grants the contested one to an agent on b.
    await allSeen([b], [contested.id])
    expect(await b.claim(contested.id, { agent: 'online-agent' })).toMatchObject({ granted: true })
    await b.whenSynced(10_000)
    await a.close()
    a = await synced(srv.url, { dir: aDir })
    const events: StoreEvent[] = []
    a.subscribe((e) => events.push(e))
    await eventually('the provisional claims were checked', async () => (await collect(a.audit({ kinds: ['claim_lost'] }))).length === 1 && a.getItem(free.id)?.claim?.grant != null)
    expect(await collect(a.audit({ kinds: ['claim_lost'] }))).toMatchObject([{ itemId: contested.id, data: { agent: 'offline-agent', reason: 'refused', to: { agent: 'online-agent' } } }])
    expect(events).toContainEqual(expect.objectContaining({ type: 'claim_lost', id: contested.id, reason: 'refused', to: expect.objectContaining({ agent: 'online-agent' }) }))
    expect(a.getItem(contested.id)?.claim).toMatchObject({ agent: 'online-agent', provisional: false })
    expect(a.getItem(free.id)?.claim).toMatchObject({ agent: 'offline-agent', provisional: false })
    await eventually('b sees both', () => b.getItem(free.id)?.claim?.agent === 'offline-agent' && b.getItem(free.id)?.claim?.provisional === false)
  }, 60_000)

  it('a store without a server decides its claims alone, by the same rules', async () => {
    const s = await synced(undefined)
    const item = await s.createItem({ name: 'x' })
    const other = await s.createItem({ name: 'y', dependsOn: [item.id] })
    expect(await s.claim(item.id, { agent: 'a' })).toMatchObject({ granted: true, claim: { grant: null, provisional: false } })
    expect(await s.claim(item.id, { agent: 'b' })).toMatchObject({ granted: false, holder: { agent: 'a' } })
    // claimNext takes the first ready, unclaimed item: `other` waits for `item`, so none.
    expect(await s.claimNext({ agent: 'b' })).toBeNull()
    await s.releaseClaim(item.id, { agent: 'a' })
    expect(await s.claimNext({ agent: 'b' })).toMatchObject({ granted: true, item: { id: item.id } })
    expect(await s.renewClaim(item.id, { agent: 'b', ttlMs: 5000 })).toMatchObject({ granted: true })
    await expect(s.renewClaim(other.id, { agent: 'b' })).rejects.toMatchObject({ code: 'CLAIM_NOT_HELD' })
    for (const bad of [{}, { agent: '' }, { agent: ' x' }, { agent: 'a', ttlMs: 5 }, { agent: 'a', ttlMs: 8 * 24 * 3600_000 }, { agent: 'a', offline: 'yes' }, { agent: 'a', extra: 1 }]) {
      await expect(s.claim(item.id, bad as never), JSON.stringify(bad)).rejects.toMatchObject({ code: 'INVALID_INPUT' })
    }
    await expect(s.claim('999', { agent: 'a' })).rejects.toMatchObject({ code: 'NOT_FOUND' })
    await s.deleteItem(other.id)
    await expect(s.claim(other.id, { agent: 'a' })).rejects.toMatchObject({ code: 'TOMBSTONED' })
  })
})

describe('a server that does not lease', () => {
  it('creates fall back to the replica\'s own allocator at once, and the server is not asked again for a while', async () => {
    let asked = 0
    const s = await synced(undefined, {
      hooks: {
        arbiter: () => async () => {
          asked++
          throw Object.assign(new Error('the server did not answer'), { code: 'ARBITER_UNAVAILABLE' })
        },
      },
    })
    const ids = []
    for (let i = 0; i < 5; i++) ids.push((await s.createItem({ name: `n${i}` })).id)
    expect(ids).toEqual(['1', '2', '3', '4', '5'])
    expect(asked).toBe(1)
    expect(s.log.lines.filter((l) => l.includes('no id lease from the sync server'))).toHaveLength(1)
  })

  it('a lease answer that is no fresh block is not used', async () => {
    const answers = [{ from: 1, to: 1 }, { from: 5, to: 4 }, 'nonsense', { from: 0, to: 31 }]
    const s = await synced(undefined, { hooks: { arbiter: () => async () => answers.shift() } })
    await s.createItem({ name: 'a' })
    await s.createItem({ name: 'b' }) // above the first: `above` is 1 now, and a block from 1 is not above it
    expect(s.idLeases().blocks).toEqual([])
    expect(s.log.lines.some((l) => l.includes('not a fresh block'))).toBe(true)
  })
})
