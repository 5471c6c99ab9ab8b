import { contentEntries, currentClaimOf, isDeletedUid, readExtras, readStageEntries, type ItemExtras, type ItemRecord } from '../crdt/layout.js'
import { isContentRef, type ContentRef } from '../crdt/content.js'
import { idToNumber, type ItemId } from '../ids.js'
import { resolveStage } from '../stage/resolve.js'
import type { Stage } from '../stage/stages.js'
import type { Item, ListItemsOptions, StageHistoryEntry, WorkClaim } from '../types.js'
import { invalid } from './validate.js'
import { filterItems, historyOf, readyGiven } from './listing.js'
import { recordOf, type DocState } from './state.js'

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
  return itemFromRecord(id, record, resolveStage(readStageEntries(map))?.stage ?? 'backlog', currentClaimOf(map), readExtras(map))
}

/** The item a reader sees, from its record and its resolved stage. */
export function itemFromRecord(id: ItemId, record: ItemRecord, stage: Stage, claim?: WorkClaim, extras: ItemExtras = {}): Item {
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
  if (extras.priority !== undefined) item.priority = extras.priority
  if (extras.labels !== undefined) item.labels = [...extras.labels]
  if (extras.parent !== undefined) item.parent = extras.parent
  if (extras.externalIds !== undefined) item.externalIds = [...extras.externalIds]
  if (claim !== undefined) item.claim = claim
  return item
}

function copy(item: Item): Item {
  const out: Item = { ...item, dependsOn: [...item.dependsOn], blocked: item.blocked ? { ...item.blocked } : null }
  if (item.labels) out.labels = [...item.labels]
  if (item.externalIds) out.externalIds = [...item.externalIds]
  if (item.claim) out.claim = { ...item.claim }
  return out
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

/** Ready: neither blocked nor frozen, and every dependency a live item that is done or archived. */
export function isReady(state: DocState, item: Item): boolean {
  return readyGiven(item, (id) => itemAt(state, id))
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
