import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openStore, type Store } from '@docket/core'
import { startServer, type RunningServer } from '../src/index.js'
import { startRedis } from './redis-server.js'

// Runs only under `pnpm test:redis`, which needs Debian's redis-server (.ci/run installs it when it can).
const TOKEN = 'scale-out'
let redis: { port: number; stop: () => void }
let redisPort: number
const cleanup: Array<() => Promise<unknown>> = []

beforeAll(async () => {
  redis = await startRedis()
  redisPort = redis.port
})

afterAll(async () => {
  for (const fn of cleanup.reverse()) await fn().catch(() => {})
  redis.stop()
})

describe('two docket servers sharing one Redis', () => {
  it('replicas on different servers converge', async () => {
    const servers: RunningServer[] = []
    for (const name of ['one', 'two']) {
      const dir = await mkdtemp(join(tmpdir(), `docket-redis-${name}-`))
      cleanup.push(() => rm(dir, { recursive: true, force: true }))
      const server = await startServer({ dir, port: 0, token: TOKEN, redis: { host: '127.0.0.1', port: redisPort }, logger: { info: () => {}, warn: () => {} } })
      cleanup.push(() => server.close())
      servers.push(server)
    }
    const stores: Store[] = []
    for (const server of servers) {
      const dir = await mkdtemp(join(tmpdir(), 'docket-redis-replica-'))
      cleanup.push(() => rm(dir, { recursive: true, force: true }))
      const store = await openStore({ dir, durability: 'relaxed', logger: { warn: () => {} }, sync: { url: server.url, token: TOKEN } })
      cleanup.push(() => store.close())
      stores.push(store)
    }
    await Promise.all(stores.map((s) => s.whenSynced(10_000)))
    const [a, b] = stores as [Store, Store]
    const item = await a.createItem({ name: 'through redis', body: 'shared' })
    const deadline = Date.now() + 15_000
    while (!b.getItem(item.id) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
    expect(b.getItem(item.id)).toMatchObject({ name: 'through redis', uid: item.uid })
    // The body was uploaded to server one; server two has it from Redis.
    expect(await b.readContent(item.id)).toBe('shared')
    await b.apply(item.id, 'start')
    while (a.getItem(item.id)?.stage !== 'coding' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
    expect(a.getItem(item.id)?.stage).toBe('coding')
  }, 60_000)
})
