import { join } from 'node:path'
import { Level } from 'level'
import { openStore } from '@docket/core'
import { discoverOrphans } from '@docket/recover'
import { plantOrphans } from '@docket/harness'
import { populate } from './core.js'
import { interleaved, median, row, scratch, time, type Row } from './support.js'

const quiet = { warn: () => {}, error: () => {} }

/** Orphan discovery over a large store against a raw full scan of the same LevelDB. */
async function discovery(items: number, orphans: number, rounds: number): Promise<Row> {
  const s = await scratch('recover')
  const seed = await openStore({ dir: s.dir, durability: 'relaxed', logger: quiet })
  await populate(seed, items, 256)
  await seed.compact()
  await seed.close()
  await plantOrphans(s.dir, Array.from({ length: orphans }, (_, i) => ({ id: String(items + 10 + i), name: `orphan ${i}` })))
  let found = 0
  // One LevelDB handle at a time: each side opens, measures only its scan, and closes.
  const result = await interleaved(
    rounds,
    async () => {
      const store = await openStore({ dir: s.dir, readOnly: true, logger: quiet })
      const [ms, d] = await time(() => discoverOrphans(store))
      found = d.orphans.length
      await store.close()
      return ms
    },
    async () => {
      const db = new Level<string, Uint8Array>(join(s.dir, 'db'), { valueEncoding: 'view' })
      await db.open()
      const [ms] = await time(async () => {
        let bytes = 0
        for await (const [key, value] of db.iterator()) bytes += key.length + value.byteLength
        return bytes
      })
      await db.close()
      return ms
    },
  )
  await s.cleanup()
  if (found !== orphans) throw new Error(`discovery found ${found} orphans, planted ${orphans}`)
  return row(`discoverOrphans, ${items} items + ${orphans} orphans (median of ${rounds})`, 'discoverOrphans', median(result.subject), 'raw full scan of the same LevelDB', median(result.baseline), '≤ 2×')
}

export async function recoverBenchmarks(quick: boolean): Promise<Row[]> {
  return [await discovery(quick ? 20_000 : 100_000, 1_000, quick ? 3 : 7)]
}
