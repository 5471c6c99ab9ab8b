import type { WorkClaim } from '../types.js'

/**
 * Claims on items (who works on what), as the document keeps them: a Y.Map `work` in the
 * item's map (docs/FORMAT.md), one entry per claim — `g<grant>` for one the sync server
 * granted, `p<ulid>` for a provisional one taken offline, `l<ulid>` for one a store without a
 * server granted itself. Entries are never replaced by another claim, so a stale write of an
 * old claim cannot hide a newer one: which claim is current is decided here, from all of them.
 * Pure; no Yjs.
 */

/** An entry's value: the claim, and what became of it. */
export interface WorkEntry extends WorkClaim {
  key: string
  /**
   * For a provisional or local claim: the latest grant number its replica knew when it took it
   * (0: none). It counts only while no later grant exists — a server's grant always outranks it.
   */
  after: number
  /** When its agent released it. */
  released?: string
  /**
   * A provisional claim once checked with the server: `confirmed` (a `g` entry now stands for
   * it) or `lost`; `expired` when it ran out before it could be checked.
   */
  outcome?: 'confirmed' | 'lost' | 'expired'
  /** For a lost provisional claim: the claim that held the item. */
  lostTo?: WorkClaim
}

export const DEFAULT_CLAIM_TTL_MS = 15 * 60 * 1000
export const MIN_CLAIM_TTL_MS = 1000
export const MAX_CLAIM_TTL_MS = 7 * 24 * 3600 * 1000
/** The longest agent name (store/validate.ts's MAX_AGENT_LENGTH, the `agent` field's bound). */
const MAX_AGENT_LENGTH = 200

const KEY = /^(?:g[1-9][0-9]{0,15}|[pl][0-9A-HJKMNP-TV-Z]{26})$/

export function grantKey(grant: number): string {
  return `g${grant}`
}

/** The key that releases grant `grant` (`r<grant>` → `{ at, agent }`). */
export function releaseKey(grant: number): string {
  return `r${grant}`
}

/** A grant's release, read defensively: which entry it ends, and when. */
export function readRelease(key: string, value: unknown): { of: string; at: string } | undefined {
  if (!/^r[1-9][0-9]{0,15}$/.test(key) || typeof value !== 'object' || value === null) return undefined
  const at = (value as { at?: unknown }).at
  return isIso(at) ? { of: `g${key.slice(1)}`, at } : undefined
}

function isIso(value: unknown): value is string {
  return typeof value === 'string' && value.length <= 64 && !Number.isNaN(Date.parse(value))
}

function claimOf(value: Record<string, unknown>): WorkClaim | undefined {
  const { agent, replica, since, until, grant } = value
  if (typeof agent !== 'string' || agent.length === 0 || agent.length > MAX_AGENT_LENGTH) return undefined
  if (typeof replica !== 'string' || replica.length === 0 || replica.length > 200) return undefined
  if (!isIso(since) || !isIso(until)) return undefined
  if (grant !== null && !(Number.isSafeInteger(grant) && (grant as number) > 0)) return undefined
  return { agent, replica, since, until, grant: grant as number | null, provisional: value.provisional === true }
}

/** A claim as an index row or a holder carries it, checked (no defaults: a bad one is no claim). */
export function asWorkClaim(value: unknown): WorkClaim | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined
  const claim = claimOf(value as Record<string, unknown>)
  return claim && typeof (value as { provisional?: unknown }).provisional === 'boolean' ? claim : undefined
}

/** An entry as stored, read defensively (a peer may have written anything); undefined if it is none. */
export function readWorkEntry(key: string, value: unknown): WorkEntry | undefined {
  if (!KEY.test(key) || typeof value !== 'object' || value === null || Array.isArray(value)) return undefined
  const v = value as Record<string, unknown>
  const claim = claimOf(v)
  if (!claim) return undefined
  // The key says what kind of claim it is; a value that says otherwise is no docket entry.
  if (key.startsWith('g') !== (claim.grant !== null) || (key.startsWith('g') && key !== grantKey(claim.grant!))) return undefined
  if (key.startsWith('p') !== claim.provisional) return undefined
  const after = claim.grant !== null ? claim.grant : Number.isSafeInteger(v.after) && (v.after as number) >= 0 ? (v.after as number) : 0
  const entry: WorkEntry = { key, ...claim, after }
  if (isIso(v.released)) entry.released = v.released
  if (v.outcome === 'confirmed' || v.outcome === 'lost' || v.outcome === 'expired') entry.outcome = v.outcome
  if (typeof v.lostTo === 'object' && v.lostTo !== null) {
    const lostTo = claimOf(v.lostTo as Record<string, unknown>)
    if (lostTo) entry.lostTo = lostTo
  }
  return entry
}

/** Whether an entry still stands: neither released nor settled by the server. */
export function isOpen(entry: WorkEntry): boolean {
  return entry.released === undefined && entry.outcome === undefined
}

/** The server's latest grant on the item (released or not): it supersedes every earlier one. */
export function latestGrant(entries: Iterable<WorkEntry>): WorkEntry | undefined {
  let best: WorkEntry | undefined
  for (const entry of entries) if (entry.grant !== null && (best === undefined || entry.grant > best.grant!)) best = entry
  return best
}

/**
 * The current claim among an item's entries. The server's grants are ordered by their numbers:
 * the latest one stands unless it was released. A provisional or local claim counts only if it
 * was taken on top of that latest grant (none later exists) and is still open: the latest of
 * those, by when it was taken. Time does not enter: whether a claim is live is `isClaimLive`'s
 * question. So no entry a replica writes — whatever its times say — outranks a later grant.
 */
export function currentEntry(entries: readonly WorkEntry[]): WorkEntry | undefined {
  const grant = latestGrant(entries)
  const top = grant?.grant ?? 0
  let best: WorkEntry | undefined
  for (const entry of entries) {
    if (entry.grant !== null || entry.after !== top || !isOpen(entry)) continue
    if (best === undefined || later(entry, best)) best = entry
  }
  if (best) return best
  return grant && isOpen(grant) ? grant : undefined
}

function later(a: WorkEntry, b: WorkEntry): boolean {
  const at = Date.parse(a.since) - Date.parse(b.since)
  if (at !== 0) return at > 0
  return a.key > b.key
}

export function claimOfEntry(entry: WorkEntry): WorkClaim {
  return { agent: entry.agent, replica: entry.replica, since: entry.since, until: entry.until, grant: entry.grant, provisional: entry.provisional }
}

/** A claim holds the item at `nowMs` until its `until`. */
export function isClaimLive(claim: WorkClaim | undefined, nowMs: number): boolean {
  return claim !== undefined && Date.parse(claim.until) > nowMs
}

/**
 * Whether an update that added the entries `added` took this replica's claim away: the latest
 * grant without them was this replica's and still open, and a later grant — another agent's,
 * released or not by the time it arrived — is there now. Decided from grant numbers alone, so
 * an agent is told once, also when it was away for the takeover and the release after it.
 * (A provisional claim's loss is told when it is checked with the server.)
 */
export function lostTo(entries: readonly WorkEntry[], added: ReadonlySet<string>, replica: string): { lost: WorkEntry; to: WorkEntry } | undefined {
  const before = latestGrant(entries.filter((entry) => !added.has(entry.key)))
  if (before === undefined || before.replica !== replica || !isOpen(before)) return undefined
  const now = latestGrant(entries)
  if (now === undefined || now.key === before.key || now.agent === before.agent) return undefined
  return { lost: before, to: now }
}
