import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openStore, type ClaimResult, type Item, type Store } from '@docket/core'
import { eventually } from '@docket/core/testing'
import { startServer, type RunningServer } from '../src/index.js'
import { startRedis } from './redis-server.js'

// Two docket servers on one Redis decide as one: 8 replicas, 4 on each server.
const TOKEN = 'arbiter-race'
let redis: { port: number; stop: () => void }
const cleanup: Array<() => Promise<unknown>> = []

beforeAll(async () => {
  redis = await startRedis()
})
afterAll(async () => {
  for (const fn of cleanup.reverse()) await fn().catch(() => {})
  redis.stop()
})

describe('the arbiter behind two servers sharing one Redis', () => {
  it('8 replicas on two servers: leased ids never collide, and every claim race has exactly one winner', async () => {
    const servers: RunningServer[] = []
    for (const name of ['one', 'two']) {
      const dir = await mkdtemp(join(tmpdir(), `docket-race-${name}-`))
      cleanup.push(() => rm(dir, { recursive: true, force: true }))
      const server = await startServer({ dir, port: 0, token: TOKEN, redis: { host: '127.0.0.1', port: redis.port }, logger: { info: () => {}, warn: () => {} } })
      cleanup.push(() => server.close())
      servers.push(server)
    }
    const stores: Store[] = []
    for (let i = 0; i < 8; i++) {
      const dir = await mkdtemp(join(tmpdir(), 'docket-race-replica-'))
      cleanup.push(() => rm(dir, { recursive: true, force: true }))
      const store = await openStore({ dir, durability: 'relaxed', logger: { warn: () => {} }, sync: { url: servers[i % 2]!.url, token: TOKEN } })
      cleanup.push(() => store.close())
      stores.push(store)
    }
    await Promise.all(stores.map((s) => s.whenSynced(10_000)))
    // Every replica creates 25 items at the same moment: 200 ids, none twice, none re-anchored.
    const made: Item[] = (await Promise.all(stores.map((s) => Promise.all(Array.from({ length: 25 }, (_, k) => s.createItem({ name: `${s.replicaId.slice(-4)}-${k}` })))))).flat()
    expect(new Set(made.map((i) => i.id)).size).toBe(200)
    await eventually('every replica has every item', () => stores.every((s) => s.stats().items === 200))
    for (const s of stores) {
      const moved = []
      for await (const e of s.audit({ kinds: ['reanchored'] })) moved.push(e)
      expect(moved).toEqual([])
    }
    // 100 rounds: all 8 claim the same item at once.
    for (const item of made.slice(0, 100)) {
      const results = await Promise.all(stores.map((s, r) => s.claim(item.id, { agent: `agent-${r}` })))
      const winners = results.filter((x): x is Extract<ClaimResult, { granted: true }> => x.granted)
      expect(winners, `item ${item.id}`).toHaveLength(1)
      for (const x of results) if (!x.granted) expect(x.holder.agent).toBe(winners[0]!.claim.agent)
    }
    // claimNext over the other 100: each granted once.
    await eventually('every replica sees the first 100 claims', () => stores.every((s) => s.listItems({ claimed: true }).length === 100))
    const granted = new Set<string>()
    for (let round = 0; round < 20 && granted.size < 100; round++) {
      const results = await Promise.all(stores.map((s, r) => s.claimNext({ agent: `n${round}-${r}` })))
      for (const x of results) {
        if (!x?.granted) continue
        expect(granted.has(x.item.uid), `item ${x.item.id} granted twice`).toBe(false)
        granted.add(x.item.uid)
      }
    }
    expect(granted.size).toBe(100)
  }, 120_000)
})
