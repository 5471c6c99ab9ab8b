import { lstat, readdir, readFile, realpath, stat } from 'node:fs/promises'
import { join, relative, sep } from 'node:path'
import { decodeContent, DocketError, MAX_CONTENT_BYTES, MAX_ITEM_NUMBER } from '@docket/core'
import { readEntry, type ImportEntry } from './entry.js'
import { idAboveRange, STAGE_FOLDERS } from './layout.js'

/** A content slot travels beside its item: `<id>_<type>_<slug>.md.<slot>`. */
const SIDECAR = /^(.+\.md)\.([a-z][a-z0-9_]{0,63})$/i
/** Larger files are not read: no slot may hold them (the store's limit is 16 MiB). */

export interface TreeScan {
  entries: ImportEntry[]
  /** Item files that could not be read (reported as failed). */
  unreadable: Array<{ file: string; error: string }>
  /** Files and folders that were not imported, with why (never silently). */
  ignored: Array<{ file: string; reason: string }>
}

/**
 * Reads a legacy tree (or a tree docket exported): the stage folders in order, each file
 * through `readEntry`. Symlinks are followed only when they stay inside the tree.
 */
export async function scanTree(root: string, onFile?: (count: number) => void): Promise<TreeScan> {
  const info = await stat(root).catch(() => undefined)
  if (!info?.isDirectory()) throw new DocketError('INVALID_INPUT', `${root} is not a directory: give the folder that holds 1_backlog, 2_current, … (or a .jsonl export).`, { details: { root } })
  const realRoot = await realpath(root)
  const scan: TreeScan = { entries: [], unreadable: [], ignored: [] }
  const ignored = new Set<string>()
  const seenReal = new Map<string, string>()
  const ignore = (file: string, reason: string) => {
    ignored.add(file)
    scan.ignored.push({ file, reason })
  }
  const known = new Set(STAGE_FOLDERS.map(([folder]) => folder))
  for (const name of (await readdir(root)).sort()) {
    if (!known.has(name) && name !== 'docket-export.json') ignore(name, 'not a stage folder (1_backlog … 7_frozen)')
  }
  let count = 0
  for (const [folder, stage] of STAGE_FOLDERS) {
    const dir = join(root, folder)
    const dirInfo = await lstat(dir).catch(() => undefined)
    if (!dirInfo) continue
    if (!(await inside(realRoot, dir)) || !(await stat(dir)).isDirectory()) {
      ignore(folder, 'a symlink that leaves the tree, or not a folder; not followed')
      continue
    }
    const names = (await readdir(dir)).sort(byIdThenName)
    const realDir = await realpath(dir)
    // Sizes from the stat every file gets below, so that reading it needs no second one.
    const sizes = new Map<string, number>()
    const present = new Set(names)
    // `<file>.md.<slot>` is a slot file — even `<file>.md.md`, the slot named "md".
    const isSidecar = (n: string) => {
      const side = SIDECAR.exec(n)
      return side !== null && present.has(side[1]!)
    }
    const markdown = new Set(names.filter((n) => n.toLowerCase().endsWith('.md') && !isSidecar(n)))
    const sidecars = new Map<string, Array<[string, string]>>()
    for (const name of names) {
      const file = `${folder}/${name}`
      const path = join(dir, name)
      const entryInfo = await lstat(path).catch(() => undefined)
      if (!entryInfo) {
        ignore(file, 'vanished while the tree was read')
        continue
      }
      if (entryInfo.isSymbolicLink() && !(await inside(realRoot, path))) {
        ignore(file, 'a symlink that leaves the tree; not followed')
        continue
      }
      const target = await stat(path).catch(() => undefined)
      if (!target?.isFile()) {
        ignore(file, target ? 'not a file' : 'a broken symlink')
        continue
      }
      sizes.set(path, target.size)
      // Only a symlink can be a second path to a file already read; any other file is where its folder is.
      const real = entryInfo.isSymbolicLink() ? await realpath(path).catch(() => path) : join(realDir, name)
      const first = seenReal.get(real)
      if (first !== undefined) {
        ignore(file, `another path to ${first} (a symlink inside the tree); read once`)
        continue
      }
      seenReal.set(real, file)
      if (markdown.has(name)) continue
      const side = SIDECAR.exec(name)
      if (side && markdown.has(side[1]!)) {
        const list = sidecars.get(side[1]!) ?? []
        list.push([side[2]!, path])
        sidecars.set(side[1]!, list)
      } else {
        ignore(file, 'not a .md file (nor a slot file next to one: <file>.md.<slot>)')
      }
    }
    for (const name of names) {
      const file = `${folder}/${name}`
      if (!markdown.has(name) || ignored.has(file)) continue
      const bytes = await readLimited(join(dir, name), sizes.get(join(dir, name)))
      if (typeof bytes === 'string') {
        scan.unreadable.push({ file, error: bytes })
        continue
      }
      const above = idAboveRange(name)
      if (above !== undefined) {
        scan.unreadable.push({ file, error: `its id ${above.length > 20 ? `${above.slice(0, 20)}…` : above} is above ${MAX_ITEM_NUMBER}, the highest id docket issues: rename the file with a smaller id, or without one to get a fresh id` })
        continue
      }
      const entry = readEntry(file, name, stage, bytes)
      for (const [slot, path] of sidecars.get(name) ?? []) {
        const value = await readLimited(path, sizes.get(path))
        if (typeof value === 'string') entry.warnings.push(`slot file ${slot}: ${value}; not imported`)
        else entry.slots.set(slot, decodeContent(value))
      }
      if (entry.slots.has('body')) {
        entry.body = entry.slots.get('body')
        entry.slots.delete('body')
      }
      scan.entries.push(entry)
      onFile?.(++count)
    }
  }
  return scan
}

/** The bytes of a file, or why they cannot be had (too large, unreadable). `size` when a stat already gave it. */
async function readLimited(path: string, size?: number): Promise<Uint8Array | string> {
  try {
    const onDisk = size ?? (await stat(path)).size
    if (onDisk > MAX_CONTENT_BYTES) return `${onDisk} bytes, more than a content slot may hold (${MAX_CONTENT_BYTES / 1024 / 1024} MiB)`
    return new Uint8Array(await readFile(path))
  } catch (err) {
    return `unreadable (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`
  }
}

async function inside(realRoot: string, path: string): Promise<boolean> {
  const real = await realpath(path).catch(() => undefined)
  if (real === undefined) return false
  const rel = relative(realRoot, real)
  return rel === '' || (!rel.startsWith(`..${sep}`) && rel !== '..' && !rel.startsWith(sep))
}

function byIdThenName(a: string, b: string): number {
  const na = Number.parseInt(a, 10)
  const nb = Number.parseInt(b, 10)
  if (Number.isFinite(na) && Number.isFinite(nb) && na !== nb) return na - nb
  return a < b ? -1 : a > b ? 1 : 0
}
