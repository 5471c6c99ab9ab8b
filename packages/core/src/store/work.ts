import type * as Y from 'yjs'
import { nextUlid } from '../audit/audit.js'
import { CLAIM_FIELD, isDeletedUid, readWorkEntries } from '../crdt/layout.js'
import { DocketError } from '../errors.js'
import type { ItemId, ReplicaId, Uid } from '../ids.js'
import type { AuditKind, ClaimNextOptions, ClaimOptions, ClaimResult, Item, ItemType, ReleaseClaimOptions, RenewClaimOptions, StoreEvent, WorkClaim } from '../types.js'
import type { Stage } from '../stage/stages.js'
import { claimOfEntry, currentEntry, grantKey, isClaimLive, isOpen, latestGrant, releaseKey, type WorkEntry } from '../work/claims.js'

type AuditSpecLike = [AuditKind, Record<string, unknown>, ItemId]
import type { Engine } from './engine.js'
import { itemAt } from './items.js'
import type { DocState } from './state.js'
import { checkClaimAsk, invalid } from './validate.js'

/** How many candidates one `next` request offers the server. */
const NEXT_BATCH = 64

type Ask = (request: Record<string, unknown>) => Promise<unknown>

/** What claims need of the Store around them. */
export interface WorkEnv {
  engine: Engine
  replicaId: ReplicaId
  ready: () => Promise<void>
  /** The live item at `id` with its map (NOT_FOUND / TOMBSTONED otherwise). */
  live: (id: ItemId) => { state: DocState; map: Y.Map<unknown>; item: Item }
  /** Whether this store syncs with a server at all (then the server decides every claim). */
  syncs: () => boolean
  /** How to ask the server now, or undefined when not connected. */
  arbiter: () => Ask | undefined
  /** Ready items (not claimed, blocked or frozen; dependencies done), lowest id first. */
  readyItems: (filter: { stage?: Stage | readonly Stage[]; type?: ItemType | readonly ItemType[] }) => Item[]
  now: () => number
}

/** A claim as the server sends it, checked (a server of another version may send anything). */
function wireClaim(value: unknown): WorkClaim {
  const v = (typeof value === 'object' && value !== null ? value : {}) as Record<string, unknown>
  if (typeof v.agent !== 'string' || typeof v.replica !== 'string' || !Number.isSafeInteger(v.grant) || typeof v.since !== 'string' || typeof v.until !== 'string') {
    throw new DocketError('ARBITER_UNAVAILABLE', `The sync server answered a claim with ${JSON.stringify(value).slice(0, 120)}, which is no claim: run the same docket version on the server and the replicas.`)
  }
  return { agent: v.agent, replica: v.replica, since: v.since, until: v.until, grant: v.grant as number, provisional: false }
}

function entryValue(claim: WorkClaim, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { agent: claim.agent, replica: claim.replica, since: claim.since, until: claim.until, grant: claim.grant, ...(claim.provisional ? { provisional: true } : {}), ...extra }
}

function notHeld(id: ItemId, agent: string, holder: WorkClaim | undefined, what: string): DocketError {
  return new DocketError(
    'CLAIM_NOT_HELD',
    holder
      ? `Item ${id} is claimed by ${holder.agent} (until ${holder.until}), not ${agent}: ${what} only by the agent that holds the claim. Claim another item (\`docket claim --next\`).`
      : `${agent} holds no claim on item ${id} (it expired and was taken, or was released): claim it again (\`docket claim ${id} --agent ${agent}\`).`,
    { details: { id, agent, holder: holder ?? null } },
  )
}

/**
 * Claims on items: who works on what. With a sync server the server decides (its arbiter:
 * packages/server/src/arbiter), so among any number of claimants on any number of replicas
 * exactly one wins; this replica then records the grant in the document, where every replica
 * sees it. Offline, only a provisional claim (checked on reconnect); without a server, the
 * store decides alone.
 */
export class WorkClaims {
  readonly #env: WorkEnv
  #settling: Promise<void> | undefined

  constructor(env: WorkEnv) {
    this.#env = env
  }

  async claim(id: ItemId, options: ClaimOptions): Promise<ClaimResult> {
    const ask = checkClaimAsk(options, 'claim()')
    await this.#env.ready()
    const { item } = this.#env.live(id)
    if (!this.#env.syncs()) return this.#claimHere(id, ask, 'l')
    const arbiter = this.#env.arbiter()
    if (!arbiter) {
      if (!ask.offline) throw this.#offlineRefusal(id, 'claim')
      return this.#claimHere(id, ask, 'p')
    }
    const reply = (await arbiter({ op: 'claim', uid: item.uid, agent: ask.agent, replica: this.#env.replicaId, ttlMs: ask.ttlMs })) as { granted?: unknown; claim?: unknown; holder?: unknown; previous?: unknown }
    if (reply?.granted !== true) return { granted: false, item: this.#env.live(id).item, holder: wireClaim(reply?.holder) }
    return this.#recordGrant(item.uid, id, wireClaim(reply.claim), reply.previous === undefined ? undefined : wireClaim(reply.previous))
  }

  async claimNext(options: ClaimNextOptions): Promise<ClaimResult | null> {
    const ask = checkClaimAsk(options, 'claimNext()')
    await this.#env.ready()
    const filter = { ...(options.stage !== undefined ? { stage: options.stage } : {}), ...(options.type !== undefined ? { type: options.type } : {}) }
    if (!this.#env.syncs() || !this.#env.arbiter()) {
      if (this.#env.syncs() && !ask.offline) throw this.#offlineRefusal(undefined, 'claimNext')
      const first = this.#env.readyItems(filter)[0]
      return first ? this.#claimHere(first.id, ask, this.#env.syncs() ? 'p' : 'l') : null
    }
    const skip = new Set<Uid>()
    for (let round = 0; round < 1000; round++) {
      const candidates = this.#env.readyItems(filter).filter((item) => !skip.has(item.uid)).slice(0, NEXT_BATCH)
      if (candidates.length === 0) return null
      const arbiter = this.#env.arbiter()
      if (!arbiter) throw this.#offlineRefusal(undefined, 'claimNext')
      const reply = (await arbiter({ op: 'next', uids: candidates.map((c) => c.uid), agent: ask.agent, replica: this.#env.replicaId, ttlMs: ask.ttlMs })) as {
        granted?: unknown
        uid?: unknown
        claim?: unknown
        previous?: unknown
        taken?: Array<{ uid?: unknown }>
      }
      if (reply?.granted === true) {
        const chosen = candidates.find((c) => c.uid === reply.uid)
        if (!chosen) throw new DocketError('ARBITER_UNAVAILABLE', `The sync server granted a claim on ${String(reply.uid)}, which this replica did not offer: run the same docket version on the server and the replicas.`)
        return this.#recordGrant(chosen.uid, chosen.id, wireClaim(reply.claim), reply.previous === undefined ? undefined : wireClaim(reply.previous))
      }
      // Held by others that this replica had not heard of yet: offer the next ones.
      for (const c of candidates) skip.add(c.uid)
    }
    return null
  }

  async renew(id: ItemId, options: RenewClaimOptions): Promise<ClaimResult> {
    const ask = checkClaimAsk(options, 'renewClaim()')
    await this.#env.ready()
    const mine = await this.#settledEntryOf(id, ask.agent)
    const { item } = this.#env.live(id)
    // A provisional claim still to be checked with the server (offline), or a store without one: decided here.
    if (mine !== undefined && mine.grant === null) {
      if (this.#env.syncs() && !ask.offline) throw this.#offlineRefusal(id, 'renewClaim')
      const claim: WorkClaim = { ...claimOfEntry(mine), until: new Date(this.#env.now() + ask.ttlMs).toISOString() }
      return this.#write(id, mine.key, entryValue(claim, { after: mine.after }), 'claim_renewed', { claim })
    }
    if (!this.#env.syncs()) throw notHeld(id, ask.agent, isClaimLive(item.claim, this.#env.now()) ? item.claim : undefined, 'it can be renewed')
    const arbiter = this.#env.arbiter()
    if (!arbiter) throw this.#offlineRefusal(id, 'renewClaim')
    const reply = (await arbiter({ op: 'renew', uid: item.uid, agent: ask.agent, ttlMs: ask.ttlMs })) as { granted?: unknown; claim?: unknown; holder?: unknown }
    if (reply?.granted !== true) throw notHeld(id, ask.agent, reply?.holder ? wireClaim(reply.holder) : undefined, 'it can be renewed')
    return this.#recordGrant(item.uid, id, wireClaim(reply.claim), undefined, 'claim_renewed')
  }

  async release(id: ItemId, options: ReleaseClaimOptions): Promise<Item> {
    if (typeof options !== 'object' || options === null) throw invalid('releaseClaim() needs { agent }.')
    const ask = checkClaimAsk({ agent: options.agent, offline: options.offline }, 'releaseClaim()')
    await this.#env.ready()
    const mine = await this.#settledEntryOf(id, ask.agent)
    const { item } = this.#env.live(id)
    const released = new Date(this.#env.now()).toISOString()
    if (mine !== undefined && mine.grant === null) {
      // Ended here: the server never granted it (and a settle pass skips a released entry).
      if (this.#env.syncs() && !ask.offline && !this.#env.arbiter()) throw this.#offlineRefusal(id, 'releaseClaim')
      return (await this.#write(id, mine.key, entryValue(claimOfEntry(mine), { after: mine.after, released }), 'claim_released', { claim: claimOfEntry(mine) })).item
    }
    if (!this.#env.syncs()) throw notHeld(id, ask.agent, isClaimLive(item.claim, this.#env.now()) ? item.claim : undefined, 'it can be released')
    const arbiter = this.#env.arbiter()
    if (!arbiter) throw this.#offlineRefusal(id, 'releaseClaim')
    const reply = (await arbiter({ op: 'release', uid: item.uid, agent: ask.agent })) as { released?: unknown; holder?: unknown; claim?: unknown }
    if (reply?.released !== true) throw notHeld(id, ask.agent, reply?.holder ? wireClaim(reply.holder) : undefined, 'it can be released')
    // The claim may have been taken through another replica: the server says which one ends.
    const ended = wireClaim(reply.claim)
    return (await this.#write(id, releaseKey(ended.grant!), { at: released, agent: ended.agent }, 'claim_released', { claim: ended })).item
  }

  /**
   * This agent's current entry on the item — after the provisional claims taken offline have
   * been checked with the server, when it is reachable (else a renewal or release could end a
   * claim the settle pass is about to confirm).
   */
  async #settledEntryOf(id: ItemId, agent: string): Promise<WorkEntry | undefined> {
    const before = this.#entryOf(id, agent)
    if (before !== undefined && before.grant === null && this.#env.syncs() && this.#env.arbiter()) await this.settleProvisional()
    return this.#entryOf(id, agent)
  }

  /**
   * On each (re)connection: every provisional claim this replica took offline is asked of the
   * server. Granted, it becomes the server's claim; refused, it is marked lost and its agent is
   * told (event and audit event). One pass at a time.
   */
  settleProvisional(): Promise<void> {
    this.#settling ??= this.#settle().finally(() => (this.#settling = undefined))
    return this.#settling
  }

  async #settle(): Promise<void> {
    const state = this.#env.engine.state
    const open: Array<{ id: ItemId; uid: Uid; entry: WorkEntry }> = []
    for (const [uid, map] of state.maps) {
      if (isDeletedUid(state.parts, uid)) continue
      let has = false
      for (const key of map.keys()) if (key.startsWith(CLAIM_FIELD)) has = true
      if (!has) continue
      const id = state.claims.shownId(uid)
      if (id === undefined) continue
      for (const entry of readWorkEntries(map)) {
        if (entry.grant === null && entry.replica === this.#env.replicaId && isOpen(entry)) open.push({ id, uid, entry })
      }
    }
    for (const { id, uid, entry } of open) {
      const arbiter = this.#env.arbiter()
      if (!arbiter || this.#env.engine.closing) return
      if (!isClaimLive(entry, this.#env.now())) {
        // Ran out before the server could be asked: nothing to check, nobody to tell.
        await this.#env.engine.write('claim', { change: (s) => s.maps.get(uid)?.set(CLAIM_FIELD + entry.key, entryValue(claimOfEntry(entry), { after: entry.after, outcome: 'expired' })) })
        continue
      }
      const ttlMs = Math.max(1000, Date.parse(entry.until) - this.#env.now())
      const reply = (await arbiter({ op: 'claim', uid, agent: entry.agent, replica: this.#env.replicaId, ttlMs })) as { granted?: unknown; claim?: unknown; holder?: unknown }
      if (this.#env.engine.state.claims.shownId(uid) !== id) continue
      if (reply?.granted === true) {
        const claim = wireClaim(reply.claim)
        const still = readWorkEntries(this.#env.live(id).map).find((e) => e.key === entry.key)
        if (still && !isOpen(still)) {
          // Released while it was being checked: the grant ends at once.
          await arbiter({ op: 'release', uid, agent: entry.agent }).catch(() => undefined)
          continue
        }
        await this.#write(id, grantKey(claim.grant!), entryValue(claim), 'claimed', { claim, confirms: entry.key }, [[entry.key, entryValue(claimOfEntry(entry), { after: entry.after, outcome: 'confirmed' })]])
      } else {
        const holder = wireClaim(reply?.holder)
        const event: StoreEvent = { type: 'claim_lost', id, uid, agent: entry.agent, to: holder, reason: 'refused' }
        await this.#env.engine.write('claim', {
          change: (s) => s.maps.get(uid)?.set(CLAIM_FIELD + entry.key, entryValue(claimOfEntry(entry), { after: entry.after, outcome: 'lost', lostTo: entryValue(holder) })),
          audit: [['claim_lost', { uid, agent: entry.agent, reason: 'refused', provisional: entry.key, to: holder }, id]],
          events: [event],
        })
        this.#env.engine.logger.warn(`the provisional claim of ${entry.agent} on item ${id} lost: the server had granted it to ${holder.agent} (until ${holder.until})`)
      }
    }
  }

  /** Decided by this replica: without a server (`l`), or provisionally while offline (`p`). */
  async #claimHere(id: ItemId, ask: { agent: string; ttlMs: number }, kind: 'l' | 'p'): Promise<ClaimResult> {
    const { item } = this.#env.live(id)
    const now = this.#env.now()
    const current = item.claim
    const until = new Date(now + ask.ttlMs).toISOString()
    if (current !== undefined && isClaimLive(current, now)) {
      if (current.agent !== ask.agent) return { granted: false, item, holder: current }
      const mine = this.#entryOf(id, ask.agent)
      // The holder claiming again extends its claim (never shortens it) — here only if this replica may decide it.
      if (mine && mine.grant === null) {
        const longer = { ...claimOfEntry(mine), until: Date.parse(mine.until) > now + ask.ttlMs ? mine.until : until }
        return this.#write(id, mine.key, entryValue(longer, { after: mine.after }), 'claimed', { claim: longer })
      }
      return { granted: true, item, claim: current }
    }
    const claim: WorkClaim = { agent: ask.agent, replica: this.#env.replicaId, since: new Date(now).toISOString(), until, grant: null, provisional: kind === 'p' }
    const previous = current !== undefined && current.agent !== ask.agent ? current : undefined
    // Taken on top of the latest grant this replica knows: a later grant outranks it.
    const after = latestGrant(readWorkEntries(this.#env.live(id).map))?.grant ?? 0
    return this.#write(id, `${kind}${nextUlid()}`, entryValue(claim, { after }), 'claimed', { claim, ...(previous ? { previous } : {}) })
  }

  /** Records what the server granted (or renewed) in the document, where every replica sees it. */
  #recordGrant(uid: Uid, id: ItemId, claim: WorkClaim, previous: WorkClaim | undefined, kind: 'claimed' | 'claim_renewed' = 'claimed'): Promise<ClaimResult & { granted: true }> {
    const where = this.#env.engine.state.claims.shownId(uid) ?? id
    const taken = previous && previous.agent !== claim.agent ? previous : undefined
    // The claim it took over was this replica's: its agent is told here (another replica learns it when the grant arrives).
    const tell = taken !== undefined && taken.replica === this.#env.replicaId
    return this.#write(where, grantKey(claim.grant!), entryValue(claim), kind, { claim, ...(taken ? { previous: taken } : {}), ...(tell ? { tell: true } : {}) })
  }

  async #write(
    id: ItemId,
    key: string,
    value: Record<string, unknown>,
    kind: 'claimed' | 'claim_renewed' | 'claim_released',
    facts: { claim: WorkClaim; previous?: WorkClaim; confirms?: string; tell?: boolean },
    also: Array<[string, Record<string, unknown>]> = [],
  ): Promise<ClaimResult & { granted: true }> {
    const { state, map, item } = this.#env.live(id)
    const lost = facts.tell && facts.previous ? facts.previous : undefined
    const item2 = await this.#env.engine.write('claim', {
      change: () => {
        map.set(CLAIM_FIELD + key, value)
        for (const [k, v] of also) map.set(CLAIM_FIELD + k, v)
      },
      audit: [
        [kind, { uid: item.uid, agent: facts.claim.agent, grant: facts.claim.grant, until: facts.claim.until, provisional: facts.claim.provisional, ...(facts.previous ? { previous: facts.previous } : {}), ...(facts.confirms ? { confirms: facts.confirms } : {}) }, id],
        ...(lost ? [['claim_lost', { uid: item.uid, agent: lost.agent, grant: lost.grant, reason: 'taken-over', to: facts.claim }, id] as AuditSpecLike] : []),
      ],
      events: lost ? [{ type: 'claim_lost', id, uid: item.uid, agent: lost.agent, to: facts.claim, reason: 'taken-over' }] : [],
      read: () => itemAt(state, id) ?? item,
    })
    return facts.previous ? { granted: true, item: item2, claim: facts.claim, previous: facts.previous } : { granted: true, item: item2, claim: facts.claim }
  }

  /** The item's current entry, if this agent's. */
  #entryOf(id: ItemId, agent: string): WorkEntry | undefined {
    const current = currentEntry(readWorkEntries(this.#env.live(id).map))
    return current?.agent === agent ? current : undefined
  }

  #offlineRefusal(id: ItemId | undefined, what: string): DocketError {
    return new DocketError(
      'BEHIND_REMOTE',
      `${what}${id ? ` of item ${id}` : ''} needs the sync server, which decides claims, and this replica is not connected to it: try again once it is, or pass { offline: true } (--offline) for a provisional claim that the server checks on reconnect.`,
      { details: { ...(id ? { id } : {}) } },
    )
  }
}
