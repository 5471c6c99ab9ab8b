import * as Y from 'yjs'
import { docParts, F, readRecord, readUid, type DocParts } from './layout.js'
import { firstAt, Places, writeRefusal } from './admission-structs.js'

interface Internals {
  _map: Map<string, Y.Item>
}

type DeleteSet = Parameters<typeof Y.isDeleted>[0]

/**
 * Why a remote update must not be applied, or undefined. Grow-only means grow-only: an update
 * may not remove a tombstone, a deleted uid, an alias or an id claim, may not remove or replace
 * an item's stage entries (the no-regress log), and may not remove an item without recording
 * its deletion. Overwrites are not removals (the key keeps a value: a concurrent write of the
 * same key, or a replica raising its own mark), nor is what goes with the deletion of a whole
 * item. Nor may it write what docket never writes (crdt/admission-structs.ts: text, XML,
 * subdocuments, foreign roots, values over the size or depth bound, ids out of range), and it
 * must decode. Checked from the update's structs and delete set against the local document —
 * in one pass, without applying it, and without copying the document.
 */
export function refusalOf(parts: DocParts, update: Uint8Array): string | undefined {
  try {
    return check(parts, update)
  } catch (err) {
    // A value shaped to trip the checks themselves (an object whose prototype lib0 set from the
    // update, say) is no docket value either: refused, never an exception for the caller.
    return `it could not be checked (${String((err as Error)?.message ?? err).slice(0, 80)}), so it is not applied`
  }
}

function check(parts: DocParts, update: Uint8Array): string | undefined {
  let decoded: { structs: Array<Y.Item | Y.GC | Y.Skip>; ds: DeleteSet }
  try {
    decoded = Y.decodeUpdate(update) as typeof decoded
  } catch (err) {
    // Not left to applying: Yjs integrates the structs before it reads the delete set, so a
    // truncated update would land in part and then fail.
    return `it cannot be decoded as a Yjs update (${String((err as Error)?.message ?? err).slice(0, 80)}), so nothing of it can be checked`
  }
  const places = new Places(parts, decoded.structs)
  // What the update writes over: values it places right after an existing one (a map overwrite
  // names the old value as its origin), and root keys it sets afresh (a concurrent set of a key).
  const overwritten = new Set<string>()
  const deletedUids = new Set<string>()
  for (const struct of decoded.structs) {
    if (!(struct instanceof Y.Item)) continue
    const why = writeRefusal(struct, places)
    if (why) return why
    if (struct.origin) overwritten.add(idKey(struct.origin.client, struct.origin.clock))
    if (typeof struct.parent === 'string' && typeof struct.parentSub === 'string') overwritten.add(`${struct.parent}/${struct.parentSub}`)
    if ((struct.parent as unknown) === 'deleted' && typeof struct.parentSub === 'string') deletedUids.add(struct.parentSub)
  }
  const roots = rootsOf(parts)
  for (const struct of decoded.structs) {
    if (!(struct instanceof Y.Item)) continue
    const why = replacement(parts, places, struct, decoded.ds, overwritten, deletedUids)
    if (why) return why
  }
  const local = parts.doc.store.clients
  for (const [client, ranges] of (decoded.ds as unknown as { clients: Map<number, Array<{ clock: number; len: number }>> }).clients) {
    const structs = local.get(client)
    if (!structs || structs.length === 0) continue
    const last = structs[structs.length - 1]!
    for (const { clock, len } of ranges) {
      if (clock >= last.id.clock + last.length) continue
      for (let i = firstAt(structs, clock); i < structs.length && structs[i]!.id.clock < clock + len; i++) {
        const struct = structs[i]!
        if (!(struct instanceof Y.Item) || struct.deleted) continue
        const why = removal(parts, roots, struct, decoded.ds, overwritten, deletedUids)
        if (why) return why
      }
    }
  }
  return undefined
}

/** The root maps a removal is judged by, by the type that is their parent; built once per update. */
function rootsOf(parts: DocParts): Map<unknown, RootName> {
  return new Map<unknown, RootName>([
    [parts.tombstones, 'tombstones'],
    [parts.deleted, 'deleted'],
    [parts.aliases, 'aliases'],
    [parts.claims, 'claims'],
    [parts.records, 'records'],
    [parts.items, 'items'],
  ])
}

type RootName = 'tombstones' | 'deleted' | 'aliases' | 'claims' | 'records' | 'items'

function removal(parts: DocParts, roots: Map<unknown, RootName>, item: Y.Item, ds: DeleteSet, overwritten: Set<string>, deletedUids: Set<string>): string | undefined {
  const parent = item.parent as Y.AbstractType<unknown>
  const key = item.parentSub
  const rootName = roots.get(parent)
  if (rootName !== undefined) {
    const isCurrent = key !== null && (parent as unknown as Internals)._map.get(key) === item
    const replaced = overwritten.has(idKey(item.id.client, item.id.clock + item.length - 1)) || (key !== null && overwritten.has(`${rootName}/${key}`))
    if (!isCurrent || replaced) return undefined
    if (rootName !== 'records' && rootName !== 'items') return `it removes the ${rootName} entry ${JSON.stringify(key)}, which only grows`
    const uid = rootName === 'records' ? key : readUid((item.content as Y.ContentType).type as Y.Map<unknown>)
    if (uid && (deletedUids.has(uid) || parts.deleted.has(uid))) return undefined
    return `it removes item ${uid ?? key} without recording its deletion`
  }
  // An item's stage log: its entries, or the log itself, go only with the whole item.
  const goes = (type: { _item: Y.Item | null }) => type._item !== null && (type._item.deleted || Y.isDeleted(ds, type._item.id))
  const owner = parent._item?.parent as Y.AbstractType<unknown> | undefined
  if (parent instanceof Y.Array && parent._item?.parentSub === F.stages && owner && isItemRoot(parts, owner._item?.parent)) {
    return goes(owner) ? undefined : 'it removes stage entries of an item, whose stage log only grows'
  }
  if (parent instanceof Y.Map && key === F.stages && isItemRoot(parts, parent._item?.parent)) {
    return goes(parent) ? undefined : 'it replaces or removes the stage log of an item, which only grows'
  }
  return undefined
}

/**
 * The key of a grow-only root that already holds a value here may not lose it to this update:
 * not by a value the update writes over it and deletes again (the overwrite made the removal
 * look like one), nor by a concurrent value that would win the key and is deleted — and an
 * item's record is never replaced at all (docket edits an item's fields; a new map would bring a
 * new, empty stage log: the done item would be back in backlog).
 */
function replacement(parts: DocParts, places: Places, item: Y.Item, ds: DeleteSet, overwritten: Set<string>, deletedUids: Set<string>): string | undefined {
  const place = places.placeOf(item)
  if (place === undefined || place.keys.length !== 1 || typeof place.keys[0] !== 'string') return undefined
  const root = place.root
  const key = place.keys[0]
  if (root !== 'tombstones' && root !== 'deleted' && root !== 'aliases' && root !== 'claims' && root !== 'records') return undefined
  const map = (parts as unknown as Record<string, Y.Map<unknown>>)[root]!
  const current = (map as unknown as Internals)._map.get(key)
  if (current === undefined || current.deleted) return undefined
  const removed = Y.isDeleted(ds, item.id) && !overwritten.has(idKey(item.id.client, item.id.clock + item.length - 1))
  const explicit = item.origin !== null && item.origin.client === current.id.client && item.origin.clock === current.id.clock + current.length - 1
  // A concurrent value (no origin) takes the key when its client id is the higher.
  const wins = explicit || (item.origin === null && item.id.client > current.id.client)
  if (root === 'records') {
    // A record that reads as no item (a peer's bad value) may be replaced: that is its repair (recover adopts it).
    if (isDeletedUidOf(parts, key, deletedUids) || !isReadableRecord(current)) return undefined
    if (explicit || (wins && removed)) return `it replaces the record of item ${key}, which is only ever edited field by field`
    return undefined
  }
  if (wins && removed) return `it writes the ${root} entry ${JSON.stringify(key)} and removes it in the same update, which would remove what only grows`
  return undefined
}

function isReadableRecord(item: Y.Item): boolean {
  const content = item.content as { type?: unknown }
  return content instanceof Y.ContentType && readRecord(content.type as Y.Map<unknown>) !== undefined
}

function isDeletedUidOf(parts: DocParts, uid: string, deletedUids: Set<string>): boolean {
  return deletedUids.has(uid) || parts.deleted.has(uid)
}

function isItemRoot(parts: DocParts, type: unknown): boolean {
  return type === (parts.records as unknown) || type === (parts.items as unknown)
}

function idKey(client: number, clock: number): string {
  return `${client}:${clock}`
}

/** `refusalOf` for any Y.Doc holding a docket document (a sync server's copy, say). */
export function updateRefusal(doc: Y.Doc, update: Uint8Array): string | undefined {
  return refusalOf(docParts(doc), update)
}
