import { describe, expect, it } from 'vitest'
import { orphanWrites, plantOrphans, snapshotRows } from '@docket/harness'
import type { AuditEvent, Store } from '@docket/core'
import { collect } from '@docket/core/testing'
import { discoverOrphans, recoverOrphans } from '../src/index.js'
import { open, seedStore, tempDir } from './support.js'

const auditKinds = (store: Store, kind: AuditEvent['kind']): Promise<AuditEvent[]> => collect(store.audit({ kinds: [kind] }))

describe('recoverOrphans', () => {
  it('is a dry run by default and then writes nothing at all, not even an audit event', async () => {
    const dir = await tempDir()
    await seedStore(dir, 2, ['2'])
    await plantOrphans(dir, [{ id: '2' }, { id: '30' }])
    const before = await snapshotRows(dir)
    const store = await open(dir)
    const result = await recoverOrphans(store)
    expect(result.dryRun).toBe(true)
    expect(result.recovered).toEqual([expect.objectContaining({ oldId: '30', newId: null, kind: 'missing' })])
    expect(result.skipped).toEqual(expect.arrayContaining([{ id: '2', reason: expect.stringMatching(/^tombstoned/) }]))
    await store.close()
    expect(await snapshotRows(dir)).toEqual(before)
  })

  it('re-anchors the selected orphans to fresh ids, keeps content and history, and is idempotent', async () => {
    const dir = await tempDir()
    await seedStore(dir, 3)
    await plantOrphans(dir, [
      { id: '40', name: 'Wanted', type: 'spike', dependsOn: ['1', '999'], slots: { gate_output: 'green' } },
      { id: '41', name: 'Also wanted' },
    ])
    const store = await open(dir)
    const result = await recoverOrphans(store, { dryRun: false, all: true })
    expect(result.failed).toEqual([])
    expect(result.recovered.map((r) => [r.oldId, r.newId])).toEqual([
      ['40', '42'],
      ['41', '43'],
    ])
    const wanted = store.getItem('42')!
    expect(wanted).toMatchObject({ name: 'Wanted', type: 'spike', dependsOn: ['1', '999'], stage: 'backlog' })
    expect(await store.readContent('42', 'gate_output')).toBe('green')
    expect(await store.readContent('42')).toContain('name: "Wanted"')
    expect(store.aliases('40')).toMatchObject([{ newId: '42', reason: 'recovery', uid: wanted.uid }])
    expect(result.recovered[0]!.warnings).toContain('depends_on 999 is not an item in this store; kept as written')
    // the old ids were never reused and nothing of them is left
    expect(await store.maintenance.readShadowRow('40')).toBeUndefined()
    expect(await store.maintenance.readStoredContent('40')).toBeUndefined()
    expect(store.peekNextId()).toBe('44')
    const again = await recoverOrphans(store, { dryRun: false, all: true })
    expect(again.discovered).toEqual([])
    expect(again.recovered).toEqual([])
    const runs = await auditKinds(store, 'recovery_run')
    expect(runs).toHaveLength(2)
    expect(runs[0]).toMatchObject({
      investigate: false,
      data: { filter: null, counts: { discovered: 2, recovered: 2, skipped: 0, failed: 0, rescan: 0 }, mapping: [{ oldId: '40', newId: '42' }, { oldId: '41', newId: '43' }] },
    })
    expect((await auditKinds(store, 'orphan_adopted')).map((e) => e.itemId)).toEqual(['42', '43'])
    expect((await store.verify()).ok).toBe(true)
  })

  it('recovers a tombstoned orphan only when it is named or included', async () => {
    const dir = await tempDir()
    await seedStore(dir, 3, ['2', '3'])
    await plantOrphans(dir, [{ id: '2', name: 'purged on purpose' }, { id: '3', name: 'wanted back' }])
    const store = await open(dir)
    const unnamed = await recoverOrphans(store, { dryRun: false, all: true })
    expect(unnamed.recovered).toEqual([])
    expect(unnamed.skipped.map((s) => s.id)).toEqual(['2', '3'])
    const named = await recoverOrphans(store, { ids: ['3'], dryRun: false })
    expect(named.recovered).toMatchObject([{ oldId: '3', newId: '4', name: 'wanted back' }])
    expect(store.isTombstoned('3')).toBe(true) // the id stays deleted; the item lives on as #4
    expect((await discoverOrphans(store)).orphans.map((o) => o.id)).toEqual(['2'])
    const included = await recoverOrphans(store, { includeTombstoned: true, dryRun: false, all: true })
    expect(included.recovered.map((r) => r.oldId)).toEqual(['2'])
  })

  it('goes on when one orphan fails, and reports the failure', async () => {
    const dir = await tempDir()
    await seedStore(dir, 1)
    const store0 = await open(dir)
    const liveUid = store0.getItem('1')!.uid
    await store0.close()
    await plantOrphans(dir, [{ id: '10' }, { id: '11', uid: liveUid, name: 'stale copy of #1' }, { id: '12' }])
    const store = await open(dir)
    const result = await recoverOrphans(store, { dryRun: false, all: true })
    expect(result.recovered.map((r) => r.oldId)).toEqual(['10', '12'])
    expect(result.failed).toEqual([{ id: '11', error: { code: 'ALREADY_EXISTS', message: expect.stringContaining('already live as #1') } }])
    expect((await auditKinds(store, 'recovery_run'))[0]!.data).toMatchObject({ counts: { failed: 1, recovered: 2 } })
  })

  it('reports in rescan the orphans a concurrent writer left while it repaired', async () => {
    const dir = await tempDir()
    await seedStore(dir, 1)
    await plantOrphans(dir, [{ id: '10' }])
    let injected = false
    const store = await open(dir, {
      hooks: {
        beforeWrite: (ops) => {
          if (injected || !ops.some((op) => op.sublevel === 'audit')) return
          injected = true
          // another writer's half-written row lands at the same moment
          return orphanWrites({ id: '500', name: 'appeared meanwhile' }).map((w) => ({ ...w, value: w.type === 'put' ? w.value : undefined })) as never
        },
      },
    })
    const result = await recoverOrphans(store, { dryRun: false, all: true })
    expect(result.recovered.map((r) => r.oldId)).toEqual(['10'])
    expect(result.rescan.map((o) => [o.id, o.name])).toEqual([['500', 'appeared meanwhile']])
  })

  it('refuses bad options with typed errors', async () => {
    const dir = await tempDir()
    await seedStore(dir, 1)
    const store = await open(dir)
    await expect(recoverOrphans(store, { ids: ['1', 'x'] })).rejects.toMatchObject({ code: 'INVALID_ID' })
    await expect(recoverOrphans(store, null as never)).rejects.toMatchObject({ code: 'INVALID_INPUT' })
    // a repair names its ids, or says all
    await expect(recoverOrphans(store, { dryRun: false })).rejects.toMatchObject({ code: 'INVALID_INPUT', message: expect.stringContaining('--story-ids') })
  })

  it('refuses unknown option keys, naming them with the closest accepted one, and writes nothing', async () => {
    const dir = await tempDir()
    await seedStore(dir, 1)
    await plantOrphans(dir, [{ id: '30' }])
    const before = await snapshotRows(dir)
    const store = await open(dir)
    // `dryrun: false` would otherwise be ignored: a dry run that the caller believed was a repair.
    await expect(recoverOrphans(store, { dryrun: false, all: true } as never)).rejects.toMatchObject({
      code: 'INVALID_INPUT',
      message: expect.stringMatching(/^unknown option dryrun for recoverOrphans\(\): did you mean dryRun\? accepted: ids, all, dryRun, /),
      details: { key: 'dryrun', suggestion: 'dryRun' },
    })
    await expect(recoverOrphans(store, { storyIds: ['30'] } as never)).rejects.toMatchObject({ code: 'INVALID_INPUT', details: { key: 'storyIds' } })
    await expect(discoverOrphans(store, { id: ['30'] } as never)).rejects.toMatchObject({
      code: 'INVALID_INPUT',
      message: expect.stringContaining('unknown option id for discoverOrphans(): did you mean ids? accepted: ids, onProgress'),
    })
    expect(await collect(store.audit({ kinds: ['recovery_run', 'orphan_adopted'] }))).toEqual([])
    await store.close()
    expect(await snapshotRows(dir)).toEqual(before)
  })
})
