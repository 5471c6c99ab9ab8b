import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach } from 'vitest'

/** The built binary: tests run what users run (`pnpm test` builds first). */
export const BIN = join(import.meta.dirname, '..', 'dist', 'bin.js')

const dirs: string[] = []
const children: ChildProcess[] = []
afterEach(async () => {
  for (const child of children.splice(0)) child.kill('SIGKILL')
  await Promise.allSettled(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })))
})

export const SERVE_TOKEN = 'cli-sync-token'

/** `docket serve` in a child process (killed after the test); resolves once it listens. */
export async function serve(dir: string, port: number, extra: string[] = []): Promise<{ child: ChildProcess; url: string; stderr: () => string }> {
  const child = spawn(process.execPath, [BIN, '--dir', dir, '--json', 'serve', '--port', String(port), ...extra], { env: { ...process.env, DOCKET_TOKEN: SERVE_TOKEN }, stdio: ['ignore', 'pipe', 'pipe'] })
  children.push(child)
  let out = ''
  let err = ''
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()))
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString()
      try {
        resolve((JSON.parse(out) as { url: string }).url)
      } catch {
        // not a whole document yet
      }
    })
    child.on('close', (code) => reject(new Error(`serve exited ${code}: ${err}`)))
  })
  return { child, url, stderr: () => err }
}

/** An empty store made by `docket init`, in a fresh temp directory. */
export async function newStore(): Promise<string> {
  const dir = join(await tempDir(), 'store')
  const init = await docket(['--dir', dir, 'init'])
  if (init.code !== 0) throw new Error(`docket init failed (${init.code}): ${init.stderr}`)
  return dir
}

export async function tempDir(prefix = 'docket-cli-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  dirs.push(dir)
  return dir
}

export interface Run {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  /** stdout as the bytes written (for binary output). */
  stdoutBytes: Buffer
  stderr: string
  json: () => any
}

/** Runs `docket …args` as a child process. */
export function docket(args: readonly string[], options: { cwd?: string; env?: NodeJS.ProcessEnv; input?: string | Buffer; timeoutMs?: number; uid?: number; gid?: number } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd: options.cwd ?? tmpdir(),
      env: { ...process.env, NO_COLOR: '1', DOCKET_DIR: '', ...options.env },
      stdio: ['pipe', 'pipe', 'pipe'],
      ...(options.uid !== undefined ? { uid: options.uid } : {}),
      ...(options.gid !== undefined ? { gid: options.gid } : {}),
    })
    const out: Buffer[] = []
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => out.push(d))
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60_000)
    child.on('error', reject)
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      const stdoutBytes = Buffer.concat(out)
      const stdout = stdoutBytes.toString()
      resolve({ code, signal, stdout, stdoutBytes, stderr, json: () => JSON.parse(stdout) })
    })
    child.stdin.end(options.input ?? '')
  })
}

/** Writes files under `root` (paths relative to it), creating folders. */
export async function writeTree(root: string, files: Record<string, string | Uint8Array>): Promise<void> {
  const { mkdir, writeFile } = await import('node:fs/promises')
  const { dirname } = await import('node:path')
  for (const [path, content] of Object.entries(files)) {
    await mkdir(join(root, dirname(path)), { recursive: true })
    await writeFile(join(root, path), content)
  }
}

export function legacyFile(fields: Record<string, string>, body = 'Some markdown.\n'): string {
  return `---\n${Object.entries(fields).map(([k, v]) => `${k}: ${v}`).join('\n')}\n---\n\n${body}`
}

const FOLDERS = ['1_backlog', '2_current', '3_qa', '4_merge', '5_done', '6_archived', '7_frozen'] as const

/**
 * A realistic legacy pipeline: `count` well-formed files spread over every stage folder,
 * some with dependencies, agents, retries and blockers.
 */
export function legacyTree(count: number, firstId = 1): Record<string, string> {
  const files: Record<string, string> = {}
  const types = ['story', 'bug', 'spike', 'refactor', 'epic']
  for (let i = 0; i < count; i++) {
    const id = firstId + i
    const type = types[i % types.length]!
    const folder = FOLDERS[i % FOLDERS.length]!
    const fields: Record<string, string> = { name: JSON.stringify(`Item ${id}: ${type} work`), type }
    if (i % 3 === 0 && id > firstId) fields.depends_on = `[${id - 1}]`
    if (i % 4 === 0) fields.agent = `agent-${i % 5}`
    if (i % 6 === 0) fields.retries = String(i % 3)
    if (i % 9 === 0) fields.blocked = JSON.stringify('waiting on review')
    files[`${folder}/${id}_${type}_item-${id}.md`] = legacyFile(fields, `Body of item ${id}.\n\n- [ ] do it\n`)
  }
  return files
}
