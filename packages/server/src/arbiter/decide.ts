/**
 * The arbiter's rules, kept pure: who holds an item, and whether a request wins it. The Redis
 * scripts (redis.ts) implement the same rules inside Redis; `test/arbiter.test.ts` runs both
 * against one table of cases.
 */

/** A claim as the server keeps it: on one item (by uid), for one agent, until a time. */
export interface ClaimRecord {
  agent: string
  /** The replica that asked for it. */
  replica: string
  /** Grant number: grows per document, so a later grant always has a higher one. */
  grant: number
  sinceMs: number
  untilMs: number
}

export type ClaimDecision =
  | { granted: true; record: ClaimRecord; previous?: ClaimRecord; fresh: boolean }
  | { granted: false; holder: ClaimRecord }

export function isLiveRecord(record: ClaimRecord | undefined, nowMs: number): record is ClaimRecord {
  return record !== undefined && record.untilMs > nowMs
}

/**
 * A claim: refused while another agent holds a live claim; the holder claiming again keeps its
 * claim (same grant), extended to `ttlMs` from now if that is later — a claim asked again, say
 * after its answer was lost, never shortens it; otherwise a new grant, reporting the expired
 * claim it takes over.
 */
export function decideClaim(current: ClaimRecord | undefined, ask: { agent: string; replica: string; ttlMs: number }, nowMs: number, nextGrant: () => number): ClaimDecision {
  if (isLiveRecord(current, nowMs)) {
    if (current.agent !== ask.agent) return { granted: false, holder: current }
    return { granted: true, record: { ...current, untilMs: Math.max(current.untilMs, nowMs + ask.ttlMs) }, fresh: false }
  }
  const record: ClaimRecord = { agent: ask.agent, replica: ask.replica, grant: nextGrant(), sinceMs: nowMs, untilMs: nowMs + ask.ttlMs }
  return current === undefined ? { granted: true, record, fresh: true } : { granted: true, record, previous: current, fresh: true }
}

/**
 * A renewal: the agent that holds the claim extends it — also once it has expired, as long as
 * nobody took it over (an expired claim is free to take, not gone).
 */
export function decideRenew(current: ClaimRecord | undefined, ask: { agent: string; ttlMs: number }, nowMs: number): { renewed: true; record: ClaimRecord } | { renewed: false; holder: ClaimRecord | undefined } {
  if (current === undefined || current.agent !== ask.agent) return { renewed: false, holder: isLiveRecord(current, nowMs) ? current : undefined }
  return { renewed: true, record: { ...current, untilMs: nowMs + ask.ttlMs } }
}

/** A release: only by the agent that holds the claim. */
export function decideRelease(current: ClaimRecord | undefined, ask: { agent: string }, nowMs: number): { released: true; record: ClaimRecord } | { released: false; holder: ClaimRecord | undefined } {
  if (current === undefined || current.agent !== ask.agent) return { released: false, holder: isLiveRecord(current, nowMs) ? current : undefined }
  return { released: true, record: current }
}

/** The first id of a lease of `size` ids: above what was handed out, what the document holds and what the replica has seen. */
export function leaseStart(handedOut: number, floor: number, above: number): number {
  return Math.max(handedOut, floor, above) + 1
}

/**
 * How far above the document's floor a replica's `above` is believed: far enough for the blocks
 * replicas hold unused when the server lost its directory, not so far that one request can push
 * the counter to the top of the id range (a replica that wants that must write it into the
 * document, where everyone sees it).
 */
export const MAX_ABOVE_FLOOR = 2 ** 20

export function believedAbove(above: number, floor: number): number {
  return Math.min(above, floor + MAX_ABOVE_FLOOR)
}
