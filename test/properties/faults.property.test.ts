import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import fc from 'fast-check'
import * as Y from 'yjs'
import { describe, expect, it } from 'vitest'
import { isDocketError, openStore, type Item, type Store, type Uid } from '@docket/core'
import { collect } from '@docket/core/testing'
import { recoverOrphans } from '@docket/recover'
import { FaultyStorage, itemName, plantOrphans, propertyParameters, type FaultMode } from '../src/index.js'

/**
 * Faulty storage at every write of an operation: for each operation, count its writes, then
 * for every k and both fault modes run it again on a fresh store with the k-th write failing
 * (or the process "dying" there), reopen from what reached the disk, and check that the
 * operation happened wholly or not at all (no loss, no half-writes, empty journal).
 */
interface Case {
  name: string
  setup(store: Store, dir: string, names: string[]): Promise<Record<string, unknown>>
  run(store: Store, ctx: Record<string, unknown>): Promise<unknown>
  check(store: Store, ctx: Record<string, unknown>, completed: boolean): Promise<void>
}

const quiet = { warn: () => {}, error: () => {} }

async function seeded(store: Store, names: string[]): Promise<Item[]> {
  const items: Item[] = []
  for (const name of names) items.push(await store.createItem({ name, body: `body of ${name}` }))
  return items
}

const CASES: Case[] = [
  {
    name: 'createItem',
    setup: async (store, _dir, names) => ({ before: (await seeded(store, names)).length, next: store.peekNextId() }),
    run: (store) => store.createItem({ name: 'under test', body: 'new body', content: { notes: 'n' } }),
    check: async (store, ctx, completed) => {
      const made = store.listItems().filter((i) => i.name === 'under test')
      expect(made).toHaveLength(completed ? 1 : 0)
      if (completed) {
        expect(made[0]!.id).toBe(ctx.next)
        expect(await store.readContent(made[0]!.id)).toBe('new body')
        expect(await store.readContent(made[0]!.id, 'notes')).toBe('n')
      }
      expect(store.listItems()).toHaveLength((ctx.before as number) + (completed ? 1 : 0))
    },
  },
  {
    name: 'apply',
    setup: async (store, _dir, names) => ({ id: (await seeded(store, names))[0]!.id }),
    run: (store, ctx) => store.apply(ctx.id as string, 'start'),
    check: async (store, ctx, completed) => expect(store.getItem(ctx.id as string)!.stage).toBe(completed ? 'coding' : 'backlog'),
  },
  {
    name: 'deleteItem',
    setup: async (store, _dir, names) => ({ id: (await seeded(store, names)).at(-1)!.id }),
    run: (store, ctx) => store.deleteItem(ctx.id as string),
    check: async (store, ctx, completed) => {
      expect(store.isTombstoned(ctx.id as string)).toBe(completed)
      expect(store.getItem(ctx.id as string) === undefined).toBe(completed)
      if (completed) expect(await store.maintenance.readStoredContent(ctx.id as string)).toBeUndefined()
    },
  },
  {
    name: 'writeContent',
    setup: async (store, _dir, names) => ({ id: (await seeded(store, names))[0]!.id, old: `body of ${names[0]}` }),
    run: (store, ctx) => store.writeContent(ctx.id as string, 'body', 'rewritten'),
    check: async (store, ctx, completed) => {
      const text = completed ? 'rewritten' : (ctx.old as string)
      expect(await store.readContent(ctx.id as string)).toBe(text)
      expect(Buffer.from((await store.maintenance.readStoredContent(ctx.id as string))!).toString()).toBe(text)
    },
  },
  {
    name: 'recoverOrphans (two orphans, then the run event)',
    setup: async (store, dir, names) => {
      await seeded(store, names)
      await store.close()
      const uids = ['01JQ00000000000000000000A1', '01JQ00000000000000000000A2']
      await plantOrphans(dir, [{ id: '900', uid: uids[0]!, name: 'orphan one' }, { id: '901', uid: uids[1]!, name: 'orphan two' }])
      return { uids, reopen: true }
    },
    run: (store) => recoverOrphans(store, { dryRun: false, all: true }),
    check: async (store, ctx, completed) => {
      const uids = ctx.uids as Uid[]
      let recovered = 0
      for (const [i, uid] of uids.entries()) {
        const live = store.listItems().find((x) => x.uid === uid)
        const row = await store.maintenance.readShadowRow(String(900 + i))
        expect(Boolean(live) !== Boolean(row), `orphan ${uid}: live ${Boolean(live)}, rows ${Boolean(row)}`).toBe(true)
        if (live) recovered++
      }
      const runs = await collect(store.audit({ kinds: ['recovery_run'] }))
      if (completed) expect(runs).toHaveLength(1)
      if (!completed) expect(runs).toHaveLength(0) // the completion marker only when the run finished
      if (completed && runs.length === 1) expect(runs[0]!.data).toMatchObject({ counts: { recovered } })
    },
  },
  {
    name: 'a remote update that displaces our item (then its re-anchoring)',
    setup: async (store, _dir, names) => {
      const mine = await store.createItem({ name: 'mine', body: 'my body' })
      await seeded(store, names)
      // A peer that created the same id concurrently, with a client id that wins the race.
      const peer = new Y.Doc()
      peer.clientID = 0xfffffff0
      const theirs = new Y.Map<unknown>()
      for (const [k, v] of Object.entries({ uid: '01JQ00000000000000000000B1', name: 'theirs', type: 'story', createdBy: 'peer', createdAt: '', updatedAt: '' })) theirs.set(k, v)
      peer.getMap('items').set(mine.id, theirs)
      return { mine, update: Y.encodeStateAsUpdate(peer) }
    },
    run: async (store, ctx) => {
      await store.applyUpdate(ctx.update as Uint8Array, 'peer')
      await store.flush()
    },
    check: async (store, ctx) => {
      await store.flush()
      const mine = ctx.mine as Item
      const now = store.listItems().find((i) => i.uid === mine.uid)
      expect(now, 'our item was lost').toBeDefined()
      expect(await store.readContent(now!.id)).toBe('my body')
      expect(store.maintenance.pendingIntents()).toEqual([])
      if (now!.id !== mine.id) expect(store.aliases(mine.id)).toMatchObject([{ uid: mine.uid, newId: now!.id }])
    },
  },
]

async function attempt(c: Case, names: string[], fault: { k: number; mode: FaultMode } | undefined): Promise<number> {
  const dir = await mkdtemp(join(tmpdir(), 'docket-faults-'))
  try {
    const faulty = new FaultyStorage()
    let store = await openStore({ dir, durability: 'relaxed', logger: quiet, hooks: faulty.hooks })
    const ctx = await c.setup(store, dir, names)
    if (ctx.reopen) store = await openStore({ dir, durability: 'relaxed', logger: quiet, hooks: faulty.hooks })
    if (fault) faulty.arm(fault.k, fault.mode)
    else faulty.count()
    let completed = false
    try {
      await c.run(store, ctx)
      completed = true
    } catch (err) {
      expect(fault, `${c.name} threw without a fault: ${err}`).toBeDefined()
      // Only the injected fault may make it throw, and then with a typed error, not a crash of docket's own.
      expect(faulty.tripped, `${c.name} threw before its fault at write ${fault?.k}: ${err}`).toBe(true)
      expect(isDocketError(err), `${c.name} threw an untyped error: ${(err as Error)?.stack ?? err}`).toBe(true)
    }
    const writes = faulty.writes
    faulty.disarm()
    await store.close().catch(() => {})
    const reopened = await openStore({ dir, durability: 'relaxed', logger: quiet })
    try {
      await c.check(reopened, ctx, completed)
      const report = await reopened.verify()
      expect(report.pendingIntents).toEqual([])
      expect(report.pendingReanchors).toEqual([])
      expect(report.crdtOnly.concat(report.staleShadow.map((s) => s.id), report.missingContent.map((m) => m.id))).toEqual([])
    } finally {
      await reopened.close()
    }
    return writes
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

describe('faulty storage: every write of every operation may fail or be the last', () => {
  for (const c of CASES) {
    const name = `${c.name}: whole or absent after a fault at each of its writes`
    it(name, async () => {
      await fc.assert(
        fc.asyncProperty(fc.uniqueArray(itemName, { minLength: 1, maxLength: 4 }), async (names) => {
          const writes = await attempt(c, names, undefined)
          expect(writes).toBeGreaterThan(0)
          for (let k = 1; k <= writes; k++) {
            for (const mode of ['fail', 'crash'] as const) await attempt(c, names, { k, mode })
          }
        }),
        propertyParameters(name, { runs: 4 }),
      )
    })
  }
})
