import type { ItemId } from '../ids.js'
import type { StageEntry } from '../stage/log.js'
import { resolveStage } from '../stage/resolve.js'
import type { Stage } from '../stage/stages.js'
import type { Item, ItemType, ListItemsOptions, StageHistoryEntry } from '../types.js'
import { isClaimLive } from '../work/claims.js'

// The reads' pure rules, over items read from anywhere (the document, the index rows, a holder):
// no Yjs here, so that a reader loads without it.

/** Stages in which a dependency counts as satisfied. */
export const SATISFIED_STAGES: ReadonlySet<Stage> = new Set<Stage>(['done', 'archived'])

/**
 * The list filters, over items read from anywhere (the document, the index rows): `lookup`
 * finds a dependency, which may lie outside `items`' filters but never outside the store.
 */
export function filterItems(items: readonly Item[], options: ListItemsOptions, lookup: (id: ItemId) => Item | undefined, nowMs = Date.now()): Item[] {
  const stages = toSet<Stage>(options.stage)
  const types = toSet<ItemType>(options.type)
  const labels = toSet<string>(options.label)
  const priorities = options.priority === undefined ? undefined : new Set(typeof options.priority === 'number' ? [options.priority] : options.priority)
  const out = items.filter((item) => {
    if (stages && !stages.has(item.stage)) return false
    if (types && !types.has(item.type)) return false
    if (labels && !(item.labels ?? []).some((l) => labels.has(l))) return false
    if (priorities && !priorities.has(priorityOf(item))) return false
    if (options.parent !== undefined && item.parent !== options.parent) return false
    if (options.ready !== undefined && readyGiven(item, lookup, nowMs) !== options.ready) return false
    if (options.claimed !== undefined && isClaimLive(item.claim, nowMs) !== options.claimed) return false
    return true
  })
  // What an agent should pick up first comes first: by priority, then id.
  return options.ready === true ? out.sort(byPriorityThenId) : out
}

/** An item's priority: 2 when it has none. */
export function priorityOf(item: Item): number {
  return item.priority ?? 2
}

export function byPriorityThenId(a: Item, b: Item): number {
  return priorityOf(a) - priorityOf(b) || Number(a.id) - Number(b.id)
}

function toSet<T extends string>(value: T | readonly T[] | undefined): Set<T> | undefined {
  if (value === undefined) return undefined
  return new Set(typeof value === 'string' ? [value] : value)
}

/** Ready: an agent may pick it up now — not blocked, frozen or claimed, and every dependency satisfied. */
export function readyGiven(item: Item, lookup: (id: ItemId) => Item | undefined, nowMs = Date.now()): boolean {
  if (item.blocked !== null || item.frozen || isClaimLive(item.claim, nowMs)) return false
  return item.dependsOn.every((dep) => {
    const target = lookup(dep)
    return target !== undefined && SATISFIED_STAGES.has(target.stage)
  })
}

/** A stage log as `stageHistory` shows it: every entry, whether it counts and why not, in time order. */
export function historyOf(entries: readonly StageEntry[]): StageHistoryEntry[] {
  const resolution = resolveStage(entries)
  const invalidReasons = new Map(resolution?.invalid.map(({ entry, reason }) => [entry.id, reason]) ?? [])
  return entries
    .map((entry): StageHistoryEntry => {
      const reason = invalidReasons.get(entry.id)
      const out: StageHistoryEntry = { ...entry, valid: reason === undefined, current: resolution?.current.id === entry.id }
      if (reason !== undefined) out.invalidReason = reason
      return out
    })
    .sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : a.id < b.id ? -1 : 1))
}
