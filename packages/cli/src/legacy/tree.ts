import { lstat, readdir, readFile, realpath, stat } from 'node:fs/promises'
import { join, relative, sep } from 'node:path'
import { decodeContent, DocketError, MAX_CONTENT_BYTES, MAX_ITEM_NUMBER } from '@docket/core'
import { readEntry, type ImportEntry } from './entry.js'
import { idAboveRange, parseFileName, stageFolders } from './layout.js'

/** A content slot travels beside its item: `<id>_<type>_<slug>.md.<slot>`. */
const SIDECAR = /^(.+\.md)\.([a-z][a-z0-9_]{0,63})$/i
/** What editors, merges and downloads leave beside a file: never a content slot. */
const LEFTOVER = /^(orig|bak|backup|old|swp|swo|tmp|temp|rej|save|sav|copy|new|prev|lock|part|crdownload)$/i
/** Markdown files that document a tree rather than being items of it. */
const NOT_ITEMS = new Set(['readme', 'index', 'changelog', 'license', 'contributing'])
/** Where story-kit layouts keep their stage folders, below a project (or the tool's own folder). */
const WORK = 'work'
/** Larger files are not read: no slot may hold them (the store's limit is 16 MiB). */

export interface TreeScan {
  /** The folder whose stage folders were read: the one given, or the `work/` folder found below it. */
  root: string
  entries: ImportEntry[]
  /** Item files that could not be read (reported as failed). */
  unreadable: Array<{ file: string; error: string }>
  /** Files and folders that were not imported, with why (never silently); `items`: markdown files among them that may be items. */
  ignored: Array<{ file: string; reason: string; items?: number }>
}

/**
 * The folder that holds the stage folders: `root` itself, else the one `work/` folder below it
 * that does (`work/`, `.story_kit/work/`, `.storkit/work/`, `.huskies/work/`, …: importing a
 * project or a tool folder finds its pipeline). None, or several, is INVALID_INPUT: an import
 * of one level too high must not import nothing and succeed.
 */
export async function findStageRoot(root: string): Promise<string> {
  const hasStages = async (dir: string) => stageFolders(await readdir(dir).catch(() => [])).length > 0
  if (await hasStages(root)) return root
  const candidates = [join(root, WORK)]
  for (const name of (await readdir(root)).sort()) {
    const dir = join(root, name)
    if (!(await stat(dir).catch(() => undefined))?.isDirectory()) continue
    candidates.push(dir, join(dir, WORK))
  }
  const found: string[] = []
  for (const dir of candidates) if (!found.includes(dir) && (await hasStages(dir))) found.push(dir)
  if (found.length === 1) return found[0]!
  if (found.length > 1) {
    throw new DocketError('INVALID_INPUT', `${root} holds more than one pipeline (${found.map((f) => relative(root, f)).join(', ')}): import each folder on its own.`, { details: { root, found } })
  }
  throw new DocketError(
    'INVALID_INPUT',
    `${root} holds no stage folders (1_backlog or 1_upcoming, 2_current, 3_qa, 4_merge, 5_done, 6_archived, 7_frozen), nor a work/ folder that does: give the folder that holds them (e.g. .story_kit/work), or a .jsonl export.`,
    { details: { root } },
  )
}

/** How many markdown files a folder holds, its subfolders included (bounded: a report, not a census). */
async function countMarkdown(dir: string, depth = 6): Promise<number> {
  if (depth === 0) return 0
  let n = 0
  for (const entry of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    if (entry.isDirectory()) n += await countMarkdown(join(dir, entry.name), depth - 1)
    else if (entry.name.toLowerCase().endsWith('.md')) n++
    if (n >= 100_000) break
  }
  return n
}

/** Why a markdown file is no item (documentation, or neither an id nor front matter), or undefined. */
function notAnItem(name: string, bytes: Uint8Array): string | undefined {
  const base = name.replace(/\.md$/i, '').toLowerCase()
  if (NOT_ITEMS.has(base)) return `documentation of the tree (${name}), not an item`
  // A byte order mark may come first.
  const at = bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf ? 3 : 0
  const startsWithFrontMatter = bytes.byteLength >= at + 3 && bytes[at] === 0x2d && bytes[at + 1] === 0x2d && bytes[at + 2] === 0x2d
  if (parseFileName(name).id === undefined && !startsWithFrontMatter) return 'not an item: no id in its name (<id>_<type>_<slug>.md) and no front matter'
  return undefined
}

/**
 * Reads a legacy tree (or a tree docket exported): the stage folders in order, each file
 * through `readEntry`. Symlinks are followed only when they stay inside the tree.
 */
export async function scanTree(given: string, onFile?: (count: number) => void): Promise<TreeScan> {
  const info = await stat(given).catch(() => undefined)
  if (!info?.isDirectory()) throw new DocketError('INVALID_INPUT', `${given} is not a directory: give the folder that holds 1_backlog, 2_current, … (or a .jsonl export).`, { details: { root: given } })
  const root = await findStageRoot(given)
  const realRoot = await realpath(root)
  const scan: TreeScan = { root, entries: [], unreadable: [], ignored: [] }
  const ignored = new Set<string>()
  const seenReal = new Map<string, string>()
  const ignore = (file: string, reason: string, items?: number) => {
    ignored.add(file)
    scan.ignored.push(items ? { file, reason, items } : { file, reason })
  }
  const folders = stageFolders(await readdir(root))
  const known = new Set(folders.map(([folder]) => folder))
  // A docket export's slot files may have any slot name, even one that reads like a leftover.
  const exported = await stat(join(root, 'docket-export.json')).then((i) => i.isFile(), () => false)
  for (const name of (await readdir(root)).sort()) {
    if (known.has(name) || name === 'docket-export.json') continue
    const path = join(root, name)
    if ((await stat(path).catch(() => undefined))?.isDirectory()) {
      const md = await countMarkdown(path)
      ignore(name, md > 0 ? `not a stage folder (1_backlog or 1_upcoming … 7_frozen); its ${md} .md file(s) were NOT imported` : 'not a stage folder (1_backlog or 1_upcoming … 7_frozen)', md)
    } else if (name.toLowerCase().endsWith('.md') && !NOT_ITEMS.has(name.replace(/\.md$/i, '').toLowerCase())) {
      ignore(name, 'a markdown file beside the stage folders, not in one: NOT imported (move it into its stage folder)', 1)
    } else ignore(name, 'not a stage folder (1_backlog or 1_upcoming … 7_frozen)')
  }
  let count = 0
  for (const [folder, stage] of folders) {
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
        ignore(file, 'a symlink that leaves the tree; not followed', name.toLowerCase().endsWith('.md') ? 1 : 0)
        continue
      }
      const target = await stat(path).catch(() => undefined)
      if (target?.isDirectory()) {
        const md = await countMarkdown(path)
        ignore(file, md > 0 ? `a folder inside a stage folder: its ${md} .md file(s) were NOT imported (move them into the stage folder)` : 'a folder inside a stage folder', md)
        continue
      }
      if (!target?.isFile()) {
        ignore(file, target ? 'not a file' : 'a broken symlink', name.toLowerCase().endsWith('.md') ? 1 : 0)
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
      if (side && markdown.has(side[1]!) && !exported && LEFTOVER.test(side[2]!)) {
        ignore(file, `an editor or merge leftover beside ${side[1]} (.${side[2]}), not a content slot`)
      } else if (side && markdown.has(side[1]!)) {
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
      const why = notAnItem(name, bytes)
      if (why) {
        ignore(file, why)
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
