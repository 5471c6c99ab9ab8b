import { randomBytes, timingSafeEqual, createHash } from 'node:crypto'
import { once } from 'node:events'
import { readFile } from 'node:fs/promises'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createRequire } from 'node:module'
import { decodeContent, DocketError, isDocketError, isItemId, STAGES, TERMINAL_STAGES, type AuditEvent, type Logger, type SyncOptions } from '@docket/core'
import { encodeTime } from 'ulid'
import { openSource, type BoardSource } from './source.js'

/** How `docket board` serves a store. */
export interface BoardOptions {
  /** The store directory. */
  dir: string
  /** Default: 127.0.0.1 — this machine only. */
  host?: string
  /** Default: 4321; 0 picks a free port. */
  port?: number
  /**
   * Required to open the page when set (`?token=` once, then a cookie). Default: none on
   * loopback; a host that is not loopback without a token gets a random one (printed with the URL).
   */
  token?: string
  /** Default: WARN lines on stderr. */
  logger?: Logger
  /**
   * When the board opens the store itself (nobody holds it): the sync server to follow, so that
   * other replicas' changes show too. A read-only token is enough. Default: none.
   */
  sync?: SyncOptions
}

export interface RunningBoard {
  /** The page's address (with `?token=` when the board has one). */
  url: string
  port: number
  /** Whether the board reads through another process's holder, or opened the store itself. */
  source: BoardSource['kind']
  close(): Promise<void>
}

const WEB = join(dirname(fileURLToPath(import.meta.url)), '..', 'web')
const require = createRequire(import.meta.url)

/** The browser's modules, from the packages that ship them (no bundler, no copy in this repository). */
const VENDOR: Record<string, [string, string]> = {
  'preact.js': ['preact', 'dist/preact.module.js'],
  'preact-hooks.js': ['preact', 'hooks/dist/hooks.module.js'],
  'htm.js': ['htm', 'dist/htm.module.js'],
  'htm-preact.js': ['htm', 'preact/index.module.js'],
  'marked.js': ['marked', 'lib/marked.esm.js'],
  'purify.js': ['dompurify', 'dist/purify.es.mjs'],
  'virtual-core/index.js': ['@tanstack/virtual-core', 'dist/esm/index.js'],
  'virtual-core/utils.js': ['@tanstack/virtual-core', 'dist/esm/utils.js'],
}

/** A package's folder: up from its entry point to the package.json that names it (exports maps hide the rest). */
async function packageDir(name: string): Promise<string> {
  let dir = dirname(require.resolve(name))
  for (;;) {
    const manifest = await readFile(join(dir, 'package.json'), 'utf8').catch(() => undefined)
    if (manifest !== undefined && (JSON.parse(manifest) as { name?: string }).name === name) return dir
    const up = dirname(dir)
    if (up === dir) throw new Error(`cannot find the package ${name}: reinstall docket`)
    dir = up
  }
}
const PAGES: Record<string, string> = { '/': 'index.html', '/app.js': 'app.js', '/env.js': 'env.js', '/board.css': 'board.css' }
const TYPES: Record<string, string> = { html: 'text/html; charset=utf-8', js: 'text/javascript; charset=utf-8', css: 'text/css; charset=utf-8' }

let policy: string | undefined
/**
 * The page's content security policy: scripts only from the board itself, plus the import map
 * by its hash (it must be inline); markdown is sanitised before it is shown. Cards place
 * themselves with inline styles, which the policy allows (styles run no code).
 */
async function pagePolicy(): Promise<string> {
  if (policy) return policy
  const page = await readFile(join(WEB, 'index.html'), 'utf8')
  const map = /<script type="importmap">([\s\S]*?)<\/script>/.exec(page)?.[1] ?? ''
  const hash = createHash('sha256').update(map).digest('base64')
  policy = `default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self' 'sha256-${hash}'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'`
  return policy
}

function isLoopback(host: string): boolean {
  return host === '127.0.0.1' || host === '::1' || host === 'localhost'
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest()
}

/**
 * Starts the board: a read-only web page of the pipeline that follows every change (the page
 * listens on /api/events and reads again). It only reads: there is no endpoint that writes.
 */
export async function startBoard(options: BoardOptions): Promise<RunningBoard> {
  const host = options.host ?? '127.0.0.1'
  const port = options.port ?? 4321
  const logger = options.logger ?? { warn: (m: string) => process.stderr.write(`docket board WARN: ${m}\n`) }
  const token = options.token ?? (isLoopback(host) ? undefined : randomBytes(18).toString('base64url'))
  const source = await openSource(options.dir, logger, options.sync)
  const streams = new Set<ServerResponse>()
  const offChange = source.onChange((trouble) => {
    const event = trouble === undefined ? 'changed' : 'trouble'
    for (const res of streams) res.write(`event: ${event}\ndata: ${JSON.stringify({ at: new Date().toISOString(), ...(trouble ? { message: trouble } : {}) })}\n\n`)
  })
  let health: { at: number; value: unknown } | undefined
  let bound = port
  let checking: Promise<unknown> | undefined
  const cookieName = (port: number) => `docket_board_${port}`
  const tokenDigest = token === undefined ? undefined : digest(token)

  /** doctor's findings for the header: verify() and the orphans by kind. */
  const check = async () => {
    const store = source.handle
    const report = await store.verify()
    const { discoverOrphans } = await import('@docket/recover')
    const orphans = report.untracked.length === 0 ? [] : (await discoverOrphans(store, { ids: report.untracked })).orphans
    const byKind: Record<string, number> = {}
    for (const o of orphans) byKind[o.kind] = (byKind[o.kind] ?? 0) + 1
    health = {
      at: Date.now(),
      value: { ok: report.ok, items: report.items, staleShadow: report.staleShadow.length, missingContent: report.missingContent.length, corrupt: report.corrupt.length, pendingIntents: report.pendingIntents.length, malformed: report.malformed.length, orphans: { count: orphans.length, byKind } },
    }
  }

  /**
   * Without a token (loopback), only requests addressed to loopback are answered: a web page
   * whose name was rebound to 127.0.0.1 (DNS rebinding) sends its own name as Host. With one,
   * any of the query, the cookie (the token's digest, per port) or a Bearer header lets in.
   */
  const allowed = (req: IncomingMessage, url: URL): boolean => {
    if (tokenDigest === undefined) {
      const hostHeader = (req.headers.host ?? '').toLowerCase()
      return [`127.0.0.1:${bound}`, `localhost:${bound}`, `[::1]:${bound}`].includes(hostHeader)
    }
    const candidates: Buffer[] = []
    const query = url.searchParams.get('token')
    if (query !== null) candidates.push(digest(query))
    const bearer = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1]
    if (bearer !== undefined) candidates.push(digest(bearer))
    const cookie = new RegExp(`(?:^|;\\s*)${cookieName(bound)}=([0-9a-f]{64})(?:;|$)`).exec(req.headers.cookie ?? '')?.[1]
    if (cookie !== undefined) candidates.push(Buffer.from(cookie, 'hex'))
    return candidates.some((c) => c.length === tokenDigest.length && timingSafeEqual(c, tokenDigest))
  }

  const json = (res: ServerResponse, status: number, value: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' })
    res.end(JSON.stringify(value, (_k, v: unknown) => (v instanceof Uint8Array ? { bytes: v.byteLength } : v)))
  }

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    // The holder may change (one went away; the board reads through the next, or its own store).
    const store = source.handle
    const url = new URL(req.url ?? '/', 'http://board')
    if (req.method !== 'GET' && req.method !== 'HEAD') return json(res, 405, { error: { code: 'READ_ONLY', message: 'the board only reads: change the pipeline with docket or the library' } })
    if (!allowed(req, url)) {
      if (tokenDigest === undefined) return json(res, 403, { error: { code: 'MISDIRECTED', message: `this board answers requests addressed to 127.0.0.1:${bound} or localhost:${bound} only` } })
      return json(res, 401, { error: { code: 'UNAUTHORIZED', message: 'open the address docket board printed (it carries ?token=)' } })
    }
    const path = url.pathname
    if (path === '/favicon.ico') {
      res.writeHead(204)
      res.end()
      return
    }
    if (Object.hasOwn(PAGES, path)) {
      const file = PAGES[path]!
      const headers: Record<string, string> = { 'content-type': TYPES[file.split('.').pop()!]!, 'cache-control': 'no-store' }
      // The token goes into a cookie once (its digest, so that any token is a valid cookie), and
      // out of the address bar: the page's URL is for sharing views, never the token.
      if (tokenDigest !== undefined && url.searchParams.has('token')) {
        url.searchParams.delete('token')
        res.writeHead(303, { location: `${url.pathname}${url.search}`, 'set-cookie': `${cookieName(bound)}=${tokenDigest.toString('hex')}; HttpOnly; SameSite=Strict; Path=/`, 'cache-control': 'no-store' })
        res.end()
        return
      }
      if (file === 'index.html') headers['content-security-policy'] = await pagePolicy()
      const bytes = await readFile(join(WEB, file))
      res.writeHead(200, headers)
      res.end(bytes)
      return
    }
    if (path.startsWith('/vendor/')) {
      const name = path.slice('/vendor/'.length)
      const vendor = Object.hasOwn(VENDOR, name) ? VENDOR[name] : undefined
      if (!vendor) return json(res, 404, { error: { code: 'NOT_FOUND', message: `no such file: ${path}` } })
      const bytes = await readFile(join(await packageDir(vendor[0]), vendor[1]))
      res.writeHead(200, { 'content-type': TYPES.js!, 'cache-control': 'max-age=3600' })
      res.end(bytes)
      return
    }
    if (path === '/api/items') {
      const items = await store.listItems()
      return json(res, 200, { items, stages: STAGES, terminal: [...TERMINAL_STAGES], at: new Date().toISOString() })
    }
    const one = /^\/api\/items\/([^/]+)$/.exec(path)
    if (one) {
      let id = ''
      try {
        id = decodeURIComponent(one[1]!)
      } catch {
        // not even a string: no id either
      }
      if (!isItemId(id)) return json(res, 400, { error: { code: 'INVALID_ID', message: `${id} is no item id` } })
      const item = await store.getItem(id)
      if (!item) return json(res, 404, { error: { code: 'NOT_FOUND', message: `there is no item ${id}` } })
      const content: Record<string, string | { bytes: number }> = {}
      for (const slot of await store.contentSlots(id)) {
        try {
          const bytes = (await store.readContentBytes(id, slot))!
          const text = decodeContent(bytes)
          content[slot] = typeof text === 'string' ? text : { bytes: bytes.byteLength }
        } catch (err) {
          if (!isDocketError(err, 'CONTENT_UNAVAILABLE')) throw err
          content[slot] = { bytes: -1 }
        }
      }
      const audit: AuditEvent[] = []
      for await (const event of store.audit({ itemId: id, limit: 100, newestFirst: true })) audit.push(event)
      const aliases = (await store.aliases()).filter((a) => a.uid === item.uid)
      return json(res, 200, { item, history: await store.stageHistory(id), content, aliases, audit })
    }
    if (path === '/api/changes') {
      // `since` is an event id, or a time: the first id of that millisecond.
      const given = url.searchParams.get('since')
      const at = given !== null && !/^[0-9A-HJKMNP-TV-Z]{26}$/.test(given) ? Date.parse(given) : Number.NaN
      if (given !== null && !/^[0-9A-HJKMNP-TV-Z]{26}$/.test(given) && Number.isNaN(at)) return json(res, 400, { error: { code: 'INVALID_INPUT', message: 'since must be an event id (a ULID) or a time (ISO 8601)' } })
      if (!Number.isNaN(at) && (at < 0 || at > 2 ** 48 - 1)) return json(res, 400, { error: { code: 'INVALID_INPUT', message: 'since is a time outside the range of event ids' } })
      const since = Number.isNaN(at) ? given : `${encodeTime(at, 10)}${'0'.repeat(16)}`
      const events: AuditEvent[] = []
      for await (const event of store.audit({ ...(since ? { since } : {}), limit: 500, newestFirst: true })) events.push(event)
      return json(res, 200, { events })
    }
    if (path === '/api/status') {
      // doctor's findings cost a scan: once every half minute at most.
      if (!health || Date.now() - health.at > 30_000) {
        // One scan at a time, whoever asks meanwhile.
        checking ??= check().finally(() => (checking = undefined))
        await checking
      }
      return json(res, 200, { sync: await source.handle.syncState(), doctor: health!.value, source: source.kind, dir: source.handle.dir })
    }

    if (path === '/api/events') {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' })
      res.write(': docket board\n\n')
      streams.add(res)
      req.on('close', () => streams.delete(res))
      return
    }
    json(res, 404, { error: { code: 'NOT_FOUND', message: `no such page: ${path}` } })
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (res.headersSent) return res.destroy()
      json(res, isDocketError(err) && err.code === 'NOT_FOUND' ? 404 : 500, { error: isDocketError(err) ? err.toJSON() : { code: 'INTERNAL', message: (err as Error).message } })
    })
  })
  const heartbeat = setInterval(() => {
    for (const res of streams) res.write(': still here\n\n')
  }, 15_000)
  heartbeat.unref()
  server.listen({ host, port })
  try {
    await Promise.race([once(server, 'listening'), once(server, 'error').then(([err]) => Promise.reject(err))])
  } catch (err) {
    clearInterval(heartbeat)
    offChange()
    await source.close()
    const code = (err as NodeJS.ErrnoException).code
    throw new DocketError('INVALID_INPUT', code === 'EADDRINUSE' ? `port ${port} on ${host} is in use: choose another --port.` : `cannot listen on ${host}:${port}: ${(err as Error).message}`)
  }
  bound = (server.address() as AddressInfo).port
  const base = `http://${host.includes(':') ? `[${host}]` : host}:${bound}/`
  let closing: Promise<void> | undefined
  return {
    url: token === undefined ? base : `${base}?token=${encodeURIComponent(token)}`,
    port: bound,
    get source() {
      return source.kind
    },
    close: () =>
      (closing ??= (async () => {
        clearInterval(heartbeat)
        offChange()
        for (const res of streams) res.end()
        streams.clear()
        server.closeAllConnections()
        await new Promise<void>((resolve) => server.close(() => resolve()))
        await source.close()
      })()),
  }
}
