import { isItemId, ITEM_TYPES, STAGES, type ItemId, type ItemType, type Stage } from '@docket/core'

/**
 * The legacy file pipeline: one folder per stage, one markdown file per item named
 * `<id>_<type>_<slug>.md`. `7_frozen` holds frozen items of any stage.
 */
export const STAGE_FOLDERS: ReadonlyArray<readonly [string, Stage | null]> = [
  ['1_backlog', 'backlog'],
  ['2_current', 'coding'],
  ['3_qa', 'qa'],
  ['4_merge', 'merge'],
  ['5_done', 'done'],
  ['6_archived', 'archived'],
  ['7_frozen', null],
]

/**
 * What a stage folder's name says, for every layout story-kit has used: `<n>_<name>`, where the
 * name is what counts (older trees have `1_upcoming` and `5_archived`; later ones `1_backlog`,
 * `5_done`, `6_archived`, `7_frozen`). Undefined for a folder that is no stage folder; null
 * for the frozen folder (the stage then comes from the file).
 */
const FOLDER_STAGES: Readonly<Record<string, Stage | null>> = {
  upcoming: 'backlog',
  backlog: 'backlog',
  current: 'coding',
  qa: 'qa',
  merge: 'merge',
  done: 'done',
  archived: 'archived',
  frozen: null,
}

export function stageOfFolder(name: string): Stage | null | undefined {
  const m = /^([0-9]{1,2})_([a-z]+)$/.exec(name)
  if (!m) return undefined
  const stage = FOLDER_STAGES[m[2]!]
  return stage === undefined ? undefined : stage
}

/** Stage folders in the order they are read: by their number, then name. */
export function stageFolders(names: readonly string[]): Array<[string, Stage | null]> {
  return names
    .flatMap((name): Array<[string, Stage | null]> => {
      const stage = stageOfFolder(name)
      return stage === undefined ? [] : [[name, stage]]
    })
    .sort(([a], [b]) => Number.parseInt(a, 10) - Number.parseInt(b, 10) || (a < b ? -1 : 1))
}

/** The folder an item is exported to; stages without a folder of their own go to the nearest one. */
export function folderFor(stage: Stage): string {
  switch (stage) {
    case 'backlog':
      return '1_backlog'
    case 'coding':
      return '2_current'
    case 'qa':
      return '3_qa'
    case 'merge':
    case 'merge_failure':
    case 'merge_failure_final':
      return '4_merge'
    case 'done':
      return '5_done'
    default:
      return '6_archived'
  }
}

export interface ParsedFileName {
  id?: ItemId
  type?: ItemType
  slug: string
  warnings: string[]
}

/** Reads `<id>_<type>_<slug>.md`; whatever does not fit is a warning, not a failure. */
export function parseFileName(name: string): ParsedFileName {
  const warnings: string[] = []
  const base = name.replace(/\.md$/i, '')
  const [idPart, typePart, ...rest] = base.split('_')
  const out: ParsedFileName = { slug: rest.join('_'), warnings }
  if (idPart !== undefined && isItemId(idPart)) out.id = idPart
  else if (idPart !== undefined && /^0+[1-9][0-9]*$/.test(idPart) && isItemId(idPart.replace(/^0+/, ''))) {
    out.id = idPart.replace(/^0+/, '') as ItemId
    warnings.push(`file name ${JSON.stringify(name)} writes its id with leading zeros; read as ${out.id}`)
  } else warnings.push(`file name ${JSON.stringify(name)} does not start with an item id`)
  if (typePart !== undefined && ITEM_TYPES.includes(typePart as ItemType)) out.type = typePart as ItemType
  else {
    warnings.push(`file name ${JSON.stringify(name)} has no known item type after the id`)
    if (typePart !== undefined) out.slug = [typePart, ...rest].join('_')
  }
  return out
}

/**
 * The number a file name starts with when it is above the highest id docket issues: such a file
 * is refused (an id that high would exhaust the id space for every replica), not renumbered.
 */
export function idAboveRange(name: string): string | undefined {
  const idPart = name.split('_')[0] ?? ''
  const digits = idPart.replace(/^0+/, '')
  return /^[0-9]+$/.test(idPart) && digits !== '' && !isItemId(digits) ? idPart : undefined
}

export function slugify(name: string): string {
  const slug = name
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 60)
    .replace(/-+$/, '')
  return slug.length > 0 ? slug : 'item'
}

export function fileNameFor(id: ItemId, type: ItemType, name: string): string {
  return `${id}_${type}_${slugify(name)}.md`
}

/** A readable name from a slug, for files whose front matter has none. */
export function nameFromSlug(slug: string, fallback: string): string {
  const words = slug.replace(/[-_]+/g, ' ').trim()
  return words.length > 0 ? words[0]!.toUpperCase() + words.slice(1) : fallback
}

/** A stage written in front matter: a stage name, or a legacy folder name, in any case. */
export function stageFromText(text: unknown): Stage | undefined {
  if (typeof text !== 'string') return undefined
  const word = text.trim().toLowerCase().replace(/^[0-9]+_/, '')
  if (word === 'current') return 'coding'
  if (word === 'frozen') return undefined
  return (STAGES as readonly string[]).includes(word) ? (word as Stage) : undefined
}
