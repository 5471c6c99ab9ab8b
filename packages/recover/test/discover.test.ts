import { describe, expect, it } from 'vitest'
import { plantOrphans, snapshotRows } from '@docket/harness'
import { discoverOrphans } from '../src/index.js'
import { open, seedStore, tempDir } from './support.js'

describe('discoverOrphans', () => {
  it('finds tombstoned, missing and displaced orphans with what could be read', async () => {
    const dir = await tempDir()
    await seedStore(dir, 5, ['4'])
    await plantOrphans(dir, [
      { id: '4', name: 'Half-written onto a deleted id', type: 'bug' }, // the original bug
      { id: '700', name: 'Older scheme', dependsOn: ['1', '999'] },
      { id: '2', name: 'Lost a collision' }, // a live item #2 holds the id with another uid
      { id: '701', uid: null, body: 'no front matter at all' },
    ])
    const store = await open(dir, { readOnly: true })
    const found = await discoverOrphans(store)
    expect(found.filter).toBeNull()
    expect(found.orphans.map((o) => [o.id, o.kind])).toEqual([
      ['2', 'displaced'],
      ['4', 'tombstoned'],
      ['700', 'missing'],
      ['701', 'missing'],
    ])
    const [displaced, tombstoned, missing, bare] = found.orphans
    expect(displaced).toMatchObject({ name: 'Lost a collision', liveUid: store.getItem('2')!.uid })
    expect(tombstoned).toMatchObject({ name: 'Half-written onto a deleted id', type: 'bug', tombstone: { uid: expect.any(String) } })
    expect(tombstoned!.uid).not.toBe(tombstoned!.tombstone!.uid)
    expect(missing).toMatchObject({ dependsOn: ['1', '999'], bodyBytes: expect.any(Number), slots: ['body'] })
    expect(missing!.warnings).toEqual([expect.stringContaining('depends_on 999 is not an item in this store; kept')])
    expect(bare).toMatchObject({ uid: null, name: 'Recovered item 701', type: 'story', shadow: null })
    expect(bare!.warnings).toEqual(['no shadow row: only content rows', expect.stringContaining('no front matter')])
    expect(found.live).toEqual([]) // listed only for a filter: a full scan does not enumerate live items
  })

  it('is read-only and idempotent: no row changes, the same answer twice', async () => {
    const dir = await tempDir()
    await seedStore(dir, 3, ['2'])
    await plantOrphans(dir, [{ id: '2' }, { id: '50' }])
    const before = await snapshotRows(dir)
    const store = await open(dir)
    const first = await discoverOrphans(store)
    const second = await discoverOrphans(store)
    expect(second).toEqual(first)
    await store.close()
    expect(await snapshotRows(dir)).toEqual(before)
  })

  it('restricts itself to the ids filter, reporting named ids that are live or unknown', async () => {
    const dir = await tempDir()
    await seedStore(dir, 3)
    await plantOrphans(dir, [{ id: '10' }, { id: '11' }, { id: '12' }])
    const store = await open(dir, { readOnly: true })
    const found = await discoverOrphans(store, { ids: ['11', '2', '99'] })
    expect(found.orphans.map((o) => o.id)).toEqual(['11'])
    expect(found.live).toEqual(['2'])
    expect(found.unknown).toEqual(['99'])
    expect(found.scanned).toBe(2)
    await expect(discoverOrphans(store, { ids: ['11', '11'] })).rejects.toMatchObject({ code: 'INVALID_INPUT' })
    await expect(discoverOrphans(store, { ids: ['011'] })).rejects.toMatchObject({ code: 'INVALID_ID' })
    await expect(discoverOrphans(store, { ids: [] })).rejects.toMatchObject({ code: 'INVALID_INPUT' })
  })

  it('never throws on bad bodies: non-UTF-8, unclosed front matter, corrupt shadow rows', async () => {
    const dir = await tempDir()
    await seedStore(dir, 1)
    await plantOrphans(dir, [
      { id: '20', body: new Uint8Array([0xff, 0xfe, 0x00, 0x80]) },
      { id: '21', name: 'Unclosed', body: '---\nname: Unclosed\ntype: bug\n' },
      { id: '22', shadowText: '{"v":1,"id":"22"', body: '---\nname: From the body\n---\n' },
    ])
    const store = await open(dir, { readOnly: true })
    const found = await discoverOrphans(store)
    const byId = new Map<string, (typeof found.orphans)[number]>(found.orphans.map((o) => [o.id, o]))
    expect(byId.get('20')!.warnings).toContain('body is not UTF-8 text; no front matter read')
    expect(byId.get('20')!.name).toBe('Orphan 20') // from the shadow row
    expect(byId.get('21')!.warnings).toContain('front matter never closes (no --- line after the opening one)')
    expect(byId.get('21')!.name).toBe('Unclosed') // the shadow row's name; the body's is unreadable
    expect(byId.get('22')).toMatchObject({ uid: null, name: 'From the body', shadow: null })
    expect(byId.get('22')!.warnings[0]).toMatch(/shadow row unreadable/)
  })
})
