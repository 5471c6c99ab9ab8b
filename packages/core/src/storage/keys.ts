import { DocketError } from '../errors.js'
import { isItemId, type ItemId } from '../ids.js'

/**
 * Key encodings of the LevelDB (docs/FORMAT.md). Item ids are zero-padded to 16 digits so
 * that key order is numeric order: the highest id in a sublevel is its last key.
 */
export const ID_WIDTH = 16
export const SEQ_WIDTH = 16
export const SLOT_SEPARATOR = '/'
const SLOT_PATTERN = /^[a-z][a-z0-9_]{0,63}$/

export function idKey(id: ItemId): string {
  return id.padStart(ID_WIDTH, '0')
}

/** The id a padded key stands for, or undefined if the key is not one docket writes. */
export function idFromKey(key: string): ItemId | undefined {
  if (key.length !== ID_WIDTH || !/^[0-9]+$/.test(key)) return undefined
  const id = key.replace(/^0+/, '')
  return isItemId(id) ? id : undefined
}

export function contentKey(id: ItemId, slot: string): string {
  return `${idKey(id)}${SLOT_SEPARATOR}${slot}`
}

/** The bounds of every content key of one id, for range reads and deletes. */
export function contentRange(id: ItemId): { gte: string; lt: string } {
  return { gte: `${idKey(id)}${SLOT_SEPARATOR}`, lt: `${idKey(id)}${String.fromCharCode(SLOT_SEPARATOR.charCodeAt(0) + 1)}` }
}

export function parseContentKey(key: string): { id: ItemId; slot: string } | undefined {
  const at = key.indexOf(SLOT_SEPARATOR)
  if (at !== ID_WIDTH) return undefined
  const id = idFromKey(key.slice(0, at))
  const slot = key.slice(at + 1)
  return id !== undefined && SLOT_PATTERN.test(slot) ? { id, slot } : undefined
}

export function isSlotName(value: unknown): value is string {
  return typeof value === 'string' && SLOT_PATTERN.test(value)
}

export function parseSlot(value: unknown): string {
  if (isSlotName(value)) return value
  throw new DocketError(
    'INVALID_INPUT',
    `Content slot ${JSON.stringify(value)} is invalid: use 1–64 lowercase letters, digits or "_", starting with a letter (for example "body" or "gate_output").`,
  )
}

export function seqKey(seq: number): string {
  return seq.toString(16).padStart(SEQ_WIDTH, '0')
}

export function seqFromKey(key: string): number | undefined {
  if (key.length !== SEQ_WIDTH || !/^[0-9a-f]+$/.test(key)) return undefined
  return Number.parseInt(key, 16)
}
