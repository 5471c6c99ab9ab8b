export { openStore, defaultDir, DEFAULT_DIR, SCHEMA_VERSION } from './store/open.js'
export type { OpenStoreOptions } from './store/open.js'
export { Store } from './store/store.js'
export { openReader } from './store/reader.js'
export { connectHolder } from './holder/client.js'
export type { ConnectHolderOptions } from './holder/client.js'
export { handleOf, toHandle } from './holder/handle.js'
export { readerOf } from './holder/reader.js'
export { encodeFrames, readFrames } from './sync/frames.js'
export type { Frame } from './sync/frames.js'
export type { StoreHandle } from './holder/handle.js'
export type { StoreReader, OpenReaderOptions } from './store/reader.js'
export type { DeleteItemOptions, DeleteResult, StoreStats, UpdateListener, StoreSchema } from './store/store.js'
export { Maintenance } from './store/maintenance.js'
export type { AdoptResult } from './store/maintenance.js'
export type { AdoptOrphanOptions } from './store/adopt.js'
export type { StoredRows, MalformedKey } from './storage/scan.js'
export type { ShadowRow } from './storage/shadow.js'
export { parseShadowRow as parseShadow } from './storage/scan.js'
export type { StoreHooks } from './store/hooks.js'
export type { StorageDamage, Checkpoint } from './storage/health.js'
export type { MigrationReport } from './store/migrate.js'
export type { WriteOp } from './store/writer.js'
export type { Logger } from './store/logger.js'
export type { CorruptRow, Intent } from './store/state.js'
export type { ConsistencyReport } from './store/verify.js'

export { DocketError, ERROR_CODES, isDocketError } from './errors.js'
export type { DocketErrorOptions, ErrorCode } from './errors.js'

export { isItemId, isUid, isReplicaId, parseItemId, MAX_ITEM_NUMBER } from './ids.js'
export type { ItemId, Uid, ReplicaId } from './ids.js'

export { transition, validEvents, directionOf, isEventType, EVENT_TYPES } from './stage/machine.js'
export type { EventType, Direction, StageEvent } from './stage/machine.js'
export { resolveStage, compareEntries } from './stage/resolve.js'
export type { StageResolution, InvalidReason } from './stage/resolve.js'
export { STAGES, STAGE_RANKS, TERMINAL_STAGES, isStage, isTerminal, rankOf } from './stage/stages.js'
export type { Stage } from './stage/stages.js'
export type { StageEntry } from './stage/log.js'

export { nextIdAfter, IdAllocator } from './alloc/allocator.js'
export { ClaimIndex, claimKey, parseClaimKey, shownIdOf, winnerOf } from './crdt/claims.js'
export { updateRefusal } from './crdt/admission.js'
export { isContentRef, sha256Of } from './crdt/content.js'
export type { ContentRef } from './crdt/content.js'
export type { ClaimReason, ClaimValue } from './crdt/claims.js'
export type { IdSource } from './alloc/allocator.js'
export { LEASE_SIZE, nextLeaseSize, firstFree } from './alloc/leases.js'
export type { LeaseBlock } from './alloc/leases.js'
export type { LeaseState } from './store/leases.js'
export { isClaimLive, DEFAULT_CLAIM_TTL_MS, MIN_CLAIM_TTL_MS, MAX_CLAIM_TTL_MS } from './work/claims.js'

export { ITEM_TYPES, AUDIT_KINDS } from './types.js'
export type {
  Alias,
  AuditEvent,
  AuditKind,
  AuditQuery,
  Blocked,
  ContentValue,
  CreateItemInput,
  CreateItemOptions,
  Item,
  ItemType,
  ListItemsOptions,
  ApplyOptions,
  StageHistoryEntry,
  StoreEvent,
  StoreListener,
  Tombstone,
  UpdateItemInput,
  WorkClaim,
  ClaimOptions,
  ClaimNextOptions,
  ClaimResult,
  RenewClaimOptions,
  ReleaseClaimOptions,
} from './types.js'
export { createdEntry, nextEntry } from './stage/advance.js'
export { decodeContent } from './store/evidence.js'
export { MAX_AGENT_LENGTH, MAX_CONTENT_BYTES, MAX_DEPENDENCIES, MAX_NAME_LENGTH, MAX_REASON_LENGTH } from './store/validate.js'
/** For docket's own packages (@docket/recover): the check every public entry point runs on its options. */
export { keysOf, requireKnownKeys } from './store/validate.js'
/** For importers: the shapes of a label and an external id that the store accepts. */
export { isExternalId, isLabelName } from './store/validate.js'
export type { SyncOptions, SyncState } from './sync/client.js'
