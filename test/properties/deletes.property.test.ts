import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import type { Item, Store } from '@docket/core'
import { FakeNetwork, itemName, peerOf, pick, propertyParameters } from '../src/index.js'
import { openReplicas } from './helpers.js'

/**
 * Two stories the general network property finds only now and then, as properties of their
 * own: a delete must stay a delete when it arrives out of order, and when it crosses the
 * re-anchoring of the item it deletes.
 */
/** Delivers every message in flight, in the order given by `order` (indices into what is left). */
async function deliverInOrder(net: FakeNetwork, order: number[]): Promise<void> {
  for (const index of order) if (!(await net.deliver(index))) return
  await net.deliverAll()
}

describe('deletes that race', () => {
  const outOfOrder = 'a delete that overtakes the updates before it stays a delete'
  it(outOfOrder, async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          seed: fc.integer(),
          names: fc.uniqueArray(itemName, { minLength: 1, maxLength: 5 }),
          before: fc.array(fc.oneof(itemName.map((name) => ({ create: name })), fc.record({ rename: pick, name: itemName })), { minLength: 1, maxLength: 4 }),
          victim: pick,
          order: fc.array(pick, { maxLength: 8 }),
        }),
        async ({ seed, names, before, victim, order }) => {
          const { stores, close } = await openReplicas(2, {}, seed)
          const [a, b] = stores as [Store, Store]
          const net = new FakeNetwork(stores.map(peerOf))
          try {
            for (const name of names) await a.createItem({ name })
            await net.syncAll()
            // b works (updates a has not seen yet), then deletes one of a's items
            for (const step of before) {
              if ('create' in step) await b.createItem({ name: step.create })
              else {
                const items = b.listItems()
                await b.updateItem(items[step.rename % items.length]!.id, { name: step.name })
              }
            }
            const target: Item = a.listItems()[victim % names.length]!
            await b.deleteItem(target.id)
            await deliverInOrder(net, order)
            await net.syncAll()
            for (const store of stores) {
              expect(store.listItems().some((i) => i.uid === target.uid), `deleted item ${target.uid} came back on ${store.replicaId}`).toBe(false)
              expect(store.isTombstoned(target.id)).toBe(true)
              // nothing was created concurrently, so nothing had to move: a vanished item whose
              // tombstone is still on its way is not taken for a displaced one
              expect(store.aliases().map((x) => `${x.oldId}->${x.newId} ${x.reason} by ${x.by}`)).toEqual([])
            }
          } finally {
            net.close()
            await close()
          }
        },
      ),
      propertyParameters(outOfOrder, { runs: 40 }),
    )
  })

  const crossing = 'a delete that crosses the re-anchoring of the item it deletes stays a delete'
  it(crossing, async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({ seed: fc.integer(), names: fc.uniqueArray(itemName, { minLength: 1, maxLength: 4 }), deleteFirst: fc.boolean(), extra: itemName }),
        async ({ seed, names, deleteFirst, extra }) => {
          // c creates first (the lower uid): its concurrent create wins the id; a must move its item.
          const base = [0x10000000, 0x20000000, 0xf0000000]
          const reopened = await openReplicas(3, {}, (i) => {
            let k = 0
            return () => base[i]! + (seed & 0xffff) * 16 + k++
          })
          const [a, b, c] = reopened.stores as [Store, Store, Store]
          const net = new FakeNetwork(reopened.stores.map(peerOf))
          try {
            net.cut(a.replicaId, c.replicaId)
            net.cut(b.replicaId, c.replicaId)
            const y = await c.createItem({ name: extra }) // made apart, before x: the lower uid
            const created: Item[] = []
            for (const name of names) created.push(await a.createItem({ name }))
            await net.deliverAll() // b sees a's items; c sees nothing
            const x = created[0]!
            expect(y.id).toBe(x.id)
            expect(y.uid < x.uid).toBe(true)
            await b.deleteItem(x.id)
            net.heal()
            // the update from c (which displaces x on a) and b's delete of x reach a in either order
            const fromC = await c.encodeStateAsUpdate(a.encodeStateVector())
            const fromB = await b.encodeStateAsUpdate(a.encodeStateVector())
            for (const update of deleteFirst ? [fromB, fromC] : [fromC, fromB]) {
              await a.applyUpdate(update, 'peer')
              await a.flush()
            }
            await net.syncAll()
            for (const store of reopened.stores) {
              expect(store.listItems().some((i) => i.uid === x.uid), `deleted item came back on ${store.replicaId}`).toBe(false)
              expect(store.listItems().some((i) => i.uid === y.uid)).toBe(true)
            }
          } finally {
            net.close()
            await reopened.close()
          }
        },
      ),
      propertyParameters(crossing, { runs: 10 }),
    )
  })
})
