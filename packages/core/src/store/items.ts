import { contentEntries, isDeletedUid, readStageEntries, type ItemRecord } from '../crdt/layout.js'
import { isContentRef, type ContentRef } from '../crdt/content.js'
import { idToNumber, type ItemId } from '../ids.js'
import { resolveStage } from '../stage/resolve.js'
import type { StageEntry } from '../stage/log.js'
import type { Stage } from '../stage/stages.js'
import type { Item, ItemType, ListItemsOptions, StageHistoryEntry } from '../types.js'
import { invalid } from './validate.js'
import { recordOf, type DocState } from './state.js'

/** Stages in which a dependency counts as satisfied. */
export const SATISFIED_STAGES: ReadonlySet<Stage> = new Set<Stage>(['done', 'archived'])

/** The live item at `id` as readers see it, or undefined (absent, tombstoned or unreadable). */
export function itemAt(state: DocState, id: ItemId): Item | undefined {
  const cached = state.items.get(id)
  if (cached !== undefined) return cached === null ? undefined : copy(cached)
  const item = buildItem(state, id)
  state.items.set(id, item ?? null)
  return item === undefined ? undefined : copy(item)
}

/**
 * Live — the one definition: the item shown at `id` (its claim won the id, which is not
 * tombstoned), whose map is readable under its uid, and whose uid was not deleted.
 */
function buildItem(state: DocState, id: ItemId): Item | undefined {
  const uid = state.claims.uidAt(id)
  if (uid === undefined || isDeletedUid(state.parts, uid)) return undefined
  const record = recordOf(state, uid)
  const map = state.maps.get(uid)
  if (!map || !record) return undefined
  return itemFromRecord(id, record, resolveStage(readStageEntries(map))?.stage ?? 'backlog')
}

/** The item a reader sees, from its record and its resolved stage. */
export function itemFromRecord(id: ItemId, record: ItemRecord, stage: Stage): Item {
  const item: Item = {
    id,
    uid: record.uid,
    name: record.name,
    type: record.type,
    stage,
    dependsOn: [...record.dependsOn],
    blocked: record.blocked,
    frozen: record.frozen,
    retries: record.retries,
    createdAt: record.createdAt,
    updatedAt: record.updatedAt,
    createdBy: record.createdBy,
  }
  if (record.agent !== null) item.agent = record.agent
  return item
}

function copy(item: Item): Item {
  return { ...item, dependsOn: [...item.dependsOn], blocked: item.blocked ? { ...item.blocked } : null }
}

export function isLive(state: DocState, id: ItemId): boolean {
  return itemAt(state, id) !== undefined
}

/** The ids of live items, in numeric order. */
export function liveIds(state: DocState): ItemId[] {
  const ids: ItemId[] = []
  for (const [id] of state.claims.shownEntries()) if (itemAt(state, id) !== undefined) ids.push(id)
  return ids.sort((a, b) => idToNumber(a) - idToNumber(b))
}

export function listItems(state: DocState, options: ListItemsOptions): Item[] {
  const items = liveIds(state).flatMap((id) => itemAt(state, id) ?? [])
  return filterItems(items, options, (id) => itemAt(state, id))
}

/**
 * The list filters, over items read from anywhere (the document, the index rows): `lookup`
 * finds a dependency, which may lie outside `items`' filters but never outside the store.
 */
export function filterItems(items: readonly Item[], options: ListItemsOptions, lookup: (id: ItemId) => Item | undefined): Item[] {
  const stages = toSet<Stage>(options.stage)
  const types = toSet<ItemType>(options.type)
  return items.filter((item) => {
    if (stages && !stages.has(item.stage)) return false
    if (types && !types.has(item.type)) return false
    if (options.ready !== undefined && readyGiven(item, lookup) !== options.ready) return false
    return true
  })
}

function toSet<T extends string>(value: T | readonly T[] | undefined): Set<T> | undefined {
  if (value === undefined) return undefined
  return new Set(typeof value === 'string' ? [value] : value)
}

/** Ready: neither blocked nor frozen, and every dependency a live item that is done or archived. */
export function isReady(state: DocState, item: Item): boolean {
  return readyGiven(item, (id) => itemAt(state, id))
}

export function readyGiven(item: Item, lookup: (id: ItemId) => Item | undefined): boolean {
  if (item.blocked !== null || item.frozen) return false
  return item.dependsOn.every((dep) => {
    const target = lookup(dep)
    return target !== undefined && SATISFIED_STAGES.has(target.stage)
  })
}

/**
 * Checks a dependency list against the store: never the item itself, never a deleted id,
 * and (unless allowed) never an id that is not a live item. An update must not close a cycle.
 */
export function checkDependencies(state: DocState, deps: readonly ItemId[], self: ItemId | undefined, allowUnknown: boolean, checkCycles = false): void {
  for (const dep of deps) {
    if (dep === self) throw invalid(`Item ${self} cannot depend on itself: remove ${dep} from dependsOn.`, { dependency: dep })
    if (state.parts.tombstones.has(dep)) {
      throw invalid(`Dependency ${dep} was deleted: remove it from dependsOn (a deleted id never comes back).`, { dependency: dep })
    }
    if (!allowUnknown && !isLive(state, dep)) {
      throw invalid(`Dependency ${dep} is not an item in this store: create it first or check the id.`, { dependency: dep })
    }
  }
  if (checkCycles && self !== undefined) {
    const cycle = findCycle(state, self, deps)
    if (cycle) throw invalid(`dependsOn would create a cycle ${cycle.join(' → ')}: an item cannot (indirectly) depend on itself.`, { cycle })
  }
}

/** A path self → … → self through the new dependencies, if any. Iterative: linear in the items visited. */
function findCycle(state: DocState, self: ItemId, deps: readonly ItemId[]): ItemId[] | undefined {
  const parent = new Map<ItemId, ItemId>()
  const stack: ItemId[] = []
  for (const dep of deps) {
    if (!parent.has(dep)) {
      parent.set(dep, self)
      stack.push(dep)
    }
  }
  while (stack.length > 0) {
    const id = stack.pop()!
    if (id === self) {
      const path: ItemId[] = [self]
      for (let at = parent.get(self)!; at !== self; at = parent.get(at)!) path.push(at)
      return [self, ...path.slice(1).reverse(), self]
    }
    for (const next of itemAt(state, id)?.dependsOn ?? []) {
      if (next === self || !parent.has(next)) {
        if (next === self && parent.has(self)) continue
        parent.set(next, id)
        stack.push(next)
      }
    }
  }
  return undefined
}

export function stageHistory(state: DocState, id: ItemId): StageHistoryEntry[] {
  const uid = state.claims.uidAt(id)
  const map = uid === undefined ? undefined : state.maps.get(uid)
  return map ? historyOf(readStageEntries(map)) : []
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

/** Every blob the live items' content references (deduplicated by hash), for blob catch-up. */
export function* referencedBlobs(state: DocState): Iterable<ContentRef> {
  const seen = new Set<string>()
  for (const id of liveIds(state)) {
    const uid = state.claims.uidAt(id)
    const map = uid === undefined ? undefined : state.maps.get(uid)
    if (!map) continue
    for (const [, value] of contentEntries(map)) {
      if (!isContentRef(value) || seen.has(value.sha256)) continue
      seen.add(value.sha256)
      yield value
    }
  }
}
