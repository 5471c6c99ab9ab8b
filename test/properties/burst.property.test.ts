import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import type { Item, Store, StoreHooks, Uid } from '@docket/core'
import { converged, eventually } from '@docket/core/testing'
import { FakeNetwork, isExtensive, networkSteps, peerOf, pick, propertyParameters, runNetworkStep, type Message, type NetworkStep } from '../src/index.js'
import { openReplicas, serverWithReplicas } from './helpers.js'
import { expectConverged } from './replicas.js'

/**
 * The reconnect burst of issue 9. 3–4 replicas create items while partitioned (so their ids
 * collide), the network heals — every pair exchanges its state, as a sync protocol does on
 * reconnecting — and every replica keeps creating while those messages are delivered, dropped,
 * duplicated, reordered and partitioned again; some updates arrive while creates are being
 * written. Items lose their ids, are re-anchored, and the re-anchored ones collide again.
 *
 * After a final full sync: no create was refused (nothing was deleted), every acknowledged
 * item is on every replica with its uid, under the id its create returned or at the end of the
 * alias chain from it, ids are unique, and every replica lists the same items.
 */

interface Ack {
  uid: Uid
  id: string
  name: string
  /** The id its create claimed first (it differs from `id` when the item was displaced while being written). */
  claimed: string | undefined
  replica: string
}

/** Follows the alias chain of `uid` from `id` on one replica; returns the item and the number of hops. */
function follow(store: Store, uid: Uid, id: string): { item: Item | undefined; hops: number; path: string[] } {
  const path = [id]
  let at = id
  for (let hops = 0; hops < 200; hops++) {
    const item = store.getItem(at)
    if (item?.uid === uid) return { item, hops, path }
    const next = store.aliases(at).filter((a) => a.uid === uid)
    if (next.length !== 1) return { item: undefined, hops, path }
    at = next[0]!.newId
    path.push(at)
  }
  return { item: undefined, hops: 200, path }
}

/** The checks of both properties, once every replica holds everything. */
async function expectNothingLost(stores: readonly Store[], acks: readonly Ack[], stats: { maxHops: number }): Promise<void> {
  for (const store of stores) expect(store.maintenance.pendingReanchors(), `${store.replicaId} still has items to re-anchor`).toEqual([])
  await expectConverged(stores)
  for (const store of stores) {
    const items = store.listItems()
    expect(new Set(items.map((i) => i.id)).size, `${store.replicaId}: two items show the same id`).toBe(items.length)
    expect(new Set(items.map((i) => i.uid)).size, `${store.replicaId}: an item shows two ids`).toBe(items.length)
    for (const ack of acks) {
      const { item, hops, path } = follow(store, ack.uid, ack.id)
      expect(item?.name, `acknowledged item ${ack.uid} (${ack.name}, #${ack.id} from ${ack.replica}) is not on ${store.replicaId} at the end of its alias chain ${path.join(' → ')}`).toBe(ack.name)
      stats.maxHops = Math.max(stats.maxHops, hops)
      // …and the id it returned is the one it claimed, or one its alias chain leads to
      if (ack.claimed !== undefined && ack.claimed !== ack.id) {
        expect(follow(store, ack.uid, ack.claimed).path, `item ${ack.uid} returned #${ack.id}, but no alias chain leads there from #${ack.claimed}`).toContain(ack.id)
      }
    }
    // nothing was deleted, so exactly the acknowledged items are there (none twice, none extra)
    expect(items.map((i) => i.uid).sort(), `${store.replicaId} lists other items than were acknowledged`).toEqual(acks.map((a) => a.uid).sort())
  }
}

/** Concurrent creates on several replicas, with `during` updates delivered to them while the creates are being written. */
type BurstStep = { kind: 'creates'; replicas: number[]; during: number[] } | { kind: 'reconnect'; a: number; b: number } | NetworkStep

const stepArb = (n: number): fc.Arbitrary<BurstStep> => {
  const replica = fc.nat(n - 1)
  return fc.oneof(
    { weight: 6, arbitrary: fc.record({ kind: fc.constant('creates' as const), replicas: fc.uniqueArray(replica, { minLength: 1, maxLength: n }), during: fc.array(pick, { maxLength: 4 }) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('reconnect' as const), a: replica, b: replica }) },
    ...networkSteps(n),
  )
}

const burstArb = fc.integer({ min: 3, max: 4 }).chain((n) =>
  fc.record({
    replicas: fc.constant(n),
    seed: fc.integer(),
    /** Items each replica creates while partitioned… */
    offline: fc.array(fc.integer({ min: 1, max: 6 }), { minLength: n, maxLength: n }),
    /** …in this order (who creates next; round-robin once it runs out), so that their uids interleave. */
    order: fc.array(fc.nat(n - 1), { maxLength: 24 }),
    steps: fc.array(stepArb(n), { minLength: 10, maxLength: 45 }),
  }),
)

/** The offline creates in order: `order` says who goes next while it lasts, then round-robin. */
function offlineSchedule(counts: readonly number[], order: readonly number[]): number[] {
  const left = [...counts]
  const out: number[] = []
  for (const r of order) {
    if (left[r]! > 0) {
      left[r]!--
      out.push(r)
    }
  }
  while (left.some((k) => k > 0)) {
    for (let r = 0; r < left.length; r++) {
      if (left[r]! > 0) {
        left[r]!--
        out.push(r)
      }
    }
  }
  return out
}

describe('the reconnect burst (issue 9) over a fake network', () => {
  const name = 'every acknowledged create survives a reconnect burst with cascades of re-anchorings, on every replica'
  it(name, async () => {
    const stats = { runs: 0, acks: 0, displacedWhileWritten: 0, reanchorings: 0, maxHops: 0 }
    await fc.assert(
      fc.asyncProperty(burstArb, async ({ replicas, seed, offline, order, steps }) => {
        // The creates signal when their entry is in the document (not yet on disk): the test
        // then starts the next one, or delivers updates to them while they are being written.
        let written: ((id: string) => void) | undefined
        const hooks: StoreHooks = {
          step: (step, data) => {
            if (step === 'create:crdt-written') written?.(String(data?.['id']))
          },
        }
        const { stores, close } = await openReplicas(replicas, { hooks }, seed)
        const net = new FakeNetwork(stores.map(peerOf))
        const names: string[] = stores.map((s) => s.replicaId)
        const acks: Ack[] = []
        const failures: string[] = []
        let counter = 0

        /** Starts a create and waits (microtasks only: nothing reaches the disk meanwhile) until its entry is in the document. */
        const startCreate = async (r: number, phase: string) => {
          const slot = counter++
          const itemName = `${names[r]} ${phase} ${slot}`
          let claimed: string | undefined
          const inDoc = new Promise<void>((resolve) => {
            written = (id) => {
              claimed = id
              resolve()
            }
          })
          const done = stores[r]!.createItem({ name: itemName, body: `body of ${itemName}` })
          await Promise.race([inDoc, done.then(noop, noop)])
          written = undefined
          return {
            settled: done.then(
              (item) => {
                // in the order the creates started, whichever is acknowledged first
                acks[slot] = { uid: item.uid, id: item.id, name: itemName, claimed, replica: names[r]! }
                if (claimed !== undefined && item.id !== claimed) stats.displacedWhileWritten++
              },
              (err: unknown) => {
                failures.push(`${names[r]}: createItem(${JSON.stringify(itemName)}) was refused: ${(err as Error)?.message ?? String(err)}`)
              },
            ),
          }
        }

        /**
         * Waits until every replica has written and re-anchored all it started, then puts the
         * messages this step sent in a canonical order (by sender, each sender's in the order
         * it sent them): replicas commit in parallel, and a replay must not depend on which
         * disk was faster.
         */
        const settle = async (known: Set<Message>) => {
          for (const store of stores) await store.flush()
          const first = net.inFlight.findIndex((m) => !known.has(m))
          if (first < 0) return
          const fresh = net.inFlight.splice(first)
          fresh.sort((x, y) => (x.from < y.from ? -1 : x.from > y.from ? 1 : 0))
          net.inFlight.push(...fresh)
        }

        try {
          // 1. Partitioned: every replica creates its items offline (their ids collide).
          for (let a = 0; a < replicas; a++) for (let b = a + 1; b < replicas; b++) net.cut(names[a]!, names[b]!)
          for (const r of offlineSchedule(offline, order)) {
            const { settled } = await startCreate(r, 'offline')
            await settled
            await stores[r]!.flush()
          }
          // 2. The network heals: every pair exchanges what the other lacks, all at once.
          net.heal()
          for (let a = 0; a < replicas; a++) {
            for (let b = 0; b < replicas; b++) {
              if (a !== b) net.inFlight.push({ from: names[a]!, to: names[b]!, update: stores[a]!.encodeStateAsUpdate(stores[b]!.encodeStateVector()) })
            }
          }
          // 3. The burst: everybody keeps creating while those messages (and the ones the
          // creates and re-anchorings send) are delivered, lost, duplicated and reordered.
          for (const step of steps) {
            const known = new Set(net.inFlight)
            if (step.kind === 'creates') {
              const started = []
              for (const r of step.replicas) started.push(await startCreate(r, 'online'))
              // Updates for the replicas whose creates are being written, applied now: a
              // concurrent create that won the id makes the item move before it is acknowledged.
              const creating = new Set(step.replicas.map((r) => names[r]!))
              const deliveries: Array<Promise<boolean>> = []
              for (const index of step.during) {
                const targets = net.inFlight.flatMap((m, i) => (creating.has(m.to) ? [i] : []))
                if (targets.length === 0) break
                deliveries.push(net.deliver(targets[index % targets.length]!))
              }
              await Promise.all(started.map((s) => s.settled))
              await Promise.all(deliveries)
            } else if (step.kind === 'reconnect') {
              if (step.a !== step.b) {
                const [a, b] = [step.a, step.b]
                net.heal(names[a]!, names[b]!)
                net.inFlight.push({ from: names[a]!, to: names[b]!, update: stores[a]!.encodeStateAsUpdate(stores[b]!.encodeStateVector()) })
                net.inFlight.push({ from: names[b]!, to: names[a]!, update: stores[b]!.encodeStateAsUpdate(stores[a]!.encodeStateVector()) })
              }
            } else {
              await runNetworkStep(net, step, names)
            }
            await settle(known)
          }
          await net.syncAll()
          expect(failures, 'a create was refused although nothing was deleted').toEqual([])
          const acknowledged = acks.filter((a) => a !== undefined)
          await expectNothingLost(stores, acknowledged, stats)
          stats.runs++
          stats.acks += acknowledged.length
          stats.reanchorings += stores[0]!.aliases().length
        } finally {
          net.close()
          await close()
        }
      }),
      propertyParameters(name, { runs: 25 }),
    )
    console.info(
      `[property] burst: ${stats.runs} runs, ${stats.acks} acknowledged creates, ${stats.reanchorings} re-anchorings, ${stats.displacedWhileWritten} creates displaced while being written, longest alias chain ${stats.maxHops}`,
    )
    // The property is only worth something if the burst does what it says: when it runs as
    // configured (not a replay of one case), creates were displaced while being written and
    // re-anchored items collided again.
    if (process.env.FC_SEED === undefined && process.env.FC_PATH === undefined && process.env.FC_NUM_RUNS === undefined) {
      expect(stats.displacedWhileWritten, 'no create was displaced while being written: the burst lost its teeth').toBeGreaterThan(0)
      expect(stats.maxHops, 'no re-anchored item collided again: the burst lost its teeth').toBeGreaterThanOrEqual(2)
    }
  }, isExtensive() ? 1_800_000 : 120_000)
})

function noop(): void {}


describe('the reconnect burst (issue 9) through a real Hocuspocus server', () => {
  const name = 'every acknowledged create survives replicas coming online together and creating concurrently, through the server'
  it(name, async () => {
    const stats = { runs: 0, acks: 0, reanchorings: 0, maxHops: 0 }
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 3, max: 4 }).chain((n) =>
          fc.record({
            replicas: fc.constant(n),
            seed: fc.integer(),
            offline: fc.array(fc.integer({ min: 1, max: 8 }), { minLength: n, maxLength: n }),
            online: fc.array(fc.integer({ min: 1, max: 10 }), { minLength: n, maxLength: n }),
            /** Pauses (ms) between a replica's online creates, cycled: 0 means back to back. */
            pauses: fc.array(fc.integer({ min: 0, max: 15 }), { minLength: 1, maxLength: 8 }),
          }),
        ),
        async ({ replicas, seed, offline, online, pauses }) => {
          const cluster = await serverWithReplicas('docket-burst', replicas, seed)
          const open = cluster.open
          const acks: Ack[] = []
          const failures: string[] = []
          const stores: Store[] = []
          try {
            // 1. Offline: each replica creates its items with no server (their ids collide).
            for (let r = 0; r < replicas; r++) {
              const store = await open(r, false)
              for (let i = 0; i < offline[r]!; i++) {
                const item = await store.createItem({ name: `replica-${r} offline ${i}`, body: `offline ${r}/${i}` })
                acks.push({ uid: item.uid, id: item.id, name: item.name, claimed: undefined, replica: store.replicaId })
              }
              await store.close()
            }
            // 2. All come online at once and keep creating, without waiting to be synced.
            stores.push(...(await Promise.all(Array.from({ length: replicas }, (_, r) => open(r, true)))))
            let tick = 0
            await Promise.all(
              stores.map(async (store, r) => {
                for (let i = 0; i < online[r]!; i++) {
                  const name = `replica-${r} online ${i}`
                  try {
                    const item = await store.createItem({ name, body: `online ${r}/${i}` })
                    acks.push({ uid: item.uid, id: item.id, name, claimed: undefined, replica: store.replicaId })
                  } catch (err) {
                    failures.push(`${store.replicaId}: createItem(${JSON.stringify(name)}) was refused: ${(err as Error)?.message ?? String(err)}`)
                  }
                  const pause = pauses[tick++ % pauses.length]!
                  if (pause > 0) await new Promise((resolve) => setTimeout(resolve, pause))
                }
              }),
            )
            await eventually('every replica is synced and they agree', () => converged(stores), 30_000)
            expect(failures, 'a create was refused although nothing was deleted').toEqual([])
            await expectNothingLost(stores, acks, stats)
            stats.runs++
            stats.acks += acks.length
            stats.reanchorings += stores[0]!.aliases().length
          } finally {
            await Promise.allSettled(stores.map((s) => s.close()))
            await cluster.close()
          }
        },
      ),
      propertyParameters(name, { runs: 3, extensiveRuns: 30 }),
    )
    console.info(`[property] burst through a server: ${stats.runs} runs, ${stats.acks} acknowledged creates, ${stats.reanchorings} re-anchorings, longest alias chain ${stats.maxHops}`)
  }, isExtensive() ? 1_800_000 : 120_000)
})
