/**
 * Every failure docket reports is a DocketError with a stable `code`.
 * Codes never change meaning; the README lists each one with what to do.
 */
export const ERROR_CODES = [
  'INVALID_INPUT',
  'INVALID_ID',
  'NOT_FOUND',
  'ALREADY_EXISTS',
  'TOMBSTONED',
  'INVALID_TRANSITION',
  'CREATE_NOT_MATERIALIZED',
  'PERSIST_FAILED',
  'STORE_LOCKED',
  'STORE_CORRUPT',
  'STORE_CLOSED',
  'STORE_READ_ONLY',
  'CONFLICT',
  'STORE_NOT_FOUND',
  'STORE_EXISTS',
  'STORE_UNWRITABLE',
  'SCHEMA_TOO_NEW',
  'SCHEMA_MISMATCH',
  'MIGRATION_FAILED',
  'UPDATE_REFUSED',
  'CONTENT_UNAVAILABLE',
  'BEHIND_REMOTE',
  'SYNC_FAILED',
  'SYNC_UNAUTHORIZED',
  'ITEM_BLOCKED',
  'ITEM_FROZEN',
  'STAGE_CONFLICT',
  'HOLDER_UNAVAILABLE',
  'HOLDER_FAILED',
  'CLAIM_NOT_HELD',
  'ARBITER_UNAVAILABLE',
] as const

export type ErrorCode = (typeof ERROR_CODES)[number]

export interface DocketErrorOptions {
  cause?: unknown
  /** Structured facts about the failure (ids, keys, paths) for programs that handle it. */
  details?: Record<string, unknown>
}

export class DocketError extends Error {
  readonly code: ErrorCode
  readonly details: Record<string, unknown>

  constructor(code: ErrorCode, message: string, options: DocketErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'DocketError'
    this.code = code
    this.details = options.details ?? {}
  }

  toJSON(): { name: string; code: ErrorCode; message: string; details: Record<string, unknown> } {
    return { name: this.name, code: this.code, message: this.message, details: this.details }
  }
}

export function isDocketError(err: unknown, code?: ErrorCode): err is DocketError {
  return err instanceof DocketError && (code === undefined || err.code === code)
}
