import { join } from 'node:path'
import type { ChildProcess } from 'node:child_process'
import { afterEach } from 'vitest'
import { startServer, type RunningServer } from '@docket/server'
import { openStore, updateRefusal, type OpenStoreOptions, type Store } from '../src/index.js'
import { capturingLogger, startFixture, tempDir } from './support.js'

export { converged, eventually, freePort } from '../src/testing.js'

export const TOKEN = 'test-token-of-the-pipeline'
const servers: RunningServer[] = []
const children: ChildProcess[] = []
const stores: Store[] = []

afterEach(async () => {
  await Promise.allSettled(stores.splice(0).map((s) => s.close()))
  await Promise.allSettled(servers.splice(0).map((s) => s.close()))
  for (const child of children.splice(0)) child.kill('SIGKILL')
})


/** A real Hocuspocus server on 127.0.0.1, in this process. */
export async function server(options: { dir?: string; port?: number; now?: () => number } = {}): Promise<RunningServer & { dir: string }> {
  const dir = options.dir ?? join(await tempDir('docket-server-'), 'server')
  const running = await startServer({
    dir,
    port: options.port ?? 0,
    token: TOKEN,
    debounceMs: 50,
    maxDebounceMs: 200,
    admit: updateRefusal,
    logger: { info: () => {}, warn: () => {} },
    ...(options.now ? { now: options.now } : {}),
  })
  servers.push(running)
  return Object.assign(running, { dir })
}

/** A server in a child process (to kill -9); `debounce` = its store debounce and max debounce in ms. */
export async function serverProcess(dir: string, port: number, debounce?: [number, number]): Promise<ChildProcess> {
  const { child } = await startFixture('serve.ts', [dir, String(port), TOKEN, ...(debounce ?? []).map(String)], 'listening')
  children.push(child)
  return child
}

/** A store that syncs with `url` (closed after the test). */
export async function synced(url: string | undefined, options: Partial<OpenStoreOptions> = {}): Promise<Store & { log: ReturnType<typeof capturingLogger> }> {
  const logger = capturingLogger()
  const store = await openStore({
    dir: options.dir ?? (await tempDir()),
    durability: 'relaxed',
    logger,
    ...options,
    ...(url ? { sync: { url, token: TOKEN, minReconnectDelayMs: 50, maxReconnectDelayMs: 300, ...options.sync } } : {}),
  })
  stores.push(store)
  return Object.assign(store, { log: logger })
}
