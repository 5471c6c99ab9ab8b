import type { ClaimRecord } from './decide.js'
import { MAX_ID } from './floor.js'

/**
 * The arbiter's messages, on Hocuspocus's stateless channel beside the document (one
 * connection, request and reply matched by `req`). docs/FORMAT.md lists them.
 *
 *   → {"docket":"arbiter","req":1,"op":"lease","size":32,"above":120}
 *   ← {"docket":"arbiter","req":1,"ok":true,"result":{"from":121,"to":152}}
 *   → {"docket":"arbiter","req":2,"op":"claim","uid":"01J…","agent":"coder-1","replica":"…","ttlMs":900000}
 *   ← {"docket":"arbiter","req":2,"ok":true,"result":{"granted":false,"holder":{…}}}
 */
export const ARBITER = 'arbiter'

export const LIMITS = {
  maxLease: 1024,
  minTtlMs: 1000,
  maxTtlMs: 7 * 24 * 3600 * 1000,
  maxCandidates: 256,
  maxName: 200,
} as const

export type ArbiterRequest =
  | { req: number; op: 'lease'; size: number; above: number }
  | { req: number; op: 'claim'; uid: string; agent: string; replica: string; ttlMs: number }
  | { req: number; op: 'renew'; uid: string; agent: string; ttlMs: number }
  | { req: number; op: 'release'; uid: string; agent: string }
  | { req: number; op: 'next'; uids: string[]; agent: string; replica: string; ttlMs: number }

/** A claim as a replica sees it: server times as ISO strings. */
export interface WireClaim {
  agent: string
  replica: string
  grant: number
  since: string
  until: string
}

export function toWire(record: ClaimRecord): WireClaim {
  return { agent: record.agent, replica: record.replica, grant: record.grant, since: new Date(record.sinceMs).toISOString(), until: new Date(record.untilMs).toISOString() }
}

const ULID = /^[0-9A-HJKMNP-TV-Z]{26}$/

function isName(value: unknown): value is string {
  return typeof value === 'string' && value.length > 0 && value.length <= LIMITS.maxName
}

function isTtl(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= LIMITS.minTtlMs && (value as number) <= LIMITS.maxTtlMs
}

/**
 * A request, `'malformed'` with why for an arbiter message that is not one, or undefined for a
 * stateless message that is not the arbiter's at all.
 */
export function parseRequest(payload: string): ArbiterRequest | { req: number; malformed: string } | undefined {
  let value: Record<string, unknown>
  try {
    const parsed = JSON.parse(payload) as unknown
    if (typeof parsed !== 'object' || parsed === null) return undefined
    value = parsed as Record<string, unknown>
  } catch {
    return undefined
  }
  if (value.docket !== ARBITER) return undefined
  const req = value.req
  if (!Number.isSafeInteger(req) || (req as number) < 0) return { req: -1, malformed: 'req must be a non-negative integer' }
  const r = req as number
  const bad = (why: string) => ({ req: r, malformed: why })
  switch (value.op) {
    case 'lease': {
      const { size, above } = value
      if (!Number.isSafeInteger(size) || (size as number) < 1 || (size as number) > LIMITS.maxLease) return bad(`size must be an integer from 1 to ${LIMITS.maxLease}`)
      if (!Number.isSafeInteger(above) || (above as number) < 0 || (above as number) > MAX_ID) return bad('above must be an id number')
      return { req: r, op: 'lease', size: size as number, above: above as number }
    }
    case 'claim':
    case 'next': {
      const { agent, replica, ttlMs } = value
      if (!isName(agent)) return bad(`agent must be a name of 1 to ${LIMITS.maxName} characters`)
      if (!isName(replica)) return bad('replica must be a replica id')
      if (!isTtl(ttlMs)) return bad(`ttlMs must be an integer from ${LIMITS.minTtlMs} to ${LIMITS.maxTtlMs}`)
      if (value.op === 'claim') {
        if (typeof value.uid !== 'string' || !ULID.test(value.uid)) return bad('uid must be an item uid')
        return { req: r, op: 'claim', uid: value.uid, agent, replica, ttlMs }
      }
      const uids = value.uids
      if (!Array.isArray(uids) || uids.length === 0 || uids.length > LIMITS.maxCandidates || !uids.every((u) => typeof u === 'string' && ULID.test(u))) {
        return bad(`uids must be 1 to ${LIMITS.maxCandidates} item uids`)
      }
      return { req: r, op: 'next', uids: uids as string[], agent, replica, ttlMs }
    }
    case 'renew':
    case 'release': {
      const { uid, agent, ttlMs } = value
      if (typeof uid !== 'string' || !ULID.test(uid)) return bad('uid must be an item uid')
      if (!isName(agent)) return bad(`agent must be a name of 1 to ${LIMITS.maxName} characters`)
      if (value.op === 'release') return { req: r, op: 'release', uid, agent }
      if (!isTtl(ttlMs)) return bad(`ttlMs must be an integer from ${LIMITS.minTtlMs} to ${LIMITS.maxTtlMs}`)
      return { req: r, op: 'renew', uid, agent, ttlMs }
    }
    default:
      return bad('op must be lease, claim, renew, release or next')
  }
}

export function okReply(req: number, result: unknown): string {
  return JSON.stringify({ docket: ARBITER, req, ok: true, result })
}

export function errorReply(req: number, code: string, message: string): string {
  return JSON.stringify({ docket: ARBITER, req, ok: false, code, message })
}
