import type { ReplicaId } from '../ids.js'
import type { EventType } from './machine.js'
import { isStage, type Stage } from './stages.js'

/**
 * One entry of an item's grow-only stage log. The log is the only place a stage is stored;
 * the current stage is derived from it by `resolveStage`.
 */
export interface StageEntry {
  /** A ULID: unique across replicas, and the final tie-break between entries. */
  id: string
  /** Opened by a backward event (epoch + 1); kept by a forward one. */
  epoch: number
  stage: Stage
  /** The event that produced the entry; `created` for the first entry of an item. */
  event: EventType | 'created'
  /** The entry the deciding replica saw as current; null only for `created`. */
  basedOn: string | null
  by: ReplicaId
  at: string
  reason?: string
}

/** Whether a value (read from the document, a row, a peer) has the shape of a stage entry. */
export function isStageEntry(value: unknown): value is StageEntry {
  if (typeof value !== 'object' || value === null) return false
  const e = value as StageEntry
  return (
    typeof e.id === 'string' &&
    typeof e.epoch === 'number' &&
    isStage(e.stage) &&
    typeof e.event === 'string' &&
    (e.basedOn === null || typeof e.basedOn === 'string') &&
    typeof e.by === 'string' &&
    typeof e.at === 'string' &&
    Number.isFinite(e.epoch) &&
    (e.reason === undefined || e.reason === null || typeof e.reason === 'string')
  )
}
