import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import type { Store, Uid } from '@docket/core'
import { converged, eventually } from '@docket/core/testing'
import { itemName, pick, propertyParameters } from '../src/index.js'
import { serverWithReplicas } from './helpers.js'
import { localStep, type Step } from './network-steps.js'
import { expectConverged } from './replicas.js'

/**
 * The fake-network property again, over a real Hocuspocus server on 127.0.0.1: replicas work,
 * go offline (reopened without sync), come back, and in the end everyone converges through
 * the server with no item lost and none resurrected.
 */
type ServerStep = Extract<Step, { replica: number }> | { kind: 'offline'; replica: number } | { kind: 'online'; replica: number }


const stepArb = (n: number): fc.Arbitrary<ServerStep> => {
  const replica = fc.nat(n - 1)
  return fc.oneof(
    { weight: 4, arbitrary: fc.record({ kind: fc.constant('create' as const), replica, name: itemName }) },
    { weight: 3, arbitrary: fc.record({ kind: fc.constant('apply' as const), replica, item: pick, event: pick }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('write' as const), replica, item: pick, text: fc.lorem({ maxCount: 3 }) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('delete' as const), replica, item: pick }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('offline' as const), replica }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('online' as const), replica }) },
  )
}

describe('replicas through a real Hocuspocus server', () => {
  const name = 'no loss, no resurrection, convergence through the server with replicas going offline and back'
  it(name, async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 2, max: 3 }).chain((n) => fc.record({ replicas: fc.constant(n), seed: fc.integer(), steps: fc.array(stepArb(n), { minLength: 5, maxLength: 30 }) })),
        async ({ replicas, seed, steps }) => {
          const cluster = await serverWithReplicas('docket-server-prop', replicas, seed)
          const open = cluster.open
          const stores: Store[] = []
          const online: boolean[] = []
          for (let i = 0; i < replicas; i++) {
            stores.push(await open(i, true))
            online.push(true)
          }
          const created = new Map<Uid, string>()
          const deleted = new Set<Uid>()
          try {
            for (const step of steps) {
              if (step.kind === 'offline' || step.kind === 'online') {
                const want = step.kind === 'online'
                if (online[step.replica] === want) continue
                await stores[step.replica]!.close()
                stores[step.replica] = await open(step.replica, want)
                online[step.replica] = want
              } else {
                await localStep(stores[step.replica]!, step, created, deleted)
              }
            }
            for (let i = 0; i < replicas; i++) {
              if (!online[i]) {
                await stores[i]!.close()
                stores[i] = await open(i, true)
              }
            }
            await eventually('every replica is synced and they agree', () => converged(stores))
            await expectConverged(stores)
            const live = new Map(stores[0]!.listItems().map((i) => [i.uid, i]))
            for (const uid of created.keys()) expect(live.has(uid) || deleted.has(uid), `item ${uid} (${created.get(uid)}) was lost`).toBe(true)
            for (const uid of deleted) expect(live.has(uid), `deleted item ${uid} came back`).toBe(false)
          } finally {
            await Promise.allSettled(stores.map((s) => s.close()))
            await cluster.close()
          }
        },
      ),
      propertyParameters(name, { runs: 6, extensiveRuns: 60 }),
    )
  }, 300_000)
})
