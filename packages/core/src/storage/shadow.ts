import { isItemId, isReplicaId, isUid, type ItemId } from '../ids.js'
import type { ItemRecord } from '../crdt/layout.js'
import { isStageEntry } from '../stage/log.js'
import type { StageEntry } from '../stage/log.js'
import { isStage, type Stage } from '../stage/stages.js'
import { ITEM_TYPES, type Blocked, type ItemType } from '../types.js'
import type { ReplicaId, Uid } from '../ids.js'

export const SHADOW_VERSION = 1

/**
 * A shadow row: an item's metadata as JSON, written in the same LevelDB batch as the CRDT
 * update that produced it. It lets tools inspect a store without decoding the CRDT, and it
 * is the evidence from which a lost or displaced item is re-created.
 */
export interface ShadowRow {
  v: number
  id: ItemId
  uid: Uid
  name: string
  type: ItemType
  stage: Stage
  dependsOn: ItemId[]
  blocked: Blocked | null
  frozen: boolean
  agent: string | null
  retries: number
  createdAt: string
  updatedAt: string
  createdBy: ReplicaId
  /** The full stage log, so that a re-created item keeps its history. */
  stages: StageEntry[]
  /** Names of the content slots the item has. */
  slots: string[]
  /** Priority, labels, parent and external ids, when the item has any (absent in rows written before them). */
  extras?: ShadowExtras
}

export interface ShadowExtras {
  priority?: number
  labels?: string[]
  parent?: ItemId
  externalIds?: string[]
}

/** The extras of a row, read without trusting them (only what has the shape docket writes). */
function readExtrasOfRow(value: unknown): ShadowExtras | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined
  const e = value as Record<string, unknown>
  const out: ShadowExtras = {}
  if (typeof e.priority === 'number' && Number.isInteger(e.priority) && e.priority >= 0 && e.priority <= 4) out.priority = e.priority
  const strings = (v: unknown) => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string' && x.length > 0 && x.length <= 200) : [])
  // In the order the document's reader gives them (crdt/layout.ts readExtras): verify compares rows as JSON.
  if (isItemId(e.parent)) out.parent = e.parent
  if (strings(e.externalIds).length > 0) out.externalIds = strings(e.externalIds)
  if (strings(e.labels).length > 0) out.labels = strings(e.labels)
  return Object.keys(out).length > 0 ? out : undefined
}

export type ShadowParse = { ok: true; row: ShadowRow } | { ok: false; error: string }

/**
 * The item record a shadow row holds: the one way back from a row to an item (re-creating an
 * item from its rows). The way there is `shadowRow` in store/capture.ts.
 */
export function recordOfShadow(row: ShadowRow): ItemRecord {
  return {
    uid: row.uid,
    name: row.name,
    type: row.type,
    dependsOn: row.dependsOn,
    blocked: row.blocked,
    frozen: row.frozen,
    agent: row.agent,
    retries: row.retries,
    createdAt: row.createdAt,
    updatedAt: row.updatedAt,
    createdBy: row.createdBy,
  }
}

export function encodeShadow(row: ShadowRow): string {
  return JSON.stringify(row)
}

/** Parses a shadow row without trusting it: a row can be corrupt or written by an older scheme. */
export function decodeShadow(text: string): ShadowParse {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (err) {
    return { ok: false, error: `not JSON (${(err as Error).message})` }
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return { ok: false, error: 'not a JSON object' }
  const r = value as Partial<ShadowRow>
  if (!isItemId(r.id)) return { ok: false, error: 'missing or invalid "id"' }
  if (!isUid(r.uid)) return { ok: false, error: 'missing or invalid "uid"' }
  if (typeof r.name !== 'string') return { ok: false, error: 'missing "name"' }
  const row: ShadowRow = {
    v: typeof r.v === 'number' ? r.v : 0,
    id: r.id,
    uid: r.uid,
    name: r.name,
    type: ITEM_TYPES.includes(r.type as ItemType) ? (r.type as ItemType) : 'story',
    stage: isStage(r.stage) ? r.stage : 'backlog',
    dependsOn: Array.isArray(r.dependsOn) ? r.dependsOn.filter(isItemId) : [],
    blocked: r.blocked && typeof r.blocked === 'object' && typeof r.blocked.reason === 'string' ? { reason: r.blocked.reason } : null,
    frozen: r.frozen === true,
    agent: typeof r.agent === 'string' ? r.agent : null,
    retries: typeof r.retries === 'number' && Number.isSafeInteger(r.retries) && r.retries >= 0 ? r.retries : 0,
    createdAt: typeof r.createdAt === 'string' ? r.createdAt : '',
    updatedAt: typeof r.updatedAt === 'string' ? r.updatedAt : '',
    createdBy: isReplicaId(r.createdBy) ? r.createdBy : ('unknown' as ReplicaId),
    stages: Array.isArray(r.stages) ? r.stages.filter(isStageEntry) : [],
    slots: Array.isArray(r.slots) ? r.slots.filter((s): s is string => typeof s === 'string') : [],
  }
  const extras = readExtrasOfRow(r.extras)
  if (extras) row.extras = extras
  return { ok: true, row }
}
