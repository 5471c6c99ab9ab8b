import * as Y from 'yjs'
import { isItemId, MAX_ITEM_NUMBER } from '../ids.js'
import { MAX_CONTENT_BYTES } from '../store/validate.js'
import { ROOTS, type DocParts } from './layout.js'

/**
 * What a remote update may write at all (the other half of crdt/admission.ts): docket writes
 * only Y.Maps, Y.Arrays, JSON values and bytes, into its own roots, of bounded size, with ids
 * in range. Anything else is no docket replica's doing — a hostile or broken peer — and is
 * refused before it reaches the document, rather than left for the readers to step around.
 */

/** Docket's own values are at most ~3 levels deep (a stage entry, a claim); far deeper is no docket value. */
export const MAX_VALUE_DEPTH = 32
/** Docket's map keys are uids, ids, replica ids, field and slot names (at most ~90 bytes). */
export const MAX_KEY_BYTES = 4096

const ROOT_NAMES: ReadonlySet<string> = new Set(Object.values(ROOTS))
/** How many keys of a place are kept, and how far up the local document one is followed (docket nests three deep). */
const MAX_PLACE_DEPTH = 64
/** How many keys of a place a reason shows. */
const SHOWN_KEYS = 6

type Struct = Y.Item | Y.GC | Y.Skip

/** Why one struct of a remote update writes what docket never writes, or undefined. */
export function writeRefusal(item: Y.Item, places: Places): string | undefined {
  return kindRefusal(item, places) ?? rootRefusal(item) ?? sizeRefusal(item, places) ?? idRefusal(item, places)
}

/** Text, XML, subdocuments and legacy JSON: the content kinds docket never writes. */
function kindRefusal(item: Y.Item, places: Places): string | undefined {
  const content = item.content
  if (content instanceof Y.ContentAny || content instanceof Y.ContentBinary || content instanceof Y.ContentDeleted) return undefined
  if (content instanceof Y.ContentType) {
    const type = content.type
    // Exact classes: a Y.XmlHook is a Y.Map underneath, and still no docket type.
    if (type.constructor === Y.Map || type.constructor === Y.Array) return undefined
    return `it writes ${typeName(type)} into ${places.describe(item)}, a type docket never writes`
  }
  return `it writes ${contentName(content)} into ${places.describe(item)}, which docket never writes`
}

function typeName(type: Y.AbstractType<unknown>): string {
  if (type instanceof Y.XmlHook) return 'a Y.XmlHook'
  if (type instanceof Y.XmlText) return 'a Y.XmlText'
  if (type instanceof Y.XmlElement) return 'a Y.XmlElement'
  if (type instanceof Y.XmlFragment) return 'a Y.XmlFragment'
  if (type instanceof Y.Text) return 'a Y.Text'
  return 'a Yjs type other than Y.Map and Y.Array'
}

function contentName(content: Y.Item['content']): string {
  if (content instanceof Y.ContentString) return 'text (Y.Text content)'
  if (content instanceof Y.ContentFormat) return 'text formatting'
  if (content instanceof Y.ContentEmbed) return 'a text embed'
  if (content instanceof Y.ContentDoc) return 'a subdocument'
  if (content instanceof Y.ContentJSON) return 'a legacy JSON value (ContentJSON)'
  return 'content of an unknown kind'
}

/**
 * Docket's roots are the maps of ROOTS. A write names its root only when it starts a key afresh
 * (a later write of that key names the earlier value instead), so a root nobody may use is
 * caught at its first write.
 */
function rootRefusal(item: Y.Item): string | undefined {
  const root = item.parent as unknown
  if (typeof root !== 'string') return undefined
  if (!ROOT_NAMES.has(root)) return `it writes into the root ${quote(root)}, which docket does not use`
  if (item.parentSub === null) return `it writes list entries into the root ${quote(root)}, which docket only uses as a map`
  return undefined
}

/** No single value above MAX_CONTENT_BYTES (what a content slot may hold), none deeper than MAX_VALUE_DEPTH, no long key. */
function sizeRefusal(item: Y.Item, places: Places): string | undefined {
  const key = item.parentSub
  if (key !== null && utf8Bytes(key, MAX_KEY_BYTES) > MAX_KEY_BYTES) {
    return `it writes a key of more than ${MAX_KEY_BYTES} bytes into ${places.describe(item, false)}; docket's keys are short names and ids`
  }
  const content = item.content
  const values = content instanceof Y.ContentAny ? content.arr : content instanceof Y.ContentBinary ? [content.content] : []
  for (const value of values) {
    const excess = valueExcess(value)
    if (excess === 'large') return `it writes a value of more than ${MAX_CONTENT_BYTES / 1024 / 1024} MiB into ${places.describe(item)}, more than a single value may hold`
    if (excess === 'deep') return `it writes a value nested more than ${MAX_VALUE_DEPTH} levels deep into ${places.describe(item)}; docket's values are a few levels deep`
  }
  return undefined
}

/**
 * Whether one JSON value is too large (strings as UTF-8, bytes as they are, roughly as encoded)
 * or too deeply nested. Measuring stops as soon as it is over either bound, so a huge value
 * costs no more than reaching the limit; nothing is serialized.
 */
function valueExcess(value: unknown): 'large' | 'deep' | undefined {
  let left = MAX_CONTENT_BYTES
  const visit = (v: unknown, depth: number): 'large' | 'deep' | undefined => {
    if (typeof v === 'string') left -= utf8Bytes(v, left)
    else if (v instanceof Uint8Array) left -= v.byteLength
    else if (typeof v === 'object' && v !== null) {
      if (depth > MAX_VALUE_DEPTH) return 'deep'
      left -= 2
      for (const [key, entry] of Array.isArray(v) ? v.entries() : Object.entries(v)) {
        if (typeof key === 'string') left -= utf8Bytes(key, left) + 1
        const excess = left < 0 ? 'large' : visit(entry, depth + 1)
        if (excess) return excess
      }
    } else left -= 8 // a number, bigint, boolean, null or undefined: a few bytes
    return left < 0 ? 'large' : undefined
  }
  return visit(value, 1)
}

/** The UTF-8 length of `s`, exact up to `limit`; a string longer than `limit` characters is over it without counting (UTF-8 never has fewer bytes than characters). */
function utf8Bytes(s: string, limit: number): number {
  return s.length > limit ? s.length : Buffer.byteLength(s, 'utf8')
}

/**
 * Ids above MAX_ITEM_NUMBER, which no docket ever issues: in the key of a claim (`<id>/<uid>`),
 * a tombstone (`<id>`) or an alias (`<oldId>/<uid>`), or as an allocator mark. Keys that are no
 * id at all are left to the readers, which quarantine malformed entries.
 */
function idRefusal(item: Y.Item, places: Places): string | undefined {
  const root = item.parent as unknown
  const key = item.parentSub
  if (typeof root === 'string' && key !== null) {
    // `<id>` or `<id>/<uid>`: the id is what comes before the first slash.
    const id = root === ROOTS.tombstones || root === ROOTS.claims || root === ROOTS.aliases ? key.split('/', 1)[0]! : undefined
    if (id !== undefined && isAboveRange(id)) {
      const what = root === ROOTS.claims ? 'claims id' : root === ROOTS.tombstones ? 'tombstones id' : 'records an alias of id'
      return `it ${what} ${short(id)} (${root}/${short(key)}), above the highest item id ${MAX_ITEM_NUMBER} (2^40 − 1)`
    }
  }
  // A mark's first write names its root; raising it names the value it replaces instead, so
  // where a number goes is looked up — only for one that is too high.
  if (!(item.content instanceof Y.ContentAny)) return undefined
  const mark = item.content.arr.find((v) => (typeof v === 'number' || typeof v === 'bigint') && v > MAX_ITEM_NUMBER) as number | bigint | undefined
  if (mark === undefined) return undefined
  const place = places.placeOf(item)
  if (place?.root !== ROOTS.alloc || place.keys.length !== 1) return undefined
  return `it sets the allocator mark of ${quote(String(place.keys[0]))} to ${mark}, above the highest item id ${MAX_ITEM_NUMBER} (2^40 − 1)`
}

/** A decimal without leading zeros that is no id only because it is too large. */
function isAboveRange(s: string): boolean {
  return /^[1-9][0-9]*$/.test(s) && !isItemId(s)
}

/** A key as shown in a reason: a hostile one can be kilobytes long. */
function short(s: string): string {
  return s.length > 40 ? `${s.slice(0, 40)}…` : s
}

function quote(s: string): string {
  return JSON.stringify(short(s))
}

/** Where a struct writes: a root and the keys below it (null: an entry of a list); `deeper`: more keys than are kept. */
export interface Place {
  root: string
  keys: ReadonlyArray<string | null>
  deeper?: boolean
}

/**
 * Where the structs of one update write, for the checks that need it and for the reasons shown
 * to operators. A struct names its parent only when it has no neighbour (the first value of a
 * key, the first entry of a list); otherwise it shares its neighbour's, which is in the update
 * or in the local document. Looked up lazily and
 * remembered, so an update pays only for the structs that are asked about.
 */
export class Places {
  readonly #parts: DocParts
  readonly #structs: readonly Struct[]
  #byClient: Map<number, Struct[]> | undefined
  #rootNames: Map<unknown, string> | undefined
  readonly #known = new Map<Y.Item, Place | undefined>()

  constructor(parts: DocParts, structs: readonly Struct[]) {
    this.#parts = parts
    this.#structs = structs
  }

  /** `root/key/…` for a reason string, or a phrase saying it is somewhere this replica does not have yet. */
  describe(item: Y.Item, withKey = true): string {
    const place = this.placeOf(item)
    if (place === undefined) return 'a part of the document this replica has not received'
    const keys = withKey ? place.keys : place.keys.slice(0, -1)
    const shown = keys.slice(0, SHOWN_KEYS).map((k) => (k === null ? '[]' : `/${short(k)}`))
    return short(place.root) + shown.join('') + (place.deeper || keys.length > SHOWN_KEYS ? '/…' : '')
  }

  /** The place of a struct of this update, or undefined when what it hangs on has not been received. */
  placeOf(start: Y.Item): Place | undefined {
    // Followed iteratively (a list of many pushes is a long chain of neighbours), then remembered.
    const chain: Array<{ item: Y.Item; child: boolean }> = []
    let found: Place | undefined
    for (let item: Y.Item | undefined = start; item !== undefined; ) {
      if (this.#known.has(item)) {
        found = this.#known.get(item)
        break
      }
      const parent = item.parent as unknown
      if (typeof parent === 'string') {
        found = { root: parent, keys: [item.parentSub] }
        this.#known.set(item, found)
        break
      }
      // Its parent type is held by the item `parent`; or it shares the parent and key of a neighbour.
      const child = parent instanceof Y.ID
      const next = child ? parent : (item.origin ?? item.rightOrigin)
      if (next === null || chain.length > this.#structs.length) break
      chain.push({ item, child })
      const local = this.#localItem(next)
      if (local !== undefined) {
        found = this.#localPlace(local)
        break
      }
      item = this.#updateItem(next)
    }
    for (let i = chain.length - 1; i >= 0; i--) {
      const { item, child } = chain[i]!
      if (found !== undefined && child) found = below(found, item.parentSub)
      this.#known.set(item, found)
    }
    return found
  }

  /** The place of an item integrated in the local document: up its parents to a root. */
  #localPlace(start: Y.Item): Place | undefined {
    const keys: Array<string | null> = []
    let item = start
    for (let depth = 0; depth < MAX_PLACE_DEPTH; depth++) {
      keys.unshift(item.parentSub)
      const parent = item.parent as Y.AbstractType<unknown> | null
      if (parent === null) return undefined
      if (parent._item === null) {
        const root = this.#rootName(parent)
        return root === undefined ? undefined : { root, keys }
      }
      item = parent._item
    }
    return undefined
  }

  #rootName(type: Y.AbstractType<unknown>): string | undefined {
    if (this.#rootNames === undefined) {
      this.#rootNames = new Map()
      for (const [name, root] of this.#parts.doc.share) this.#rootNames.set(root, name)
    }
    return this.#rootNames.get(type)
  }

  #localItem(id: Y.ID): Y.Item | undefined {
    const found = structAt(this.#parts.doc.store.clients.get(id.client), id.clock)
    return found instanceof Y.Item ? found : undefined
  }

  #updateItem(id: Y.ID): Y.Item | undefined {
    if (this.#byClient === undefined) {
      this.#byClient = new Map()
      for (const struct of this.#structs) {
        const list = this.#byClient.get(struct.id.client)
        if (list) list.push(struct)
        else this.#byClient.set(struct.id.client, [struct])
      }
    }
    const found = structAt(this.#byClient.get(id.client), id.clock)
    return found instanceof Y.Item ? found : undefined
  }
}

/** The place one level below `place` (a hostile update can nest thousands deep: only so many keys are kept). */
function below(place: Place, key: string | null): Place {
  return place.keys.length >= MAX_PLACE_DEPTH ? { ...place, deeper: true } : { root: place.root, keys: [...place.keys, key] }
}

function structAt<T extends { id: { clock: number }; length: number }>(structs: readonly T[] | undefined, clock: number): T | undefined {
  if (structs === undefined) return undefined
  const found = structs[firstAt(structs, clock)]
  return found !== undefined && found.id.clock <= clock && clock < found.id.clock + found.length ? found : undefined
}

/** The index of the struct that holds `clock` (structs are sorted by clock, contiguous). */
export function firstAt(structs: ReadonlyArray<{ id: { clock: number }; length: number }>, clock: number): number {
  let lo = 0
  let hi = structs.length - 1
  while (lo <= hi) {
    const mid = (lo + hi) >> 1
    const s = structs[mid]!
    if (clock < s.id.clock) hi = mid - 1
    else if (clock >= s.id.clock + s.length) lo = mid + 1
    else return mid
  }
  return lo
}
