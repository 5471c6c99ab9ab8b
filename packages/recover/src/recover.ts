import { DocketError, isDocketError, keysOf, requireKnownKeys, toHandle, type ItemId, type Store, type StoreHandle, type Uid } from '@docket/core'
import { checkIds, discoverOrphans, type Discovery, type Orphan } from './discover.js'

export interface RecoverOptions {
  /** Restricts discovery and repair alike. Default: every orphan (but see includeTombstoned). */
  ids?: readonly (ItemId | string)[]
  /**
   * A repair (dryRun: false) without `ids` must say `all: true`: bulk recovery brings back
   * every stale row an older scheme left, which is rarely what anyone wants.
   */
  all?: boolean
  /** Report what would happen and write nothing at all. Default: true. */
  dryRun?: boolean
  /** Also recover tombstoned orphans that `ids` does not name. Default: false. */
  includeTombstoned?: boolean
  /** Called as orphans are handled: for progress bars. */
  onProgress?: (progress: { phase: 'discover' | 'recover'; done: number; total?: number }) => void
  /**
   * Repair although the store cannot confirm it is synced with its server (you know the
   * server is gone). Default: false — a repair on a replica that is behind is refused with
   * BEHIND_REMOTE. Dry runs never wait.
   */
  offline?: boolean
  /** How long a repair waits for the store to sync first. Default: 10,000 ms. */
  syncTimeoutMs?: number
}

const RECOVER_KEYS = keysOf<RecoverOptions>()(['ids', 'all', 'dryRun', 'includeTombstoned', 'onProgress', 'offline', 'syncTimeoutMs'])

export interface RecoveredEntry {
  oldId: ItemId
  /** The fresh id; null in a dry run (one is allocated only when the orphan is re-anchored). */
  newId: ItemId | null
  uid: Uid | null
  kind: Orphan['kind']
  name: string
  warnings: string[]
}

export interface RecoveryResult {
  dryRun: boolean
  filter: ItemId[] | null
  includeTombstoned: boolean
  /** Re-anchored orphans (in a dry run: those that would be). */
  recovered: RecoveredEntry[]
  /** Ids not touched, with why: live, unknown, tombstoned without being named, being re-anchored. */
  skipped: Array<{ id: ItemId; reason: string }>
  /** Orphans whose re-anchoring failed; the others went on. */
  failed: Array<{ id: ItemId; error: { code: string; message: string } }>
  /** Orphans found by the discovery run after the repair that were not there before (a concurrent writer). */
  rescan: Orphan[]
  /** Orphans discovered before the repair. */
  discovered: Orphan[]
}

/**
 * Re-anchors orphans to fresh ids through the store's atomic `adoptOrphan`. Dry run unless
 * `dryRun: false`; a dry run writes nothing at all, not even its audit event. A tombstoned
 * orphan is recovered only when named in `ids` or with `includeTombstoned`. One orphan's
 * failure does not stop the others. After a repair, discovery runs again over the same
 * filter and what is new is returned in `rescan`. A repair is audited as one
 * `recovery_run` event (investigate: false).
 */
export async function recoverOrphans(target: Store | StoreHandle, options: RecoverOptions = {}): Promise<RecoveryResult> {
  const store = toHandle(target)
  if (typeof options !== 'object' || options === null || Array.isArray(options)) throw new DocketError('INVALID_INPUT', 'recoverOrphans options must be an object.')
  requireKnownKeys(options, RECOVER_KEYS, 'recoverOrphans()')
  const filter = checkIds(options.ids)
  const dryRun = options.dryRun !== false
  const includeTombstoned = options.includeTombstoned === true
  const named = new Set(filter ?? [])
  if (!dryRun && filter === null && options.all !== true) {
    throw new DocketError(
      'INVALID_INPUT',
      'A repair needs the ids to recover (ids / --story-ids 989,1000) or an explicit all: true (--all): recovering every orphan at once brings back rows nobody wants. Run a dry run first to see them.',
    )
  }
  // The pull gate: a stale replica must not repair (it could resurrect what others purged).
  if (!dryRun) await store.assertSynced({ offline: options.offline === true, timeoutMs: options.syncTimeoutMs ?? 10_000 })
  const discovery = await discoverOrphans(store, {
    ...(filter ? { ids: filter } : {}),
    onProgress: ({ scanned }) => options.onProgress?.({ phase: 'discover', done: scanned }),
  })
  const result: RecoveryResult = {
    dryRun,
    filter,
    includeTombstoned,
    recovered: [],
    skipped: skippedByDiscovery(discovery),
    failed: [],
    rescan: [],
    discovered: discovery.orphans,
  }
  const selected: Orphan[] = []
  for (const orphan of discovery.orphans) {
    if (orphan.kind === 'tombstoned' && !includeTombstoned && !named.has(orphan.id)) {
      result.skipped.push({ id: orphan.id, reason: 'tombstoned: recovered only when named in ids (--story-ids) or with includeTombstoned (--include-tombstoned)' })
    } else {
      selected.push(orphan)
    }
  }
  if (dryRun) {
    result.recovered = selected.map((o) => entry(o, null, o.warnings))
    return result
  }

  let done = 0
  for (const orphan of selected) {
    try {
      const adopted = await store.maintenance.adoptOrphan(orphan.id, {
        expectUid: orphan.uid,
        name: orphan.name,
        type: orphan.type,
        dependsOn: orphan.dependsOn,
        allowTombstoned: true,
      })
      result.recovered.push({ ...entry(orphan, adopted.newId, [...orphan.warnings, ...adopted.warnings]), uid: adopted.uid })
    } catch (err) {
      if (!isDocketError(err)) throw err
      if (err.code === 'CONFLICT') {
        // Another call is adopting it right now, or its rows changed since discovery.
        result.skipped.push({ id: orphan.id, reason: `handled concurrently: ${err.message}` })
        continue
      }
      // A concurrent run (or writer) may have dealt with it since discovery: then it is no
      // longer an orphan, and that is not a failure.
      // (Writes in flight first: a concurrent adoption may not have reached the disk yet.)
      await store.flush().catch(() => {})
      const still = await discoverOrphans(store, { ids: [orphan.id] }).catch(() => undefined)
      if (still && !still.orphans.some((o) => o.uid === orphan.uid)) {
        result.skipped.push({ id: orphan.id, reason: `no longer an orphan: handled concurrently (${err.code})` })
      } else {
        result.failed.push({ id: orphan.id, error: { code: err.code, message: err.message } })
      }
    }
    options.onProgress?.({ phase: 'recover', done: ++done, total: selected.length })
  }

  const after = await discoverOrphans(store, filter ? { ids: filter } : {})
  const before = new Set(discovery.orphans.map(key))
  result.rescan = after.orphans.filter((o) => !before.has(key(o)))
  await store.maintenance.recordRun('recovery_run', {
    filter,
    includeTombstoned,
    counts: {
      discovered: discovery.orphans.length,
      recovered: result.recovered.length,
      skipped: result.skipped.length,
      failed: result.failed.length,
      rescan: result.rescan.length,
    },
    mapping: result.recovered.map((r) => ({ oldId: r.oldId, newId: r.newId, uid: r.uid })),
    failed: result.failed,
    investigate: false,
  })
  return result
}

function key(orphan: Orphan): string {
  return `${orphan.id}/${orphan.uid ?? '-'}`
}

function entry(orphan: Orphan, newId: ItemId | null, warnings: string[]): RecoveredEntry {
  return { oldId: orphan.id, newId, uid: orphan.uid, kind: orphan.kind, name: orphan.name, warnings }
}

function skippedByDiscovery(discovery: Discovery): RecoveryResult['skipped'] {
  return [
    ...discovery.live.map((id) => ({ id, reason: 'live: a live item owns these rows, nothing to recover' })),
    ...discovery.unknown.map((id) => ({ id, reason: 'unknown: no rows with this id in the shadow content store' })),
    ...discovery.pending.map((id) => ({ id, reason: 'pending: this replica is re-anchoring it right now' })),
  ]
}
