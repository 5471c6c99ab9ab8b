import { DocketError } from './errors.js'

declare const itemIdBrand: unique symbol
declare const uidBrand: unique symbol
declare const replicaIdBrand: unique symbol

/** A decimal string without leading zeros: "1", "989". The key of an item everywhere. */
export type ItemId = string & { readonly [itemIdBrand]: true }
/** A ULID fixed at creation; tells apart two items that ever held the same id. */
export type Uid = string & { readonly [uidBrand]: true }
/** Identifies one replica (one store directory) for the lifetime of that directory. */
export type ReplicaId = string & { readonly [replicaIdBrand]: true }

/**
 * Ids are bounded well below 2^53 (exact arithmetic) so that no single id — a hostile peer's
 * mark, a legacy file named `9007199254740991_story_x.md`, a tampered export — can exhaust the
 * id space: 2^40 − 1 ids is a million a day for three thousand years. Anything above is not an id.
 */
export const MAX_ITEM_NUMBER = 2 ** 40 - 1
const ID_PATTERN = /^[1-9][0-9]{0,12}$/
const ULID_PATTERN = /^[0-9A-HJKMNP-TV-Z]{26}$/
const REPLICA_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/

export function isItemId(value: unknown): value is ItemId {
  return typeof value === 'string' && ID_PATTERN.test(value) && Number(value) <= MAX_ITEM_NUMBER
}

/** Parses user input into an ItemId, or throws INVALID_ID saying what a valid id looks like. */
export function parseItemId(value: unknown, what = 'item id'): ItemId {
  if (isItemId(value)) return value
  if (typeof value === 'number' && Number.isSafeInteger(value) && value > 0 && value <= MAX_ITEM_NUMBER) return String(value) as ItemId
  const shown = typeof value === 'string' ? JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value) : String(value)
  throw new DocketError(
    'INVALID_ID',
    `${shown} is not a valid ${what}: use a positive decimal number without leading zeros, at most ${MAX_ITEM_NUMBER} (for example "989").`,
    { details: { value: typeof value === 'string' ? value.slice(0, 100) : String(value) } },
  )
}

/** A high-water mark a peer published counts only if it is a number an id could have. */
export function isIdNumber(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 && value <= MAX_ITEM_NUMBER
}

export function idToNumber(id: ItemId): number {
  return Number(id)
}

export function numberToId(n: number): ItemId {
  if (!Number.isSafeInteger(n) || n < 1 || n > MAX_ITEM_NUMBER) {
    throw new DocketError('INVALID_ID', `${n} cannot be an item id: ids are whole numbers from 1 to ${MAX_ITEM_NUMBER}.`)
  }
  return String(n) as ItemId
}

export function isUid(value: unknown): value is Uid {
  return typeof value === 'string' && ULID_PATTERN.test(value)
}

export function isReplicaId(value: unknown): value is ReplicaId {
  return typeof value === 'string' && REPLICA_PATTERN.test(value)
}

export function parseReplicaId(value: unknown): ReplicaId {
  if (isReplicaId(value)) return value
  throw new DocketError(
    'INVALID_INPUT',
    `replicaId ${JSON.stringify(value)} is invalid: use 1–64 letters, digits, "_" or "-", starting with a letter or digit.`,
  )
}
