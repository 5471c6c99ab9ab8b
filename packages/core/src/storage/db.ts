import { mkdir, stat } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import type { AbstractSublevel } from 'abstract-level'
import { Level } from 'level'
import { DocketError } from '../errors.js'

/** Names of the sublevels in the store's LevelDB (docs/FORMAT.md). */
export const SUBLEVELS = ['meta', 'doc', 'shadow', 'content', 'blob', 'upload', 'journal', 'audit', 'reported', 'refused', 'index'] as const
export type SublevelName = (typeof SUBLEVELS)[number]

type Binary = Uint8Array
export type RootDb = Level<string, string>
export type Sublevel<V> = AbstractSublevel<RootDb, string | Buffer | Uint8Array, string, V>

export interface Databases {
  root: RootDb
  meta: Sublevel<string>
  doc: Sublevel<Binary>
  shadow: Sublevel<string>
  content: Sublevel<Binary>
  journal: Sublevel<string>
  audit: Sublevel<string>
  reported: Sublevel<string>
  /** Remote updates refused as evidence of a hostile or broken peer, by ULID. */
  refused: Sublevel<Binary>
  /** Content bytes by their SHA-256 (schema 3): what the document's content references name. */
  blob: Sublevel<Binary>
  /** Blobs written here that the sync server may not have yet, by SHA-256. */
  upload: Sublevel<string>
  /** The materialized index (storage/index-rows.ts): live items, aliases and tombstones as readers see them. */
  index: Sublevel<string>
  /**
   * What content rows hold: blob references (schema 3), or the bytes themselves (a schema 2
   * store opened read-only, which is not migrated on disk). Rows are read by the schema on
   * disk, never guessed from their bytes (a text can look like a reference).
   */
  contentRows: 'refs' | 'bytes'
}

export const LEVEL_DIR = 'db'

/** Where a store directory keeps its LevelDB. */
export function levelLocation(dir: string): string {
  return join(resolve(dir), LEVEL_DIR)
}

/**
 * Opens (or creates) the store's LevelDB, turning the ways that can fail into DocketErrors
 * that name the directory and say what to do.
 */
export async function openDatabases(dir: string, create: boolean): Promise<Databases> {
  const absolute = resolve(dir)
  await ensureDirectory(absolute, create)
  const root = new Level<string, string>(levelLocation(absolute), { keyEncoding: 'utf8', valueEncoding: 'utf8' })
  try {
    await root.open({ createIfMissing: create, errorIfExists: false })
  } catch (err) {
    throw openError(absolute, err)
  }
  return withSublevels(root)
}

function withSublevels(root: RootDb): Databases {
  return {
    root,
    meta: root.sublevel<string, string>('meta', { valueEncoding: 'utf8' }),
    doc: root.sublevel<string, Binary>('doc', { valueEncoding: 'view' }),
    shadow: root.sublevel<string, string>('shadow', { valueEncoding: 'utf8' }),
    content: root.sublevel<string, Binary>('content', { valueEncoding: 'view' }),
    journal: root.sublevel<string, string>('journal', { valueEncoding: 'utf8' }),
    audit: root.sublevel<string, string>('audit', { valueEncoding: 'utf8' }),
    reported: root.sublevel<string, string>('reported', { valueEncoding: 'utf8' }),
    refused: root.sublevel<string, Binary>('refused', { valueEncoding: 'view' }),
    blob: root.sublevel<string, Binary>('blob', { valueEncoding: 'view' }),
    upload: root.sublevel<string, string>('upload', { valueEncoding: 'utf8' }),
    index: root.sublevel<string, string>('index', { valueEncoding: 'utf8' }),
    contentRows: 'refs',
  }
}

/**
 * Closes and reopens the LevelDB in place (every holder of `dbs` sees the new handles). After
 * a failed batch LevelDB must not append to the same log: a record written behind a torn one
 * is dropped when the log is next recovered, so it would be acknowledged and then lost.
 */
export async function reopenDatabases(dir: string, dbs: Databases): Promise<void> {
  if (dbs.root.status === 'open') await dbs.root.close()
  try {
    await dbs.root.open({ createIfMissing: false })
  } catch (err) {
    throw openError(resolve(dir), err)
  }
  Object.assign(dbs, withSublevels(dbs.root))
}

async function ensureDirectory(dir: string, create: boolean): Promise<void> {
  let info
  try {
    info = await stat(dir)
  } catch (err) {
    if (!isErrno(err, 'ENOENT')) throw unusable(dir, err)
  }
  if (info && !info.isDirectory()) {
    throw new DocketError('STORE_UNWRITABLE', `${dir} is a file, not a directory: choose another store directory (--dir) or move the file away.`, {
      details: { dir },
    })
  }
  if (!info && !create) throw notFound(dir)
  if (create) {
    try {
      await mkdir(join(dir, LEVEL_DIR), { recursive: true })
    } catch (err) {
      throw unusable(dir, err)
    }
  } else {
    try {
      const levelInfo = await stat(join(dir, LEVEL_DIR))
      if (!levelInfo.isDirectory()) throw notFound(dir)
    } catch (err) {
      if (err instanceof DocketError) throw err
      throw notFound(dir)
    }
  }
}

function notFound(dir: string): DocketError {
  return new DocketError('STORE_NOT_FOUND', `No docket store at ${dir}: run \`docket init\` there (or pass the right --dir / DOCKET_DIR).`, {
    details: { dir },
  })
}

function unusable(dir: string, err: unknown): DocketError {
  const code = (err as NodeJS.ErrnoException)?.code ?? 'unknown'
  return new DocketError(
    'STORE_UNWRITABLE',
    `Cannot create or use the store directory ${dir} (${code}): check that the path is a directory you can write, or choose another with --dir.`,
    { cause: err, details: { dir, errno: code } },
  )
}

function openError(dir: string, err: unknown): DocketError {
  const codes = errorCodes(err)
  if (codes.includes('LEVEL_LOCKED')) {
    return new DocketError(
      'STORE_LOCKED',
      `The store at ${dir} is open in another process: close that process (or wait for it to finish), or use another --dir.`,
      { cause: err, details: { dir } },
    )
  }
  if (codes.includes('LEVEL_CORRUPTION')) {
    return new DocketError(
      'STORE_CORRUPT',
      `The LevelDB of the store at ${dir} is corrupt: restore it from a backup or a sync server, or move it aside and start a new store.`,
      { cause: err, details: { dir } },
    )
  }
  const message = messageOf(err)
  if (/No such file or directory/.test(message) && /(MANIFEST|CURRENT|\.ldb|\.sst|\.log)|\/db\/[^/]+:/.test(message)) {
    return new DocketError(
      'STORE_CORRUPT',
      `The LevelDB of the store at ${dir} is damaged: a file it needs is missing or its CURRENT file is garbled (${message}). Restore the directory from a backup; a replica that syncs can be moved aside and replaced by a new one (\`docket init\`) that gets everything back from its server.`,
      { cause: err, details: { dir, files: 'missing' } },
    )
  }
  if (codes.includes('LEVEL_IO_ERROR') || codes.some((c) => c === 'EACCES' || c === 'EROFS' || c === 'EPERM')) {
    return new DocketError('STORE_UNWRITABLE', `Cannot open the store at ${dir} for writing: check its permissions and free disk space.`, {
      cause: err,
      details: { dir },
    })
  }
  return new DocketError('STORE_CORRUPT', `Cannot open the store at ${dir}: ${messageOf(err)}. Check the directory, or move it aside and start a new store.`, {
    cause: err,
    details: { dir },
  })
}

/**
 * A read that hit a damaged table file (LevelDB's LEVEL_CORRUPTION) becomes STORE_CORRUPT that
 * says what to do; anything else is passed through.
 */
export function storageError(dir: string, err: unknown): unknown {
  const codes = errorCodes(err)
  const damaged = codes.includes('LEVEL_CORRUPTION') || (codes.includes('LEVEL_IO_ERROR') && /\.(ldb|sst|log)\b|MANIFEST|CURRENT|Corruption/.test(messageOf(err)))
  if (err instanceof DocketError || !damaged) return err
  return new DocketError(
    'STORE_CORRUPT',
    `The LevelDB of the store at ${dir} is damaged (${messageOf(err)}): restore the directory from a backup, or — for a replica that syncs — move it aside and let a new replica (\`docket init\`) get everything back from its server. \`docket export\` may still save what is readable.`,
    { cause: err, details: { dir } },
  )
}

function errorCodes(err: unknown): string[] {
  const codes: string[] = []
  let current: unknown = err
  for (let depth = 0; depth < 5 && current; depth++) {
    const code = (current as { code?: unknown }).code
    if (typeof code === 'string') codes.push(code)
    current = (current as { cause?: unknown }).cause
  }
  return codes
}

function messageOf(err: unknown): string {
  const cause = (err as { cause?: { message?: string } })?.cause
  return cause?.message ?? (err as Error)?.message ?? String(err)
}

export function isErrno(err: unknown, code: string): boolean {
  return (err as NodeJS.ErrnoException)?.code === code
}

/** Those of `items` whose blob the store lacks (up to `limit`), asked of LevelDB 1,000 names at a time. */
export async function absentBlobs<T extends { sha256: string }>(dbs: Databases, items: readonly T[], limit = Infinity): Promise<T[]> {
  const absent: T[] = []
  for (let i = 0; i < items.length && absent.length < limit; i += 1000) {
    const chunk = items.slice(i, i + 1000)
    const present = await dbs.blob.hasMany(chunk.map((item) => item.sha256))
    chunk.forEach((item, k) => present[k] || absent.push(item))
  }
  return absent.slice(0, limit)
}
