import type { ItemId, ReplicaId, Uid } from './ids.js'
import type { StageEntry } from './stage/log.js'
import type { EventType } from './stage/machine.js'
import type { Stage } from './stage/stages.js'

export const ITEM_TYPES = ['story', 'bug', 'spike', 'refactor', 'epic'] as const
export type ItemType = (typeof ITEM_TYPES)[number]

export interface Blocked {
  reason: string
}

/** A pipeline item as every read path returns it; the CLI's `--json` uses the same shape. */
export interface Item {
  id: ItemId
  uid: Uid
  name: string
  type: ItemType
  stage: Stage
  dependsOn: ItemId[]
  blocked: Blocked | null
  frozen: boolean
  agent?: string
  retries: number
  createdAt: string
  updatedAt: string
  createdBy: ReplicaId
  /** 0 (most urgent) to 4; absent means 2, the default. `ready` lists by priority, then id. */
  priority?: number
  /** A set: concurrent edits on two replicas merge. Absent when empty. */
  labels?: string[]
  /** The item this one belongs to (an epic's child). */
  parent?: ItemId
  /** Ids it has in other trackers (`bd-a1b2`): `docket show bd-a1b2` finds it. Absent when none. */
  externalIds?: string[]
  /**
   * Who works on it (`claim`, `claimNext`): the current claim as this replica knows it, live or
   * expired (`until` says; `listItems({ claimed: true })` and `ready` compare it with the clock).
   * Absent when nobody claimed it or the claim was released.
   */
  claim?: WorkClaim
}

/**
 * A claim on an item: one agent works on it until `until` unless it renews. Granted by the sync
 * server (`grant` is the server's number; higher is later), or — offline, asked for with
 * `{ offline: true }` — provisional, to be checked with the server on reconnect. A store that
 * syncs with no server grants its own claims (`grant: null`, not provisional).
 */
export interface WorkClaim {
  agent: string
  /** The replica that asked for it. */
  replica: string
  since: string
  until: string
  grant: number | null
  provisional: boolean
}

export interface ClaimOptions {
  /** Who works on it: an agent's name, 1 to 200 characters. */
  agent: string
  /** How long the claim lasts unless renewed. Default 15 minutes; 1 second to 7 days. */
  ttlMs?: number
  /**
   * Not connected to the sync server: take a provisional claim (checked with the server on
   * reconnect; the loser is told by a `claim_lost` event and audit event) instead of failing
   * with BEHIND_REMOTE. Default false.
   */
  offline?: boolean
}

export interface ClaimNextOptions extends ClaimOptions {
  /** Only items in this stage (or these stages). Default: any. */
  stage?: Stage | readonly Stage[]
  /** Only items of this type (or these types). Default: any. */
  type?: ItemType | readonly ItemType[]
}

export interface RenewClaimOptions {
  agent: string
  /** The claim lasts this long from now. Default 15 minutes. */
  ttlMs?: number
  /** Renew a provisional claim while not connected. Default false. */
  offline?: boolean
}

export interface ReleaseClaimOptions {
  agent: string
  /** Release a provisional claim while not connected. Default false. */
  offline?: boolean
}

/** What `claim` and `claimNext` answer: granted, or refused with who holds the item. */
export type ClaimResult =
  | {
      granted: true
      item: Item
      claim: WorkClaim
      /** The expired claim of another agent this one took over (that agent's replica is told). */
      previous?: WorkClaim
    }
  | { granted: false; item: Item; holder: WorkClaim }

/** Content slots hold text (markdown with front matter in `body`) or, rarely, raw bytes. */
export type ContentValue = string | Uint8Array

export interface CreateItemInput {
  name: string
  type?: ItemType
  dependsOn?: readonly (ItemId | string)[]
  /** The `body` slot: markdown, usually with YAML front matter. */
  body?: ContentValue
  /** Further slots, such as `gate_output`. */
  content?: Readonly<Record<string, ContentValue>>
  /** The stage to start in; `backlog` unless importing. */
  stage?: Stage
  agent?: string
  retries?: number
  blocked?: Blocked | null
  frozen?: boolean
  /**
   * Keep this id instead of allocating one (importers). Refused with ALREADY_EXISTS or
   * TOMBSTONED if the id was ever used; the allocator moves past it.
   */
  id?: ItemId | string
  /** 0 (most urgent) to 4. Default: absent (reads as 2). */
  priority?: number
  labels?: readonly string[]
  /** The item it belongs to (an epic): a live item, unless `allowUnknownDependencies`. */
  parent?: ItemId | string
  externalIds?: readonly string[]
  /**
   * The id this item had in the source it is imported from, when that id went to another item
   * (two files of one tree with one number): recorded as an alias `formerId → id` (reason `import`).
   */
  formerId?: ItemId | string
  /** When it was created and last updated in the source it is imported from (ISO 8601). Default: now. */
  createdAt?: string
  updatedAt?: string
}

export interface CreateItemOptions {
  /**
   * Accept `dependsOn` ids that are not live items (importers, recovery). They are kept as
   * written; a tombstoned id or the item's own id is still refused.
   */
  allowUnknownDependencies?: boolean
}

export interface UpdateItemInput {
  name?: string
  dependsOn?: readonly (ItemId | string)[]
  /** A string sets the agent; null clears it. */
  agent?: string | null
  retries?: number
  blocked?: Blocked | null
  frozen?: boolean
  /** 0 to 4; null clears it (back to the default, 2). */
  priority?: number | null
  /** The whole label set: applied as the labels to add and to remove, so that concurrent edits merge. */
  labels?: readonly string[]
  addLabels?: readonly string[]
  removeLabels?: readonly string[]
  /** The item it belongs to; null clears it. */
  parent?: ItemId | string | null
  externalIds?: readonly string[]
}

export interface ListItemsOptions {
  stage?: Stage | readonly Stage[]
  type?: ItemType | readonly ItemType[]
  /** Only items with this label (or any of these). */
  label?: string | readonly string[]
  /** Only items of this priority (or these); an item without one has 2. */
  priority?: number | readonly number[]
  /** Only the children of this item. */
  parent?: ItemId | string
  /**
   * Only items that an agent may pick up now (`true`), or only those it may not (`false`):
   * neither blocked, frozen nor claimed (a live claim), and every dependency done or archived.
   */
  ready?: boolean
  /** Only items an agent holds a live claim on (`true`), or only those nobody does (`false`). */
  claimed?: boolean
}

export interface ApplyOptions {
  /** Move a blocked or frozen item anyway (the audit event records what was overridden). Default false. */
  force?: boolean
  /**
   * Compare and set: apply only if the item is (as this replica sees it) in this stage, or in
   * one of these stages; else STAGE_CONFLICT and nothing is written. Default: any stage.
   */
  ifStage?: Stage | readonly Stage[]
}

export interface Tombstone {
  uid: Uid
  at: string
  by: ReplicaId
  reason: string | null
}

/** Recorded when a displaced item was re-anchored to a fresh id: the uid stays, the id moves. */
export interface Alias {
  uid: Uid
  oldId: ItemId
  newId: ItemId
  at: string
  by: ReplicaId
  reason: 'collision' | 'tombstoned-id' | 'recovery' | 'import'
}

export const AUDIT_KINDS = [
  'store_created',
  'created',
  'transitioned',
  'updated',
  'content_written',
  'deleted',
  'write_rejected',
  'create_rolled_back',
  'stale_transition_superseded',
  'reanchored',
  'corrupt_row',
  'orphan_adopted',
  'orphan_moved',
  'recovery_run',
  'import_run',
  'doctor_fix',
  'schema_migrated',
  'storage_loss_acknowledged',
  'update_refused',
  'malformed_entry',
  'claimed',
  'claim_renewed',
  'claim_released',
  'claim_lost',
] as const
export type AuditKind = (typeof AUDIT_KINDS)[number]

export interface AuditEvent {
  /** A ULID: the events of one store sort by id in the order they were written. */
  id: string
  at: string
  kind: AuditKind
  itemId?: ItemId
  replicaId: ReplicaId
  /** Audit events are evidence, never work: `investigate` is false unless stated otherwise. */
  investigate: boolean
  data: Record<string, unknown>
}

export interface AuditQuery {
  /** Only events with a ULID greater than this one. */
  since?: string
  kinds?: readonly AuditKind[]
  itemId?: ItemId | string
  /** At most this many events: the oldest ones, or with `newestFirst` the newest. */
  limit?: number
  /** Newest first (and `limit` takes the newest). Default false: oldest first. */
  newestFirst?: boolean
}

export type StoreEvent =
  | { type: 'changed'; ids: ItemId[]; origin: 'local' | 'remote' }
  | { type: 'deleted'; id: ItemId; uid: Uid; origin: 'local' | 'remote' }
  | { type: 'reanchored'; uid: Uid; oldId: ItemId; newId: ItemId; reason: Alias['reason'] }
  | { type: 'stale_transition'; id: ItemId; entry: StageEntry }
  | { type: 'write_rejected'; id: ItemId; reason: string }
  /**
   * A claim this replica took is no longer its: an expired claim was taken over by another
   * agent, or a provisional claim lost to one the server had granted.
   */
  | { type: 'claim_lost'; id: ItemId; uid: Uid; agent: string; to: WorkClaim | null; reason: 'taken-over' | 'refused' }

export type StoreListener = (event: StoreEvent) => void

/** The stage history of one item: every log entry, whether it counts, and why not. */
export interface StageHistoryEntry extends StageEntry {
  valid: boolean
  invalidReason?: 'stale' | 'superseded-basis' | 'malformed'
  current: boolean
}

export type { EventType, Stage, StageEntry }
