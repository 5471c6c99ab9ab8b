import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { snapshotRows } from '@docket/harness'
import { docket, tempDir } from './support.js'

async function initStore(): Promise<string> {
  const dir = join(await tempDir(), 'store')
  const init = await docket(['--dir', dir, '--json', 'init', '--replica-id', 'cli-test'])
  expect(init.code, init.stderr).toBe(0)
  expect(init.json()).toEqual({ dir, replicaId: 'cli-test' })
  return dir
}

describe('docket: every command, its JSON and its exit code', () => {
  it('init refuses to overwrite a store (exit 4)', async () => {
    const dir = await initStore()
    const again = await docket(['--dir', dir, 'init'])
    expect(again.code).toBe(4)
    expect(again.stderr).toContain('STORE_EXISTS')
    expect(again.stderr).toContain('replica cli-test')
  })

  it('create, list, show, apply, update, delete and log', async () => {
    const dir = await initStore()
    const d = (...args: string[]) => docket(['--dir', dir, '--json', ...args])
    const a = (await d('create', '--name', 'Design', '--type', 'spike')).json()
    expect(a).toMatchObject({ id: '1', name: 'Design', type: 'spike', stage: 'backlog', createdBy: 'cli-test' })
    const body = '---\nname: Build\n---\nThe body.\n'
    const b = await docket(['--dir', dir, '--json', 'create', '--name', 'Build', '--depends-on', '1', '--body', '-'], { input: body })
    expect(b.json()).toMatchObject({ id: '2', dependsOn: ['1'] })
    const human = await docket(['--dir', dir, 'create', '--name', 'Plain'])
    expect(human.stdout).toBe('3\n')

    const list = (await d('list')).json()
    expect(Array.isArray(list)).toBe(true)
    expect(list.map((i: { id: string }) => i.id)).toEqual(['1', '2', '3'])
    expect((await d('list', '--ready')).json().map((i: { id: string }) => i.id)).toEqual(['1', '3'])
    expect((await d('list', '--type', 'spike,bug')).json().map((i: { id: string }) => i.id)).toEqual(['1'])

    for (const event of ['start', 'qa_skipped', 'merge_succeeded']) expect((await d('apply', '1', event)).code).toBe(0)
    expect((await d('list', '--stage', 'done')).json().map((i: { id: string }) => i.id)).toEqual(['1'])
    expect((await d('list', '--ready', '--stage', 'backlog')).json().map((i: { id: string }) => i.id)).toEqual(['2', '3'])

    const shown = (await d('show', '2')).json()
    expect(shown.item).toMatchObject({ id: '2', name: 'Build' })
    expect(shown.content).toEqual({ body })
    expect(shown.history).toMatchObject([{ event: 'created', stage: 'backlog', current: true, valid: true }])
    expect(shown.validEvents).toContain('start')
    const raw = await docket(['--dir', dir, 'show', '2', '--content', 'body'])
    expect(raw.stdout).toBe(body)

    const updated = (await d('update', '2', '--agent', 'agent-7', '--block', 'waiting', '--freeze', '--retries', '2')).json()
    expect(updated).toMatchObject({ agent: 'agent-7', blocked: { reason: 'waiting' }, frozen: true, retries: 2 })
    expect((await d('update', '2', '--clear-agent', '--unblock', '--unfreeze', '--depends-on', '')).json()).toMatchObject({ blocked: null, frozen: false, dependsOn: [] })

    expect((await d('delete', '3', '--reason', 'duplicate')).json()).toMatchObject({ id: '3', alreadyDeleted: false })
    expect((await d('delete', '3')).json()).toMatchObject({ alreadyDeleted: true })
    const gone = await d('show', '3')
    expect(gone.code).toBe(1)
    expect(gone.json().error).toMatchObject({ code: 'TOMBSTONED' })
    const next = (await d('create', '--name', 'After delete')).json()
    expect(next.id).toBe('4')

    const log = (await d('log')).json()
    expect(log.map((e: { kind: string }) => e.kind)).toEqual(['store_created', 'created', 'created', 'created', 'transitioned', 'transitioned', 'transitioned', 'updated', 'updated', 'deleted', 'created'])
    expect(log.every((e: { investigate: boolean }) => e.investigate === false)).toBe(true)
    expect((await d('log', '--id', '1', '--kind', 'transitioned')).json()).toHaveLength(3)
    expect((await d('log', '--since', log[9].id)).json().map((e: { kind: string }) => e.kind)).toEqual(['created'])
  })

  it('show --content writes bytes that are not text exactly as stored (JSON gives them as base64)', async () => {
    const dir = await initStore()
    const d = (...args: string[]) => docket(['--dir', dir, '--json', ...args])
    const binary = Buffer.from([0xff, 0x00, 0x80, 0x41, 0xfe])
    const file = join(await tempDir(), 'blob.bin')
    await writeFile(file, binary)
    const blob = (await d('create', '--name', 'Blob', '--body-file', file)).json()
    expect((await docket(['--dir', dir, 'show', blob.id, '--content', 'body'])).stdoutBytes).toEqual(binary)
    expect((await d('show', blob.id, '--content', 'body')).json()).toEqual({ id: blob.id, slot: 'body', content: { base64: binary.toString('base64') } })
  })

  it('apply lists the valid events when an event is not allowed (exit 1) or unknown (exit 2)', async () => {
    const dir = await initStore()
    await docket(['--dir', dir, 'create', '--name', 'x'])
    const notAllowed = await docket(['--dir', dir, 'apply', '1', 'archive'])
    expect(notAllowed.code).toBe(1)
    expect(notAllowed.stderr).toContain('valid events from backlog are start, abandon, supersede, reject')
    const unknown = await docket(['--dir', dir, 'apply', '1', 'fly'])
    expect(unknown.code).toBe(2)
    expect(unknown.stderr).toContain('valid events from backlog: start, abandon, supersede, reject')
  })
})

describe('docket: bad input', () => {
  it('unknown commands and flags are usage errors with a suggestion', async () => {
    const cmd = await docket(['lsit'])
    expect(cmd.code).toBe(2)
    expect(cmd.stderr).toContain("unknown command 'lsit'")
    expect(cmd.stderr).toContain('Did you mean list?')
    const flag = await docket(['list', '--stagee', 'done'])
    expect(flag.code).toBe(2)
    expect(flag.stderr).toContain("unknown option '--stagee'")
    expect(flag.stderr).toContain('--stage')
    const missing = await docket(['create'])
    expect(missing.code).toBe(2)
    expect(missing.stderr).toContain('--name')
    const jsonMissing = await docket(['--json', 'create'])
    expect(jsonMissing.code).toBe(2)
    expect(jsonMissing.json().error).toMatchObject({ code: 'INVALID_INPUT', message: expect.stringContaining('--name') })
    const nothing = await docket(['--json'])
    expect(nothing.code).toBe(2)
    expect(nothing.json().error.code).toBe('INVALID_INPUT')
  })

  it('a missing store says to run docket init (exit 1), and --json keeps stdout one document', async () => {
    const cwd = await tempDir()
    const run = await docket(['--json', 'list'], { cwd })
    expect(run.code).toBe(1)
    expect(run.stderr).toContain('docket init')
    expect(run.json()).toEqual({ error: expect.objectContaining({ code: 'STORE_NOT_FOUND' }) })
  })

  it('ids, events and --depends-on junk are refused clearly', async () => {
    const dir = await initStore()
    await docket(['--dir', dir, 'create', '--name', 'x'])
    const cases: Array<[string[], number, RegExp]> = [
      [['show', '42'], 1, /NOT_FOUND/],
      [['show', '01'], 2, /leading zero/],
      [['show', 'abc'], 2, /not an item id/],
      [['show', '1,2'], 2, /takes one item id/],
      [['log', '--id', ''], 2, /--id is empty/],
      [['apply', '42', 'start'], 1, /NOT_FOUND/],
      [['create', '--name', 'y', '--depends-on', '1,,2'], 2, /empty entry/],
      [['create', '--name', 'y', '--depends-on', 'one'], 2, /not an item id/],
      [['create', '--name', 'y', '--depends-on', '77'], 2, /Dependency 77 is not an item/],
      [['create', '--name', 'y', '--type', 'chore'], 2, /unknown type "chore"/],
      [['create', '--name', ''], 2, /name is empty/],
      [['list', '--stage', 'limbo'], 2, /unknown stage "limbo"/],
      [['update', '1'], 2, /nothing to update/],
      [['update', '1', '--block', 'r', '--unblock'], 2, /contradict/],
      [['log', '--kind', 'nope'], 2, /unknown kind/],
      [['log', '--since', 'yesterday'], 2, /since must be the ULID/],
      [['create', '--name', 'y', '--body-file', '/nonexistent/body.md'], 2, /cannot read --body-file/],
    ]
    for (const [args, code, message] of cases) {
      const run = await docket(['--dir', dir, ...args])
      expect(run.code, `${args.join(' ')}: ${run.stderr}`).toBe(code)
      expect(run.stderr).toMatch(message)
      expect(run.stdout).toBe('')
    }
    expect((await docket(['--dir', dir, '--json', 'list'])).json()).toHaveLength(1)
  })

  it('every command has --help with an example', async () => {
    const commands = ['init', 'create', 'list', 'show', 'apply', 'update', 'delete', 'log', 'recover', 'doctor', 'import', 'export']
    for (const command of commands) {
      const help = await docket([command, '--help'])
      expect(help.code, command).toBe(0)
      expect(help.stdout, command).toMatch(/Examples?:\n {2}docket /)
    }
    expect((await docket(['--version'])).stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/)
  })

  it('reads never write: list, show, log, export and dry runs leave every row as it was', async () => {
    const dir = await initStore()
    await docket(['--dir', dir, 'create', '--name', 'x'])
    const before = await snapshotRows(dir)
    const out = join(await tempDir(), 'export')
    await mkdir(out)
    for (const args of [['list'], ['show', '1'], ['log'], ['doctor'], ['recover'], ['export'], ['export', '--format', 'folders', '--out', join(out, 'tree')]]) {
      const run = await docket(['--dir', dir, ...args])
      expect(run.code, `${args.join(' ')}: ${run.stderr}`).toBe(0)
    }
    expect(await snapshotRows(dir)).toEqual(before)
  })
})
