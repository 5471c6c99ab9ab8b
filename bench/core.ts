import { cp } from 'node:fs/promises'
import { join } from 'node:path'
import { Level } from 'level'
import * as Y from 'yjs'
import { openStore, type Store, type WriteOp } from '@docket/core'
import { body, interleaved, median, row, scratch, time, type Row } from './support.js'

const quiet = { warn: () => {}, error: () => {} }

/** Fills a store with `n` items with `size`-byte bodies, quickly (relaxed fsync, concurrent creates). */
export async function populate(store: Store, n: number, size = 1024, from = 1): Promise<void> {
  for (let i = 0; i < n; i += 500) {
    const batch: Promise<unknown>[] = []
    for (let k = i; k < Math.min(n, i + 500); k++) batch.push(store.createItem({ name: `Item ${from + k}`, body: body(from + k, size) }))
    await Promise.all(batch)
  }
}

async function populatedDir(n: number): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const s = await scratch(`core-${n}`)
  const store = await openStore({ dir: s.dir, durability: 'relaxed', logger: quiet })
  await populate(store, n)
  await store.compact()
  await store.close()
  return s
}

/** createItem (fsync'd, verified) against a raw LevelDB batch of the very rows it writes. */
async function createLatency(n: number, rounds: number): Promise<Row> {
  const base = await populatedDir(n)
  const raw = await scratch(`raw-${n}`)
  await cp(join(base.dir, 'db'), join(raw.dir, 'db'), { recursive: true })
  let captured: readonly WriteOp[] = []
  const store = await openStore({ dir: base.dir, durability: 'sync', logger: quiet, hooks: { beforeWrite: (ops) => void (captured = ops) } })
  const db = new Level<string, Uint8Array | string>(join(raw.dir, 'db'), { keyEncoding: 'utf8', valueEncoding: 'view' })
  await db.open()
  let i = 0
  const result = await interleaved(
    rounds,
    async () => (await time(() => store.createItem({ name: `bench ${i}`, body: body(i++) })))[0],
    async () => {
      const ops = captured.map((op) => ({
        type: op.type,
        key: `!${op.sublevel}!${op.key}~${i}`,
        value: typeof op.value === 'string' ? Buffer.from(op.value) : op.value,
      }))
      return (await time(() => db.batch(ops as never, { sync: true })))[0]
    },
  )
  await store.close()
  await db.close()
  await base.cleanup()
  await raw.cleanup()
  return row(`createItem at ${n} items (median of ${rounds})`, 'createItem, fsync', median(result.subject), 'raw LevelDB batch of the same rows, fsync', median(result.baseline), '≤ 3×')
}

/** Cold open of a 10k-item store against applying the same state to a bare Y.Doc. */
async function coldOpen(n: number, rounds: number): Promise<Row> {
  const base = await populatedDir(n)
  const probe = await openStore({ dir: base.dir, logger: quiet })
  const state = probe.encodeStateAsUpdate()
  await probe.close()
  const result = await interleaved(
    rounds,
    async () => {
      const [ms, store] = await time(() => openStore({ dir: base.dir, logger: quiet }))
      await store.close()
      return ms
    },
    async () => (await time(() => Y.applyUpdate(new Y.Doc(), state)))[0],
  )
  await base.cleanup()
  return row(`cold open, ${n} items with 1 KB bodies (median of ${rounds})`, 'openStore', median(result.subject), 'Y.applyUpdate into a bare Y.Doc', median(result.baseline), '≤ 1.5×')
}

/** The allocator's cost at 100k items against 1k: it must not depend on the size. */
async function allocation(small: number, large: number, calls: number): Promise<Row> {
  const open = async (n: number) => {
    const s = await scratch(`alloc-${n}`)
    const store = await openStore({ dir: s.dir, durability: 'relaxed', logger: quiet })
    await populate(store, n, 64)
    return { store, cleanup: async () => (await store.close(), await s.cleanup()) }
  }
  const a = await open(small)
  const b = await open(large)
  const perCall = async (store: Store) => (await time(() => {
    for (let k = 0; k < calls; k++) store.peekNextId()
  }))[0] / calls
  const result = await interleaved(9, () => perCall(b.store), () => perCall(a.store))
  await a.cleanup()
  await b.cleanup()
  return row(`allocation: peekNextId per call (${calls} calls, median of 9)`, `at ${large} items`, median(result.subject), `at ${small} items`, median(result.baseline), '≤ 1.2×')
}

export async function coreBenchmarks(quick: boolean): Promise<Row[]> {
  const rows: Row[] = []
  rows.push(await createLatency(1_000, quick ? 30 : 200))
  rows.push(await createLatency(10_000, quick ? 30 : 200))
  rows.push(await coldOpen(10_000, quick ? 3 : 10))
  rows.push(await allocation(1_000, quick ? 20_000 : 100_000, 1_000_000))
  return rows
}
