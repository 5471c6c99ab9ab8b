import { lstat, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { startFixture } from '@docket/core/testing'
import { docket, tempDir } from './support.js'

const HOLD = join(import.meta.dirname, '..', '..', 'core', 'test', 'fixtures', 'hold-open.ts')

async function storeDir(): Promise<string> {
  const dir = join(await tempDir(), 'store')
  expect((await docket(['--dir', dir, 'init'])).code).toBe(0)
  return dir
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

describe('docket daemon', () => {
  it('start, commands through it, status, stop: the store is closed cleanly and nothing is left behind', async () => {
    const dir = await storeDir()
    expect((await docket(['--dir', dir, '--json', 'daemon', 'status'])).json()).toEqual({ dir, running: false, heldBy: null })
    const started = await docket(['--dir', dir, '--json', 'daemon', 'start'])
    expect(started.code, started.stderr).toBe(0)
    const { pid } = started.json() as { pid: number }
    try {
      expect(started.json()).toMatchObject({ dir, started: true })
      expect(alive(pid)).toBe(true)
      expect((await docket(['--dir', dir, '--json', 'daemon', 'start'])).json()).toMatchObject({ pid, started: false })
      expect((await docket(['--dir', dir, '--json', 'daemon', 'status'])).json()).toEqual({ dir, running: true, heldBy: { pid, daemon: true } })
      // Commands go through it (the daemon holds the LevelDB's lock: they could not open the store themselves).
      const created = await docket(['--dir', dir, '--json', 'create', '--name', 'through the daemon'])
      expect(created.code, created.stderr).toBe(0)
      expect((await docket(['--dir', dir, '--json', 'list'])).json()).toMatchObject([{ id: '1', name: 'through the daemon' }])
      const stopped = await docket(['--dir', dir, '--json', 'daemon', 'stop'])
      expect(stopped.code, stopped.stderr).toBe(0)
      expect(stopped.json()).toEqual({ dir, pid, stopped: true })
      expect(alive(pid)).toBe(false)
    } finally {
      if (alive(pid)) process.kill(pid, 'SIGKILL')
    }
    await expect(lstat(join(dir, 'holder.sock'))).rejects.toMatchObject({ code: 'ENOENT' })
    await expect(lstat(join(dir, 'daemon.pid'))).rejects.toMatchObject({ code: 'ENOENT' })
    expect(await readFile(join(dir, 'daemon.log'), 'utf8')).toMatch(new RegExp(`daemon ${pid} holds[\\s\\S]*daemon ${pid} stopped`))
    // Closed cleanly: the store opens without a word, and the item is there.
    const after = await docket(['--dir', dir, '--json', 'list'])
    expect(after.stderr).toBe('')
    expect(after.json()).toHaveLength(1)
    expect((await docket(['--dir', dir, '--json', 'daemon', 'stop'])).json()).toEqual({ dir, stopped: false })
  }, 60_000)

  it('refuses to start (exit 4) or stop another holder, and says there is no store to hold', async () => {
    const dir = await storeDir()
    const holder = await startFixture(HOLD, [dir], 'open')
    try {
      const start = await docket(['--dir', dir, 'daemon', 'start'])
      expect(start.code).toBe(4)
      expect(start.stderr).toMatch(/held by process \d+, which is not its docket daemon/)
      const stop = await docket(['--dir', dir, 'daemon', 'stop'])
      expect(stop.code).toBe(4)
      expect(holder.child.exitCode).toBeNull()
      expect((await docket(['--dir', dir, '--json', 'daemon', 'status'])).json()).toMatchObject({ running: false, heldBy: { daemon: false } })
    } finally {
      holder.child.stdin!.end()
      await new Promise((r) => holder.child.on('close', r))
    }
    const none = await docket(['--dir', join(await tempDir(), 'nothing'), 'daemon', 'start'])
    expect(none.code).toBe(1)
    expect(none.stderr).toContain('docket init')
  }, 60_000)
})
