import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { openStore } from '@docket/core'
import { startFixture } from '@docket/core/testing'
import { startBoard, type RunningBoard } from '../src/index.js'

// The board's server without a browser: what the page reads, its live feed, and its locks
// (pnpm test:browser drives the page itself in Chromium).
const HOLD = join(import.meta.dirname, '..', '..', 'core', 'test', 'fixtures', 'hold-open.ts')
const boards: RunningBoard[] = []
const dirs: string[] = []
afterEach(async () => {
  await Promise.allSettled(boards.splice(0).map((b) => b.close()))
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true })
})

async function storeWith(names: string[]): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'docket-board-'))
  dirs.push(root)
  const store = await openStore({ dir: join(root, 'store'), durability: 'relaxed', logger: { warn: () => {} } })
  for (const name of names) await store.createItem({ name, body: `# ${name}\n\n<script>window.owned = 1</script>*text*` })
  await store.close()
  return join(root, 'store')
}

async function board(dir: string, options: { host?: string; token?: string } = {}, sync?: { url: string; token: string }): Promise<RunningBoard> {
  const b = await startBoard({ dir, port: 0, logger: { warn: () => {} }, ...options, ...(sync ? { sync } : {}) })
  boards.push(b)
  return b
}

/** The next `changed` event on the board's feed. */
function nextChange(url: string): { ready: Promise<void>; changed: Promise<string> } {
  const controller = new AbortController()
  let ready!: () => void
  const readyP = new Promise<void>((r) => (ready = r))
  const changed = (async () => {
    const res = await fetch(new URL('/api/events', url), { signal: controller.signal })
    const reader = res.body!.getReader()
    let text = ''
    for (;;) {
      const { value } = await reader.read()
      text += Buffer.from(value!).toString()
      if (text.startsWith(': docket board')) ready()
      if (text.includes('event: changed')) {
        controller.abort()
        return text
      }
    }
  })()
  return { ready: readyP, changed }
}

describe('the board server', () => {
  it('serves the page, the items, one item with its history and content, the changes and the status; writes nothing', async () => {
    const dir = await storeWith(['One', 'Two'])
    const b = await board(dir)
    expect(b.source).toBe('own')
    const page = await fetch(b.url)
    expect(page.status).toBe(200)
    expect(page.headers.get('content-security-policy')).toMatch(/script-src 'self' 'sha256-/)
    expect(await page.text()).toContain('/app.js')
    for (const vendor of ['preact.js', 'htm-preact.js', 'marked.js', 'purify.js', 'virtual-core/index.js']) expect((await fetch(new URL(`/vendor/${vendor}`, b.url))).status).toBe(200)
    const items = (await (await fetch(new URL('/api/items', b.url))).json()) as { items: Array<{ id: string }>; stages: string[]; terminal: string[] }
    expect(items.items.map((i) => i.id)).toEqual(['1', '2'])
    expect(items.terminal).toContain('archived')
    const one = (await (await fetch(new URL('/api/items/1', b.url))).json()) as { item: { name: string }; history: unknown[]; content: { body: string }; audit: unknown[] }
    expect(one).toMatchObject({ item: { name: 'One' }, history: [expect.objectContaining({ event: 'created', current: true })], content: { body: expect.stringContaining('# One') } })
    expect((await fetch(new URL('/api/items/9', b.url))).status).toBe(404)
    expect((await fetch(new URL('/api/items/x', b.url))).status).toBe(400)
    expect(((await (await fetch(new URL('/api/changes', b.url))).json()) as { events: Array<{ kind: string }> }).events.map((e) => e.kind)).toContain('created')
    expect(await (await fetch(new URL('/api/status', b.url))).json()).toMatchObject({ source: 'own', doctor: { ok: true, items: 2 }, sync: { configured: false } })
    expect((await fetch(new URL('/api/items', b.url), { method: 'POST', body: '{}' })).status).toBe(405)
  })

  it('tells the page when something changed — through its own store, and through another process that holds it', async () => {
    const dir = await storeWith(['One'])
    const own = await board(dir)
    const feed = nextChange(own.url)
    await feed.ready
    // A docket command goes through the board, which holds the store.
    const { connectHolder } = await import('@docket/core')
    const handle = (await connectHolder(dir))!
    await handle.createItem({ name: 'Through the board' })
    await handle.close()
    expect(await feed.changed).toContain('event: changed')
    await own.close()

    const { child } = await startFixture(HOLD, [dir], 'open')
    try {
      const held = await board(dir)
      expect(held.source).toBe('held')
      const heldFeed = nextChange(held.url)
      await heldFeed.ready
      const via = (await connectHolder(dir))!
      await via.apply('1', 'start')
      await via.close()
      expect(await heldFeed.changed).toContain('event: changed')
      const items = (await (await fetch(new URL('/api/items', held.url))).json()) as { items: Array<{ id: string; stage: string }> }
      expect(items.items.find((i) => i.id === '1')?.stage).toBe('coding')
    } finally {
      child.stdin!.end()
      await new Promise((r) => child.once('close', r))
    }
  }, 60_000)

  it('on a replica of its own that syncs — with the read-only token — it shows what other replicas do through the server', async () => {
    const { startServer } = await import('@docket/server')
    const { updateRefusal } = await import('@docket/core')
    const root = await mkdtemp(join(tmpdir(), 'docket-board-sync-'))
    dirs.push(root)
    const server = await startServer({ dir: join(root, 'server'), port: 0, token: 'write', readToken: 'read', admit: updateRefusal, debounceMs: 20, maxDebounceMs: 100, logger: { info: () => {}, warn: () => {} } })
    try {
      const writer = await openStore({ dir: join(root, 'writer'), durability: 'relaxed', logger: { warn: () => {} }, sync: { url: server.url, token: 'write' } })
      await writer.whenSynced(10_000)
      await writer.createItem({ name: 'Before the board' })
      await writer.whenSynced(10_000)
      const boardDir = join(root, 'board')
      await (await openStore({ dir: boardDir, logger: { warn: () => {} } })).close()
      const b = await board(boardDir, {}, { url: server.url, token: 'read' })
      const feed = nextChange(b.url)
      await feed.ready
      const item = await writer.createItem({ name: 'From another replica' })
      await writer.whenSynced(10_000)
      await feed.changed
      const deadline = Date.now() + 10_000
      let ids: string[] = []
      while (Date.now() < deadline) {
        ids = ((await (await fetch(new URL('/api/items', b.url))).json()) as { items: Array<{ id: string }> }).items.map((i) => i.id)
        if (ids.includes(item.id)) break
        await new Promise((r) => setTimeout(r, 50))
      }
      expect(ids).toContain(item.id)
      expect(await (await fetch(new URL('/api/status', b.url))).json()).toMatchObject({ sync: { configured: true, connected: true, readOnly: true } })
      // "What changed since" takes a time, too.
      const recent = (await (await fetch(new URL(`/api/changes?since=${encodeURIComponent(new Date(Date.now() - 3600e3).toISOString())}`, b.url))).json()) as { events: unknown[] }
      const future = (await (await fetch(new URL(`/api/changes?since=${encodeURIComponent(new Date(Date.now() + 3600e3).toISOString())}`, b.url))).json()) as { events: unknown[] }
      expect(recent.events.length).toBeGreaterThan(0)
      expect(future.events).toEqual([])
      expect((await fetch(new URL('/api/changes?since=soon', b.url))).status).toBe(400)
      await writer.close()
    } finally {
      await server.close()
    }
  }, 60_000)

  it('beyond loopback it needs its token: refused without, let in with it once (a cookie), and never a wrong one', async () => {
    const dir = await storeWith(['One'])
    const b = await board(dir, { host: '0.0.0.0' })
    expect(b.url).toMatch(/\?token=[\w-]{20,}$/)
    const base = b.url.replace('0.0.0.0', '127.0.0.1')
    const bare = base.replace(/\?token=.*$/, '')
    expect((await fetch(bare)).status).toBe(401)
    expect((await fetch(new URL('/api/items', bare))).status).toBe(401)
    expect((await fetch(`${bare}?token=wrong`)).status).toBe(401)
    // The token goes into a cookie and out of the address bar (a shared view never carries it).
    const ok = await fetch(`${base}&item=1`, { redirect: 'manual' })
    expect(ok.status).toBe(303)
    expect(ok.headers.get('location')).toBe('/?item=1')
    const cookie = ok.headers.get('set-cookie')!.split(';')[0]!
    expect(cookie).toMatch(new RegExp(`^docket_board_${b.port}=[0-9a-f]{64}$`))
    expect((await fetch(new URL('/?item=1', bare), { headers: { cookie } })).status).toBe(200)
    expect((await fetch(new URL('/api/items', bare), { headers: { cookie } })).status).toBe(200)
    // Any of the credentials lets in; a stale cookie of another board does not shut out a good Bearer header.
    const given = await board(await storeWith(['Two']), { token: 'chosen;token with spaces' })
    const givenBase = given.url.replace(/\?token=.*$/, '')
    expect((await fetch(givenBase)).status).toBe(401)
    expect((await fetch(new URL('/api/items', givenBase), { headers: { authorization: 'Bearer chosen;token with spaces', cookie: `docket_board_${given.port}=${'0'.repeat(64)}` } })).status).toBe(200)
    const first = await fetch(given.url, { redirect: 'manual' })
    expect((await fetch(new URL('/api/items', givenBase), { headers: { cookie: first.headers.get('set-cookie')!.split(';')[0]! } })).status).toBe(200)
  })

  it('on loopback it answers only requests addressed to loopback (no DNS rebinding), and odd paths are 400 or 404, never 500', async () => {
    const b = await board(await storeWith(['One']))
    // fetch will not send another Host header: a raw request does, as a rebound page's browser would.
    const { get } = await import('node:http')
    const status = (host: string) =>
      new Promise<number>((resolve, reject) => get({ host: '127.0.0.1', port: b.port, path: '/api/items', headers: { host } }, (res) => (res.resume(), resolve(res.statusCode!))).on('error', reject))
    expect(await status(`evil.example:${b.port}`)).toBe(403)
    expect(await status(`localhost:${b.port}`)).toBe(200)
    expect(await status(`127.0.0.1:${b.port}`)).toBe(200)
    for (const [path, status] of [['/vendor/__proto__', 404], ['/vendor/toString', 404], ['/vendor/..%2fpackage.json', 404], ['/api/items/%E0%A4%A', 400], ['/api/changes?since=%2B275760-09-13T00:00:00Z', 400], ['/constructor', 404]] as const) {
      expect((await fetch(new URL(path, b.url))).status, path).toBe(status)
    }
  })

  it('when the process that holds the store goes away, the board says so on its feed and reads on — through its own open of the store', async () => {
    const dir = await storeWith(['One'])
    const { child } = await startFixture(HOLD, [dir], 'open')
    const b = await board(dir)
    expect(b.source).toBe('held')
    const res = await fetch(new URL('/api/events', b.url))
    const reader = res.body!.getReader()
    child.stdin!.end()
    await new Promise((r) => child.once('close', r))
    let text = ''
    while (!text.includes('event: trouble') || !text.includes('event: changed')) text += Buffer.from((await reader.read()).value!).toString()
    await reader.cancel()
    expect(b.source).toBe('own')
    expect(((await (await fetch(new URL('/api/items', b.url))).json()) as { items: unknown[] }).items).toHaveLength(1)
  }, 30_000)
})
