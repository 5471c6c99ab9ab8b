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
  /** When its agent released it. */
  released?: string
  /** A provisional claim once checked with the server: `confirmed` (a `g` entry now stands for it) or `lost`. */
  outcome?: 'confirmed' | 'lost'
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
  const entry: WorkEntry = { key, ...claim }
  if (isIso(v.released)) entry.released = v.released
  if (v.outcome === 'confirmed' || v.outcome === 'lost') entry.outcome = v.outcome
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

/**
 * The current claim among an item's entries: the latest open one (by when it was granted, then
 * by grant). Time does not enter: whether it is live is `isClaimLive`'s question.
 */
export function currentEntry(entries: Iterable<WorkEntry>): WorkEntry | undefined {
  let best: WorkEntry | undefined
  for (const entry of entries) {
    if (!isOpen(entry)) continue
    if (best === undefined || later(entry, best)) best = entry
  }
  return best
}

function later(a: WorkEntry, b: WorkEntry): boolean {
  const at = Date.parse(a.since) - Date.parse(b.since)
  if (at !== 0) return at > 0
  const grant = (a.grant ?? 0) - (b.grant ?? 0)
  if (grant !== 0) return grant > 0
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
 * Whether an update that wrote the entries `changed` took this replica's claim away: the claim
 * that was current without them was this replica's (granted by the server: a provisional one is
 * settled, and its loss told, when it is checked with the server), and the one current now is
 * another agent's.
 */
export function lostTo(entries: readonly WorkEntry[], changed: ReadonlySet<string>, replica: string): { lost: WorkEntry; to: WorkEntry } | undefined {
  const before = currentEntry(entries.filter((entry) => !changed.has(entry.key)))
  if (before === undefined || before.replica !== replica || before.grant === null) return undefined
  const now = currentEntry(entries)
  if (now === undefined || now.key === before.key || now.agent === before.agent) return undefined
  return { lost: before, to: now }
}
