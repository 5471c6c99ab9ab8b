import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { rankOf, validEvents, type Store } from '@docket/core'
import { collect } from '@docket/core/testing'
import { FakeNetwork, networkSteps, peerOf, propertyParameters, runNetworkStep, type NetworkStep } from '../src/index.js'
import { openReplicas } from './helpers.js'

/**
 * N replicas of one item exchange stage events over a network that reorders, drops,
 * duplicates and partitions; then a full sync. Checked against what each replica knew when
 * it decided, which the store never sees.
 */
type Step = { kind: 'apply'; replica: number; pick: number } | NetworkStep

const stepArb = (replicas: number): fc.Arbitrary<Step> =>
  fc.oneof({ weight: 5, arbitrary: fc.record({ kind: fc.constant('apply' as const), replica: fc.nat(replicas - 1), pick: fc.nat(20) }) }, ...networkSteps(replicas))

const scenarioArb = fc.integer({ min: 2, max: 3 }).chain((replicas) =>
  fc.record({ replicas: fc.constant(replicas), seed: fc.integer(), steps: fc.array(stepArb(replicas), { minLength: 5, maxLength: 40 }), finalInformed: fc.boolean() }),
)

interface Decision {
  entryId: string
  /** Entry ids the deciding replica held when it decided. */
  knew: Set<string>
}

function entryIds(store: Store, id: string): Set<string> {
  return new Set(store.stageHistory(id).map((h) => h.id))
}

describe('no-regress stage log across replicas', () => {
  const name = 'converges, never lets a stale decision win, lets an informed one win, and reports the stale ones'
  it(name, async () => {
    await fc.assert(
      fc.asyncProperty(scenarioArb, async ({ replicas, seed, steps, finalInformed }) => {
        const { stores, close } = await openReplicas(replicas, {}, seed)
        const net = new FakeNetwork(stores.map(peerOf))
        const names = stores.map((s) => s.replicaId)
        try {
          const item = await stores[0]!.createItem({ name: 'contested' })
          await net.syncAll()
          const decisions: Decision[] = []
          const apply = async (r: number, pick: number): Promise<Decision | undefined> => {
            const store = stores[r]!
            const stage = store.getItem(item.id)!.stage
            const events = validEvents(stage)
            if (events.length === 0) return undefined
            const event = events[pick % events.length]!
            const knew = entryIds(store, item.id)
            await store.apply(item.id, event)
            const entry = store.stageHistory(item.id).find((h) => !knew.has(h.id))!
            const decision: Decision = { entryId: entry.id, knew }
            decisions.push(decision)
            return decision
          }
          for (const step of steps) {
            if (step.kind === 'apply') await apply(step.replica, step.pick)
            else await runNetworkStep(net, step, names)
          }
          await net.syncAll()
          // An informed backward decision, made after the full sync, with nothing concurrent.
          let informed: Decision | undefined
          if (finalInformed) {
            const stage = stores[0]!.getItem(item.id)!.stage
            const backward = validEvents(stage).find((e) => ['demote', 'reopen', 'fixup_requested', 'requeued_for_qa'].includes(e))
            if (backward) informed = await apply(replicas - 1, validEvents(stage).indexOf(backward))
            await net.syncAll()
          }

          // 1. Convergence: every replica resolves the same stage from the same log.
          const histories = stores.map((s) => s.stageHistory(item.id))
          const stagesSeen = stores.map((s) => s.getItem(item.id)!.stage)
          expect(new Set(stagesSeen).size).toBe(1)
          for (const h of histories) expect(h.map((e) => [e.id, e.valid])).toEqual(histories[0]!.map((e) => [e.id, e.valid]))

          const history = histories[0]!
          const byId = new Map(history.map((h) => [h.id, h]))
          const valid = history.filter((h) => h.valid)
          // 2. No regress: a valid backward entry was based on the highest-ranked valid entry of its epoch,
          //    and a decision is only ever judged stale because of entries its replica had not seen.
          for (const entry of history) {
            const basis = entry.basedOn === null ? undefined : byId.get(entry.basedOn)
            if (!basis || entry.epoch === basis.epoch) continue
            const maxRank = Math.max(...valid.filter((v) => v.epoch === basis.epoch).map((v) => rankOf(v.stage)))
            if (entry.valid) expect(rankOf(basis.stage)).toBe(maxRank)
            if (entry.invalidReason === 'stale') {
              const decision = decisions.find((d) => d.entryId === entry.id)!
              const unseenHigher = valid.filter((v) => v.epoch === basis.epoch && rankOf(v.stage) > rankOf(basis.stage) && !decision.knew.has(v.id))
              expect(unseenHigher.length).toBeGreaterThan(0)
            }
          }
          // 3. A deliberate backward event made with full knowledge wins.
          if (informed) {
            expect(byId.get(informed.entryId)!.current).toBe(true)
            expect(stagesSeen[0]).toBe(byId.get(informed.entryId)!.stage)
          }
          // 4. Every superseded decision is in the deciding replica's audit log.
          for (const entry of history.filter((h) => h.invalidReason === 'stale' || h.invalidReason === 'superseded-basis')) {
            const decider = stores.find((s) => s.replicaId === entry.by)!
            const audit = await collect(decider.audit({ kinds: ['stale_transition_superseded'] }))
            expect(audit.some((a) => a.data.entryId === entry.id && a.data.mine === true)).toBe(true)
          }
        } finally {
          net.close()
          await close()
        }
      }),
      propertyParameters(name, { runs: 40 }),
    )
  })
})
