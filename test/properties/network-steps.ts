import fc from 'fast-check'
import { expect } from 'vitest'
import { isDocketError, validEvents, type Store, type Uid } from '@docket/core'
import { itemName, networkSteps, pick, type NetworkStep } from '../src/index.js'

/** Random work on N replicas, mixed with network events: the steps of the replica properties. */
export type Step =
  | { kind: 'create'; replica: number; name: string }
  | { kind: 'apply'; replica: number; item: number; event: number }
  | { kind: 'rename'; replica: number; item: number; name: string }
  | { kind: 'write'; replica: number; item: number; text: string }
  | { kind: 'delete'; replica: number; item: number }
  | NetworkStep

const stepArb = (n: number): fc.Arbitrary<Step> => {
  const replica = fc.nat(n - 1)
  return fc.oneof(
    { weight: 4, arbitrary: fc.record({ kind: fc.constant('create' as const), replica, name: itemName }) },
    { weight: 3, arbitrary: fc.record({ kind: fc.constant('apply' as const), replica, item: pick, event: pick }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('rename' as const), replica, item: pick, name: itemName }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('write' as const), replica, item: pick, text: fc.lorem({ maxCount: 3 }) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('delete' as const), replica, item: pick }) },
    ...networkSteps(n),
  )
}

export const scenario = fc.integer({ min: 2, max: 4 }).chain((n) => fc.record({ replicas: fc.constant(n), seed: fc.integer(), steps: fc.array(stepArb(n), { minLength: 10, maxLength: 60 }) }))

/** Runs one local step; tolerates the refusals a replica may legitimately meet (a concurrent delete). */
export async function localStep(store: Store, step: Step, created: Map<Uid, string>, deleted: Set<Uid>): Promise<void> {
  const items = store.listItems()
  const target = 'item' in step && items.length > 0 ? items[step.item % items.length]! : undefined
  try {
    switch (step.kind) {
      case 'create': {
        const highest = store.stats().highestId
        const expected = store.peekNextId()
        const known = new Set([...items.map((i) => i.id), ...store.tombstonedIds(), ...store.aliases().map((a) => a.oldId)])
        const item = await store.createItem({ name: step.name, body: `body of ${step.name}` })
        // 1. no reissue: an id this replica leased from the server (handed out to it alone) that it
        // never used, or else past every id it has ever seen (items, tombstones, content, marks)
        expect(known.has(expected), `#${expected} was issued before`).toBe(false)
        const leased = store.idLeases().blocks.some((b) => b.from <= Number(expected) && Number(expected) <= b.to)
        if (!leased) expect(Number(expected)).toBeGreaterThan(highest)
        // …and it got that id — unless a concurrent create won it while this one was being
        // written, in which case it moved on, with an alias saying so.
        // A lease that arrived meanwhile gives a leased id instead (one this replica never used).
        const leasedNow = store.idLeases().blocks.some((b) => b.from <= Number(item.id) && Number(item.id) <= b.to)
        if (item.id !== expected && !(leasedNow && !known.has(item.id))) {
          const moves = store.aliases().filter((a) => a.uid === item.uid)
          expect(moves.some((a) => a.oldId === expected) && moves.some((a) => a.newId === item.id), `create got #${item.id}, expected #${expected}`).toBe(true)
        }
        created.set(item.uid, step.name)
        return
      }
      case 'apply': {
        if (!target) return
        const events = validEvents(target.stage)
        if (events.length > 0) await store.apply(target.id, events[step.event % events.length]!)
        return
      }
      case 'rename':
        if (target) await store.updateItem(target.id, { name: step.name })
        return
      case 'write':
        if (target) await store.writeContent(target.id, 'notes', step.text)
        return
      case 'delete':
        if (target && !(await store.deleteItem(target.id)).alreadyDeleted) deleted.add(target.uid)
        return
    }
  } catch (err) {
    if (!isDocketError(err, 'TOMBSTONED') && !isDocketError(err, 'NOT_FOUND')) throw err
  }
}

