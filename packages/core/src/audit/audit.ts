import { monotonicFactory } from 'ulid'
import type { ItemId, ReplicaId } from '../ids.js'
import { AUDIT_KINDS, type AuditEvent, type AuditKind } from '../types.js'

/** Monotonic within a process, so events written in one millisecond still sort in order. */
export const nextUlid: () => string = monotonicFactory()

export function auditEvent(
  kind: AuditKind,
  replicaId: ReplicaId,
  data: Record<string, unknown>,
  itemId?: ItemId,
): AuditEvent {
  const event: AuditEvent = {
    id: nextUlid(),
    at: new Date().toISOString(),
    kind,
    replicaId,
    // By construction: nothing docket records is a task for a fault queue.
    investigate: false,
    data,
  }
  if (itemId !== undefined) event.itemId = itemId
  return event
}

export function isAuditKind(value: unknown): value is AuditKind {
  return typeof value === 'string' && (AUDIT_KINDS as readonly string[]).includes(value)
}

/** An audit event as its row: the key is the event's ULID, the value the rest as JSON. */
export function encodeAudit(event: AuditEvent): { key: string; value: string } {
  const { id, ...rest } = event
  return { key: id, value: JSON.stringify(rest) }
}

export function decodeAudit(id: string, text: string): AuditEvent {
  try {
    const parsed = JSON.parse(text) as AuditEvent
    if (parsed && typeof parsed === 'object' && typeof parsed.kind === 'string') return { ...parsed, id }
  } catch {
    // fall through: a damaged audit row is shown, not hidden
  }
  return {
    id,
    at: '',
    kind: 'corrupt_row',
    replicaId: 'unknown' as ReplicaId,
    investigate: false,
    data: { sublevel: 'audit', key: id, raw: text.slice(0, 200) },
  }
}
