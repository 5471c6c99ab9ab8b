import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { readRawRows, rawKeys, writeRawRows } from '@docket/core/testing'
import { plantOrphans, snapshotRows } from '@docket/harness'
import { docket, tempDir } from './support.js'

async function storeWithItems(): Promise<string> {
  const dir = join(await tempDir(), 'store')
  expect((await docket(['--dir', dir, 'init'])).code).toBe(0)
  for (const name of ['one', 'two', 'three']) await docket(['--dir', dir, 'create', '--name', name, '--body', `body of ${name}`])
  for (const event of ['start', 'gates_passed']) await docket(['--dir', dir, 'apply', '2', event])
  return dir
}

async function shadowRow(dir: string, id: string): Promise<Record<string, unknown>> {
  const row = (await readRawRows(dir)).find((r) => r.sublevel === 'shadow' && r.key === rawKeys.shadow(id))!
  return JSON.parse(Buffer.from(row.value).toString('utf8')) as Record<string, unknown>
}

describe('docket doctor', () => {
  it('reports a consistent store as such (exit 0)', async () => {
    const dir = await storeWithItems()
    const run = await docket(['--dir', dir, 'doctor'])
    expect(run.code).toBe(0)
    expect(run.stdout).toContain('the shadow content store matches the CRDT')
  })

  it('finds index rows that differ from the CRDT; list and show stay right meanwhile; --fix rebuilds them', async () => {
    const dir = await storeWithItems()
    const listed = (await docket(['--dir', dir, '--json', 'list'])).json()
    await writeRawRows(dir, [
      { type: 'put', sublevel: 'index', key: 'i/0000000000000002', value: '{"torn' },
      { type: 'del', sublevel: 'index', key: 'i/0000000000000003' },
    ])
    const found = await docket(['--dir', dir, '--json', 'doctor'])
    expect(found.code).toBe(1)
    expect(found.json().report).toMatchObject({ ok: false, indexComplete: true, staleIndex: ['i/0000000000000002', 'i/0000000000000003'] })
    expect((await docket(['--dir', dir, 'doctor'])).stdout).toMatch(/stale index rows\s+2: i\/0000000000000002, i\/0000000000000003 \(`doctor --fix` rebuilds them\)/)
    // An unreadable row sends the read to the document, with a warning: the answer stays right.
    const list = await docket(['--dir', dir, '--json', 'list'])
    expect(list.json()).toEqual(listed)
    expect(list.stderr).toMatch(/index row i\/0000000000000002 .* unreadable/)
    const fixed = await docket(['--dir', dir, '--json', 'doctor', '--fix'])
    expect(fixed.code, fixed.stderr).toBe(0)
    expect(fixed.json().report).toMatchObject({ ok: true, staleIndex: [] })
    const after = await docket(['--dir', dir, '--json', 'list'])
    expect(after.json()).toEqual(listed)
    expect(after.stderr).toBe('')
  })

  it('finds stale, damaged and missing shadow rows; --fix rewrites them from the CRDT without moving a stage', async () => {
    const dir = await storeWithItems()
    const stale = { ...(await shadowRow(dir, '2')), stage: 'backlog' } // a shadow that fell behind: qa in the CRDT
    await writeRawRows(dir, [
      { type: 'put', sublevel: 'shadow', key: rawKeys.shadow('2'), value: JSON.stringify(stale) },
      { type: 'put', sublevel: 'shadow', key: rawKeys.shadow('3'), value: '{broken' },
      { type: 'del', sublevel: 'content', key: rawKeys.content('1') },
      { type: 'put', sublevel: 'content', key: rawKeys.content('1', 'stray'), value: 'left behind' },
    ])
    const found = await docket(['--dir', dir, '--json', 'doctor'])
    expect(found.code).toBe(1)
    const report = found.json().report
    expect(report.staleShadow).toEqual([
      { id: '2', fields: ['stage'], crdtStage: 'qa', shadowStage: 'backlog' },
      { id: '3', fields: ['unreadable'], crdtStage: 'backlog', shadowStage: 'backlog' },
    ])
    expect(report.missingContent).toEqual([{ id: '1', slot: 'body', reason: 'missing' }])
    expect(report.strayContent).toEqual([{ id: '1', slot: 'stray' }])
    expect(report.corrupt).toEqual([{ sublevel: 'shadow', key: rawKeys.shadow('3'), error: expect.stringContaining('not JSON') }])
    const human = await docket(['--dir', dir, 'doctor'])
    expect(human.stdout).toMatch(/of which the stage differs\s+1: #2/)
    expect(human.stdout).toContain('docket doctor --fix')

    const fixed = await docket(['--dir', dir, '--json', 'doctor', '--fix'])
    expect(fixed.code, fixed.stderr).toBe(0)
    expect(fixed.json().fixed.repaired).toEqual(['1', '2', '3'])
    expect(fixed.json().report).toMatchObject({ ok: true })
    expect((await shadowRow(dir, '2')).stage).toBe('qa')
    expect((await docket(['--dir', dir, '--json', 'show', '2'])).json().item.stage).toBe('qa')
    expect((await docket(['--dir', dir, 'show', '1', '--content', 'body'])).stdout).toBe('body of one')
    const log = (await docket(['--dir', dir, '--json', 'log', '--kind', 'doctor_fix'])).json()
    expect(log).toMatchObject([{ investigate: false, data: { repaired: ['1', '2', '3'] } }])
  })

  it('counts orphans and points at recover; --fix never touches them (exit 3)', async () => {
    const dir = await storeWithItems()
    await plantOrphans(dir, [{ id: '40' }, { id: '41' }])
    const run = await docket(['--dir', dir, '--json', 'doctor'])
    expect(run.code).toBe(1)
    expect(run.json().orphans).toEqual({ count: 2, byKind: { missing: 2 } })
    const human = await docket(['--dir', dir, 'doctor'])
    expect(human.stdout).toContain('docket recover')
    const before = (await snapshotRows(dir)).size
    const fix = await docket(['--dir', dir, '--json', 'doctor', '--fix'])
    expect(fix.code).toBe(3)
    expect(fix.json().orphans.count).toBe(2)
    const rows = await snapshotRows(dir)
    expect(rows.has(`!shadow!${rawKeys.shadow('40')}`)).toBe(true)
    expect(rows.size).toBe(before) // nothing repaired, nothing recovered
  })
})
