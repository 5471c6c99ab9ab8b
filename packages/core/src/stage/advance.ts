import type { ReplicaId } from '../ids.js'
import type { StageEntry } from './log.js'
import { directionOf, transition, type StageEvent } from './machine.js'
import type { StageResolution } from './resolve.js'
import type { Stage } from './stages.js'

/**
 * The log entry that records `event` decided on top of `resolution` (what the deciding
 * replica sees as current). Pure: the store supplies the id and the clock.
 * A forward event stays in the epoch; a backward one opens the next epoch.
 */
export function nextEntry(resolution: StageResolution, event: StageEvent, by: ReplicaId, at: string, id: string): StageEntry {
  const stage = transition(resolution.stage, event)
  const entry: StageEntry = {
    id,
    epoch: resolution.epoch + (directionOf(event.type) === 'backward' ? 1 : 0),
    stage,
    event: event.type,
    basedOn: resolution.current.id,
    by,
    at,
  }
  if (event.reason !== undefined) entry.reason = event.reason
  return entry
}

/** The first entry of an item's log: it starts in `stage`, in epoch 0, based on nothing. Pure, like nextEntry. */
export function createdEntry(stage: Stage, by: ReplicaId, at: string, id: string): StageEntry {
  return { id, epoch: 0, stage, event: 'created', basedOn: null, by, at }
}
