import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { runFixture } from '@docket/core/testing'
import { plantOrphans } from '@docket/harness'
import { discoverOrphans } from '../src/index.js'
import { open, seedStore, tempDir } from './support.js'

const FIXTURE = join(import.meta.dirname, 'fixtures', 'recover-kill.ts')
const ORPHANS = [
  { id: '10', uid: '01JD0000000000000000000010', name: 'first' },
  { id: '11', uid: '01JD0000000000000000000011', name: 'second' },
  { id: '12', uid: '01JD0000000000000000000012', name: 'third' },
]
const KILL_POINTS: Array<[string, number]> = [
  ['adopt:before-commit', 1],
  ['commit:before-write', 1],
  ['commit:after-write', 1],
  ['adopt:before-commit', 2],
  ['commit:before-write', 3],
  ['commit:after-write', 3],
  ['commit:before-write', 4], // the run's audit event
]

describe('recovery survives kill -9 at every step of a re-anchor', () => {
  for (const [step, nth] of KILL_POINTS) {
    it(`killed at ${step} #${nth}: each orphan is still an orphan or fully recovered, never both, never lost`, async () => {
      const dir = await tempDir()
      await seedStore(dir, 2)
      await plantOrphans(dir, ORPHANS.map((o) => ({ ...o, slots: { notes: `notes of ${o.name}` } })))
      const result = await runFixture(FIXTURE, [dir, step, String(nth)])
      expect(result.signal, result.stderr).toBe('SIGKILL')

      const store = await open(dir)
      const orphans = await discoverOrphans(store)
      const live = store.listItems()
      let recovered = 0
      for (const planted of ORPHANS) {
        const asOrphan = orphans.orphans.find((o) => o.uid === planted.uid)
        const asItem = live.find((i) => i.uid === planted.uid)
        expect(Boolean(asOrphan) !== Boolean(asItem), `${planted.id}: orphan ${Boolean(asOrphan)}, item ${Boolean(asItem)}`).toBe(true)
        if (asOrphan) expect(asOrphan.id).toBe(planted.id)
        if (asItem) {
          recovered++
          expect(asItem.name).toBe(planted.name)
          expect(await store.readContent(asItem.id, 'notes')).toBe(`notes of ${planted.name}`)
          expect(await store.maintenance.readShadowRow(planted.id)).toBeUndefined()
        }
      }
      expect(store.maintenance.pendingIntents()).toEqual([])
      // each adoption is one commit: the ones whose commit finished are recovered, the rest are not
      expect(recovered).toBe(Math.min(ORPHANS.length, step === 'commit:after-write' ? nth : nth - 1))
      expect((await store.verify()).untracked).toEqual(orphans.orphans.map((o) => o.id))
    })
  }
})
