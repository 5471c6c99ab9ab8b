import { createHash } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'

/** The socket's name inside the store directory. */
export const SOCKET_NAME = 'holder.sock'

/** Unix socket paths are limited to about 107 bytes (sun_path); longer ones cannot be bound. */
const MAX_SOCKET_PATH = 100

/**
 * Where the process holding a store listens: `<dir>/holder.sock`, or — when that path is too
 * long for a Unix socket — a socket named after the directory's hash in a directory of this
 * user's own (mode 0700) under the system's temporary directory. Every process computes the
 * same path from the store directory alone, so no pointer file can go stale.
 */
export function holderEndpoint(dir: string): { path: string; privateDir?: string } {
  const absolute = resolve(dir)
  if (process.platform === 'win32') return { path: `\\\\.\\pipe\\docket-${hashOf(absolute)}` }
  const inside = join(absolute, SOCKET_NAME)
  if (Buffer.byteLength(inside) <= MAX_SOCKET_PATH) return { path: inside }
  const privateDir = join(tmpdir(), `docket-${process.getuid?.() ?? 'user'}`)
  return { path: join(privateDir, `${hashOf(absolute)}.sock`), privateDir }
}

function hashOf(dir: string): string {
  return createHash('sha256').update(dir).digest('hex').slice(0, 24)
}
