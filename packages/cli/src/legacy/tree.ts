import { lstat, readdir, readFile, realpath, stat } from 'node:fs/promises'
import { join, relative, sep } from 'node:path'
import { DocketError } from '@docket/core'
import { asText, readEntry, type ImportEntry } from './entry.js'
import { STAGE_FOLDERS } from './layout.js'

const SIDECAR = /^(.+)\.([a-z][a-z0-9_]{0,63})$/

export interface TreeScan {
  entries: ImportEntry[]
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
  const scan: TreeScan = { entries: [], ignored: [] }
  const known = new Set(STAGE_FOLDERS.map(([folder]) => folder))
  for (const name of (await readdir(root)).sort()) {
    if (!known.has(name) && name !== 'docket-export.json') scan.ignored.push({ file: name, reason: 'not a stage folder (1_backlog … 7_frozen)' })
  }
  let count = 0
  for (const [folder, stage] of STAGE_FOLDERS) {
    const dir = join(root, folder)
    const dirInfo = await lstat(dir).catch(() => undefined)
    if (!dirInfo) continue
    if (!(await inside(realRoot, dir)) || !(await stat(dir)).isDirectory()) {
      scan.ignored.push({ file: folder, reason: 'a symlink that leaves the tree, or not a folder; not followed' })
      continue
    }
    const names = (await readdir(dir)).sort(byIdThenName)
    const markdown = new Set(names.filter((n) => n.toLowerCase().endsWith('.md')))
    const sidecars = new Map<string, Array<[string, string]>>()
    for (const name of names) {
      const file = `${folder}/${name}`
      const path = join(dir, name)
      const entryInfo = await lstat(path)
      if (entryInfo.isSymbolicLink() && !(await inside(realRoot, path))) {
        scan.ignored.push({ file, reason: 'a symlink that leaves the tree; not followed' })
        continue
      }
      const target = await stat(path).catch(() => undefined)
      if (!target?.isFile()) {
        scan.ignored.push({ file, reason: target ? 'not a file' : 'a broken symlink' })
        continue
      }
      if (markdown.has(name)) continue
      const side = SIDECAR.exec(name)
      if (side && markdown.has(`${side[1]}.md`)) {
        const list = sidecars.get(`${side[1]}.md`) ?? []
        list.push([side[2]!, path])
        sidecars.set(`${side[1]}.md`, list)
      } else {
        scan.ignored.push({ file, reason: 'not a .md file (nor a slot file next to one)' })
      }
    }
    for (const name of names) {
      if (!markdown.has(name) || scan.ignored.some((i) => i.file === `${folder}/${name}`)) continue
      const bytes = new Uint8Array(await readFile(join(dir, name)))
      const entry = readEntry(`${folder}/${name}`, name, stage, bytes)
      for (const [slot, path] of sidecars.get(name) ?? []) entry.slots.set(slot, asText(new Uint8Array(await readFile(path))))
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
