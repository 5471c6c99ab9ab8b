import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Level } from 'level'
import { afterEach } from 'vitest'
import { openStore, type Logger, type OpenStoreOptions, type Store } from '../src/index.js'
import { levelLocation } from '../src/storage/db.js'

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

/** Every key and value of a closed store's LevelDB, as strings (values hex if binary). */
export async function dumpLevel(dir: string): Promise<Map<string, string>> {
  const db = new Level<string, Uint8Array>(levelLocation(dir), { keyEncoding: 'utf8', valueEncoding: 'view' })
  await db.open({ createIfMissing: false })
  const out = new Map<string, string>()
  try {
    for await (const [key, value] of db.iterator()) out.set(key, Buffer.from(value).toString('hex'))
  } finally {
    await db.close()
  }
  return out
}

/** Runs `fn` on the raw LevelDB of a closed store. */
export async function withLevel<T>(dir: string, fn: (db: Level<string, Uint8Array>) => Promise<T>): Promise<T> {
  const db = new Level<string, Uint8Array>(levelLocation(dir), { keyEncoding: 'utf8', valueEncoding: 'view' })
  await db.open({ createIfMissing: false })
  try {
    return await fn(db)
  } finally {
    await db.close()
  }
}

export function keysWithPrefix(dump: Map<string, string>, prefix: string): string[] {
  return [...dump.keys()].filter((k) => k.startsWith(prefix)).sort()
}

export async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = []
  for await (const value of iterable) out.push(value)
  return out
}

export interface ChildResult {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

const REPO_ROOT = new URL('../../../', import.meta.url).pathname

/** Runs a TypeScript fixture in a real child process (sources resolved through the `source` condition). */
export function runFixture(fixture: string, args: string[], timeoutMs = 30_000): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    const file = new URL(`./fixtures/${fixture}`, import.meta.url).pathname
    const child = spawn(process.execPath, ['--conditions=source', '--import', 'tsx', file, ...args], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.on('error', reject)
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout, stderr })
    })
  })
}

/** Starts a fixture and resolves once it prints `line` on stdout; the caller must stop it. */
export function startFixture(fixture: string, args: string[], line: string): Promise<{ child: ChildProcess; output: () => string }> {
  return new Promise((resolve, reject) => {
    const file = new URL(`./fixtures/${fixture}`, import.meta.url).pathname
    const child = spawn(process.execPath, ['--conditions=source', '--import', 'tsx', file, ...args], {
      cwd: REPO_ROOT,
      stdio: ['pipe', 'pipe', 'pipe'],
    })
    let out = ''
    const onData = (d: Buffer) => {
      out += d.toString()
      if (out.includes(line)) resolve({ child, output: () => out })
    }
    child.stdout.on('data', onData)
    child.stderr.on('data', (d: Buffer) => (out += d.toString()))
    child.on('error', reject)
    child.on('close', (code) => reject(new Error(`fixture ${fixture} exited (${code}) before printing ${line}: ${out}`)))
  })
}
