import { decodeAudit, isAuditKind } from '../audit/audit.js'
import { isUid, parseItemId } from '../ids.js'
import type { Databases } from '../storage/db.js'
import type { AuditEvent, AuditQuery } from '../types.js'
import { invalid, OPTION_KEYS, requireKnownKeys, requireObject } from './validate.js'

/** The audit log, oldest first, filtered: checks the query first, then reads only what it asks for. */
export async function* queryAudit(dbs: Pick<Databases, 'audit'>, query: AuditQuery = {}): AsyncGenerator<AuditEvent> {
  const q = requireKnownKeys(requireObject(query, 'audit query'), OPTION_KEYS.audit, 'audit()') as AuditQuery
  if (q.since !== undefined && !isUid(q.since)) {
    throw invalid(`since must be the ULID of an audit event, got ${JSON.stringify(q.since)}.`)
  }
  const kinds = q.kinds === undefined ? undefined : new Set(q.kinds)
  for (const kind of kinds ?? []) {
    if (!isAuditKind(kind)) throw invalid(`Unknown audit kind ${JSON.stringify(kind)}.`)
  }
  const itemId = q.itemId === undefined ? undefined : parseItemId(q.itemId)
  if (q.limit !== undefined && (!Number.isSafeInteger(q.limit) || q.limit < 0)) throw invalid(`limit must be a whole number ≥ 0, got ${JSON.stringify(q.limit)}.`)
  const limit = q.limit ?? Infinity
  if (limit === 0) return
  let count = 0
  if (q.newestFirst !== undefined && typeof q.newestFirst !== 'boolean') throw invalid('newestFirst must be true or false.')
  for await (const [key, text] of dbs.audit.iterator({ ...(q.since ? { gt: q.since } : {}), reverse: q.newestFirst === true })) {
    const event = decodeAudit(key, text)
    if (kinds && !kinds.has(event.kind)) continue
    if (itemId !== undefined && event.itemId !== itemId) continue
    yield event
    if (++count >= limit) return
  }
}
