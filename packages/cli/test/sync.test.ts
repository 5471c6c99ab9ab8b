import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { freePort } from '@docket/core/testing'
import { plantOrphans } from '@docket/harness'
import { docket, serve, SERVE_TOKEN, tempDir } from './support.js'

const TOKEN = SERVE_TOKEN

describe('docket serve and docket sync', () => {
  it('serves on loopback with a token, logs connections, and stores everything on SIGTERM', async () => {
    const root = await tempDir()
    const port = await freePort()
    const server = await serve(join(root, 'server'), port)
    expect(server.url).toBe(`ws://127.0.0.1:${port}`)
    const env = { DOCKET_SYNC_URL: server.url, DOCKET_TOKEN: TOKEN }
    for (const replica of ['a', 'b']) expect((await docket(['--dir', join(root, replica), 'init'])).code).toBe(0)
    const created = await docket(['--dir', join(root, 'a'), '--json', 'create', '--name', 'made on a'], { env })
    expect(created.code, created.stderr).toBe(0)
    const sync = await docket(['--dir', join(root, 'b'), '--json', 'sync'], { env })
    expect(sync.code, sync.stderr).toBe(0)
    expect(sync.json()).toMatchObject({ configured: true, url: server.url, connected: true, synced: true, items: 1, lastSyncedAt: expect.any(String) })
    const list = await docket(['--dir', join(root, 'b'), '--json', 'list'], { env })
    expect(list.json().map((i: { name: string }) => i.name)).toEqual(['made on a'])
    expect(list.stderr).toContain('may be stale') // a read reports the local replica and says so
    const status = await docket(['--dir', join(root, 'b'), '--json', 'sync', 'status'], { env })
    expect(status.json()).toMatchObject({ configured: true, connected: false, lastSyncedAt: sync.json().lastSyncedAt })
    expect(server.stderr()).toContain('client connected to docket')

    const closed = new Promise<number | null>((resolve) => server.child.on('close', (code) => resolve(code)))
    server.child.kill('SIGTERM')
    expect(await closed).toBe(0)
    expect(server.stderr()).toContain('every document was stored')
    // a restarted server serves what the first one stored, to a replica that never saw it
    const again = await serve(join(root, 'server'), port)
    expect((await docket(['--dir', join(root, 'c'), 'init'])).code).toBe(0)
    const fresh = await docket(['--dir', join(root, 'c'), '--json', 'sync'], { env: { DOCKET_SYNC_URL: again.url, DOCKET_TOKEN: TOKEN } })
    expect(fresh.json()).toMatchObject({ synced: true, items: 1 })
  })

  it('a create that exited is on the server: kill -9 of the server right after it loses nothing', async () => {
    const root = await tempDir()
    const port = await freePort()
    const server = await serve(join(root, 'server'), port)
    const env = { DOCKET_SYNC_URL: server.url, DOCKET_TOKEN: TOKEN }
    await docket(['--dir', join(root, 'a'), 'init'])
    const created = await docket(['--dir', join(root, 'a'), '--json', 'create', '--name', 'acknowledged means stored'], { env })
    expect(created.code, created.stderr).toBe(0)
    server.child.kill('SIGKILL')
    await new Promise((r) => server.child.once('close', r))
    const again = await serve(join(root, 'server'), port)
    await docket(['--dir', join(root, 'b'), 'init'])
    const fresh = await docket(['--dir', join(root, 'b'), '--json', 'sync'], { env: { DOCKET_SYNC_URL: again.url, DOCKET_TOKEN: TOKEN } })
    expect(fresh.json()).toMatchObject({ synced: true, items: 1 })
  })

  it('a read-only token (--read-token) syncs the pipeline and refuses writes (exit 4, STORE_READ_ONLY)', async () => {
    const root = await tempDir()
    const server = await serve(join(root, 'server'), await freePort(), ['--read-token', 'look-only', '--max-connections-per-address', '50'])
    await docket(['--dir', join(root, 'a'), 'init'])
    await docket(['--dir', join(root, 'a'), 'create', '--name', 'on the board'], { env: { DOCKET_SYNC_URL: server.url, DOCKET_TOKEN: TOKEN } })
    const board = { DOCKET_SYNC_URL: server.url, DOCKET_TOKEN: 'look-only' }
    await docket(['--dir', join(root, 'board'), 'init'])
    const sync = await docket(['--dir', join(root, 'board'), '--json', 'sync'], { env: board })
    expect(sync.code, sync.stderr).toBe(0)
    expect(sync.json()).toMatchObject({ synced: true, readOnly: true, items: 1 })
    const write = await docket(['--dir', join(root, 'board'), '--json', 'create', '--name', 'from the board'], { env: board })
    expect(write.code).toBe(4)
    expect(write.json().error).toMatchObject({ code: 'STORE_READ_ONLY' })
    expect(server.stderr()).toContain('read-only client connected')
    const same = await docket(['--dir', root, 'serve', '--port', '0', '--read-token', TOKEN], { env: { DOCKET_TOKEN: TOKEN } })
    expect(same.code).toBe(2)
    expect(same.stderr).toContain('--read-token must be non-empty and differ from the token')
  })

  it('refuses to serve without a token, and refuses clients with a wrong one (exit 4)', async () => {
    const root = await tempDir()
    const noToken = await docket(['--dir', root, 'serve', '--port', '0'], { env: { DOCKET_TOKEN: '' } })
    expect(noToken.code).toBe(2)
    expect(noToken.stderr).toContain('needs a token')
    const server = await serve(join(root, 'server'), await freePort())
    await docket(['--dir', join(root, 'a'), 'init'])
    const wrong = await docket(['--dir', join(root, 'a'), '--json', 'sync'], { env: { DOCKET_SYNC_URL: server.url, DOCKET_TOKEN: 'guess' } })
    expect(wrong.code).toBe(4)
    expect(wrong.json().error).toMatchObject({ code: 'SYNC_UNAUTHORIZED' })
    expect(server.stderr()).toContain('wrong token')
  })

  it('recover --apply and doctor --fix refuse while the server is unreachable (exit 4), and run with --offline', async () => {
    const root = await tempDir()
    const dir = join(root, 'store')
    await docket(['--dir', dir, 'init'])
    await plantOrphans(dir, [{ id: '50', name: 'orphan' }])
    const env = { DOCKET_SYNC_URL: `ws://127.0.0.1:${await freePort()}`, DOCKET_TOKEN: TOKEN, DOCKET_SYNC_TIMEOUT_MS: '800' }
    const refused = await docket(['--dir', dir, '--json', 'recover', '--story-ids', '50', '--apply'], { env })
    expect(refused.code).toBe(4)
    expect(refused.json().error).toMatchObject({ code: 'BEHIND_REMOTE', message: expect.stringContaining('--offline') })
    const dry = await docket(['--dir', dir, '--json', 'recover'], { env })
    expect(dry.code).toBe(0) // a dry run always may report
    expect(dry.stderr).toContain('may be stale')
    expect(dry.json().discovered).toHaveLength(1)
    const doctor = await docket(['--dir', dir, '--json', 'doctor', '--fix'], { env })
    expect(doctor.code).toBe(4)
    const offline = await docket(['--dir', dir, '--json', 'recover', '--story-ids', '50', '--apply', '--offline'], { env })
    expect(offline.code, offline.stderr).toBe(0)
    expect(offline.json().recovered).toMatchObject([{ oldId: '50', newId: '51' }])
    expect(offline.stderr).toContain('--offline')
  })
})
