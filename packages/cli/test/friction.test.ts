import { join } from 'node:path'
import { readdir } from 'node:fs/promises'
import { describe, expect, it } from 'vitest'
import { docket, legacyTree, tempDir, writeTree } from './support.js'

async function storeDir(): Promise<string> {
  const dir = join(await tempDir(), 'store')
  expect((await docket(['--dir', dir, 'init'])).code).toBe(0)
  return dir
}

describe('what a new user tripped over', () => {
  it('list --ready leaves out blocked and frozen items; apply refuses them (exit 4) unless --force, which is audited', async () => {
    const dir = await storeDir()
    for (const name of ['free', 'blocked', 'frozen']) await docket(['--dir', dir, 'create', '--name', name])
    await docket(['--dir', dir, 'update', '2', '--block', 'waiting for review'])
    await docket(['--dir', dir, 'update', '3', '--freeze'])
    expect((await docket(['--dir', dir, '--json', 'list', '--ready'])).json().map((i: { name: string }) => i.name)).toEqual(['free'])

    const refused = await docket(['--dir', dir, '--json', 'apply', '2', 'start'])
    expect(refused.code).toBe(4)
    expect(refused.json().error).toMatchObject({ code: 'ITEM_BLOCKED', details: { id: '2', flag: 'blocked' } })
    expect(refused.stderr).toContain('--force')
    const frozen = await docket(['--dir', dir, 'apply', '3', 'start'])
    expect(frozen.code).toBe(4)
    expect(frozen.stderr).toContain('ITEM_FROZEN')
    expect((await docket(['--dir', dir, '--json', 'show', '2'])).json().item.stage).toBe('backlog')

    const forced = await docket(['--dir', dir, '--json', 'apply', '2', 'start', '--force'])
    expect(forced.code, forced.stderr).toBe(0)
    expect(forced.json().stage).toBe('coding')
    const log = (await docket(['--dir', dir, '--json', 'log', '--kind', 'transitioned'])).json()
    expect(log).toMatchObject([{ itemId: '2', data: { forced: ['blocked'] } }])
  })

  it('apply --if-stage moves only from that stage; otherwise exit 4 (STAGE_CONFLICT) and nothing is written', async () => {
    const dir = await storeDir()
    await docket(['--dir', dir, 'create', '--name', 'x'])
    expect((await docket(['--dir', dir, 'apply', '1', 'start', '--if-stage', 'backlog'])).code).toBe(0)
    const stale = await docket(['--dir', dir, '--json', 'apply', '1', 'gates_passed', '--if-stage', 'backlog,qa'])
    expect(stale.code).toBe(4)
    expect(stale.json().error).toMatchObject({ code: 'STAGE_CONFLICT', details: { stage: 'coding', expected: ['backlog', 'qa'] } })
    expect((await docket(['--dir', dir, '--json', 'show', '1'])).json().item.stage).toBe('coding')
    expect((await docket(['--dir', dir, 'apply', '1', 'gates_passed', '--if-stage', 'limbo'])).code).toBe(2)
  })

  it('log --last N gives the newest N, newest first; --limit N the oldest N; both at once is a usage error', async () => {
    const dir = await storeDir()
    for (const name of ['a', 'b', 'c', 'd']) await docket(['--dir', dir, 'create', '--name', name])
    const all = (await docket(['--dir', dir, '--json', 'log'])).json() as Array<{ id: string; itemId?: string }>
    expect(all.map((e) => e.itemId ?? null)).toEqual([null, '1', '2', '3', '4'])
    const last = (await docket(['--dir', dir, '--json', 'log', '--last', '2'])).json() as Array<{ id: string }>
    expect(last.map((e) => e.id)).toEqual([all[4]!.id, all[3]!.id])
    const first = (await docket(['--dir', dir, '--json', 'log', '--limit', '2'])).json() as Array<{ id: string }>
    expect(first.map((e) => e.id)).toEqual([all[0]!.id, all[1]!.id])
    const both = await docket(['--dir', dir, 'log', '--last', '2', '--limit', '2'])
    expect(both.code).toBe(2)
    expect(both.stderr).toContain('contradict')
    expect((await docket(['--dir', dir, 'log', '--help'])).stdout).toMatch(/--limit <n>\s+the oldest n events/)
  })

  it('docket sync without a server is a usage error (exit 2) that says how to configure one', async () => {
    const dir = await storeDir()
    for (const args of [['sync'], ['sync', 'status'], ['--json', 'sync']]) {
      const run = await docket(['--dir', dir, ...args], { env: { DOCKET_SYNC_URL: '' } })
      expect(run.code, args.join(' ')).toBe(2)
      expect(run.stderr).toContain('DOCKET_SYNC_URL')
    }
  })

  it('import --dry-run needs no store: in a fresh directory it reports what an import would do and creates nothing', async () => {
    const root = await tempDir()
    await writeTree(join(root, 'pipeline'), legacyTree(6))
    const run = await docket(['--json', 'import', 'pipeline', '--dry-run'], { cwd: root })
    expect(run.code, run.stderr).toBe(0)
    expect(run.json()).toMatchObject({ dryRun: true })
    expect(run.json().imported).toHaveLength(6)
    expect(run.stderr).toContain('no store')
    expect(await readdir(root)).toEqual(['pipeline'])
    // Without --dry-run it still wants a store.
    const real = await docket(['import', 'pipeline'], { cwd: root })
    expect(real.code).toBe(1)
    expect(real.stderr).toContain('docket init')
  })

  it('--json --version prints one JSON document', async () => {
    for (const args of [['--json', '--version'], ['--version', '--json'], ['--json', '-V']]) {
      const run = await docket(args)
      expect(run.code).toBe(0)
      expect(JSON.parse(run.stdout)).toEqual({ version: expect.stringMatching(/^\d+\.\d+\.\d+$/) })
    }
    expect((await docket(['--version'])).stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/)
  })
})
