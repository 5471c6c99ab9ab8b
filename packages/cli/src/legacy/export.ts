import { mkdir, readdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { decodeContent, DocketError, toHandle, type Item, type StageHistoryEntry, type Store, type StoreHandle } from '@docket/core'
import { jsonBytes } from '../output.js'
import { exportHeader } from './entry.js'
import { fileNameFor, folderFor } from './layout.js'

const EXPORT_VERSION = 1

export interface ExportSummary {
  items: number
  tombstones: number
  files: number
  /** Content slots not exported: their bytes never reached this replica (CONTENT_UNAVAILABLE). */
  unavailable: Array<{ id: string; slot: string }>
}

interface Exported {
  item: Item
  history: StageHistoryEntry[]
  content: Record<string, string | Uint8Array>
  /** Slots whose bytes this replica does not have and could not fetch (CONTENT_UNAVAILABLE): named, not exported. */
  unavailable?: string[]
}

async function* exportedItems(store: StoreHandle): AsyncGenerator<Exported> {
  for (const item of await store.listItems()) {
    const content: Record<string, string | Uint8Array> = {}
    const unavailable: string[] = []
    for (const slot of await store.contentSlots(item.id)) {
      try {
        content[slot] = decodeContent((await store.readContentBytes(item.id, slot))!)
      } catch (err) {
        // One slot whose bytes never reached this replica must not stop the backup of the rest.
        if (!(err instanceof DocketError) || err.code !== 'CONTENT_UNAVAILABLE') throw err
        unavailable.push(slot)
      }
    }
    yield { item, history: await store.stageHistory(item.id), content, ...(unavailable.length > 0 ? { unavailable } : {}) }
  }
}

async function header(store: StoreHandle): Promise<Record<string, unknown>> {
  const tombstones = []
  for (const id of await store.tombstonedIds()) tombstones.push({ ...(await store.tombstone(id))!, id })
  return {
    docket: 'export',
    version: EXPORT_VERSION,
    exportedAt: new Date().toISOString(),
    replicaId: store.replicaId,
    highestId: (await store.stats()).highestId,
    tombstones,
  }
}

/** JSONL: a header line (tombstones, highest id), then one line per item with its history and content. */
export async function exportJsonl(target: Store | StoreHandle, write: (line: string) => void | Promise<void>): Promise<ExportSummary> {
  const store = toHandle(target)
  const head = await header(store)
  await write(`${JSON.stringify(head)}\n`)
  let items = 0
  const unavailable: ExportSummary['unavailable'] = []
  for await (const exported of exportedItems(store)) {
    await write(`${JSON.stringify(exported, jsonBytes)}\n`)
    for (const slot of exported.unavailable ?? []) unavailable.push({ id: exported.item.id, slot })
    items++
  }
  return { items, tombstones: (head.tombstones as unknown[]).length, files: 1, unavailable }
}

/**
 * The legacy folder layout, importable again: each item is a markdown file in its stage's
 * folder (frozen ones in 7_frozen) whose first front matter block, marked `docket: 1`,
 * carries the item's exact fields, followed by the body verbatim; other slots (and a body
 * that is not text) are files beside it named `<file>.md.<slot>`. `docket-export.json` keeps the
 * tombstones, so deleted ids stay deleted in the store that imports the tree.
 */
export async function exportFolders(target: Store | StoreHandle, out: string): Promise<ExportSummary> {
  const store = toHandle(target)
  await mkdir(out, { recursive: true })
  if ((await readdir(out)).length > 0) {
    throw new DocketError('INVALID_INPUT', `${out} is not empty: export into a new or empty folder (nothing was written).`, { details: { out } })
  }
  const head = await header(store)
  await writeFile(join(out, 'docket-export.json'), `${JSON.stringify(head, null, 2)}\n`)
  let items = 0
  let files = 1
  const made = new Set<string>()
  const unavailable: ExportSummary['unavailable'] = []
  for await (const { item, content, unavailable: missing } of exportedItems(store)) {
    for (const slot of missing ?? []) unavailable.push({ id: item.id, slot })
    const folder = item.frozen ? '7_frozen' : folderFor(item.stage)
    if (!made.has(folder)) {
      await mkdir(join(out, folder), { recursive: true })
      made.add(folder)
    }
    const name = fileNameFor(item.id, item.type, item.name)
    // A body that is not plain text (bytes, or text with NUL) travels as a slot file.
    const body = typeof content.body === 'string' && !content.body.includes('\u0000') ? content.body : undefined
    const fields: Record<string, unknown> = { id: item.id, name: item.name, type: item.type, stage: item.stage, depends_on: item.dependsOn }
    if (item.agent !== undefined) fields.agent = item.agent
    if (item.retries !== 0) fields.retries = item.retries
    if (item.blocked) fields.blocked = item.blocked.reason
    if (item.frozen) fields.frozen = true
    if (item.priority !== undefined) fields.priority = item.priority
    if (item.labels) fields.labels = item.labels
    if (item.parent !== undefined) fields.parent = item.parent
    if (item.externalIds) fields.external_ids = item.externalIds
    if (typeof body !== 'string') fields.has_body = false
    await writeFile(join(out, folder, name), typeof body === 'string' ? exportHeader(fields) + body : exportHeader(fields))
    files++
    for (const [slot, value] of Object.entries(content)) {
      if (slot === 'body' && body !== undefined) continue
      await writeFile(join(out, folder, `${name}.${slot}`), value)
      files++
    }
    items++
  }
  return { items, tombstones: (head.tombstones as unknown[]).length, files, unavailable }
}
