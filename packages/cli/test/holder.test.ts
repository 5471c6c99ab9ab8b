import type { ChildProcess } from 'node:child_process'
import { chmod, lstat, stat } from 'node:fs/promises'
import { createServer, type Socket } from 'node:net'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { startFixture } from '@docket/core/testing'
import { docket, tempDir } from './support.js'

const HOLD = join(import.meta.dirname, '..', '..', 'core', 'test', 'fixtures', 'hold-open.ts')

interface Holder {
  child: ChildProcess
  output: () => string
  /** The store events the holder's listener printed (`event <json>` lines). */
  events: () => Array<{ type: string; ids?: string[]; origin?: string }>
  close: () => Promise<void>
}

async function hold(dir: string): Promise<Holder> {
  const { child, output } = await startFixture(HOLD, [dir], 'open')
  return {
    child,
    output,
    events: () =>
      output()
        .split('\n')
        .filter((l) => l.startsWith('event '))
        .map((l) => JSON.parse(l.slice('event '.length))),
    close: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return
      child.stdin!.end()
      await new Promise((r) => child.on('close', r))
    },
  }
}

async function storeDir(): Promise<string> {
  const dir = join(await tempDir(), 'store')
  expect((await docket(['--dir', dir, 'init'])).code).toBe(0)
  return dir
}

async function until(what: string, check: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

describe('the CLI while another process holds the store', () => {
  it('reads and writes through the holder, with the same output as without it; the holder sees every change at once', async () => {
    const dir = await storeDir()
    const holder = await hold(dir)
    try {
      const created = await docket(['--dir', dir, '--json', 'create', '--name', 'via the holder', '--body', '# hello'])
      expect(created.code, created.stderr).toBe(0)
      const id = created.json().id as string
      // The holder's own listener heard of it before the command returned.
      expect(holder.events()).toContainEqual(expect.objectContaining({ type: 'changed', ids: [id], origin: 'local' }))
      expect((await docket(['--dir', dir, 'apply', id, 'start'])).code).toBe(0)
      expect((await docket(['--dir', dir, '--json', 'update', id, '--agent', 'agent-7'])).code).toBe(0)
      const dep = (await docket(['--dir', dir, '--json', 'create', '--name', 'waits', '--depends-on', id])).json().id as string
      await docket(['--dir', dir, 'delete', dep, '--reason', 'not needed'])

      const reads = [
        ['--json', 'list'],
        ['--json', 'list', '--ready'],
        ['--json', 'show', id],
        ['show', id, '--content', 'body'],
        ['--json', 'show', dep],
        ['--json', 'show', '99'],
        ['--json', 'doctor'],
        ['--json', 'recover'],
        ['export'],
      ]
      const held = []
      for (const args of reads) held.push(await docket(['--dir', dir, ...args]))
      expect(held.map((r) => r.stderr).join('')).not.toContain('STORE_LOCKED')
      const log = await docket(['--dir', dir, '--json', 'log'])
      expect(log.code).toBe(0)
      expect(log.json().map((e: { kind: string }) => e.kind)).toEqual(['store_created', 'created', 'transitioned', 'updated', 'created', 'deleted'])
      await holder.close()
      await expect(lstat(join(dir, 'holder.sock'))).rejects.toMatchObject({ code: 'ENOENT' })

      // The same commands, the store opened by each of them: the same exit codes and output.
      for (const [i, args] of reads.entries()) {
        const alone = await docket(['--dir', dir, ...args])
        const normalize = (text: string) => text.replace(/"exportedAt":"[^"]+"/, '')
        expect({ args, code: held[i]!.code, stdout: normalize(held[i]!.stdout) }).toEqual({ args, code: alone.code, stdout: normalize(alone.stdout) })
      }
    } finally {
      await holder.close()
    }
  })

  it('20 CLI processes writing at once through one holder: every write acknowledged, ids unique, no STORE_LOCKED', async () => {
    const dir = await storeDir()
    const holder = await hold(dir)
    try {
      const runs = await Promise.all(Array.from({ length: 20 }, (_, i) => docket(['--dir', dir, '--json', 'create', '--name', `writer ${i}`])))
      for (const run of runs) expect(run.code, run.stderr).toBe(0)
      const ids = runs.map((r) => r.json().id as string)
      expect(new Set(ids).size).toBe(20)
      await until('the holder to hear of 20 creates', () => holder.events().filter((e) => e.type === 'changed').length >= 20)
      const listed = (await docket(['--dir', dir, '--json', 'list'])).json() as Array<{ id: string; name: string }>
      expect(listed.map((i) => i.id).sort()).toEqual([...ids].sort())
    } finally {
      await holder.close()
    }
  })

  it('a holder killed with kill -9 leaves a socket that the next command removes; nothing acknowledged is lost', async () => {
    const dir = await storeDir()
    const holder = await hold(dir)
    const acknowledged: string[] = []
    // Writes keep coming while the holder dies: each either succeeds (through it, or on its own once it is gone) or fails loudly.
    const writer = (async () => {
      for (let i = 0; i < 12; i++) {
        const run = await docket(['--dir', dir, '--json', 'create', '--name', `during ${i}`], { env: { DOCKET_HOLDER_TIMEOUT_MS: '3000' } })
        if (run.code === 0) acknowledged.push(run.json().id)
        else expect(run.stderr).toMatch(/HOLDER_UNAVAILABLE|STORE_LOCKED/)
      }
    })()
    await until('a first write through the holder', () => holder.events().some((e) => e.type === 'changed'), 20_000)
    holder.child.kill('SIGKILL')
    await new Promise((r) => holder.child.on('close', r))
    await writer
    // Whatever the timing, the socket of the dead holder does not outlive the next command.
    const list = await docket(['--dir', dir, '--json', 'list'])
    expect(list.code, list.stderr).toBe(0)
    await expect(lstat(join(dir, 'holder.sock'))).rejects.toMatchObject({ code: 'ENOENT' })
    const ids = (list.json() as Array<{ id: string }>).map((i) => i.id)
    for (const id of acknowledged) expect(ids).toContain(id)
    expect(acknowledged.length).toBeGreaterThan(0)
  }, 60_000)

  it('a socket left by a dead holder is removed, and the command opens the store itself', async () => {
    const dir = await storeDir()
    const holder = await hold(dir)
    await docket(['--dir', dir, 'create', '--name', 'before the crash'])
    holder.child.kill('SIGKILL')
    await new Promise((r) => holder.child.on('close', r))
    expect((await lstat(join(dir, 'holder.sock'))).isSocket()).toBe(true)
    const created = await docket(['--dir', dir, '--json', 'create', '--name', 'after the crash'])
    expect(created.code, created.stderr).toBe(0)
    expect(created.json().id).toBe('2')
    await expect(lstat(join(dir, 'holder.sock'))).rejects.toMatchObject({ code: 'ENOENT' })
  })

  it('a read whose holder goes away during the call is read again, from the store itself', async () => {
    const dir = await storeDir()
    await docket(['--dir', dir, 'create', '--name', 'still here'])
    // A holder that answers the handshake, then closes (socket and all) when asked anything else.
    const path = join(dir, 'holder.sock')
    const sockets = new Set<Socket>()
    const vanishing = createServer((socket) => {
      sockets.add(socket)
      socket.setEncoding('utf8')
      socket.on('data', (chunk: string) => {
        for (const line of chunk.split('\n').filter(Boolean)) {
          const request = JSON.parse(line) as { id: number; method: string }
          if (request.method === 'hello') socket.write(`${JSON.stringify({ id: request.id, ok: true, value: { protocol: 1, pid: process.pid, dir, replicaId: 'x', readOnly: false } })}\n`)
          else {
            vanishing.close()
            for (const s of sockets) s.destroy()
          }
        }
      })
    })
    await new Promise<void>((resolve) => vanishing.listen(path, resolve))
    const list = await docket(['--dir', dir, '--json', 'list'])
    expect(list.code, list.stderr).toBe(0)
    expect(list.json()).toMatchObject([{ name: 'still here' }])
  })

  it('only the store owner can connect: the socket is 0600, and another uid gets STORE_LOCKED (exit 4)', async () => {
    const dir = await storeDir()
    const holder = await hold(dir)
    try {
      const socket = await stat(join(dir, 'holder.sock'))
      expect(socket.mode & 0o777).toBe(0o600)
      if (process.getuid?.() === 0) {
        // Root runs the test: a second user may enter the directory, but not open the socket.
        await chmod(join(dir, '..'), 0o755)
        await chmod(dir, 0o755)
        const other = await docket(['--dir', dir, '--json', 'list'], { uid: 65534, gid: 65534 })
        expect(other.code, other.stderr).toBe(4)
        expect(other.stderr).toContain('STORE_LOCKED')
        expect(other.stderr).toContain('another user')
        expect(holder.events()).toEqual([])
      }
    } finally {
      await holder.close()
    }
  })
})
