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
  const verdicts = judgeAll(byId)
  let current: StageEntry | undefined
  const invalid: StageResolution['invalid'] = []
  for (const entry of byId.values()) {
    const verdict = verdicts.get(entry.id)!
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

type Shape = { verdict: InvalidReason | null } | { basis: StageEntry; backward: boolean }

/** What can be said of an entry without its basis's verdict: malformed, the first entry, or which basis it needs. */
function shapeOf(entry: StageEntry, byId: ReadonlyMap<string, StageEntry>): Shape {
  if (!Number.isSafeInteger(entry.epoch) || entry.epoch < 0 || !isStage(entry.stage)) return { verdict: 'malformed' }
  if (entry.basedOn === null) return { verdict: entry.event === 'created' && entry.epoch === 0 ? null : 'malformed' }
  const basis = byId.get(entry.basedOn)
  if (basis === undefined || entry.event === 'created') return { verdict: 'malformed' }
  let next: Stage
  try {
    next = transition(basis.stage, entry.event)
  } catch {
    return { verdict: 'malformed' }
  }
  const backward = directionOf(entry.event) === 'backward'
  if (next !== entry.stage || entry.epoch !== basis.epoch + (backward ? 1 : 0)) return { verdict: 'malformed' }
  return { basis, backward }
}

/**
 * Every entry's verdict, without recursion (a log can be as long as a peer makes it): epochs in
 * ascending order, since a backward entry depends on the epoch before its own (its basis and
 * that epoch's highest rank), and within an epoch along basis chains with an explicit stack.
 * The entries of a basis cycle are all malformed, whatever order they come in.
 */
function judgeAll(byId: ReadonlyMap<string, StageEntry>): Map<string, InvalidReason | null> {
  const verdicts = new Map<string, InvalidReason | null>()
  const maxRankOfEpoch = new Map<number, number>()
  const epochs = new Map<number, StageEntry[]>()
  for (const entry of byId.values()) {
    const members = epochs.get(entry.epoch)
    if (members) members.push(entry)
    else epochs.set(entry.epoch, [entry])
  }
  const maxRank = (epoch: number): number => {
    let max = maxRankOfEpoch.get(epoch)
    if (max !== undefined) return max
    max = -1
    for (const member of epochs.get(epoch) ?? []) if (verdicts.get(member.id) === null) max = Math.max(max, rankOf(member.stage))
    maxRankOfEpoch.set(epoch, max)
    return max
  }
  const ordered = [...epochs.keys()].sort((a, b) => (Number.isFinite(a) && Number.isFinite(b) ? a - b : Number.isFinite(a) ? -1 : 1))
  for (const epoch of ordered) {
    for (const start of epochs.get(epoch)!) {
      const stack: StageEntry[] = [start]
      const onStack = new Set<string>([start.id])
      while (stack.length > 0) {
        const top = stack[stack.length - 1]!
        if (verdicts.has(top.id)) {
          stack.pop()
          onStack.delete(top.id)
          continue
        }
        const shape = shapeOf(top, byId)
        if ('verdict' in shape) {
          verdicts.set(top.id, shape.verdict)
          continue
        }
        const basisVerdict = verdicts.get(shape.basis.id)
        if (basisVerdict === undefined) {
          if (onStack.has(shape.basis.id)) {
            // A cycle of bases: every entry on it is malformed.
            for (let i = stack.length - 1; i >= 0; i--) {
              verdicts.set(stack[i]!.id, 'malformed')
              if (stack[i]!.id === shape.basis.id) break
            }
            continue
          }
          stack.push(shape.basis)
          onStack.add(shape.basis.id)
          continue
        }
        if (basisVerdict !== null) verdicts.set(top.id, 'superseded-basis')
        else if (shape.backward && rankOf(shape.basis.stage) < maxRank(shape.basis.epoch)) verdicts.set(top.id, 'stale')
        else verdicts.set(top.id, null)
      }
    }
  }
  return verdicts
}

/** Orders entries by (epoch, rank, id): the greatest valid entry is the current stage. */
export function compareEntries(a: StageEntry, b: StageEntry): number {
  if (a.epoch !== b.epoch) return a.epoch - b.epoch
  const rank = rankOf(a.stage) - rankOf(b.stage)
  if (rank !== 0) return rank
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0
}
