import { nextUlid } from '../audit/audit.js'
import { isDeletedUid, type ItemRecord, type SlotValue } from '../crdt/layout.js'
import { DocketError } from '../errors.js'
import { isReplicaId, isUid, type ItemId, type ReplicaId, type Uid } from '../ids.js'
import type { StoredRows } from '../storage/scan.js'
import { decodeShadow, type ShadowExtras, type ShadowRow } from '../storage/shadow.js'
import { createdEntry } from '../stage/advance.js'
import type { StageEntry } from '../stage/log.js'
import { resolveStage } from '../stage/resolve.js'
import type { Stage } from '../stage/stages.js'
import type { ItemType } from '../types.js'
import type { DocState } from './state.js'
import { checkDependsOn, checkName, checkStage, checkType, invalid, keysOf, requireKnownKeys, requireObject } from './validate.js'

/** How an orphan is adopted: the best metadata the caller found, and what it expects to find. */
export interface AdoptOrphanOptions {
  /**
   * The uid that discovery read from the orphan's shadow row (`null`: it had none). If the
   * rows changed since, the adoption is refused with CONFLICT instead of adopting something else.
   */
  expectUid?: Uid | null
  /** Overrides for what the shadow row says (or supplies what it lacks). */
  name?: string
  type?: ItemType
  dependsOn?: readonly string[]
  stage?: Stage
  /** Rows of a tombstoned id are adopted only when this is true. */
  allowTombstoned?: boolean
}

export interface AdoptionPlan {
  record: ItemRecord
  entries: StageEntry[]
  content: Map<string, SlotValue>
  shadowUid: Uid | null
  kind: 'tombstoned' | 'missing' | 'displaced'
  warnings: string[]
  /** Priority, labels, parent and external ids from the shadow row (none for rows written before them). */
  extras: ShadowExtras
}

const ADOPT_KEYS = keysOf<AdoptOrphanOptions>()(['expectUid', 'name', 'type', 'dependsOn', 'stage', 'allowTombstoned'])

export function checkAdoptOptions(value: unknown): AdoptOrphanOptions {
  const o = requireKnownKeys(requireObject(value, 'adoptOrphan options'), ADOPT_KEYS, 'maintenance.adoptOrphan()') as AdoptOrphanOptions
  const out: AdoptOrphanOptions = {}
  if (o.expectUid !== undefined) {
    if (o.expectUid !== null && !isUid(o.expectUid)) {
      throw invalid('expectUid must be a ULID or null.')
    }
    out.expectUid = o.expectUid
  }
  if (o.name !== undefined) out.name = checkName(o.name)
  if (o.type !== undefined) out.type = checkType(o.type)
  if (o.dependsOn !== undefined) out.dependsOn = checkDependsOn(o.dependsOn)
  if (o.stage !== undefined) out.stage = checkStage(o.stage)
  if (o.allowTombstoned !== undefined) out.allowTombstoned = o.allowTombstoned === true
  return out
}

/**
 * Decides how the rows at `id` become a new item, or refuses: rows that a live item owns
 * are not an orphan, a uid that is live elsewhere was already recovered, rows that changed
 * since discovery are not what the caller meant.
 */
export function planAdoption(state: DocState, id: ItemId, rows: StoredRows, opts: AdoptOrphanOptions, replicaId: ReplicaId): AdoptionPlan {
  if (!rows.shadow && rows.slots.length === 0) {
    throw new DocketError('NOT_FOUND', `Id ${id} has no rows in the shadow content store: there is nothing to recover.`, { details: { id } })
  }
  const parsed = rows.shadow ? decodeShadow(rows.shadow.text) : undefined
  const row: ShadowRow | undefined = parsed?.ok ? parsed.row : undefined
  const shadowUid = row?.uid ?? null
  if (opts.expectUid !== undefined && opts.expectUid !== shadowUid) {
    throw new DocketError('CONFLICT', `The rows at id ${id} changed since discovery (uid ${shadowUid ?? 'none'}, expected ${opts.expectUid ?? 'none'}): run discovery again.`, {
      details: { id, uid: shadowUid, expected: opts.expectUid },
    })
  }
  const live = state.index.get(id)
  const liveHere = live !== undefined && state.claims.uidAt(id) === live.uid
  if (liveHere && (shadowUid === null || shadowUid === live.uid)) {
    throw new DocketError('ALREADY_EXISTS', `Id ${id} is a live item, not an orphan: nothing to recover.`, { details: { id } })
  }
  if (shadowUid !== null) {
    const elsewhere = state.claims.shownId(shadowUid)
    if (elsewhere !== undefined && elsewhere !== id && !isDeletedUid(state.parts, shadowUid)) {
      throw new DocketError('ALREADY_EXISTS', `The orphan at id ${id} is item ${shadowUid}, which is already live as #${elsewhere}.`, {
        details: { id, uid: shadowUid, liveAs: elsewhere },
      })
    }
  }
  const tombstoned = state.parts.tombstones.has(id) || (shadowUid !== null && isDeletedUid(state.parts, shadowUid))
  if (tombstoned && opts.allowTombstoned !== true) {
    throw new DocketError('TOMBSTONED', `Id ${id} was deleted; its leftover rows are recovered only when asked explicitly (name the id, or include tombstoned orphans).`, {
      details: { id },
    })
  }
  const warnings: string[] = []
  if (parsed && !parsed.ok) warnings.push(`shadow row unreadable (${parsed.error}); using the content and defaults`)
  const now = new Date().toISOString()
  const name = pick(() => checkName(opts.name ?? row?.name ?? ''), `Recovered item ${id}`, warnings, 'name')
  const deps = (opts.dependsOn ?? row?.dependsOn ?? []).filter((dep) => {
    if (dep !== id) return true
    warnings.push(`dropped a dependency on its own old id ${id}`)
    return false
  }) as ItemId[]
  // A uid that was deleted stays deleted: an orphan of it is adopted as a new item (the alias
  // and the audit event keep the old uid), or it would be hidden the moment it is created.
  const reuseUid = shadowUid !== null && !isDeletedUid(state.parts, shadowUid)
  if (shadowUid !== null && !reuseUid) warnings.push(`its uid ${shadowUid} was deleted; adopted under a new uid`)
  const record: ItemRecord = {
    uid: reuseUid ? shadowUid : (nextUlid() as Uid),
    name,
    type: opts.type ?? row?.type ?? 'story',
    dependsOn: deps,
    blocked: row?.blocked ?? null,
    frozen: row?.frozen ?? false,
    agent: row?.agent ?? null,
    retries: row?.retries ?? 0,
    createdAt: row?.createdAt || now,
    updatedAt: now,
    // The adopting replica creates the new entry, so it is the one that re-anchors it if a
    // concurrent create ever displaces it.
    createdBy: replicaId,
  }
  let entries: StageEntry[] = row && opts.stage === undefined && resolveStage(row.stages) ? row.stages : []
  if (row && row.stages.length > 0 && entries.length === 0 && opts.stage === undefined) {
    warnings.push(`its stage log (${row.stages.length} entries) does not resolve to a stage; it starts a new log in ${row.stage}`)
  }
  if (entries.length === 0) {
    entries = [createdEntry(opts.stage ?? row?.stage ?? 'backlog', replicaId, now, nextUlid())]
  }
  const content = new Map<string, SlotValue>()
  for (const { slot, content: value } of rows.slots) content.set(slot, value)
  const kind = tombstoned ? 'tombstoned' : liveHere ? 'displaced' : 'missing'
  if (row && !isReplicaId(row.createdBy)) warnings.push('the shadow row named no valid creator')
  return { record, entries, content, shadowUid, kind, warnings, extras: row?.extras ?? {} }
}

function pick<T>(make: () => T, fallback: T, warnings: string[], field: string): T {
  try {
    return make()
  } catch {
    warnings.push(`${field} unusable; using a default`)
    return fallback
  }
}
