/**
 * Raw access to a *closed* store's LevelDB, for tests, fault injection and inspection tools
 * (`@docket/core/testing`). Writing rows behind docket's back is how tests plant the damage
 * that docket must detect; nothing in production should call `writeRawRows`.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createServer } from 'node:net'
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { Level } from 'level'
import { levelLocation, type SublevelName } from './storage/db.js'
import { contentKey, idKey } from './storage/keys.js'
import type { ItemId } from './ids.js'
import type { Store } from './store/store.js'

export interface RawRow {
  sublevel: SublevelName | string
  key: string
  value: Uint8Array
}

export type RawWrite = { type: 'put'; sublevel: SublevelName; key: string; value: Uint8Array | string } | { type: 'del'; sublevel: SublevelName; key: string }

async function withRaw<T>(dir: string, fn: (db: Level<string, Uint8Array>) => Promise<T>): Promise<T> {
  const db = new Level<string, Uint8Array>(levelLocation(dir), { keyEncoding: 'utf8', valueEncoding: 'view' })
  await db.open({ createIfMissing: false })
  try {
    return await fn(db)
  } finally {
    await db.close()
  }
}

/** Every row of a closed store, in key order, with its sublevel split off the key. */
export async function readRawRows(dir: string): Promise<RawRow[]> {
  return withRaw(dir, async (db) => {
    const rows: RawRow[] = []
    for await (const [key, value] of db.iterator()) {
      const match = /^!([^!]+)!(.*)$/s.exec(key)
      rows.push(match ? { sublevel: match[1]!, key: match[2]!, value } : { sublevel: '', key, value })
    }
    return rows
  })
}

/** Writes rows into a closed store's LevelDB in one batch, bypassing docket entirely. */
export async function writeRawRows(dir: string, writes: readonly RawWrite[]): Promise<void> {
  await withRaw(dir, (db) =>
    db.batch(
      writes.map((w) =>
        w.type === 'put'
          ? { type: 'put' as const, key: `!${w.sublevel}!${w.key}`, value: typeof w.value === 'string' ? new TextEncoder().encode(w.value) : w.value }
          : { type: 'del' as const, key: `!${w.sublevel}!${w.key}` },
      ),
    ),
  )
}

/** The LevelDB key of an item's shadow row and of one of its content slots (within their sublevels). */
export const rawKeys = {
  shadow: (id: ItemId | string) => idKey(id as ItemId),
  content: (id: ItemId | string, slot = 'body') => contentKey(id as ItemId, slot),
}

export interface ChildResult {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

/** The workspace root (where pnpm-workspace.yaml is), found upwards from `from`. */
function workspaceRoot(from: string): string {
  let dir = from
  while (!existsSync(join(dir, 'pnpm-workspace.yaml'))) {
    const up = dirname(dir)
    if (up === dir) throw new Error(`no pnpm-workspace.yaml above ${from}`)
    dir = up
  }
  return dir
}

function spawnFixture(file: string, args: readonly string[], stdin: 'ignore' | 'pipe'): ChildProcess {
  // TypeScript sources through tsx, workspace packages through their `source` export.
  return spawn(process.execPath, ['--conditions=docket-source', '--import', 'tsx', file, ...args], {
    cwd: workspaceRoot(dirname(file)),
    stdio: [stdin, 'pipe', 'pipe'],
  })
}

/** Runs a TypeScript fixture in a real child process and waits for it to end (or kills it after `timeoutMs`). */
export function runFixture(file: string, args: readonly string[], timeoutMs = 30_000): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    const child = spawnFixture(file, args, 'ignore')
    let stdout = ''
    let stderr = ''
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()))
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()))
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.on('error', reject)
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout, stderr })
    })
  })
}

/** Starts a fixture and resolves once it prints `line`; the caller ends it (its stdin is a pipe). */
export function startFixture(file: string, args: readonly string[], line: string): Promise<{ child: ChildProcess; output: () => string }> {
  return new Promise((resolve, reject) => {
    const child = spawnFixture(file, args, 'pipe')
    let out = ''
    let started = false
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString()
      if (!started && out.includes(line)) {
        started = true
        resolve({ child, output: () => out })
      }
    })
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()))
    child.on('error', reject)
    child.on('close', (code) => {
      if (!started) reject(new Error(`fixture ${file} exited (${code}) before printing ${line}: ${out}`))
    })
  })
}

/** A TCP port on 127.0.0.1 that was free a moment ago (for servers a test starts). */
export async function freePort(): Promise<number> {
  const probe = createServer()
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve))
  const port = (probe.address() as { port: number }).port
  await new Promise((resolve) => probe.close(resolve))
  return port
}

/** Every row of a closed store as `!sublevel!key` → hex, to compare a store before and after. */
export async function snapshotRows(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>()
  for (const row of await readRawRows(dir)) out.set(`!${row.sublevel}!${row.key}`, Buffer.from(row.value).toString('hex'))
  return out
}

/** All values of an async iterable (the audit log, say), in order. */
export async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = []
  for await (const value of iterable) out.push(value)
  return out
}

/** Waits until `predicate` holds (polling), or fails after `timeoutMs` saying what it waited for. */
export async function eventually(what: string, predicate: () => boolean | Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (await predicate()) return
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`)
    await new Promise((r) => setTimeout(r, 25))
  }
}

/** Syncing replicas hold the same document, are synced with their server and have nothing left to re-anchor. */
export async function converged(stores: readonly Store[]): Promise<boolean> {
  await Promise.all(stores.map((s) => s.flush()))
  const vectors = stores.map((s) => Buffer.from(s.encodeStateVector()).toString('hex'))
  return vectors.every((v) => v === vectors[0]) && stores.every((s) => s.stats().pendingReanchors === 0 && s.syncState().synced)
}

/** Gives `to` the content blobs it lacks that `from` has: what a sync server does between replicas that exchange updates directly. */
export async function copyBlobs(from: { readBlob(sha256: string): Promise<Uint8Array | undefined> }, to: Store): Promise<number> {
  let copied = 0
  for (const ref of await to.missingBlobs()) {
    const bytes = await from.readBlob(ref.sha256)
    if (bytes === undefined) continue
    await to.importBlob(ref, bytes)
    copied++
  }
  return copied
}
