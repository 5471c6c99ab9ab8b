import { readdirSync, statSync, truncateSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { docket, tempDir } from './support.js'

/** A store whose LevelDB log lost its last acknowledged batches (a torn log, as a disk fault leaves it). */
async function tornStore(): Promise<string> {
  const dir = join(await tempDir(), 'store')
  expect((await docket(['--dir', dir, 'init'])).code).toBe(0)
  for (let i = 0; i < 12; i++) expect((await docket(['--dir', dir, 'create', '--name', `item ${i}`, '--body', 'b'.repeat(400)])).code).toBe(0)
  const db = join(dir, 'db')
  const log = readdirSync(db).map((f) => join(db, f)).find((f) => f.endsWith('.log') && statSync(f).size > 0)!
  truncateSync(log, statSync(log).size - 900)
  return dir
}

describe('a store missing acknowledged work', () => {
  it('commands refuse it with STORE_CORRUPT; doctor reports it; doctor --fix --accept-loss goes on with what survived', async () => {
    const dir = await tornStore()
    const list = await docket(['--dir', dir, '--json', 'list'])
    expect(list.code).toBe(1)
    expect(JSON.parse(list.stdout)).toMatchObject({ error: { code: 'STORE_CORRUPT', message: expect.stringContaining('--accept-loss') } })

    const doctor = await docket(['--dir', dir, '--json', 'doctor'])
    expect(doctor.code).toBe(1)
    const report = JSON.parse(doctor.stdout) as { report: { damage: { findings: string[] } | null } }
    expect(report.report.damage?.findings.join(' ')).toContain('acknowledged batches lost')
    const human = await docket(['--dir', dir, 'doctor'])
    expect(human.stdout).toContain('acknowledged work missing')

    const fixWithout = await docket(['--dir', dir, 'doctor', '--fix'])
    expect(fixWithout.code).toBe(1)
    expect(fixWithout.stderr).toContain('--accept-loss')
    expect((await docket(['--dir', dir, 'doctor', '--accept-loss'])).code).toBe(2)

    const accepted = await docket(['--dir', dir, '--json', 'doctor', '--fix', '--accept-loss'])
    expect([0, 3]).toContain(accepted.code)
    const log = await docket(['--dir', dir, '--json', 'log', '--kind', 'storage_loss_acknowledged'])
    expect(JSON.parse(log.stdout)).toHaveLength(1)
    const after = await docket(['--dir', dir, '--json', 'list'])
    expect(after.code).toBe(0)
    const survived = (JSON.parse(after.stdout) as unknown[]).length
    expect(survived).toBeLessThan(12)
    expect((await docket(['--dir', dir, 'create', '--name', 'goes on'])).code).toBe(0)
  })
})

describe('docket migrate', () => {
  it('says there is nothing to do on a current store, in JSON too', async () => {
    const dir = join(await tempDir(), 'store')
    expect((await docket(['--dir', dir, 'init'])).code).toBe(0)
    const dry = await docket(['--dir', dir, '--json', 'migrate', '--dry-run'])
    expect(dry.code).toBe(0)
    expect(JSON.parse(dry.stdout)).toEqual({ dryRun: true, schema: 3, onDisk: 3, migration: null })
    const run = await docket(['--dir', dir, 'migrate'])
    expect(run.code).toBe(0)
    expect(run.stdout).toContain('already schema 3')
  })
})
