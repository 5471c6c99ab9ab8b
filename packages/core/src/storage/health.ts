import { open, readFile, rename, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { isErrno, LEVEL_DIR } from './db.js'

/**
 * Evidence that acknowledged work is missing from the LevelDB, found at open. LevelDB itself
 * forgives a torn or damaged log: it drops what it cannot read and opens anyway. docket keeps
 * its own marks outside the log so that such a loss is said out loud, never silent.
 */
export interface StorageDamage {
  /** What was found, one line each, for people. */
  findings: string[]
  /** The commit counter the last checkpoint saw, and the one the LevelDB holds now. */
  expectedCommit?: number
  foundCommit?: number
  /** Update rows missing between the first and the last one on disk. */
  missingUpdateRows?: number[]
  /** LevelDB's own lines about what it dropped while reading its log. */
  logCorruption?: string[]
  /** When the damage was first seen. */
  detectedAt: string
}

/** A commit counter written outside LevelDB: at close, and now and then while the store runs. */
export interface Checkpoint {
  commit: number
  at: string
}

export const CHECKPOINT_FILE = 'CHECKPOINT'
export const DAMAGE_FILE = 'DAMAGE.json'

export async function readCheckpoint(dir: string): Promise<Checkpoint | undefined> {
  const text = await readText(join(dir, CHECKPOINT_FILE))
  if (text === undefined) return undefined
  try {
    const value = JSON.parse(text) as Checkpoint
    return Number.isSafeInteger(value.commit) && value.commit >= 0 ? value : undefined
  } catch {
    return undefined
  }
}

/** Written whole or not at all (a temporary file, fsync'd, renamed over the old one). */
export async function writeCheckpoint(dir: string, checkpoint: Checkpoint): Promise<void> {
  await writeAtomically(join(dir, CHECKPOINT_FILE), `${JSON.stringify(checkpoint)}\n`)
}

export async function readDamage(dir: string): Promise<StorageDamage | undefined> {
  const text = await readText(join(dir, DAMAGE_FILE))
  if (text === undefined) return undefined
  try {
    return JSON.parse(text) as StorageDamage
  } catch {
    return { findings: [`${DAMAGE_FILE} is unreadable: treat the store as damaged`], detectedAt: new Date().toISOString() }
  }
}

/**
 * Damage is remembered outside the LevelDB: LevelDB rewrites its LOG and folds its log file
 * into a table at every open, so the next open could no longer see what this one saw.
 */
export async function recordDamage(dir: string, damage: StorageDamage): Promise<void> {
  await writeAtomically(join(dir, DAMAGE_FILE), `${JSON.stringify(damage, null, 2)}\n`)
}

/** Damage that someone has acknowledged is kept beside the store under a dated name, never deleted. */
export async function acknowledgeDamage(dir: string): Promise<string> {
  const kept = `DAMAGE.acknowledged-${new Date().toISOString().replace(/[:.]/g, '-')}.json`
  await rename(join(dir, DAMAGE_FILE), join(dir, kept))
  return kept
}

/** LevelDB's own words, in its LOG, about log records it dropped at this open. */
export async function logCorruptionAtOpen(dir: string): Promise<string[]> {
  const text = await readText(join(dir, LEVEL_DIR, 'LOG'))
  if (text === undefined) return []
  return text.split('\n').filter((line) => /dropping \d+ bytes; Corruption/.test(line) || /Corruption:/.test(line))
}

/**
 * Update rows are numbered one after another: a hole between two of them is a lost batch. A
 * hole that ends at a damaged row is that row's doing (it is reported as such), not a loss.
 */
export function missingSeqs(seqs: readonly number[], damaged: ReadonlySet<number> = new Set()): number[] {
  const missing: number[] = []
  for (let i = 1; i < seqs.length; i++) {
    if (damaged.has(seqs[i]!)) continue
    for (let s = seqs[i - 1]! + 1; s < seqs[i]! && missing.length < 100; s++) missing.push(s)
  }
  return missing
}

async function readText(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8')
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return undefined
    throw err
  }
}

async function writeAtomically(path: string, text: string): Promise<void> {
  const tmp = `${path}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`
  const handle = await open(tmp, 'w')
  try {
    await handle.writeFile(text)
    await handle.sync()
  } finally {
    await handle.close()
  }
  try {
    await rename(tmp, path)
  } catch (err) {
    await rm(tmp, { force: true })
    throw err
  }
}

/**
 * What says that acknowledged work is missing: a checkpoint ahead of the LevelDB's commit
 * counter (a torn or truncated log), a hole in the update rows, or LevelDB's own report of log
 * records it dropped. Remembered in DAMAGE.json, since the next open could no longer see it.
 * `seqs` (the update rows' numbers, all and undamaged) only where the rows were read anyway:
 * reading their keys costs as much as reading the whole document.
 */
export async function detectDamage(dir: string, commit: number, seqs?: { loaded: readonly number[]; live: readonly number[] }): Promise<StorageDamage | undefined> {
  const known = await readDamage(dir)
  const findings: string[] = []
  const checkpoint = await readCheckpoint(dir)
  const found: Partial<StorageDamage> = {}
  if (checkpoint && checkpoint.commit > commit) {
    findings.push(`its checkpoint of ${checkpoint.at} counted ${checkpoint.commit} batches, its LevelDB holds ${commit} (${checkpoint.commit - commit} acknowledged batches lost)`)
    found.expectedCommit = checkpoint.commit
    found.foundCommit = commit
  }
  const live = new Set(seqs?.live)
  const holes = seqs ? missingSeqs(seqs.loaded, new Set(seqs.loaded.filter((seq) => !live.has(seq)))) : []
  if (holes.length > 0) {
    findings.push(`update rows ${holes.slice(0, 5).join(', ')}${holes.length > 5 ? ', …' : ''} are missing between the ones on disk`)
    found.missingUpdateRows = holes
  }
  const log = await logCorruptionAtOpen(dir)
  if (log.length > 0) {
    findings.push(`LevelDB dropped damaged records of its log while opening (${log.length} report${log.length === 1 ? '' : 's'})`)
    found.logCorruption = log.slice(0, 20)
  }
  if (findings.length === 0) return known
  const damage: StorageDamage = { ...known, ...found, findings: [...(known?.findings ?? []), ...findings], detectedAt: known?.detectedAt ?? new Date().toISOString() }
  await recordDamage(dir, damage)
  return damage
}
