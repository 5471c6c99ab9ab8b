import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { isDocketError, openStore, type Item } from '@docket/core'
import { recoverOrphans } from '@docket/recover'
import { itemName, pick, plantOrphans, propertyParameters } from '../src/index.js'

type Op = { kind: 'create'; name: string } | { kind: 'apply'; item: number } | { kind: 'delete'; item: number } | { kind: 'recover' }

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: itemName.map((name) => ({ kind: 'create' as const, name })) },
  { weight: 2, arbitrary: pick.map((item) => ({ kind: 'apply' as const, item })) },
  { weight: 2, arbitrary: pick.map((item) => ({ kind: 'delete' as const, item })) },
  { weight: 1, arbitrary: fc.constant({ kind: 'recover' as const }) },
)

describe('races: concurrent calls in one process, in every order the scheduler picks', () => {
  const name = 'no duplicate ids and no lost writes, whatever the interleaving'
  it(name, async () => {
    await fc.assert(
      fc.asyncProperty(fc.scheduler(), fc.array(opArb, { minLength: 2, maxLength: 25 }), async (s, ops) => {
        const dir = await mkdtemp(join(tmpdir(), 'docket-races-'))
        try {
          const seed = await openStore({ dir, durability: 'relaxed', logger: { warn: () => {} } })
          const existing = [] as Item[]
          for (let i = 0; i < 3; i++) existing.push(await seed.createItem({ name: `existing ${i}` }))
          await seed.close()
          await plantOrphans(dir, [{ id: '50', name: 'orphan' }])
          const store = await openStore({ dir, durability: 'relaxed', logger: { warn: () => {} } })
          const created: Item[] = []
          const deleted = new Set<string>()
          const recoveredTo: string[] = []
          const run = s.scheduleFunction(async function runOp(op: Op) {
            switch (op.kind) {
              case 'create':
                created.push(await store.createItem({ name: op.name }))
                return
              case 'apply': {
                const target = existing[op.item % existing.length]!
                await store.apply(target.id, 'start').catch((err: unknown) => {
                  if (!isDocketError(err, 'INVALID_TRANSITION') && !isDocketError(err, 'TOMBSTONED')) throw err
                })
                return
              }
              case 'delete': {
                const target = existing[op.item % existing.length]!
                const result = await store.deleteItem(target.id)
                deleted.add(result.id)
                return
              }
              case 'recover': {
                const result = await recoverOrphans(store, { dryRun: false, all: true })
                expect(result.failed.map((f) => f.error.message).join(' ')).toBe('')
                recoveredTo.push(...result.recovered.map((r) => r.newId!))
              }
            }
          })
          const all = ops.map((op) => run(op))
          await s.waitAll()
          await Promise.all(all)
          const items = store.listItems()
          // no id issued twice, none reissued after a delete, no item copied to a second id
          expect(new Set(items.map((i) => i.uid)).size, 'two live items share a uid').toBe(items.length)
          const createdIds = created.map((i) => i.id)
          expect(new Set(createdIds).size).toBe(createdIds.length)
          for (const id of [...createdIds, ...recoveredTo]) expect(deleted.has(id)).toBe(false)
          // no lost writes: every create that returned is there, every delete stuck
          for (const item of created) expect(store.getItem(item.id)?.uid).toBe(item.uid)
          for (const id of deleted) expect(store.getItem(id)).toBeUndefined()
          expect(recoveredTo.length).toBeLessThanOrEqual(1)
          expect(items).toHaveLength(existing.length - deleted.size + created.length + recoveredTo.length)
          await store.close()
          const reopened = await openStore({ dir, readOnly: true, logger: { warn: () => {} } })
          expect(reopened.listItems()).toEqual(items)
          expect((await reopened.verify()).ok).toBe(recoveredTo.length === 1)
          await reopened.close()
        } finally {
          await rm(dir, { recursive: true, force: true })
        }
      }),
      propertyParameters(name, { runs: 30 }),
    )
  })
})
