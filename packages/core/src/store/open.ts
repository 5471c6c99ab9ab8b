import { resolve } from 'node:path'
import { ulid } from 'ulid'
import { auditEvent, encodeAudit } from '../audit/audit.js'
import { DocketError } from '../errors.js'
import { parseReplicaId, type ReplicaId } from '../ids.js'
import { openDatabases, storageError, type Databases } from '../storage/db.js'
import { seqKey } from '../storage/keys.js'
import type { StoreHooks } from './hooks.js'
import type { SyncOptions } from '../sync/client.js'
import { stderrLogger, type Logger } from './logger.js'
import { loadState } from './state.js'
import { detectDamage } from '../storage/health.js'
import { holderEndpoint, removeStaleSocket } from '../holder/endpoint.js'
import { migrateInMemory, SCHEMA_VERSION, schemaMarkerUpdate, writeMigration, type MigrationReport } from './migrate.js'
import { Store } from './store.js'
import { invalid, keysOf, requireKnownKeys, requireObject } from './validate.js'

export { SCHEMA_VERSION } from './migrate.js'
import { DEFAULT_DIR, defaultDir } from './dir.js'
export { DEFAULT_DIR, defaultDir }

export interface OpenStoreOptions {
  /** The store directory. Default: `DOCKET_DIR`, else `.docket` in the working directory. */
  dir?: string
  /** Create the store if the directory holds none. Default: true. */
  create?: boolean
  /** Refuse with STORE_EXISTS if the directory already holds a store (`docket init`). Default: false. */
  errorIfExists?: boolean
  /**
   * This replica's id, fixed when the store is created (a ULID is generated if omitted).
   * Opening an existing store with a different id is refused.
   */
  replicaId?: string
  /** Where WARN lines go. Default: stderr. */
  logger?: Logger
  /**
   * `sync` (default) fsyncs every batch: a returned write survives power loss.
   * `relaxed` leaves flushing to the OS: it survives a killed process but not a power cut.
   */
  durability?: 'sync' | 'relaxed'
  /** Update rows kept before they are folded into one snapshot. Default: 500. */
  compactAfterRows?: number
  /**
   * Open without writing anything: no audit of damaged rows, no re-anchoring, no compaction;
   * every mutation fails with STORE_READ_ONLY. For reports and dry runs. Default: false.
   */
  readOnly?: boolean
  /**
   * Open a store although it is missing acknowledged work (a torn or damaged LevelDB log, a
   * checkpoint ahead of the log): the loss is recorded in the audit log and the store goes on
   * with what survived. Without it such a store opens only read-only. Default: false.
   */
  acceptDamage?: boolean
  /** Fault-injection seams for tests. Default: none. */
  hooks?: StoreHooks
  /**
   * Join a sync server (`docket serve`): the store keeps working offline on its own LevelDB
   * and catches up when it can reach the server. Ignored (but reported) when readOnly.
   */
  sync?: SyncOptions
  /**
   * Serve `docket` commands (and `connectHolder`) on a socket in the store directory while the
   * store is open, so that they work while this process holds the store. Only this user can
   * connect. Default: true for a writable open, false for a read-only one.
   */
  serve?: boolean
}

/** The keys openStore accepts (anything else is refused: a misspelt option must not be ignored). */
const OPEN_KEYS = keysOf<OpenStoreOptions>()(['dir', 'create', 'errorIfExists', 'replicaId', 'logger', 'durability', 'compactAfterRows', 'readOnly', 'acceptDamage', 'hooks', 'sync', 'serve'])
/** StoreHooks' keys. */
const HOOK_KEYS = keysOf<StoreHooks>()(['step', 'clientId', 'allocate', 'beforeWrite', 'arbiter'])
const SYNC_KEYS = keysOf<SyncOptions>()(['url', 'token', 'document', 'minReconnectDelayMs', 'maxReconnectDelayMs', 'closeTimeoutMs'])


/**
 * Opens the store in `dir` (creating it unless `create: false`). Fails with STORE_LOCKED if
 * another process has it open, SCHEMA_TOO_NEW if a newer docket wrote it.
 */
export async function openStore(options: OpenStoreOptions = {}): Promise<Store> {
  const opts = requireKnownKeys(requireObject(options, 'openStore options'), OPEN_KEYS, 'openStore()') as OpenStoreOptions
  if (opts.hooks !== undefined) requireKnownKeys(requireObject(opts.hooks, 'hooks'), HOOK_KEYS, 'openStore() hooks')
  // Checked before anything is opened: a refused option leaves the directory as it was.
  const sync = checkSync(opts.sync)
  if (opts.dir !== undefined && (typeof opts.dir !== 'string' || opts.dir.length === 0)) throw invalid('dir must be a non-empty path.')
  const dir = resolve(opts.dir ?? defaultDir())
  const compactAfterRows = opts.compactAfterRows ?? 500
  if (!Number.isSafeInteger(compactAfterRows) || compactAfterRows < 1) throw invalid('compactAfterRows must be a positive integer.')
  if (opts.durability !== undefined && opts.durability !== 'sync' && opts.durability !== 'relaxed') {
    throw invalid(`durability must be "sync" or "relaxed", got ${JSON.stringify(opts.durability)}.`)
  }
  const requestedReplica = opts.replicaId === undefined ? undefined : parseReplicaId(opts.replicaId)
  const logger = opts.logger ?? stderrLogger
  const readOnly = opts.readOnly === true
  const create = opts.create !== false && !readOnly
  if (opts.errorIfExists !== undefined && typeof opts.errorIfExists !== 'boolean') throw invalid('errorIfExists must be true or false.')
  if (opts.serve !== undefined && typeof opts.serve !== 'boolean') throw invalid('serve must be true or false.')
  const dbs = await openDatabases(dir, create)
  // This process has the LevelDB's lock: a holder socket still there was left by one that died.
  await removeStaleSocket(holderEndpoint(dir), dir).catch(() => {})
  try {
    const { replicaId, schema } = await readOrInitMeta(dbs, dir, requestedReplica, create, opts.errorIfExists === true)
    const state = await loadState(dbs, 1, replicaId, opts.hooks?.clientId?.())
    // Damage first: a store missing acknowledged work is not migrated (nor written at all) unless the loss is accepted.
    const damage = await detectDamage(dir, state.commit, { loaded: state.loadedSeqs, live: state.liveSeqs })
    if (damage && !readOnly && opts.acceptDamage !== true) {
      throw new DocketError(
        'STORE_CORRUPT',
        `The store at ${dir} is missing work it had acknowledged: ${damage.findings.join('; ')}. Nothing was changed. See what survived with \`docket doctor\` (read-only) and recover orphans with \`docket recover\`; a replica that syncs gets back from its server what reached it. To keep working with what survived, run \`docket doctor --fix --accept-loss\`.`,
        { details: { dir, ...damage } },
      )
    }
    let migrated: MigrationReport | undefined
    if (schema < SCHEMA_VERSION) {
      // A read-only open migrates in memory only: reports and dry runs see the new schema, the disk stays as it was.
      // Content moves to the blob store only when it can be written (a read-only open reads inline values as they are).
      const migration = await migrateInMemory(dbs, state, state.intents, { from: schema, content: !readOnly })
      opts.hooks?.step?.('migrate:verified', { claimed: migration.report.claimed })
      if (!readOnly) await writeMigration(dbs, state, migration, replicaId, opts.hooks)
      // Not migrated on disk: the content rows still hold the bytes themselves.
      else if (schema < 3) dbs.contentRows = 'bytes'
      const settled = new Set(migration.report.droppedJournal.map((j) => j.key))
      state.intents.splice(0, state.intents.length, ...state.intents.filter((i) => !settled.has(i.key)))
      migrated = migration.report
    }
    const store = new Store({
      dir,
      replicaId,
      dbs,
      state,
      logger,
      hooks: opts.hooks,
      fsync: opts.durability !== 'relaxed',
      compactAfterRows,
      readOnly,
      sync,
      serve: opts.serve ?? !readOnly,
      lastSyncedAt: (await dbs.meta.get('lastSyncedAt')) ?? null,
      schema: { onDisk: readOnly ? schema : SCHEMA_VERSION, migrated },
      damage,
    })
    try {
      await store.start()
    } catch (err) {
      await store.close().catch(() => {})
      throw err
    }
    return store
  } catch (err) {
    if (dbs.root.status === 'open') await dbs.root.close().catch(() => {})
    throw storageError(dir, err)
  }
}

async function readOrInitMeta(dbs: Databases, dir: string, requested: ReplicaId | undefined, create: boolean, errorIfExists: boolean): Promise<{ replicaId: ReplicaId; schema: number }> {
  const schemaText = await dbs.meta.get('schema')
  if (schemaText !== undefined && errorIfExists) {
    const existing = (await dbs.meta.get('replicaId')) ?? 'unknown'
    throw new DocketError('STORE_EXISTS', `There is already a docket store at ${dir} (replica ${existing}): use it, or choose another directory.`, { details: { dir, replicaId: existing } })
  }
  if (schemaText === undefined) {
    if (await hasAnyKey(dbs)) {
      throw new DocketError('STORE_CORRUPT', `${dir} holds a LevelDB that is not a docket store (no schema version): point --dir at a docket store or an empty directory.`, {
        details: { dir },
      })
    }
    if (!create) throw new DocketError('STORE_NOT_FOUND', `No docket store at ${dir}: run \`docket init\` there.`, { details: { dir } })
    const replicaId = requested ?? (ulid() as ReplicaId)
    const created = auditEvent('store_created', replicaId, { schema: SCHEMA_VERSION, dir })
    await dbs.root.batch(
      [
        { type: 'put', sublevel: dbs.meta, key: 'schema', value: String(SCHEMA_VERSION) },
        // The document says its schema too, so that a replica (or a sync client) of another
        // schema can tell before it merges anything. Written by a client of its own, so the
        // store's own updates never depend on it.
        { type: 'put', sublevel: dbs.doc, key: seqKey(1), value: schemaMarkerUpdate() },
        { type: 'put', sublevel: dbs.meta, key: 'replicaId', value: replicaId },
        { type: 'put', sublevel: dbs.meta, key: 'createdAt', value: created.at },
        { type: 'put', sublevel: dbs.audit, ...encodeAudit(created) },
      ] as never,
      { sync: true },
    )
    return { replicaId, schema: SCHEMA_VERSION }
  }
  const schema = Number(schemaText)
  if (!Number.isSafeInteger(schema) || schema < 1) {
    throw new DocketError('STORE_CORRUPT', `The store at ${dir} has an unreadable schema version ${JSON.stringify(schemaText)}: restore it from a backup.`, {
      details: { dir },
    })
  }
  if (schema > SCHEMA_VERSION) {
    throw new DocketError(
      'SCHEMA_TOO_NEW',
      `The store at ${dir} was written by a newer docket (schema ${schema}; this one reads up to ${SCHEMA_VERSION}): upgrade docket to open it. Nothing was changed.`,
      { details: { dir, schema, supported: SCHEMA_VERSION } },
    )
  }
  const stored = await dbs.meta.get('replicaId')
  let replicaId: ReplicaId
  try {
    replicaId = parseReplicaId(stored)
  } catch (err) {
    throw new DocketError('STORE_CORRUPT', `The store at ${dir} has no valid replica id: restore it from a backup.`, { cause: err, details: { dir } })
  }
  if (requested !== undefined && requested !== replicaId) {
    throw invalid(`The store at ${dir} belongs to replica ${replicaId}, not ${requested}: a replica id is fixed when the store is created; omit replicaId or use another directory.`, {
      dir,
      replicaId,
      requested,
    })
  }
  return { replicaId, schema }
}

function checkSync(sync: SyncOptions | undefined): SyncOptions | undefined {
  if (sync === undefined) return undefined
  const s = requireKnownKeys(requireObject(sync, 'sync options'), SYNC_KEYS, 'openStore() sync') as unknown as SyncOptions
  if (typeof s.url !== 'string' || !/^wss?:\/\/[^\s]+$/.test(s.url)) throw invalid(`sync.url must be a ws:// or wss:// URL, got ${JSON.stringify(s.url)}.`)
  if (s.token !== undefined && typeof s.token !== 'string') throw invalid('sync.token must be a string.')
  if (s.document !== undefined && (typeof s.document !== 'string' || s.document.length === 0)) throw invalid('sync.document must be a non-empty string.')
  return { ...s }
}

async function hasAnyKey(dbs: Databases): Promise<boolean> {
  for await (const _ of dbs.root.keys({ limit: 1 })) return true
  return false
}
