import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import type { Item, Store } from '@docket/core'
import { converged, eventually } from '@docket/core/testing'
import { leaseStart } from '@docket/server'
import { FakeNetwork, networkSteps, peerOf, propertyParameters, runNetworkStep } from '../src/index.js'
import { clientIds, openReplicas, serverWithReplicas } from './helpers.js'
import { expectConverged } from './replicas.js'

/**
 * Leased id blocks (issue 13): replicas that create while connected to the arbiter, or offline
 * within the blocks they hold, never re-anchor; no id is issued twice; every acknowledged item
 * is present, under the id its create returned, on every replica.
 */


/** Every create of the run: the id it returned and the item's uid. */
type Created = Array<{ id: string; uid: string; replica: number; online: boolean }>

/** Creates `count` items at once on the replica: while offline, only as many as its blocks hold. */
async function burst(store: Store, count: number, online: boolean, created: Created, replica: number): Promise<void> {
  const n = online ? count : Math.min(count, store.idLeases().remaining)
  const items: Item[] = await Promise.all(Array.from({ length: n }, (_, i) => store.createItem({ name: `r${replica} ${i}` })))
  for (const item of items) created.push({ id: item.id, uid: item.uid, replica, online })
}

async function expectNoReanchoring(stores: readonly Store[], created: Created): Promise<void> {
  for (const s of stores) {
    const moved = []
    for await (const e of s.audit({ kinds: ['reanchored'] })) moved.push(e.data)
    expect(moved, `re-anchorings on ${s.replicaId}`).toEqual([])
  }
  expect(new Set(created.map((c) => c.id)).size, 'an id was issued twice').toBe(created.length)
  for (const s of stores) for (const c of created) expect(s.getItem(c.id)?.uid, `item ${c.uid} (created as #${c.id}) on ${s.replicaId}`).toBe(c.uid)
}

const replicaList = (n: number) => fc.uniqueArray(fc.nat(n - 1), { minLength: 1, maxLength: n })

describe('leased ids over a fake network with an arbiter replicas reach or not', () => {
  const name = 'connected or within their blocks, replicas never re-anchor, through drops, reorders and partitions'
  it(name, async () => {
    const scenario = fc.integer({ min: 2, max: 4 }).chain((n) =>
      fc.record({
        replicas: fc.constant(n),
        steps: fc.array(
          fc.oneof(
            { weight: 4, arbitrary: fc.record({ kind: fc.constant('burst' as const), replicas: replicaList(n), count: fc.integer({ min: 1, max: 40 }) }) },
            { weight: 1, arbitrary: fc.record({ kind: fc.constant('offline' as const), replica: fc.nat(n - 1) }) },
            { weight: 1, arbitrary: fc.record({ kind: fc.constant('online' as const), replica: fc.nat(n - 1) }) },
            ...networkSteps(n),
          ),
          { minLength: 3, maxLength: 30 },
        ),
      }),
    )
    await fc.assert(
      fc.asyncProperty(scenario, async ({ replicas, steps }) => {
        // The arbiter: one counter, handed out exactly once (the server's arithmetic).
        let handedOut = 0
        const reachable = Array.from({ length: replicas }, () => true)
        const arbiterFor = (i: number) => () =>
          reachable[i]
            ? async (request: Record<string, unknown>) => {
                const from = leaseStart(handedOut, 0, request.above as number)
                handedOut = from + (request.size as number) - 1
                return { from, to: handedOut }
              }
            : undefined
        const { stores: withArbiter, close } = await openReplicas(replicas, {}, (i) => clientIds(0, i), (i) => ({ arbiter: arbiterFor(i) }))
        const net = new FakeNetwork(withArbiter.map(peerOf))
        const names = withArbiter.map((s) => s.replicaId)
        const created: Created = []
        try {
          for (const step of steps) {
            if (step.kind === 'burst') await Promise.all(step.replicas.map((r) => burst(withArbiter[r]!, step.count, reachable[r]!, created, r)))
            else if (step.kind === 'offline' || step.kind === 'online') reachable[step.replica] = step.kind === 'online'
            else await runNetworkStep(net, step, names)
          }
          await net.syncAll()
          await expectConverged(withArbiter)
          await expectNoReanchoring(withArbiter, created)
        } finally {
          net.close()
          await close()
        }
      }),
      propertyParameters(name, { runs: 25 }),
    )
  }, 180_000)
})

describe('leased ids through a real Hocuspocus server', () => {
  const name = 'replicas that stay connected, or create offline within their blocks, never re-anchor; no id issued twice'
  it(name, async () => {
    const scenario = fc.integer({ min: 2, max: 3 }).chain((n) =>
      fc.record({
        replicas: fc.constant(n),
        seed: fc.integer(),
        steps: fc.array(
          fc.oneof(
            { weight: 4, arbitrary: fc.record({ kind: fc.constant('burst' as const), replicas: replicaList(n), count: fc.integer({ min: 1, max: 50 }) }) },
            { weight: 1, arbitrary: fc.record({ kind: fc.constant('offline' as const), replica: fc.nat(n - 1) }) },
            { weight: 1, arbitrary: fc.record({ kind: fc.constant('online' as const), replica: fc.nat(n - 1) }) },
          ),
          { minLength: 3, maxLength: 14 },
        ),
      }),
    )
    await fc.assert(
      fc.asyncProperty(scenario, async ({ replicas, seed, steps }) => {
        const cluster = await serverWithReplicas('docket-lease-prop', replicas, seed)
        const stores: Store[] = []
        const online: boolean[] = []
        // Connected means caught up: a replica creates once it is synced (as `docket` commands do).
        const reopen = async (i: number, want: boolean) => {
          const store = await cluster.open(i, want)
          if (want) await store.whenSynced(10_000)
          return store
        }
        for (let i = 0; i < replicas; i++) {
          stores.push(await reopen(i, true))
          online.push(true)
        }
        const created: Created = []
        try {
          for (const step of steps) {
            if (step.kind === 'burst') await Promise.all(step.replicas.map((r) => burst(stores[r]!, step.count, online[r]!, created, r)))
            else if (step.kind === 'offline' || step.kind === 'online') {
              const want = step.kind === 'online'
              if (online[step.replica] === want) continue
              await stores[step.replica]!.close()
              stores[step.replica] = await reopen(step.replica, want)
              online[step.replica] = want
            }
          }
          for (let i = 0; i < replicas; i++) {
            if (online[i]) continue
            await stores[i]!.close()
            stores[i] = await reopen(i, true)
          }
          await eventually('every replica is synced and they agree', () => converged(stores))
          await expectConverged(stores)
          await expectNoReanchoring(stores, created)
        } finally {
          await Promise.allSettled(stores.map((s) => s.close()))
          await cluster.close()
        }
      }),
      propertyParameters(name, { runs: 6, extensiveRuns: 60 }),
    )
  }, 300_000)
})
