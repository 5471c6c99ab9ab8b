import { contentEntries, readStageEntries } from '../crdt/layout.js'
import type { ItemId } from '../ids.js'
import { absentBlobs, type Databases } from '../storage/db.js'
import { idKey } from '../storage/keys.js'
import { scanStoredRows, parseShadowRow, type StoredRows } from '../storage/scan.js'
import type { ShadowRow } from '../storage/shadow.js'
import type { Stage } from '../stage/stages.js'
import type { StorageDamage } from '../storage/health.js'
import { malformedItem, refOfSlot, shadowRow } from './capture.js'
import { isContentRef } from '../crdt/content.js'
import { indexRows } from './indexer.js'
import { itemAt, liveIds } from './items.js'
import { recordOf, type CorruptRow, type DocState, type Intent } from './state.js'

/** How well the shadow content store matches the CRDT, for `docket doctor`. */
export interface ConsistencyReport {
  /** Live items in the CRDT. */
  items: number
  /** Ids that have rows in the shadow content store. */
  storedIds: number
  /** Live items without a shadow row. */
  crdtOnly: ItemId[]
  /** Shadow rows that differ from the CRDT, with the fields that differ. */
  staleShadow: Array<{ id: ItemId; fields: string[]; crdtStage: Stage; shadowStage: Stage }>
  /** Content slots the CRDT has and the content store lacks or holds different bytes for. */
  missingContent: Array<{ id: ItemId; slot: string; reason: 'missing' | 'different' }>
  /** Content rows of a live item for slots the CRDT does not have. */
  strayContent: Array<{ id: ItemId; slot: string }>
  /** Ids with rows but no live CRDT entry of the same uid: orphans, classified by @docket/recover. */
  untracked: ItemId[]
  corrupt: CorruptRow[]
  pendingIntents: Intent[]
  pendingReanchors: ItemId[]
  /** Acknowledged work found missing at open (a torn or damaged log), if any. */
  damage: StorageDamage | null
  /**
   * Entries of the document that are no item (a peer's bad value): hidden from every read, kept
   * as they are. Reported, not counted against `ok`: the document only grows, so they stay.
   */
  malformed: Array<{ root: 'records' | 'items'; key: string; why: string }>
  /**
   * Remote updates refused as history rewrites and kept as evidence (`docket log --kind
   * update_refused` says from where and why). Reported, not counted against `ok`: nothing of
   * them reached the document — but some peer or server sent them.
   */
  refusedUpdates: number
  /**
   * Content the document references whose blob this replica does not hold (first 1,000): written
   * on another replica and not fetched yet. Reported, not counted against `ok`: a replica that
   * syncs fetches it (on read, or in the background); one that never syncs cannot read it.
   */
  unfetchedContent: Array<{ id: ItemId; slot: string; sha256: string }>
  /**
   * Whether the index rows (what fast reads answer from, storage/index-rows.ts) are complete on
   * disk. An index that is not is rebuilt at the next writable open; until then reads decode
   * the document. Not counted against `ok`.
   */
  indexComplete: boolean
  /** Keys of index rows that differ from what the document implies (first 1,000); `doctor --fix` rebuilds the index. */
  staleIndex: string[]
  /** True when there is nothing to repair or recover. */
  ok: boolean
}

export async function verifyStore(dbs: Databases, state: DocState, damage?: StorageDamage): Promise<ConsistencyReport> {
  const report: ConsistencyReport = {
    items: 0,
    storedIds: 0,
    crdtOnly: [],
    staleShadow: [],
    missingContent: [],
    strayContent: [],
    untracked: [],
    corrupt: state.corrupt.map((row) => ({ ...row })),
    pendingIntents: state.intents.map((intent) => ({ ...intent })),
    pendingReanchors: [...state.unanchored].flatMap((uid) => state.claims.lossOf(uid)?.id ?? state.rescues.get(uid)?.oldId ?? []),
    damage: damage ?? null,
    malformed: malformedEntries(state),
    refusedUpdates: 0,
    unfetchedContent: [],
    indexComplete: state.indexed,
    staleIndex: [],
    ok: false,
  }
  for await (const _ of dbs.refused.keys()) report.refusedUpdates++
  const seen = new Set<ItemId>()
  const malformed = (key: { sublevel: string; key: string }) => report.corrupt.push({ ...key, error: 'not a key docket writes' })
  for await (const rows of scanStoredRows(dbs, { malformed })) {
    report.storedIds++
    seen.add(rows.id)
    checkRows(state, rows, report)
  }
  const live = liveIds(state)
  report.items = live.length
  report.unfetchedContent = await unfetched(dbs, state, live)
  for (const id of live) if (!seen.has(id) && itemAt(state, id)) report.crdtOnly.push(id)
  if (state.indexed) report.staleIndex = await staleIndexRows(dbs, state)
  report.ok =
    report.staleIndex.length === 0 &&
    report.crdtOnly.length === 0 &&
    report.staleShadow.length === 0 &&
    report.missingContent.length === 0 &&
    report.strayContent.length === 0 &&
    report.untracked.length === 0 &&
    report.corrupt.length === 0 &&
    report.pendingIntents.length === 0 &&
    report.pendingReanchors.length === 0 &&
    report.damage === null
  return report
}

/** Index rows on disk that differ from (or are missing from, or go beyond) what the document implies. */
async function staleIndexRows(dbs: Databases, state: DocState): Promise<string[]> {
  const expected = indexRows(state)
  const stale: string[] = []
  for await (const [key, value] of dbs.index.iterator()) {
    if (expected.get(key) !== value) stale.push(key)
    expected.delete(key)
  }
  stale.push(...expected.keys())
  return stale.slice(0, 1000)
}

function malformedEntries(state: DocState): ConsistencyReport['malformed'] {
  const out: ConsistencyReport['malformed'] = []
  for (const root of ['records', 'items'] as const) {
    for (const [key, value] of state.parts[root]) {
      const why = malformedItem(root, key, value)
      if (why) out.push({ root, key, why })
    }
  }
  return out
}

function checkRows(state: DocState, rows: StoredRows, report: ConsistencyReport): void {
  const { id } = rows
  if (rows.shadow && 'error' in rows.shadow) {
    report.corrupt.push({ sublevel: 'shadow', key: idKey(id), error: rows.shadow.error })
  }
  const item = itemAt(state, id)
  const map = item ? state.maps.get(item.uid) : undefined
  const record = item ? recordOf(state, item.uid) : undefined
  if (!item || !map || !record || (rows.shadow && 'uid' in rows.shadow && rows.shadow.uid !== item.uid)) {
    report.untracked.push(id)
    return
  }
  if (!rows.shadow) {
    report.crdtOnly.push(id)
  } else if ('error' in rows.shadow) {
    report.staleShadow.push({ id, fields: ['unreadable'], crdtStage: item.stage, shadowStage: item.stage })
  } else {
    const parsed = parseShadowRow(rows.shadow.text)
    if ('row' in parsed) {
      const expected = shadowRow(id, record, map, item.stage, readStageEntries(map))
      const fields = differingFields(expected, parsed.row)
      if (fields.length > 0) report.staleShadow.push({ id, fields, crdtStage: item.stage, shadowStage: parsed.row.stage })
    }
  }
  const stored = new Map(rows.slots.map(({ slot, content }) => [slot, content]))
  const content = new Map(contentEntries(map))
  for (const [slot, value] of content) {
    const row = stored.get(slot)
    if (row === undefined) report.missingContent.push({ id, slot, reason: 'missing' })
    else if (refOfSlot(row).sha256 !== refOfSlot(value).sha256) report.missingContent.push({ id, slot, reason: 'different' })
  }
  for (const slot of stored.keys()) if (!content.has(slot)) report.strayContent.push({ id, slot })
}

function differingFields(expected: ShadowRow, actual: ShadowRow): string[] {
  const out: string[] = []
  for (const key of Object.keys(expected) as Array<keyof ShadowRow>) {
    if (key === 'v') continue
    if (JSON.stringify(expected[key]) !== JSON.stringify(actual[key])) out.push(key)
  }
  return out
}

/** The content references of live items whose blob is not here (the first 1,000). */
async function unfetched(dbs: Databases, state: DocState, live: readonly ItemId[]): Promise<ConsistencyReport['unfetchedContent']> {
  if (dbs.contentRows !== 'refs') return []
  const refs: ConsistencyReport['unfetchedContent'] = []
  for (const id of live) {
    const uid = state.claims.uidAt(id)
    const map = uid === undefined ? undefined : state.maps.get(uid)
    if (!map) continue
    for (const [slot, value] of contentEntries(map)) if (isContentRef(value)) refs.push({ id, slot, sha256: value.sha256 })
  }
  return absentBlobs(dbs, refs, 1000)
}
