import { DocketError, type ErrorCode } from '@docket/core/client'

/** docket's exit codes; documented in the README and never reused for anything else. */
export const EXIT = {
  ok: 0,
  failure: 1,
  usage: 2,
  partial: 3,
  refused: 4,
} as const

export type ExitCode = (typeof EXIT)[keyof typeof EXIT]

/** A mistake in how the command was called: exit 2, with what to type instead. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'UsageError'
  }
}

const REFUSED: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['STORE_LOCKED', 'BEHIND_REMOTE', 'STORE_EXISTS', 'SCHEMA_TOO_NEW', 'SCHEMA_MISMATCH', 'STORE_READ_ONLY', 'SYNC_UNAUTHORIZED', 'ITEM_BLOCKED', 'ITEM_FROZEN', 'STAGE_CONFLICT', 'CLAIM_NOT_HELD'])
const USAGE: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['INVALID_INPUT', 'INVALID_ID'])

export function exitCodeFor(err: unknown): ExitCode {
  if (err instanceof UsageError) return EXIT.usage
  if (err instanceof DocketError) {
    if (REFUSED.has(err.code)) return EXIT.refused
    if (USAGE.has(err.code)) return EXIT.usage
  }
  return EXIT.failure
}
