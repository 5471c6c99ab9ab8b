import { directionOf, transition } from './machine.js'
import type { StageEntry } from './log.js'
import { isStage, rankOf, type Stage } from './stages.js'

export type InvalidReason =
  /** A backward decision based on an entry that was not the highest-ranked of its epoch. */
  | 'stale'
  /** Based on an entry that is itself invalid. */
  | 'superseded-basis'
  /** Not a legal step of the stage machine from its basis, or an unknown basis. */
  | 'malformed'

export interface StageResolution {
  /** The winning entry: the valid entry with the greatest (epoch, rank, id). */
  current: StageEntry
  stage: Stage
  epoch: number
  /** Entries that do not count, with why. Stale ones are reported to the audit log. */
  invalid: Array<{ entry: StageEntry; reason: InvalidReason }>
}

/**
 * Derives an item's stage from its merged stage log. Pure and order-independent: any
 * permutation of the same entries gives the same result, which is what makes every
 * replica agree.
 *
 * A forward entry counts if its basis counts. A backward entry counts only if its basis
 * counts and was at the highest rank reached in its epoch: a replica that decided to go
 * back without having seen how far the item had got does not win.
 */
export function resolveStage(entries: readonly StageEntry[]): StageResolution | undefined {
  const byId = new Map<string, StageEntry>()
  for (const entry of entries) {
    const seen = byId.get(entry.id)
    // Duplicate ids can only come from corrupted data; keep one deterministically.
    if (seen === undefined || JSON.stringify(entry) < JSON.stringify(seen)) byId.set(entry.id, entry)
  }
  const verdicts = new Map<string, InvalidReason | null>()
  const maxRankOfEpoch = new Map<number, number>()
  const epochMembers = new Map<number, StageEntry[]>()
  for (const entry of byId.values()) {
    const members = epochMembers.get(entry.epoch)
    if (members) members.push(entry)
    else epochMembers.set(entry.epoch, [entry])
  }

  const verdictOf = (entry: StageEntry, path: Set<string>): InvalidReason | null => {
    const known = verdicts.get(entry.id)
    if (known !== undefined) return known
    if (path.has(entry.id)) return 'malformed'
    path.add(entry.id)
    const verdict = judge(entry, path)
    path.delete(entry.id)
    verdicts.set(entry.id, verdict)
    return verdict
  }

  const maxRank = (epoch: number, path: Set<string>): number => {
    const cached = maxRankOfEpoch.get(epoch)
    if (cached !== undefined) return cached
    let max = -1
    for (const member of epochMembers.get(epoch) ?? []) {
      if (verdictOf(member, path) === null) max = Math.max(max, rankOf(member.stage))
    }
    maxRankOfEpoch.set(epoch, max)
    return max
  }

  const judge = (entry: StageEntry, path: Set<string>): InvalidReason | null => {
    if (!Number.isSafeInteger(entry.epoch) || entry.epoch < 0 || !isStage(entry.stage)) return 'malformed'
    if (entry.basedOn === null) return entry.event === 'created' && entry.epoch === 0 ? null : 'malformed'
    const basis = byId.get(entry.basedOn)
    if (basis === undefined || entry.event === 'created') return 'malformed'
    let next: Stage
    try {
      next = transition(basis.stage, entry.event)
    } catch {
      return 'malformed'
    }
    const backward = directionOf(entry.event) === 'backward'
    if (next !== entry.stage || entry.epoch !== basis.epoch + (backward ? 1 : 0)) return 'malformed'
    if (verdictOf(basis, path) !== null) return 'superseded-basis'
    if (backward && rankOf(basis.stage) < maxRank(basis.epoch, path)) return 'stale'
    return null
  }

  let current: StageEntry | undefined
  const invalid: StageResolution['invalid'] = []
  for (const entry of byId.values()) {
    const verdict = verdictOf(entry, new Set())
    if (verdict !== null) {
      invalid.push({ entry, reason: verdict })
      continue
    }
    if (current === undefined || compareEntries(entry, current) > 0) current = entry
  }
  if (current === undefined) return undefined
  invalid.sort((a, b) => (a.entry.id < b.entry.id ? -1 : a.entry.id > b.entry.id ? 1 : 0))
  return { current, stage: current.stage, epoch: current.epoch, invalid }
}

/** Orders entries by (epoch, rank, id): the greatest valid entry is the current stage. */
export function compareEntries(a: StageEntry, b: StageEntry): number {
  if (a.epoch !== b.epoch) return a.epoch - b.epoch
  const rank = rankOf(a.stage) - rankOf(b.stage)
  if (rank !== 0) return rank
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0
}
