import { decodeContent, isExternalId, isItemId, isLabelName, isStage, ITEM_TYPES, MAX_AGENT_LENGTH, MAX_REASON_LENGTH, type ItemId, type ItemType, type Stage } from '@docket/core'
import { parseFrontMatter } from '@docket/recover'
import { stringify } from 'yaml'
import { nameFromSlug, parseFileName, stageFromText } from './layout.js'

/** One file of a tree to import, turned into what createItem needs (and what was wrong with it). */
export interface ImportEntry {
  file: string
  id?: ItemId
  name: string
  type: ItemType
  stage: Stage
  frozen: boolean
  dependsOn: string[]
  agent?: string
  retries?: number
  blocked?: { reason: string } | null
  priority?: number
  labels?: string[]
  /** The parent as the source names it: an item id (or, from another tracker, its id there). */
  parent?: string
  externalIds?: string[]
  createdAt?: string
  updatedAt?: string
  /** The id the file named, when another file of the source took it: the item gets a fresh id and keeps this one as an alias. */
  formerId?: ItemId
  /** Which file kept the id this one named (for the report). */
  renumberedBecause?: string
  /** The body slot; undefined when an exported item had none. */
  body: string | Uint8Array | undefined
  slots: Map<string, string | Uint8Array>
  warnings: string[]
}

const EXPORT_MARKER = 'docket'

/**
 * Reads one file. A file docket exported starts with a front matter block marked
 * `docket: 1` that carries the item's fields exactly, followed by the body verbatim; any other
 * file is a legacy file whose own front matter gives the fields and which is the body whole.
 */
export function readEntry(file: string, fileName: string, folderStage: Stage | null, bytes: Uint8Array): ImportEntry {
  const named = parseFileName(fileName)
  const body = decodeContent(bytes) // once: the front matter is read from the same text
  const fm = parseFrontMatter(body)
  if (fm.present && fm.data[EXPORT_MARKER] === 1) return exportedEntry(file, named, folderStage, fm.data, fm.content)
  const warnings = [...named.warnings]
  if (bytes.byteLength === 0) warnings.push('empty file')
  warnings.push(...fm.warnings.filter((w) => !/^(no front matter|empty body)/.test(w) || bytes.byteLength > 0))
  const data = fm.data
  const entry: ImportEntry = {
    file,
    name: fm.name ?? nameFromSlug(named.slug, `Imported ${fileName}`),
    type: named.type ?? fm.type ?? 'story',
    stage: folderStage ?? stageFromText(data.stage) ?? 'backlog',
    frozen: folderStage === null || data.frozen === true,
    dependsOn: fm.dependsOn,
    body,
    slots: new Map(),
    warnings,
  }
  if (named.id) entry.id = named.id
  if (folderStage === null && data.stage !== undefined && stageFromText(data.stage) === undefined) {
    warnings.push(`stage ${JSON.stringify(data.stage)} in the front matter is not a stage; imported as backlog (frozen)`)
  }
  if (named.type && fm.type && named.type !== fm.type) warnings.push(`type ${fm.type} in the front matter differs from ${named.type} in the file name; the file name wins`)
  readOptionalFields(entry, data)
  return entry
}

function exportedEntry(file: string, named: ReturnType<typeof parseFileName>, folderStage: Stage | null, data: Record<string, unknown>, content: string): ImportEntry {
  const warnings: string[] = []
  const id = typeof data.id === 'string' || typeof data.id === 'number' ? String(data.id) : named.id
  const entry: ImportEntry = {
    file,
    name: typeof data.name === 'string' ? data.name : nameFromSlug(named.slug, `Imported ${file}`),
    type: ITEM_TYPES.includes(data.type as ItemType) ? (data.type as ItemType) : (named.type ?? 'story'),
    stage: isStage(data.stage) ? data.stage : (stageFromText(data.stage) ?? folderStage ?? 'backlog'),
    frozen: data.frozen === true,
    dependsOn: Array.isArray(data.depends_on) ? data.depends_on.map(String) : [],
    body: data.has_body === false ? undefined : content,
    slots: new Map(),
    warnings,
  }
  if (isItemId(id)) entry.id = id
  else if (id !== undefined) warnings.push(`id ${JSON.stringify(id.slice(0, 40))} is not an item id; a new id is assigned`)
  readOptionalFields(entry, data)
  return entry
}

function readOptionalFields(entry: ImportEntry, data: Record<string, unknown>): void {
  // The same limits as the store's: a field the store would refuse becomes a warning, so the
  // item is still imported (and a dry run predicts what a real run does).
  if (typeof data.agent === 'string' && data.agent.trim().length > 0 && data.agent.length <= MAX_AGENT_LENGTH && !/[\u0000-\u001f\u007f]/.test(data.agent)) entry.agent = data.agent.trim()
  else if (data.agent !== undefined && data.agent !== null) entry.warnings.push(`agent ${JSON.stringify(String(data.agent).slice(0, 40))} is not a single line of at most ${MAX_AGENT_LENGTH} characters; ignored`)
  if (data.retries !== undefined) {
    if (typeof data.retries === 'number' && Number.isSafeInteger(data.retries) && data.retries >= 0) entry.retries = data.retries
    else entry.warnings.push(`retries ${JSON.stringify(data.retries)} is not a whole number ≥ 0; using 0`)
  }
  const blocked = data.blocked
  if (typeof blocked === 'string' && blocked.trim().length > 0) entry.blocked = { reason: cut(entry, blocked.trim()) }
  else if (blocked === true) entry.blocked = { reason: 'blocked (imported)' }
  else if (typeof blocked === 'object' && blocked !== null && typeof (blocked as { reason?: unknown }).reason === 'string') {
    entry.blocked = { reason: cut(entry, (blocked as { reason: string }).reason) }
  } else if (blocked !== undefined && blocked !== false && blocked !== null) entry.warnings.push('blocked is neither a reason nor true/false; ignored')
  if (data.frozen === true) entry.frozen = true
  if (data.priority !== undefined) {
    if (typeof data.priority === 'number' && Number.isInteger(data.priority) && data.priority >= 0 && data.priority <= 4) entry.priority = data.priority
    else entry.warnings.push(`priority ${JSON.stringify(data.priority)} is not a whole number from 0 to 4; ignored`)
  }
  const labels = data.labels
  if (Array.isArray(labels)) {
    const good = labels.filter(isLabelName)
    if (good.length < labels.length) entry.warnings.push(`${labels.length - good.length} label(s) that are no label names (1 to 64 characters, no commas) ignored`)
    if (good.length > 0) entry.labels = [...new Set(good)].slice(0, 50)
  } else if (labels !== undefined && labels !== null) entry.warnings.push('labels is not a list; ignored')
  if (typeof data.parent === 'string' || typeof data.parent === 'number') entry.parent = String(data.parent)
  const external = data.external_ids
  if (Array.isArray(external)) {
    const ids = external.filter(isExternalId)
    if (ids.length > 0) entry.externalIds = ids.slice(0, 20)
  }
}

function cut(entry: ImportEntry, reason: string): string {
  if (reason.length <= MAX_REASON_LENGTH) return reason
  entry.warnings.push(`blocked reason longer than ${MAX_REASON_LENGTH} characters; cut`)
  // Never between the halves of a surrogate pair: a lone half cannot be stored.
  const end = /[\uD800-\uDBFF]/.test(reason[MAX_REASON_LENGTH - 1]!) ? MAX_REASON_LENGTH - 1 : MAX_REASON_LENGTH
  return reason.slice(0, end)
}

/** The front matter block docket writes in front of an exported body. */
export function exportHeader(fields: Record<string, unknown>): string {
  return `---\n${stringify({ [EXPORT_MARKER]: 1, ...fields }, { lineWidth: 0 })}---\n`
}
