import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { openStore, type OpenStoreOptions, type Store } from '@docket/core'
import { startServer, type RunningServer } from '@docket/server'

/**
 * Opens `count` stores in fresh temp dirs; `close` closes them and removes the dirs. With a
 * `seed`, their Yjs client ids come from it, so that which concurrent write wins — and so the
 * whole run — replays exactly.
 */
export async function openReplicas(
  count: number,
  options: Partial<OpenStoreOptions> = {},
  seed?: number | ((index: number) => () => number),
  hooksFor?: (index: number) => NonNullable<OpenStoreOptions['hooks']>,
): Promise<{ stores: Store[]; dirs: string[]; close: () => Promise<void> }> {
  const dirs: string[] = []
  const stores: Store[] = []
  const quiet = process.env.DOCKET_DEBUG ? { warn: (m: string) => console.error('WARN', m), error: (m: string) => console.error('ERROR', m) } : { warn: () => {}, info: () => {}, error: () => {} }
  for (let i = 0; i < count; i++) {
    const dir = await mkdtemp(join(tmpdir(), 'docket-prop-'))
    dirs.push(dir)
    const clientId = seed === undefined ? undefined : typeof seed === 'number' ? clientIds(seed, i) : seed(i)
    const own = { ...options.hooks, ...hooksFor?.(i) }
    const hooks = clientId === undefined ? (Object.keys(own).length > 0 ? own : undefined) : { ...own, clientId }
    stores.push(await openStore({ dir, durability: 'relaxed', replicaId: `replica-${String.fromCharCode(97 + i)}`, logger: quiet, ...options, ...(hooks ? { hooks } : {}) }))
  }
  return {
    stores,
    dirs,
    close: async () => {
      await Promise.allSettled(stores.map((s) => s.close()))
      await Promise.allSettled(dirs.map((d) => rm(d, { recursive: true, force: true })))
    },
  }
}

/** A never-repeating sequence of 32-bit client ids for replica `index`, derived from `seed`. */
export function clientIds(seed: number, index: number): () => number {
  let state = (seed ^ Math.imul(index + 1, 0x9e3779b1)) >>> 0
  let n = 0
  return () => {
    state = (Math.imul(state ^ (state >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0
    // high bits random, low bits a counter: distinct across replicas and calls
    return ((state & 0xfff00000) | ((index & 0xff) << 12) | (n++ & 0xfff)) >>> 0
  }
}

/**
 * A real sync server on 127.0.0.1 in a fresh temp dir, and `open(i, online)` for replica i of
 * it (its client ids from `seed`, its directory kept across opens). `close` stops the server
 * and removes the dir; the caller closes its stores first.
 */
export async function serverWithReplicas(
  prefix: string,
  replicas: number,
  seed: number,
): Promise<{ server: RunningServer; open: (i: number, online: boolean) => Promise<Store>; close: () => Promise<void> }> {
  const token = `${prefix}-token`
  const root = await mkdtemp(join(tmpdir(), `${prefix}-`))
  const server = await startServer({ dir: join(root, 'server'), port: 0, token, debounceMs: 20, maxDebounceMs: 100, logger: { info: () => {}, warn: () => {} } })
  const ids = Array.from({ length: replicas }, (_, i) => clientIds(seed, i))
  const open = (i: number, online: boolean) =>
    openStore({
      dir: join(root, `r${i}`),
      durability: 'relaxed',
      replicaId: `replica-${i}`,
      logger: { warn: () => {}, error: () => {} },
      hooks: { clientId: ids[i]! },
      ...(online ? { sync: { url: server.url, token, minReconnectDelayMs: 20, maxReconnectDelayMs: 200 } } : {}),
    })
  return {
    server,
    open,
    close: async () => {
      await server.close()
      await rm(root, { recursive: true, force: true })
    },
  }
}
