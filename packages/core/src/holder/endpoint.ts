import { createHash } from 'node:crypto'
import { lstat, unlink } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { DocketError } from '../errors.js'

/** The socket's name inside the store directory. */
export const SOCKET_NAME = 'holder.sock'

/** Unix socket paths are limited to about 107 bytes (sun_path); longer ones cannot be bound. */
const MAX_SOCKET_PATH = 100

/**
 * Where the process holding a store listens: `<dir>/holder.sock`, or — when that path is too
 * long for a Unix socket — a socket named after the directory's hash in a directory of this
 * user's own (mode 0700): `$XDG_RUNTIME_DIR/docket`, else `docket-<uid>` under the system's
 * temporary directory. Every process computes the same path from the store directory alone, so
 * no pointer file can go stale.
 */
export function holderEndpoint(dir: string): { path: string; privateDir?: string } {
  const absolute = resolve(dir)
  if (process.platform === 'win32') return { path: `\\\\.\\pipe\\docket-${hashOf(absolute)}` }
  const inside = join(absolute, SOCKET_NAME)
  if (Buffer.byteLength(inside) <= MAX_SOCKET_PATH) return { path: inside }
  const runtime = process.env.XDG_RUNTIME_DIR
  const privateDir = runtime && runtime.startsWith('/') ? join(runtime, 'docket') : join(tmpdir(), `docket-${process.getuid?.() ?? 'user'}`)
  return { path: join(privateDir, `${hashOf(absolute)}.sock`), privateDir }
}

function hashOf(dir: string): string {
  return createHash('sha256').update(dir).digest('hex').slice(0, 24)
}

/**
 * Whether a socket found at the endpoint may be trusted: this user's socket, and — outside the
 * store directory — in a directory only this user can write (not a symlink). Anyone can create
 * `/tmp/docket-<uid>` before its user does; a client that connected to what it finds there
 * would hand its writes to whoever listens.
 */
export async function checkEndpoint(endpoint: { path: string; privateDir?: string }, dir: string): Promise<void> {
  const uid = process.getuid?.()
  if (uid === undefined) return
  if (endpoint.privateDir) {
    const info = await lstat(endpoint.privateDir)
    if (!info.isDirectory() || info.uid !== uid || (info.mode & 0o077) !== 0) {
      throw new DocketError(
        'HOLDER_FAILED',
        `${endpoint.privateDir}, where the holder of ${dir} would listen, is not a private directory of this user (owner ${info.uid}, mode ${(info.mode & 0o777).toString(8)}${info.isSymbolicLink() ? ', a symlink' : ''}): it is not used. Remove it, or give the store a shorter path (its socket then lives in the store directory).`,
        { details: { dir, socketDir: endpoint.privateDir } },
      )
    }
  }
  const socket = await lstat(endpoint.path)
  if (socket.uid !== uid) {
    throw new DocketError('STORE_LOCKED', `The store at ${dir} is held by a process of another user (its socket ${endpoint.path} belongs to uid ${socket.uid}): run docket as that user, or wait for that process to close the store.`, { details: { dir, socket: endpoint.path } })
  }
}

/**
 * A socket file left by a holder that died, removed by a process that holds the store's lock
 * (so no live holder can own it); never a file of another kind, never in a directory that is
 * not this user's own.
 */
export async function removeStaleSocket(endpoint: { path: string; privateDir?: string }, dir: string): Promise<void> {
  if (process.platform === 'win32') return
  const found = await lstat(endpoint.path).catch(() => undefined)
  if (!found) return
  if (!found.isSocket()) {
    throw new DocketError('STORE_UNWRITABLE', `${endpoint.path} exists and is not a socket: move it aside so that the process holding the store can serve CLI calls there.`, { details: { path: endpoint.path } })
  }
  if (endpoint.privateDir) await checkEndpoint(endpoint, dir)
  await unlink(endpoint.path)
}
