import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import type { Uid } from '@docket/core'
import { FakeNetwork, peerOf, propertyParameters, runNetworkStep } from '../src/index.js'
import { openReplicas } from './helpers.js'
import { localStep, scenario } from './network-steps.js'
import { expectConverged } from './replicas.js'

/**
 * N replicas doing random work over a network that drops, duplicates, reorders and
 * partitions, then a final full sync: no id reissued by a replica that knew it (1), no item
 * lost (2), no stage regress (4), identical replicas (5).
 */
describe('replicas over a fake network', () => {
  const name = 'no reissue, no loss, no regress, and convergence after drops, duplicates, reorders and partitions'
  it(name, async () => {
    await fc.assert(
      fc.asyncProperty(scenario, async ({ replicas, seed, steps }) => {
        const { stores, close } = await openReplicas(replicas, {}, seed)
        const net = new FakeNetwork(stores.map(peerOf))
        const names = stores.map((s) => s.replicaId)
        const created = new Map<Uid, string>()
        const deleted = new Set<Uid>()
        try {
          for (const step of steps) {
            if ('replica' in step) await localStep(stores[step.replica]!, step, created, deleted)
            else await runNetworkStep(net, step, names)
          }
          await net.syncAll()
          await expectConverged(stores)
          // 2. no loss: every item ever created is live (perhaps under a new id) or someone deleted it
          const store = stores[0]!
          const live = new Map(store.listItems().map((i) => [i.uid, i]))
          for (const uid of created.keys()) expect(live.has(uid) || deleted.has(uid), `item ${uid} (${created.get(uid)}) was lost`).toBe(true)
          for (const uid of deleted) expect(live.has(uid), `deleted item ${uid} came back`).toBe(false)
        } finally {
          net.close()
          await close()
        }
      }),
      propertyParameters(name, { runs: 30 }),
    )
  }, 120_000)
})
