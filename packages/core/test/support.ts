import { execFileSync } from 'node:child_process'
import { mkdtempSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterEach } from 'vitest'
import * as Y from 'yjs'
import { openStore, type Logger, type OpenStoreOptions, type Store } from '../src/index.js'
import { runFixture as runChild, startFixture as startChild, writeRawRows, type ChildResult } from '../src/testing.js'

const dirs: string[] = []
const stores: Store[] = []

afterEach(async () => {
  await Promise.allSettled(stores.splice(0).map((s) => s.close()))
  await Promise.allSettled(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })))
})

/** A fresh temporary directory, removed after the test. */
export async function tempDir(prefix = 'docket-test-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  dirs.push(dir)
  return dir
}

export interface CapturingLogger extends Logger {
  lines: string[]
}

export function capturingLogger(): CapturingLogger {
  const lines: string[] = []
  return {
    lines,
    warn: (m) => lines.push(`WARN ${m}`),
    info: (m) => lines.push(`INFO ${m}`),
    error: (m) => lines.push(`ERROR ${m}`),
  }
}

/** Opens a store in a temp dir (or `dir`), closed after the test. Relaxed fsync: tests are not about power cuts. */
export async function testStore(options: OpenStoreOptions = {}): Promise<Store & { log: CapturingLogger }> {
  const logger = (options.logger as CapturingLogger | undefined) ?? capturingLogger()
  const store = await openStore({ durability: 'relaxed', ...options, dir: options.dir ?? (await tempDir()), logger })
  stores.push(store)
  return Object.assign(store, { log: logger })
}

/** Puts one raw row (full key, with its sublevel prefix) into a closed store. */
export async function putRaw(dir: string, key: string, value: string | Uint8Array): Promise<void> {
  const match = /^!([^!]+)!(.*)$/s.exec(key)!
  await writeRawRows(dir, [{ type: 'put', sublevel: match[1] as never, key: match[2]!, value }])
}

export async function delRaw(dir: string, key: string): Promise<void> {
  const match = /^!([^!]+)!(.*)$/s.exec(key)!
  await writeRawRows(dir, [{ type: 'del', sublevel: match[1] as never, key: match[2]! }])
}

export function keysWithPrefix(dump: Map<string, string>, prefix: string): string[] {
  return [...dump.keys()].filter((k) => k.startsWith(prefix)).sort()
}

export { collect, snapshotRows } from '../src/testing.js'
import { copyBlobs } from '../src/testing.js'

/** Runs a fixture of this folder's fixtures/ in a real child process. */
export function runFixture(fixture: string, args: string[], timeoutMs = 30_000): Promise<ChildResult> {
  return runChild(new URL(`./fixtures/${fixture}`, import.meta.url).pathname, args, timeoutMs)
}

export function startFixture(fixture: string, args: string[], line: string): ReturnType<typeof startChild> {
  return startChild(new URL(`./fixtures/${fixture}`, import.meta.url).pathname, args, line)
}

/**
 * The update a peer that has seen `base` sends after writing a bare item (metadata only, no
 * stage log) under its uid, claiming `id`, as a buggy replica would. Claims are won by the
 * lowest uid, so an old uid wins a concurrent claim; `clientId` fixes the peer's Yjs client.
 */
export function peerItemUpdate(base: Uint8Array, id: string, item: { uid: string; name: string }, clientId?: number): Uint8Array {
  const peer = new Y.Doc()
  if (clientId !== undefined) peer.clientID = clientId
  Y.applyUpdate(peer, base)
  const map = new Y.Map<unknown>()
  for (const [k, v] of Object.entries({ ...item, type: 'story', createdBy: 'peer', createdAt: '', updatedAt: '' })) map.set(k, v)
  peer.getMap('records').set(item.uid, map)
  peer.getMap('claims').set(`${id}/${item.uid}`, { at: '', by: 'peer', reason: 'created' })
  const update = Y.encodeStateAsUpdate(peer, Y.encodeStateVectorFromUpdate(base))
  peer.destroy()
  return update
}

/** What a peer that has seen `base` sends after running `fn` on its copy in one transaction (a buggy or hostile replica). */
export function peerTx(base: Uint8Array, fn: (doc: Y.Doc) => void, clientId?: number): Uint8Array {
  const peer = new Y.Doc()
  if (clientId !== undefined) peer.clientID = clientId
  Y.applyUpdate(peer, base)
  peer.transact(() => fn(peer))
  const update = Y.encodeStateAsUpdate(peer, Y.encodeStateVectorFromUpdate(base))
  peer.destroy()
  return update
}

/** Sends everything `from` has and `to` lacks — the document and the content blobs — as a sync server would. */
export async function pull(to: Store, from: Store): Promise<void> {
  await to.applyUpdate(from.encodeStateAsUpdate(to.encodeStateVector()), 'peer')
  await to.flush()
  await copyBlobs(from, to)
}

const CORE = fileURLToPath(new URL('..', import.meta.url))

/**
 * Extracts packages/core/src of an older commit into a fresh `.<label>-*` directory inside
 * packages/core (so that its imports of yjs, level and ulid resolve to packages/core/node_modules),
 * for tests that build stores with an older docket. `root` is the directory to remove afterwards.
 */
export function extractCoreSource(commit: string, label: string, what: string): { root: string; src: string } {
  let repo: string
  try {
    repo = execFileSync('git', ['-C', CORE, 'rev-parse', '--show-toplevel'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim()
    execFileSync('git', ['-C', repo, 'cat-file', '-e', `${commit}^{commit}`], { stdio: ['ignore', 'pipe', 'pipe'] })
  } catch (err) {
    throw new Error(
      `git history is unavailable: commit ${commit} (${what}) cannot be read from the repository of ${CORE} ` +
        `(${((err as { stderr?: Buffer }).stderr?.toString() || (err as Error).message).trim()}). The migration tests build their old stores with that ` +
        `commit's code: run them in a clone with full history (git fetch --unshallow).`,
    )
  }
  const tar = execFileSync('git', ['-C', repo, 'archive', '--format=tar', commit, 'packages/core/src'], { maxBuffer: 256 * 1024 * 1024 })
  const root = mkdtempSync(join(CORE, `.${label}-`))
  execFileSync('tar', ['-x', '-C', root], { input: tar })
  return { root, src: join(root, 'packages/core/src') }
}
