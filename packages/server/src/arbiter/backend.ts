import type { ClaimDecision, ClaimRecord } from './decide.js'

/** What a replica asks of a claim. */
export interface ClaimAsk {
  agent: string
  replica: string
  ttlMs: number
}

export type NextDecision = { granted: true; uid: string; record: ClaimRecord; previous?: ClaimRecord } | { granted: false; taken: Array<{ uid: string; holder: ClaimRecord }> }

/**
 * `nowMs` is the time to decide by: the server's injected clock, or undefined for the backend's
 * own (Redis's, so that servers sharing it agree; the process's for the local one).
 *
 * Where the arbiter keeps what it decided, durably, before it answers: the server's own
 * LevelDB (local.ts), or Redis shared by several servers (redis.ts). Every operation on one
 * document is atomic against every other.
 */
export interface ArbiterBackend {
  /** Hands out `size` ids above `floor` and everything handed out before, exactly once. */
  lease(doc: string, floor: number, size: number): Promise<{ from: number; to: number }>
  claim(doc: string, uid: string, ask: ClaimAsk, nowMs: number | undefined): Promise<ClaimDecision>
  renew(doc: string, uid: string, ask: { agent: string; ttlMs: number }, nowMs: number | undefined): Promise<{ renewed: true; record: ClaimRecord } | { renewed: false; holder: ClaimRecord | undefined }>
  release(doc: string, uid: string, ask: { agent: string }, nowMs: number | undefined): Promise<{ released: true; record: ClaimRecord } | { released: false; holder: ClaimRecord | undefined }>
  /** Claims the first of `uids` nobody holds (in order), or reports who holds each. */
  next(doc: string, uids: readonly string[], ask: ClaimAsk, nowMs: number | undefined): Promise<NextDecision>
  /** A claim as decided, for inspection. */
  holder(doc: string, uid: string): Promise<ClaimRecord | undefined>
  close(): Promise<void>
}

/** What a lease that would reach past the top of the id range fails with (nothing is handed out). */
export function exhausted(from: number): Error {
  return Object.assign(new Error(`the id space is exhausted: a lease from ${from} would pass 2^40 − 1`), { code: 'ID_SPACE_EXHAUSTED' })
}

/** How long an expired claim is kept before it is forgotten (a takeover reports it until then). */
export const KEEP_EXPIRED_MS = 24 * 3600 * 1000

export function isClaimRecord(value: unknown): value is ClaimRecord {
  if (typeof value !== 'object' || value === null) return false
  const r = value as Record<string, unknown>
  return typeof r.agent === 'string' && typeof r.replica === 'string' && Number.isSafeInteger(r.grant) && Number.isFinite(r.sinceMs) && Number.isFinite(r.untilMs)
}
