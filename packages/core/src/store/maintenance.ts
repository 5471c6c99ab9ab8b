import { auditEvent, nextUlid } from '../audit/audit.js'
import { claimKey } from '../crdt/claims.js'
import { buildItemMap, isDeletedUid, readStageEntries, stagesOf, writeExtras } from '../crdt/layout.js'
import { isContentRef } from '../crdt/content.js'
import { DocketError } from '../errors.js'
import { idToNumber, isReplicaId, isUid, parseItemId, type ItemId, type ReplicaId, type Uid } from '../ids.js'
import { contentKey, idKey, parseSlot } from '../storage/keys.js'
import { parseShadowRow, readStoredRows, scanStoredRows, type MalformedKey, type StoredRows } from '../storage/scan.js'
import type { ShadowRow } from '../storage/shadow.js'
import type { StorageDamage } from '../storage/health.js'
import type { Alias, AuditEvent, Item, StageEntry, Tombstone } from '../types.js'
import { checkAdoptOptions, planAdoption, type AdoptOrphanOptions } from './adopt.js'
import { slotValueOfRow } from './evidence.js'
import type { Engine } from './engine.js'
import { itemAt } from './items.js'
import { recordOf, type CorruptRow, type DocState, type Intent } from './state.js'
import { invalid, keysOf, requireKnownKeys, requireObject, requireWellFormed } from './validate.js'
import { verifyStore, type ConsistencyReport } from './verify.js'

export interface AdoptResult {
  oldId: ItemId
  newId: ItemId
  uid: Uid
  kind: 'tombstoned' | 'missing' | 'displaced'
  /** What had to be defaulted or dropped. */
  warnings: string[]
  item: Item
}

const SCAN_KEYS = keysOf<NonNullable<Parameters<Maintenance['scanStoredRows']>[0]>>()(['ids', 'onMalformedKey'])
/** What importTombstone takes, and the `id` an export writes with each tombstone. */
const TOMBSTONE_KEYS = [...keysOf<Parameters<Maintenance['importTombstone']>[1]>()(['uid', 'at', 'by', 'reason']), 'id']
const OUTCOME_KEYS = keysOf<NonNullable<Parameters<Maintenance['endIntent']>[1]>>()(['kind', 'data'])

/** @internal What the maintenance surface needs of its store. */
export interface MaintenanceAccess {
  engine: Engine
  replicaId: ReplicaId
  dir: string
  ready(): Promise<void>
  assertOpen(): void
  afterWrite(item: Item): Item
  storageError(err: unknown): unknown
  mapErrors<T>(rows: AsyncGenerator<T>): AsyncGenerator<T>
  damage(): StorageDamage | undefined
  flush(): Promise<void>
}

/**
 * What maintenance tools call — recovery (`@docket/recover`), `docket doctor`, `docket import`:
 * the raw rows of the shadow content store, orphan adoption, shadow repair, tombstone import,
 * audited runs and long operations (`store.maintenance`). An orchestrator needs none of it;
 * keeping it apart keeps the Store's own surface to what running a pipeline takes.
 */
export class Maintenance {
  readonly #a: MaintenanceAccess
  readonly #adopting = new Set<ItemId>()

  /** @internal Use `store.maintenance`. */
  constructor(access: MaintenanceAccess) {
    this.#a = access
  }

  // ───────────────────────────── orphans (for @docket/recover) ─────────────────────────────

  /**
   * Walks the shadow content store id by id (all ids, or only `ids`): the raw rows, whatever
   * the CRDT says. Read-only; what recovery and `doctor` build on.
   */
  scanStoredRows(options: { ids?: readonly (ItemId | string)[]; onMalformedKey?: (key: MalformedKey) => void } = {}): AsyncGenerator<StoredRows> {
    this.#a.assertOpen()
    const opts = requireKnownKeys(requireObject(options, 'scanStoredRows options'), SCAN_KEYS, 'maintenance.scanStoredRows()') as { ids?: readonly string[]; onMalformedKey?: (key: MalformedKey) => void }
    const ids = opts.ids?.map((id) => parseItemId(id))
    return this.#a.mapErrors(scanStoredRows(this.#a.engine.dbs, { ...(ids ? { ids } : {}), ...(opts.onMalformedKey ? { malformed: opts.onMalformedKey } : {}) }))
  }

  /** The uid of the live item at `id`, or undefined. O(1): for scans that must not build items. */
  uidAt(id: ItemId | string): Uid | undefined {
    this.#a.assertOpen()
    const itemId = parseItemId(id)
    const state = this.#a.engine.state
    const uid = state.claims.uidAt(itemId)
    return uid === undefined || isDeletedUid(state.parts, uid) || itemAt(state, itemId) === undefined ? undefined : uid
  }

  /** Whether the item with this uid was deleted (wherever it lives now). */
  isDeletedUid(uid: Uid | string): boolean {
    this.#a.assertOpen()
    return isDeletedUid(this.#a.engine.state.parts, uid)
  }

  /** The ids that items of this replica lost and are being re-anchored from (they move in the next batch). */
  pendingReanchors(): ItemId[] {
    this.#a.assertOpen()
    const state = this.#a.engine.state
    return [...state.unanchored].flatMap((uid) => state.claims.lossOf(uid)?.id ?? [])
  }

  /** The bytes one content row of the shadow content store names (not the CRDT's), or undefined. */
  async readStoredContent(id: ItemId | string, slot = 'body'): Promise<Uint8Array | undefined> {
    this.#a.assertOpen()
    const dbs = this.#a.engine.dbs
    const value = await dbs.content.get(contentKey(parseItemId(id), parseSlot(slot))).catch((err: unknown) => {
      throw this.#a.storageError(err)
    })
    if (value === undefined) return undefined
    // A row names a blob (schema 3); a row an older docket left holds the bytes themselves.
    const slotValue = slotValueOfRow(value, dbs.contentRows)
    if (!isContentRef(slotValue)) return typeof slotValue === 'string' ? new Uint8Array(Buffer.from(slotValue, 'utf8')) : slotValue
    const bytes = await dbs.blob.get(slotValue.sha256).catch((err: unknown) => {
      throw this.#a.storageError(err)
    })
    return bytes === undefined ? undefined : new Uint8Array(bytes)
  }

  /** The shadow row at `id`, parsed defensively: the row, why it is unreadable, or undefined. */
  async readShadowRow(id: ItemId | string): Promise<{ row: ShadowRow } | { error: string; text: string } | undefined> {
    this.#a.assertOpen()
    const text = await this.#a.engine.dbs.shadow.get(idKey(parseItemId(id))).catch((err: unknown) => {
      throw this.#a.storageError(err)
    })
    if (text === undefined) return undefined
    const parsed = parseShadowRow(text)
    return 'row' in parsed ? parsed : { error: parsed.error, text }
  }

  /**
   * Re-anchors an orphan — rows in the shadow content store that no live CRDT entry owns —
   * to a fresh id: the new CRDT entry (its uid, stage log and content kept), the alias
   * `old id → new id`, an `orphan_adopted` audit event and the removal of the old rows go
   * to disk in one batch. A crash leaves the orphan as it was or the adoption complete.
   */
  async adoptOrphan(id: ItemId | string, options: AdoptOrphanOptions = {}): Promise<AdoptResult> {
    await this.#a.ready()
    const oldId = parseItemId(id)
    const opts = checkAdoptOptions(options)
    // One adoption per id at a time: two concurrent ones would both read the rows and both
    // create an item from them.
    if (this.#adopting.has(oldId)) {
      throw new DocketError('CONFLICT', `Id ${oldId} is being recovered by another call right now: wait for it, then run discovery again.`, { details: { id: oldId } })
    }
    this.#adopting.add(oldId)
    try {
      return await this.#adopt(oldId, opts)
    } finally {
      this.#adopting.delete(oldId)
    }
  }

  async #adopt(oldId: ItemId, opts: AdoptOrphanOptions): Promise<AdoptResult> {
    const rows = await readStoredRows(this.#a.engine.dbs, oldId)
    const state = this.#a.engine.state
    const plan = planAdoption(state, oldId, rows, opts, this.#a.replicaId)
    const newId = this.#a.engine.freshId(state)
    const at = new Date().toISOString()
    const alias: Alias = { uid: plan.record.uid, oldId, newId, at, by: this.#a.replicaId, reason: 'recovery' }
    this.#a.engine.hooks?.step?.('adopt:before-commit', { oldId, newId })
    const uid = plan.record.uid
    const written = await this.#a.engine.write('adopt', {
      refresh: [oldId],
      dels: [...(rows.shadow ? [{ sublevel: 'shadow' as const, key: idKey(oldId) }] : []), ...rows.slots.map(({ slot }) => ({ sublevel: 'content' as const, key: contentKey(oldId, slot) }))],
      audit: [['orphan_adopted', { oldId, newId, uid, shadowUid: plan.shadowUid, kind: plan.kind, name: plan.record.name, warnings: plan.warnings }, newId]],
      events: [{ type: 'reanchored', uid, oldId, newId, reason: 'recovery' }],
      change: () => {
        // An item the document still holds (one that lost its id) only needs a claim; anything
        // else is re-created from the rows under its uid.
        if (recordOf(state, uid) === undefined) {
          const map = buildItemMap(plan.record, plan.entries, plan.content)
          const { labels, ...fields } = plan.extras
          writeExtras(map, { ...fields, ...(labels ? { addLabels: labels } : {}) }, nextUlid)
          state.parts.records.set(uid, map)
        }
        state.parts.claims.set(claimKey(newId, uid), { at, by: this.#a.replicaId, reason: 'recovery', from: oldId })
        state.parts.aliases.set(`${oldId}/${uid}`, alias)
        this.#a.engine.raiseHighWater(state, newId)
      },
      read: () => itemAt(state, newId)!,
    })
    return { oldId, newId, uid: plan.record.uid, kind: plan.kind, warnings: plan.warnings, item: this.#a.afterWrite(written) }
  }

  /**
   * Appends one audit event for a run of a tool (recovery, import, doctor). Such events are
   * audit-only: `investigate` is false by construction.
   */
  async recordRun(kind: 'recovery_run' | 'import_run' | 'doctor_fix', data: Record<string, unknown>): Promise<AuditEvent> {
    await this.#a.ready()
    if (kind !== 'recovery_run' && kind !== 'import_run' && kind !== 'doctor_fix') throw invalid(`recordRun records recovery_run, import_run or doctor_fix, not ${JSON.stringify(kind)}.`)
    const event = auditEvent(kind, this.#a.replicaId, JSON.parse(JSON.stringify(requireObject(data, 'run data'))) as Record<string, unknown>)
    await this.#a.engine.write('record', { audit: [event] })
    return event
  }

  // ───────────────────────────── long operations, repair, import ─────────────────────────────

  /**
   * Records that a long operation (an import, say) has started, so that one interrupted by a
   * crash is visible to `doctor` at the next open. Returns the journal key to end it with.
   */
  async beginIntent(kind: string, data: Record<string, unknown>): Promise<string> {
    await this.#a.ready()
    if (typeof kind !== 'string' || !/^[a-z][a-z0-9_-]{0,40}$/.test(kind) || kind === 'reanchor') {
      throw invalid(`Intent kind ${JSON.stringify(kind)} is invalid: use a short lowercase name (not "reanchor", which docket keeps for itself).`)
    }
    const key = nextUlid()
    const intent: Intent = { key, kind, data: { ...requireObject(data, 'intent data'), startedAt: new Date().toISOString() } }
    await this.#a.engine.write('intent', { puts: [{ sublevel: 'journal', key, value: JSON.stringify({ kind, ...intent.data }) }] })
    this.#a.engine.state.intents.push(intent)
    return key
  }

  /**
   * Ends an intent: its journal row goes, together with the audit event that records the
   * outcome (if any), in one batch — a completion marker only when the operation completed.
   */
  async endIntent(key: string, outcome?: { kind: 'import_run' | 'recovery_run' | 'doctor_fix'; data: Record<string, unknown> }): Promise<void> {
    await this.#a.ready()
    if (outcome !== undefined) requireKnownKeys(requireObject(outcome, 'endIntent outcome'), OUTCOME_KEYS, 'maintenance.endIntent() outcome', 'field')
    const state = this.#a.engine.state
    const at = state.intents.findIndex((i) => i.key === key)
    if (at < 0) throw new DocketError('NOT_FOUND', `There is no pending intent ${JSON.stringify(key)}: list them with \`docket doctor\`.`, { details: { key } })
    await this.#a.engine.write('intent', {
      dels: [{ sublevel: 'journal', key }],
      audit: outcome ? [[outcome.kind, JSON.parse(JSON.stringify(outcome.data)) as Record<string, unknown>]] : [],
    })
    const still = state.intents.findIndex((i) => i.key === key)
    if (still >= 0) state.intents.splice(still, 1)
  }

  /**
   * Rewrites the shadow and content rows of live items from the CRDT where they are missing,
   * stale, incomplete or damaged. Never touches rows that another uid owns (orphans are for
   * recovery), never changes the CRDT, so it cannot move a stage or bring anything back.
   * Returns what it repaired and the report it found before repairing (as `verify()` would).
   */
  async repairShadow(): Promise<{ repaired: ItemId[]; before: ConsistencyReport }> {
    await this.#a.ready()
    await this.#a.flush()
    const report = await verifyStore(this.#a.engine.dbs, this.#a.engine.state, this.#a.damage())
    const ids = new Set<ItemId>([
      ...report.crdtOnly,
      ...report.staleShadow.map((s) => s.id),
      ...report.missingContent.map((m) => m.id),
      ...report.strayContent.map((m) => m.id),
    ])
    const untracked = new Set(report.untracked)
    const repaired = [...ids].filter((id) => !untracked.has(id) && itemAt(this.#a.engine.state, id) !== undefined).sort((a, b) => idToNumber(a) - idToNumber(b))
    // Index rows are derived data: rebuilt whole from the document, which they only mirror.
    if (report.staleIndex.length > 0 || !report.indexComplete) await this.#a.engine.rebuildIndex()
    if (repaired.length === 0) return { repaired, before: report }
    // A shadow row that holds stage entries the document lacks is the last evidence of
    // transitions the document lost (a damaged log): those entries go back into the stage log
    // — which only grows, so this never moves a stage backwards — instead of being overwritten.
    const restore = new Map<ItemId, StageEntry[]>()
    for (const id of repaired) {
      const shadow = await this.readShadowRow(id)
      const uid = this.#a.engine.state.claims.uidAt(id)
      const map = uid === undefined ? undefined : this.#a.engine.state.maps.get(uid)
      if (!shadow || !('row' in shadow) || !map || shadow.row.uid !== uid) continue
      const known = new Set(readStageEntries(map).map((e) => e.id))
      const lost = shadow.row.stages.filter((e) => !known.has(e.id))
      if (lost.length > 0) restore.set(id, lost)
    }
    const restoredEntries = Object.fromEntries([...restore].map(([id, entries]) => [id, entries.map((e) => e.id)]))
    await this.#a.engine.write('repair', {
      refresh: repaired,
      audit: [['doctor_fix', { repaired, ...(restore.size > 0 ? { restoredEntries } : {}) }]],
      ...(restore.size > 0
        ? { change: (state: DocState) => {
            for (const [id, entries] of restore) stagesOf(state.maps.get(state.claims.uidAt(id)!)!)?.push(entries.map((e) => ({ ...e })))
          } }
        : {}),
    })
    return { repaired, before: report }
  }

  /**
   * Carries a tombstone over from another store (an import of an export): the id stays
   * deleted here too and is never issued. Refused if the id is live here.
   */
  async importTombstone(id: ItemId | string, tombstone: { uid: string; at?: string; by?: string; reason?: string | null }): Promise<boolean> {
    await this.#a.ready()
    const itemId = parseItemId(id)
    const t = requireKnownKeys(requireObject(tombstone, 'tombstone'), TOMBSTONE_KEYS, 'maintenance.importTombstone() tombstone', 'field') as { id?: unknown; uid: unknown; at?: unknown; by?: unknown; reason?: unknown }
    // An export writes each tombstone with its id: accepted when it is the id being imported.
    if (t.id !== undefined && parseItemId(t.id, 'tombstone.id') !== itemId) throw invalid(`tombstone.id ${JSON.stringify(t.id)} is not ${itemId}, the id being imported: give the same id or omit tombstone.id.`)
    if (typeof t.at === 'string') requireWellFormed(t.at, 'tombstone.at')
    if (typeof t.reason === 'string') requireWellFormed(t.reason, 'tombstone.reason')
    if (!isUid(t.uid)) throw invalid('tombstone.uid must be a ULID.')
    const state = this.#a.engine.state
    if (state.parts.tombstones.has(itemId)) return false
    if (itemAt(state, itemId) !== undefined) throw new DocketError('ALREADY_EXISTS', `Item ${itemId} is live here, so its tombstone from elsewhere was not applied: check which store is right.`, { details: { id: itemId } })
    const liveAs = state.claims.shownId(t.uid as Uid)
    if (liveAs !== undefined && itemAt(state, liveAs)?.uid === t.uid) {
      throw new DocketError('ALREADY_EXISTS', `The tombstone of ${itemId} names item ${t.uid}, which is live here as #${liveAs}: it was not applied (it would delete that item). Check which store is right.`, {
        details: { id: itemId, uid: t.uid, liveAs },
      })
    }
    if (t.by !== undefined && !isReplicaId(t.by)) throw invalid(`tombstone.by must be a replica id (1–64 letters, digits, "_" or "-"), got ${JSON.stringify(t.by)}.`)
    const tomb: Tombstone = {
      uid: t.uid as Uid,
      at: typeof t.at === 'string' ? t.at : new Date().toISOString(),
      by: isReplicaId(t.by) ? t.by : this.#a.replicaId,
      reason: typeof t.reason === 'string' ? t.reason : null,
    }
    await this.#a.engine.write('importTombstone', {
      audit: [['deleted', { uid: tomb.uid, imported: true, reason: tomb.reason }, itemId]],
      change: () => {
        state.parts.tombstones.set(itemId, tomb)
        state.parts.deleted.set(tomb.uid, { id: itemId, at: tomb.at, by: tomb.by })
      },
    })
    return true
  }

  /** Rows that could not be read at open (they are kept on disk, never compacted away). */
  corruptRows(): CorruptRow[] {
    this.#a.assertOpen()
    return this.#a.engine.state.corrupt.map((row) => ({ ...row }))
  }

  /** Journal rows of long operations that did not finish (an interrupted import, say). */
  pendingIntents(): Intent[] {
    this.#a.assertOpen()
    return this.#a.engine.state.intents.map((intent) => ({ ...intent, data: { ...intent.data } }))
  }
}
