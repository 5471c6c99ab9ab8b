import { readRawRows } from '@docket/core/testing'

/** Every row of a closed store as `!sublevel!key` → hex, to compare a store before and after. */
export async function snapshotRows(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>()
  for (const row of await readRawRows(dir)) out.set(`!${row.sublevel}!${row.key}`, Buffer.from(row.value).toString('hex'))
  return out
}
