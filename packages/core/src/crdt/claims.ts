import { idToNumber, isItemId, isUid, type ItemId, type ReplicaId, type Uid } from '../ids.js'

/**
 * Id claims (schema 2, docs/FORMAT.md). An item's data lives under its uid and is never
 * overwritten by another item; which item shows which id is decided here, from a grow-only
 * set of claims `<id>/<uid>`, by rules that only look at the set — so every replica that
 * holds the same claims and tombstones decides the same, whatever order they arrived in.
 *
 * - The claims of one id compete; the one with the lowest uid wins (uids are ULIDs, so the
 *   item created first, by its creator's clock). A tombstoned id has no winner: it is dead.
 * - An item shows the highest id among the claims it wins (a re-anchoring always claims a
 *   fresh id, higher than every id its author had seen); every other id it ever claimed is
 *   an alias of that one.
 * - An item that wins no claim is unanchored: its creator claims a fresh id for it.
 *
 * Losing is monotone: claims and tombstones only grow, so a claim that has lost once never
 * wins again. That is why a re-anchoring, once decided, is never undone by later updates.
 *
 * A schema 1 item implies a claim of the id it is stored under, for as long as it is stored
 * there: schema 1's own merge of concurrent writes to one id is thereby kept exactly as it was.
 */
export type ClaimReason = 'created' | 'collision' | 'tombstoned-id' | 'recovery' | 'migrated' | 'unclaimed'

export interface ClaimValue {
  at: string
  by: ReplicaId
  reason: ClaimReason
  /** The id the item held before this claim (a re-anchoring), if any. */
  from?: ItemId
}

export function claimKey(id: ItemId, uid: Uid): string {
  return `${id}/${uid}`
}

export function parseClaimKey(key: string): { id: ItemId; uid: Uid } | undefined {
  const at = key.indexOf('/')
  if (at < 0) return undefined
  const id = key.slice(0, at)
  const uid = key.slice(at + 1)
  return isItemId(id) && isUid(uid) ? { id, uid } : undefined
}

/** The winner among the uids that claim one id: none if the id is tombstoned, else the lowest uid. Pure. */
export function winnerOf(uids: Iterable<Uid>, tombstoned: boolean): Uid | undefined {
  if (tombstoned) return undefined
  let best: Uid | undefined
  for (const uid of uids) if (best === undefined || uid < best) best = uid
  return best
}

/** The id an item shows among the ids whose claim it wins: the highest. Pure. */
export function shownIdOf(won: Iterable<ItemId>): ItemId | undefined {
  let best: ItemId | undefined
  for (const id of won) if (best === undefined || idToNumber(id) > idToNumber(best)) best = id
  return best
}

/**
 * The claims of a document, resolved incrementally: adding a claim or a tombstone recomputes
 * only the id it concerns and the items that claim it, so a change costs O(claims of that id).
 */
export class ClaimIndex {
  readonly #byId = new Map<ItemId, Set<Uid>>()
  readonly #byUid = new Map<Uid, Set<ItemId>>()
  readonly #tombstoned = new Set<ItemId>()
  readonly #winner = new Map<ItemId, Uid>()
  readonly #shown = new Map<Uid, ItemId>()
  readonly #at = new Map<ItemId, Uid>()

  /** How many sources hold each claim (an explicit claim and a schema 1 item may both). */
  readonly #sources = new Map<string, number>()

  /** Records a claim; returns the uids whose shown id may have changed. */
  add(id: ItemId, uid: Uid): Set<Uid> {
    const key = claimKey(id, uid)
    this.#sources.set(key, (this.#sources.get(key) ?? 0) + 1)
    const uids = this.#byId.get(id) ?? new Set<Uid>()
    if (uids.has(uid)) return new Set()
    uids.add(uid)
    this.#byId.set(id, uids)
    const ids = this.#byUid.get(uid) ?? new Set<ItemId>()
    ids.add(id)
    this.#byUid.set(uid, ids)
    return this.#resolveId(id, new Set([uid]))
  }

  /**
   * Drops one source of a claim. Only a schema 1 item's implied claim ever goes (its map was
   * replaced at that key by a concurrent schema 1 write, or deleted): claims proper only grow.
   */
  remove(id: ItemId, uid: Uid): Set<Uid> {
    const key = claimKey(id, uid)
    const count = this.#sources.get(key) ?? 0
    if (count > 1) {
      this.#sources.set(key, count - 1)
      return new Set()
    }
    if (count === 0) return new Set()
    this.#sources.delete(key)
    const uids = this.#byId.get(id)
    uids?.delete(uid)
    if (uids?.size === 0) this.#byId.delete(id)
    const ids = this.#byUid.get(uid)
    ids?.delete(id)
    if (ids?.size === 0) this.#byUid.delete(uid)
    const affected = this.#resolveId(id, new Set([uid]))
    this.#reshow(uid)
    return affected
  }

  /** Records a tombstone: the id dies for whoever won it. Returns the uids affected. */
  tombstone(id: ItemId): Set<Uid> {
    if (this.#tombstoned.has(id)) return new Set()
    this.#tombstoned.add(id)
    return this.#resolveId(id, new Set())
  }

  #resolveId(id: ItemId, affected: Set<Uid>): Set<Uid> {
    const before = this.#winner.get(id)
    const after = winnerOf(this.#byId.get(id) ?? [], this.#tombstoned.has(id))
    if (before === after) return affected
    if (after === undefined) this.#winner.delete(id)
    else this.#winner.set(id, after)
    for (const uid of [before, after]) {
      if (uid === undefined) continue
      affected.add(uid)
      this.#reshow(uid)
    }
    return affected
  }

  #reshow(uid: Uid): void {
    const old = this.#shown.get(uid)
    const won = [...(this.#byUid.get(uid) ?? [])].filter((id) => this.#winner.get(id) === uid)
    const shown = shownIdOf(won)
    if (old === shown) return
    if (old !== undefined && this.#at.get(old) === uid) this.#at.delete(old)
    if (shown === undefined) this.#shown.delete(uid)
    else {
      this.#shown.set(uid, shown)
      this.#at.set(shown, uid)
    }
  }

  /** The id an item shows, if it is anchored. */
  shownId(uid: Uid): ItemId | undefined {
    return this.#shown.get(uid)
  }

  /** The item shown at an id, if any (a dead or alias id shows none). */
  uidAt(id: ItemId): Uid | undefined {
    return this.#at.get(id)
  }

  /** The uid whose claim won `id` (it may show another id: then `id` is one of its aliases). */
  winnerAt(id: ItemId): Uid | undefined {
    return this.#winner.get(id)
  }

  isTombstoned(id: ItemId): boolean {
    return this.#tombstoned.has(id)
  }

  isClaimed(id: ItemId): boolean {
    return this.#byId.has(id)
  }

  claimsOf(uid: Uid): ItemId[] {
    return [...(this.#byUid.get(uid) ?? [])].sort((a, b) => idToNumber(a) - idToNumber(b))
  }

  claimants(id: ItemId): Uid[] {
    return [...(this.#byId.get(id) ?? [])].sort()
  }

  hasClaims(uid: Uid): boolean {
    return this.#byUid.has(uid)
  }

  /** Every id that shows an item, with its uid (unsorted). */
  shownEntries(): IterableIterator<[ItemId, Uid]> {
    return this.#at.entries()
  }

  get shownCount(): number {
    return this.#at.size
  }

  /**
   * Why an item that shows no id lost the last id it claimed: another item won it, or the id
   * was deleted. Undefined for an anchored item or one that never claimed an id.
   */
  lossOf(uid: Uid): { id: ItemId; reason: 'collision' | 'tombstoned-id' } | undefined {
    if (this.#shown.has(uid)) return undefined
    const ids = this.claimsOf(uid)
    const last = ids[ids.length - 1]
    if (last === undefined) return undefined
    return { id: last, reason: this.#tombstoned.has(last) ? 'tombstoned-id' : 'collision' }
  }
}
