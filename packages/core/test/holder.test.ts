import { spawn } from 'node:child_process'
import { chmod, chown, lstat, mkdir } from 'node:fs/promises'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { connectHolder, openReader, openStore } from '../src/index.js'
import { holderEndpoint } from '../src/holder/endpoint.js'
import { LIST_PART } from '../src/holder/protocol.js'
import { capturingLogger, tempDir, testStore } from './support.js'

const saved = { TMPDIR: process.env.TMPDIR, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR }
afterEach(() => {
  for (const [key, value] of Object.entries(saved)) {
    if (value === undefined) delete process.env[key]
    else process.env[key] = value
  }
})

describe('the holder socket (in-process client and holder)', () => {
  it('long lists come over in parts, whole and in order; bytes and undefined survive; the handle is no thenable', async () => {
    const store = await testStore()
    const n = LIST_PART * 2 + 37
    for (let i = 0; i < n; i += 500) await Promise.all(Array.from({ length: Math.min(500, n - i) }, (_, k) => store.createItem({ name: `item ${i + k + 1}` })))
    await store.writeContent('1', 'raw', new Uint8Array([0, 10, 255, 13]))
    // A value that looks like the protocol's bytes marker is data, not bytes.
    await store.updateItem('2', { name: '{"$bytes":"AAAA"}' })
    const held = (await connectHolder(store.dir))!
    try {
      expect(held.holderPid).toBe(process.pid)
      const items = await held.listItems()
      expect(items).toEqual(store.listItems())
      expect(items).toHaveLength(n)
      const events = []
      for await (const event of held.audit()) events.push(event.id)
      expect(events).toHaveLength(n + 3)
      expect(await held.readContentBytes('1', 'raw')).toEqual(new Uint8Array([0, 10, 255, 13]))
      expect(await held.getItem('999999')).toBeUndefined()
      expect((await held.getItem('2'))?.name).toBe('{"$bytes":"AAAA"}')
      // Neither the handle nor its maintenance side is mistaken for a promise.
      expect(await Promise.resolve(held.maintenance).then((m) => typeof m.pendingIntents)).toBe('function')
    } finally {
      await held.close()
    }
  }, 60_000)

  it('claims go through the holder: granted, refused with the holder, CLAIM_NOT_HELD as a DocketError', async () => {
    const store = await testStore()
    await store.createItem({ name: 'work' })
    const held = (await connectHolder(store.dir))!
    try {
      expect(await held.claim('1', { agent: 'a' })).toMatchObject({ granted: true, claim: { agent: 'a' } })
      expect(await held.claim('1', { agent: 'b' })).toMatchObject({ granted: false, holder: { agent: 'a' } })
      expect(await held.claimNext({ agent: 'b' })).toBeNull()
      await expect(held.releaseClaim('1', { agent: 'b' })).rejects.toMatchObject({ name: 'DocketError', code: 'CLAIM_NOT_HELD' })
      expect((await held.listItems({ claimed: true })).map((i) => i.claim?.agent)).toEqual(['a'])
      expect(await held.idLeases()).toEqual({ blocks: [], remaining: 0, nextSize: 32 })
      // The holder's own view is the same.
      expect(store.getItem('1')?.claim?.agent).toBe('a')
    } finally {
      await held.close()
    }
  })

  it('openReader on a store another process holds reads through that process', async () => {
    const store = await testStore()
    await store.createItem({ name: 'held', body: 'the body' })
    const reader = await openReader({ dir: store.dir })
    try {
      expect(reader.source).toBe('holder')
      expect(await reader.listItems()).toEqual(store.listItems())
      expect(await reader.readContent('1')).toBe('the body')
    } finally {
      await reader.close()
    }
    // A store held by a process that does not serve stays locked to a reader.
    const quiet = await openStore({ dir: await tempDir(), serve: false, durability: 'relaxed', logger: capturingLogger() })
    try {
      await expect(openReader({ dir: quiet.dir })).rejects.toMatchObject({ code: 'STORE_LOCKED' })
    } finally {
      await quiet.close()
    }
  })

  it('never talks to a socket in a shared directory that is not private to this user (a squatter), and the holder refuses to listen there', async () => {
    const tmp = await tempDir()
    process.env.TMPDIR = tmp
    delete process.env.XDG_RUNTIME_DIR
    // A store path too long for a Unix socket: its socket lives in <TMPDIR>/docket-<uid>/.
    const dir = join(await tempDir(), 'x'.repeat(120))
    const endpoint = holderEndpoint(dir)
    expect(endpoint.privateDir).toBe(join(tmp, `docket-${process.getuid!()}`))
    // Someone made that directory first, open to all, and listens where the holder would.
    await mkdir(endpoint.privateDir!, { mode: 0o777 })
    await chmod(endpoint.privateDir!, 0o777)
    const heard: string[] = []
    const squatter = createServer((socket) => socket.on('data', (d) => heard.push(d.toString())))
    await new Promise<void>((resolve) => squatter.listen(endpoint.path, resolve))
    if (process.getuid!() === 0) {
      await chown(endpoint.privateDir!, 65534, 65534)
      await chown(endpoint.path, 65534, 65534)
    }
    try {
      await expect(connectHolder(dir)).rejects.toMatchObject({ code: 'HOLDER_FAILED', message: expect.stringContaining('not a private directory') })
      const logger = capturingLogger()
      const store = await openStore({ dir, durability: 'relaxed', logger })
      try {
        expect(logger.lines.join('\n')).toMatch(/does not serve CLI calls/)
        await store.createItem({ name: 'still works' })
      } finally {
        await store.close()
      }
      expect(heard).toEqual([])
    } finally {
      await new Promise((r) => squatter.close(r))
    }
  })

  it('a socket owned by another user is never connected to (root only: needs a second uid)', async () => {
    if (process.getuid?.() !== 0) {
      // Without a second uid the check cannot be staged; the squatter test above covers the directory check.
      expect(process.getuid?.()).not.toBe(0)
      return
    }
    const dir = await tempDir()
    const endpoint = holderEndpoint(dir)
    const heard: string[] = []
    const impostor = createServer((socket) => socket.on('data', (d) => heard.push(d.toString())))
    await new Promise<void>((resolve) => impostor.listen(endpoint.path, resolve))
    await chown(endpoint.path, 65534, 65534)
    try {
      await expect(connectHolder(dir)).rejects.toMatchObject({ code: 'STORE_LOCKED', message: expect.stringContaining('another user') })
      expect(heard).toEqual([])
    } finally {
      await new Promise((r) => impostor.close(r))
    }
  })

  it('a client that finds nobody listening leaves the socket; the next process to take the lock removes it', async () => {
    const dir = await tempDir()
    const store = await openStore({ dir, durability: 'relaxed', serve: false, logger: capturingLogger() })
    await store.close()
    const { path } = holderEndpoint(dir)
    // A socket file nobody listens on, as a holder killed with kill -9 leaves it.
    const ghost = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(path)}, () => console.log('listening'))`], { stdio: ['ignore', 'pipe', 'inherit'] })
    await new Promise<void>((resolve) => ghost.stdout!.once('data', () => resolve()))
    ghost.kill('SIGKILL')
    await new Promise((r) => ghost.once('close', r))
    expect((await lstat(path)).isSocket()).toBe(true)
    expect(await connectHolder(dir)).toBeUndefined()
    expect((await lstat(path)).isSocket()).toBe(true)
    const reader = await openReader({ dir })
    await reader.close()
    await expect(lstat(path)).rejects.toMatchObject({ code: 'ENOENT' })
  })
})
