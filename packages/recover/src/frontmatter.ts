import { isItemId, ITEM_TYPES, MAX_NAME_LENGTH, type ItemType } from '@docket/core'
import { parseDocument } from 'yaml'

/** Front matter larger than this is not parsed: a body is markdown, not a data file. */
export const MAX_FRONT_MATTER_BYTES = 64 * 1024

export interface FrontMatter {
  /** Whether the body starts with a front matter block that closes. */
  present: boolean
  /** The parsed mapping (empty if absent or unusable): importers read more fields from it. */
  data: Record<string, unknown>
  name?: string
  type?: ItemType
  /** Ids as written (unknown ids are kept; the caller decides what they mean). */
  dependsOn: string[]
  /** Everything that was wrong, in words; empty when the front matter was clean. */
  warnings: string[]
  /** The markdown after the front matter. */
  content: string
}

const utf8 = new TextDecoder('utf-8', { fatal: true })
const OPEN = /^---[ \t]*\r?\n/
const CLOSE = /^(?:---|\.\.\.)[ \t]*$/m

/**
 * Reads the YAML front matter of a body, never throwing: missing, unterminated, malformed,
 * non-YAML, binary or huge front matter yields safe defaults and a warning each.
 */
export function parseFrontMatter(body: Uint8Array | string): FrontMatter {
  const warnings: string[] = []
  const result: FrontMatter = { present: false, data: {}, dependsOn: [], warnings, content: '' }
  let text: string
  if (typeof body === 'string') {
    text = body
  } else {
    try {
      text = utf8.decode(body)
    } catch {
      warnings.push('body is not UTF-8 text; no front matter read')
      return result
    }
  }
  result.content = text
  if (text.includes('\u0000')) {
    warnings.push('body contains NUL bytes (binary?); no front matter read')
    return result
  }
  const open = OPEN.exec(text)
  if (!open) {
    if (text.length > 0) warnings.push('no front matter (the body does not start with ---)')
    else warnings.push('empty body')
    return result
  }
  const rest = text.slice(open[0].length)
  const close = CLOSE.exec(rest)
  if (!close) {
    warnings.push('front matter never closes (no --- line after the opening one)')
    return result
  }
  const yamlText = rest.slice(0, close.index)
  result.content = rest.slice(close.index + close[0].length).replace(/^\r?\n/, '')
  if (Buffer.byteLength(yamlText, 'utf8') > MAX_FRONT_MATTER_BYTES) {
    warnings.push(`front matter larger than ${MAX_FRONT_MATTER_BYTES / 1024} KiB; not parsed`)
    return result
  }
  result.present = true
  let data: unknown
  try {
    const doc = parseDocument(yamlText, { prettyErrors: false, uniqueKeys: false })
    if (doc.errors.length > 0) {
      warnings.push(`front matter is not valid YAML: ${doc.errors[0]!.message.split('\n')[0]}`)
      return result
    }
    data = doc.toJS({ maxAliasCount: 50 })
  } catch (err) {
    warnings.push(`front matter could not be read: ${(err as Error).message.split('\n')[0]}`)
    return result
  }
  if (data === null || data === undefined) return result
  if (typeof data !== 'object' || Array.isArray(data)) {
    warnings.push('front matter is not a mapping of fields')
    return result
  }
  result.data = data as Record<string, unknown>
  readName(result)
  readType(result)
  readDependsOn(result)
  return result
}

function readName(fm: FrontMatter): void {
  const raw = fm.data.name ?? fm.data.title
  if (raw === undefined) {
    fm.warnings.push('front matter has no name')
    return
  }
  const name = typeof raw === 'string' || typeof raw === 'number' ? String(raw).replace(/[\u0000-\u001f\u007f]+/g, ' ').trim() : ''
  if (name.length === 0) fm.warnings.push('front matter name is empty or not text')
  else if (name.length > MAX_NAME_LENGTH) {
    fm.name = name.slice(0, MAX_NAME_LENGTH)
    fm.warnings.push(`front matter name longer than ${MAX_NAME_LENGTH} characters; cut`)
  } else fm.name = name
}

function readType(fm: FrontMatter): void {
  const raw = fm.data.type
  if (raw === undefined) return
  if (typeof raw === 'string' && ITEM_TYPES.includes(raw.trim().toLowerCase() as ItemType)) fm.type = raw.trim().toLowerCase() as ItemType
  else fm.warnings.push(`front matter type ${JSON.stringify(raw)} is not one of ${ITEM_TYPES.join(', ')}`)
}

function readDependsOn(fm: FrontMatter): void {
  const raw = fm.data.depends_on ?? fm.data.dependsOn
  if (raw === undefined || raw === null) return
  const entries = Array.isArray(raw) ? raw : typeof raw === 'string' ? raw.split(',') : typeof raw === 'number' ? [raw] : null
  if (entries === null) {
    fm.warnings.push('front matter depends_on is neither a list nor a comma-separated string')
    return
  }
  const seen = new Set<string>()
  for (const entry of entries) {
    const text = typeof entry === 'number' ? String(entry) : typeof entry === 'string' ? entry.trim().replace(/^#/, '') : ''
    if (!isItemId(text)) {
      fm.warnings.push(`depends_on entry ${JSON.stringify(typeof entry === 'string' ? entry.trim() : entry)} is not an item id; dropped`)
      continue
    }
    if (!seen.has(text)) {
      seen.add(text)
      fm.dependsOn.push(text)
    }
  }
}
