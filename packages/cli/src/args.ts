import { isItemId, type ItemId } from '@docket/core/client'
import { UsageError } from './exit.js'

/**
 * Parses `989,1000,1001` strictly. A filter decides which orphans come back, so anything
 * ambiguous — spaces, empty entries, duplicates, leading zeros — is refused, not guessed.
 */
export function parseIdList(text: string, flag: string): ItemId[] {
  if (text.trim().length === 0) throw new UsageError(`${flag} is empty: give ids separated by commas, for example ${flag} 989,1000`)
  if (/\s/.test(text)) throw new UsageError(`${flag} ${JSON.stringify(text)} contains spaces: separate ids with commas only, for example ${flag} ${text.split(/[\s,]+/).filter(Boolean).join(',')}`)
  const ids: ItemId[] = []
  const seen = new Set<string>()
  for (const [index, entry] of text.split(',').entries()) {
    if (entry.length === 0) throw new UsageError(`${flag} ${JSON.stringify(text)} has an empty entry at position ${index + 1} (two commas in a row, or one at an end)`)
    if (/^0[0-9]+$/.test(entry)) {
      const plain = entry.replace(/^0+/, '')
      throw new UsageError(`${flag}: ${JSON.stringify(entry)} has a leading zero${plain ? `; write ${plain}` : ' (ids start at 1)'}`)
    }
    if (!isItemId(entry)) {
      throw new UsageError(`${flag}: ${JSON.stringify(entry)} is not an item id (a positive whole number such as 989)`)
    }
    if (seen.has(entry)) throw new UsageError(`${flag} names ${entry} twice: name each id once`)
    seen.add(entry)
    ids.push(entry as ItemId)
  }
  return ids
}

/** Exactly one id (for ID arguments): `1,2` is a mistake, not the first of two. */
export function parseId(text: string, what = 'ID'): ItemId {
  const ids = parseIdList(text, what)
  if (ids.length !== 1) throw new UsageError(`${what} takes one item id, got ${ids.length} (${text})`)
  return ids[0]!
}

export function parseNonNegative(text: string, flag: string): number {
  if (!/^[0-9]+$/.test(text) || !Number.isSafeInteger(Number(text))) throw new UsageError(`${flag} must be a whole number ≥ 0, got ${JSON.stringify(text)}`)
  return Number(text)
}
