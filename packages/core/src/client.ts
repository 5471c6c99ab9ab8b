// What a short-lived client (the CLI, an agent's script) needs before it knows whether it will
// open a store at all: errors, ids, the stage machine, constants, and the way to a store that
// another process holds. Nothing here loads Yjs or LevelDB — `docket show` through a holder
// starts in the time Node takes to start. The whole API is `@docket/core`.
export { DocketError, ERROR_CODES, isDocketError } from './errors.js'
export type { ErrorCode, DocketErrorOptions } from './errors.js'
export { isItemId, isUid, isReplicaId, parseItemId, MAX_ITEM_NUMBER } from './ids.js'
export type { ItemId, Uid, ReplicaId } from './ids.js'
export { transition, validEvents, directionOf, isEventType, EVENT_TYPES } from './stage/machine.js'
export type { StageEvent, EventType } from './stage/machine.js'
export { STAGES, STAGE_RANKS, TERMINAL_STAGES, isStage, isTerminal, rankOf } from './stage/stages.js'
export type { Stage } from './stage/stages.js'
export { AUDIT_KINDS, ITEM_TYPES } from './types.js'
export { MAX_AGENT_LENGTH, MAX_CONTENT_BYTES, MAX_DEPENDENCIES, MAX_NAME_LENGTH, MAX_REASON_LENGTH } from './store/validate.js'
export { decodeContent } from './store/evidence.js'
export { isClaimLive, DEFAULT_CLAIM_TTL_MS, MIN_CLAIM_TTL_MS, MAX_CLAIM_TTL_MS } from './work/claims.js'
export { SCHEMA_VERSION } from './store/schema.js'
export { DEFAULT_DIR, defaultDir } from './store/dir.js'
export { connectHolder } from './holder/client.js'
export type { ConnectHolderOptions } from './holder/client.js'
export { handleOf, toHandle } from './holder/handle.js'
export type { StoreHandle } from './holder/handle.js'
export { readerOf } from './holder/reader.js'
export type { StoreReader, OpenReaderOptions } from './store/reader.js'
