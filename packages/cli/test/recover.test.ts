import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { openStore } from '@docket/core'
import { collect, startFixture } from '@docket/core/testing'
import { plantOrphans, snapshotRows, type OrphanSpec } from '@docket/harness'
import { docket, tempDir } from './support.js'

const WANTED = ['989', '1000', '1001']

/**
 * The incident: a store with real items, 700 stale content rows from an older id scheme
 * (`missing`), 35 half-writes onto deleted ids (`tombstoned`), and three orphans — also
 * half-writes onto deleted ids — that are wanted back: 989, 1000, 1001.
 */
async function incidentStore(): Promise<string> {
  const dir = await tempDir()
  const store = await openStore({ dir, durability: 'relaxed', logger: { warn: () => {} } })
  for (let i = 1; i <= 40; i++) await store.createItem({ name: `Real item ${i}`, body: `---\nname: Real item ${i}\n---\n` })
  const deleted = [...Array.from({ length: 35 }, (_, i) => String(900 + i)), ...WANTED]
  for (const id of deleted) {
    await store.createItem({ name: `Purged ${id}`, id })
    await store.deleteItem(id, { reason: 'purged on purpose' })
  }
  await store.close()
  const orphans: OrphanSpec[] = [
    ...Array.from({ length: 700 }, (_, i) => ({ id: String(2000 + i), name: `Stale row ${2000 + i}` })),
    ...Array.from({ length: 35 }, (_, i) => ({ id: String(900 + i), name: `Half-write ${900 + i}` })),
    ...WANTED.map((id) => ({ id, name: `Wanted ${id}`, dependsOn: ['1'] })),
  ]
  await plantOrphans(dir, orphans)
  return dir
}

describe('docket recover: the incident', () => {
  it('lists exactly the named orphans, re-anchors exactly those, and leaves every other orphan alone', async () => {
    const dir = await incidentStore()
    const before = await snapshotRows(dir)

    const dry = await docket(['--dir', dir, '--json', 'recover', '--story-ids', WANTED.join(',')])
    expect(dry.code, dry.stderr).toBe(0)
    const plan = dry.json()
    expect(plan.dryRun).toBe(true)
    expect(plan.discovered.map((o: { id: string }) => o.id)).toEqual(WANTED)
    expect(plan.recovered.map((r: { oldId: string; newId: null }) => [r.oldId, r.newId])).toEqual(WANTED.map((id) => [id, null]))
    expect(await snapshotRows(dir)).toEqual(before) // not a row, not an audit event

    const human = await docket(['--dir', dir, 'recover', '--story-ids', WANTED.join(',')])
    expect(human.code).toBe(0)
    for (const id of WANTED) expect(human.stdout).toMatch(new RegExp(`#${id}\\s+tombstoned\\s+Wanted ${id}\\s+would re-anchor to a fresh id`))
    expect(human.stdout).toContain('Nothing was written')

    const applied = await docket(['--dir', dir, '--json', 'recover', '--story-ids', WANTED.join(','), '--apply'])
    expect(applied.code, applied.stderr).toBe(0)
    const done = applied.json()
    expect(done.failed).toEqual([])
    expect(done.recovered.map((r: { oldId: string }) => r.oldId)).toEqual(WANTED)
    const newIds = done.recovered.map((r: { newId: string }) => r.newId)
    expect(newIds).toEqual(['2700', '2701', '2702']) // fresh: past every id the store ever held

    const again = await docket(['--dir', dir, '--json', 'recover', '--story-ids', WANTED.join(',')])
    expect(again.json().discovered).toEqual([])

    const store = await openStore({ dir, readOnly: true, logger: { warn: () => {} } })
    try {
      for (const [i, id] of WANTED.entries()) {
        expect(store.getItem(newIds[i])).toMatchObject({ name: `Wanted ${id}`, dependsOn: ['1'] })
        expect(store.isTombstoned(id)).toBe(true)
        expect(store.getItem(id)).toBeUndefined()
      }
      // no tombstoned item came back: 40 real items and the three wanted ones
      expect(store.listItems()).toHaveLength(43)
      const runs = await collect(store.audit({ kinds: ['recovery_run'] }))
      expect(runs).toMatchObject([{ investigate: false, data: { filter: WANTED, counts: { recovered: 3, failed: 0 } } }])
    } finally {
      await store.close()
    }

    const everything = await docket(['--dir', dir, '--json', 'recover'])
    const all = everything.json()
    expect(all.discovered.filter((o: { kind: string }) => o.kind === 'missing')).toHaveLength(700)
    expect(all.discovered.filter((o: { kind: string }) => o.kind === 'tombstoned')).toHaveLength(35)
    expect(all.skipped.filter((s: { reason: string }) => s.reason.startsWith('tombstoned'))).toHaveLength(35)
  })
})

describe('docket recover: bad input and refusals', () => {
  const BAD = ['989, 1000', '989,989', '989,,1000', ',989', '989,abc', '12,abc', '0989', '1.5', '-3', '99999999999999999999']
  for (const bad of BAD) {
    it(`--story-ids ${JSON.stringify(bad)} is a usage error (exit 2), nothing opened`, async () => {
      const dir = await tempDir()
      const run = await docket(['--dir', join(dir, 'no-store'), 'recover', '--story-ids', bad])
      expect(run.code).toBe(2)
      expect(run.stderr).toMatch(/--story-ids/)
      expect(run.stdout).toBe('')
    })
  }

  it('refuses --apply without --story-ids or --all (exit 2): bulk recovery must be asked for', async () => {
    const dir = await incidentStore()
    const before = await snapshotRows(dir)
    const run = await docket(['--dir', dir, 'recover', '--apply'])
    expect(run.code).toBe(2)
    expect(run.stderr).toContain('--story-ids')
    expect(await snapshotRows(dir)).toEqual(before)
    const dry = await docket(['--dir', dir, 'recover'])
    expect(dry.stdout).toMatch(/To re-anchor, run again with --story-ids \d+,\d+,\d+,… \(the ones you want\) --apply/)
  })

  it('reports named ids that are live or unknown as skipped with the reason', async () => {
    const dir = await incidentStore()
    const run = await docket(['--dir', dir, '--json', 'recover', '--story-ids', '1,5000,989'])
    expect(run.code).toBe(0)
    expect(run.json().skipped).toEqual([
      { id: '1', reason: expect.stringMatching(/^live/) },
      { id: '5000', reason: expect.stringMatching(/^unknown/) },
    ])
  })

  it('exits 3 when some orphans fail and the others are recovered', async () => {
    const dir = await tempDir()
    const store = await openStore({ dir, durability: 'relaxed', logger: { warn: () => {} } })
    const live = await store.createItem({ name: 'live' })
    await store.close()
    await plantOrphans(dir, [{ id: '10' }, { id: '11', uid: live.uid }])
    const run = await docket(['--dir', dir, '--json', 'recover', '--apply', '--all'])
    expect(run.code).toBe(3)
    const result = run.json()
    expect(result.recovered.map((r: { oldId: string }) => r.oldId)).toEqual(['10'])
    expect(result.failed).toMatchObject([{ id: '11', error: { code: 'ALREADY_EXISTS' } }])
  })

  it('exits 4 when another process holds the store and does not serve it', async () => {
    const dir = await tempDir()
    const store = await openStore({ dir, logger: { warn: () => {} } })
    await store.close()
    const holder = await startFixture(join(import.meta.dirname, '..', '..', 'core', 'test', 'fixtures', 'hold-open.ts'), [dir, 'no-serve'], 'open')
    try {
      const run = await docket(['--dir', dir, 'recover', '--apply', '--all'])
      expect(run.code).toBe(4)
      expect(run.stderr).toContain('STORE_LOCKED')
      expect(run.stderr).toContain(dir)
    } finally {
      holder.child.stdin!.end()
      await new Promise((r) => holder.child.on('close', r))
    }
  })

  it('exits 1 with "docket init" when there is no store', async () => {
    const dir = await tempDir()
    const run = await docket(['recover'], { cwd: dir })
    expect(run.code).toBe(1)
    expect(run.stderr).toContain('docket init')
  })
})
