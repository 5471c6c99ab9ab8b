import { resolve } from 'node:path'
import type { AbstractIteratorOptions } from 'abstract-level'
import { decodeRef, type ContentRef } from '../crdt/content.js'
import { DocketError, isDocketError } from '../errors.js'
import { connectHolder } from '../holder/client.js'
import { readerOf } from '../holder/reader.js'
import { parseItemId, type ItemId } from '../ids.js'
import { openDatabases, storageError, type Databases } from '../storage/db.js'
import { detectDamage, type StorageDamage } from '../storage/health.js'
import { holderEndpoint, removeStaleSocket } from '../holder/endpoint.js'
import {
  decodeIndexAlias,
  decodeIndexItem,
  decodeIndexTombstone,
  INDEX_ALIAS,
  INDEX_ITEM,
  indexRange,
  itemIndexKey,
  tombstoneIndexKey,
} from '../storage/index-rows.js'
import { contentRange, idKey, parseContentKey, parseSlot } from '../storage/keys.js'
import { decodeShadow } from '../storage/shadow.js'
import type { Alias, AuditEvent, AuditQuery, Item, ListItemsOptions, StageHistoryEntry, Tombstone } from '../types.js'
import { queryAudit } from './audit-query.js'
import { decodeContent } from './evidence.js'
import { filterItems, historyOf } from './listing.js'
import { stderrLogger, type Logger } from './logger.js'
import { defaultDir } from './dir.js'
import { SCHEMA_VERSION } from './schema.js'
import type { Store } from './store.js'
import { checkListOptions, invalid, missingItem, keysOf, OPTION_KEYS, requireKnownKeys, requireObject } from './validate.js'

export interface OpenReaderOptions {
  /** The store directory. Default: `DOCKET_DIR`, else `.docket` in the working directory. */
  dir?: string
  /** Where warnings go when the document has to be decoded. Default: stderr. */
  logger?: Logger
}

const READER_KEYS = keysOf<OpenReaderOptions>()(['dir', 'logger'])

/**
 * What the CLI's reads (and an orchestrator's dashboards) need, without decoding the document:
 * items, one item with its history and content, aliases, tombstones, the audit log. It answers
 * from the index rows (storage/index-rows.ts) when they are complete and the store shows no
 * damage — point reads for one item, one scan of small rows for a list — and otherwise opens
 * the store read-only and answers from the document, with the same results; `source` says which.
 * When another process holds the store and serves it, that process answers (`source: 'holder'`).
 */
export interface StoreReader {
  readonly dir: string
  /**
   * `index` while answering from the index rows; `document` once the store had to be opened
   * whole; `holder` when another process holds the store and answers (`readerOf`).
   */
  readonly source: 'index' | 'document' | 'holder'
  /** Why the document was decoded, when it was. */
  readonly fallback: string | undefined
  /** When this replica last knew it was in sync with its server (a hint for reports). */
  readonly lastSyncedAt: string | null
  listItems(options?: ListItemsOptions): Promise<Item[]>
  getItem(id: ItemId | string): Promise<Item | undefined>
  /** NOT_FOUND or TOMBSTONED for an id that shows no live item. */
  stageHistory(id: ItemId | string): Promise<StageHistoryEntry[]>
  contentSlots(id: ItemId | string): Promise<string[]>
  readContentBytes(id: ItemId | string, slot?: string): Promise<Uint8Array | undefined>
  readContent(id: ItemId | string, slot?: string): Promise<string | undefined>
  aliases(oldId?: ItemId | string): Promise<Alias[]>
  tombstone(id: ItemId | string): Promise<Tombstone | undefined>
  audit(query?: AuditQuery): AsyncGenerator<AuditEvent>
  /** Acknowledged work found missing (the reader then answers from the document, as a read-only open does). */
  damage(): StorageDamage | undefined
  close(): Promise<void>
}

export async function openReader(options: OpenReaderOptions = {}): Promise<StoreReader> {
  const opts = requireKnownKeys(requireObject(options, 'openReader options'), READER_KEYS, 'openReader()') as OpenReaderOptions
  if (opts.dir !== undefined && (typeof opts.dir !== 'string' || opts.dir.length === 0)) throw invalid('dir must be a non-empty path.')
  const dir = resolve(opts.dir ?? defaultDir())
  const logger = opts.logger ?? stderrLogger
  let dbs: Databases
  try {
    dbs = await openDatabases(dir, false)
  } catch (err) {
    // Another process holds the store: it answers, if it serves (a dashboard beside an orchestrator).
    if (!isDocketError(err, 'STORE_LOCKED')) throw err
    const held = await connectHolder(dir)
    if (!held) throw err
    return readerOf(held)
  }
  // The LevelDB's lock is ours: a holder socket still there was left by one that died.
  await removeStaleSocket(holderEndpoint(dir), dir).catch(() => {})
  let why: string | undefined
  try {
    why = await whyNotIndexed(dir, dbs)
  } catch (err) {
    await dbs.root.close().catch(() => {})
    throw storageError(dir, err)
  }
  const lastSyncedAt = (await dbs.meta.get('lastSyncedAt').catch(() => undefined)) ?? null
  const reader = new Reader(dir, logger, dbs, lastSyncedAt)
  if (why !== undefined) await reader.useDocument(why)
  return reader
}

/**
 * Why the index rows cannot answer for this store, or undefined when they can. Damage is found
 * (and recorded) as an open finds it, but for holes in the update rows: their keys cost as much to
 * read as the whole document. A lost batch in the middle of the log is reported by LevelDB at the
 * open that drops it — this one, or an earlier one that recorded it in DAMAGE.json — and every
 * open of the document still looks for holes.
 */
async function whyNotIndexed(dir: string, dbs: Databases): Promise<string | undefined> {
  const schema = await dbs.meta.get('schema')
  if (schema !== String(SCHEMA_VERSION)) return `the store is of schema ${schema ?? 'unknown'}`
  const commit = await dbs.meta.get('commit')
  if (commit === undefined || (await dbs.meta.get('indexed')) !== commit) return 'its index is not complete (it is rebuilt at the next writable open)'
  const damage = await detectDamage(dir, Number(commit))
  if (damage) return `it is missing acknowledged work (${damage.findings.join('; ')})`
  return undefined
}

class Reader implements StoreReader {
  #dbs: Databases | undefined
  #store: Store | undefined
  #why: string | undefined
  #closed = false

  constructor(
    readonly dir: string,
    readonly logger: Logger,
    dbs: Databases,
    readonly lastSyncedAt: string | null,
  ) {
    this.#dbs = dbs
  }

  get source(): 'index' | 'document' {
    return this.#store ? 'document' : 'index'
  }

  get fallback(): string | undefined {
    return this.#why
  }

  /**
   * Gives up the index for the document: the LevelDB is closed and the store opened read-only
   * (which finds and records damage as any open does). Also taken when an index row turns out
   * unreadable, so a damaged row costs time, never a wrong answer.
   */
  async useDocument(why: string): Promise<Store> {
    if (this.#store) return this.#store
    this.#why = why
    const dbs = this.#dbs
    this.#dbs = undefined
    await dbs?.root.close()
    // Loaded only now: a reader that answers from the index never loads Yjs.
    const { openStore } = await import('./open.js')
    this.#store = await openStore({ dir: this.dir, readOnly: true, create: false, logger: this.logger })
    return this.#store
  }

  async listItems(options: ListItemsOptions = {}): Promise<Item[]> {
    const checked = checkListOptions(requireKnownKeys(requireObject(options, 'listItems options'), OPTION_KEYS.listItems, 'listItems()') as ListItemsOptions)
    return this.#read(
      (store) => store.listItems(checked),
      async (dbs) => {
        const items: Item[] = []
        // Read in large steps: one native call per thousand rows, not one per row.
        const rows = dbs.index.iterator({ ...indexRange(INDEX_ITEM), highWaterMarkBytes: 4 << 20 } as AbstractIteratorOptions<string, string>)
        try {
          for (let entries = await rows.nextv(1000); entries.length > 0; entries = await rows.nextv(1000)) {
            for (const [key, text] of entries) {
              const item = decodeIndexItem(key, text)
              if (!item) return unreadable(key)
              items.push(item)
            }
          }
        } finally {
          await rows.close()
        }
        const byId = new Map(items.map((item) => [item.id, item]))
        return filterItems(items, checked, (id) => byId.get(id))
      },
    )
  }

  async getItem(id: ItemId | string): Promise<Item | undefined> {
    const itemId = parseItemId(id)
    return this.#read(
      (store) => store.getItem(itemId),
      (dbs) => this.#item(dbs, itemId),
    )
  }

  async stageHistory(id: ItemId | string): Promise<StageHistoryEntry[]> {
    const itemId = parseItemId(id)
    return this.#read(
      (store) => store.stageHistory(itemId),
      async (dbs) => {
        const item = await this.#live(dbs, itemId)
        if (item instanceof Unreadable) return item
        const text = await dbs.shadow.get(idKey(itemId))
        const parsed = text === undefined ? undefined : decodeShadow(text)
        // The shadow row is written in the batch that wrote the index row: one that disagrees is damage.
        if (!parsed?.ok || parsed.row.uid !== item.uid) return unreadable(`shadow/${idKey(itemId)}`)
        return historyOf(parsed.row.stages)
      },
    )
  }

  async contentSlots(id: ItemId | string): Promise<string[]> {
    const itemId = parseItemId(id)
    return this.#read(
      (store) => store.contentSlots(itemId),
      async (dbs) => {
        const item = await this.#live(dbs, itemId)
        if (item instanceof Unreadable) return item
        const slots: string[] = []
        for await (const key of dbs.content.keys(contentRange(itemId))) {
          const parsed = parseContentKey(key)
          if (parsed) slots.push(parsed.slot)
        }
        return slots.sort()
      },
    )
  }

  async readContentBytes(id: ItemId | string, slot = 'body'): Promise<Uint8Array | undefined> {
    const itemId = parseItemId(id)
    const name = parseSlot(slot)
    return this.#read(
      (store) => store.readContentBytes(itemId, name),
      async (dbs) => {
        const item = await this.#live(dbs, itemId)
        if (item instanceof Unreadable) return item
        const row = await dbs.content.get(`${idKey(itemId)}/${name}`)
        if (row === undefined) return undefined
        const ref = decodeRef(row)
        if (!ref) return unreadable(`content/${idKey(itemId)}/${name}`)
        return this.#blob(dbs, ref, itemId, name)
      },
    )
  }

  async readContent(id: ItemId | string, slot = 'body'): Promise<string | undefined> {
    const bytes = await this.readContentBytes(id, slot)
    if (bytes === undefined) return undefined
    const text = decodeContent(bytes)
    if (typeof text === 'string') return text
    throw invalid(`Slot "${slot}" of item ${id} holds bytes that are not UTF-8 text: read it with readContentBytes.`, { id, slot })
  }

  async aliases(oldId?: ItemId | string): Promise<Alias[]> {
    const filter = oldId === undefined ? undefined : parseItemId(oldId)
    return this.#read(
      (store) => store.aliases(filter),
      async (dbs) => {
        const out: Alias[] = []
        // Keyed by the document's keys, whose id part a peer could have written as anything: filtered by value, as the store does.
        for await (const [key, text] of dbs.index.iterator(indexRange(INDEX_ALIAS))) {
          const alias = decodeIndexAlias(text)
          if (!alias) return unreadable(key)
          if (filter === undefined || alias.oldId === filter) out.push(alias)
        }
        return out
      },
    )
  }

  async tombstone(id: ItemId | string): Promise<Tombstone | undefined> {
    const itemId = parseItemId(id)
    return this.#read(
      (store) => store.tombstone(itemId),
      async (dbs) => {
        const key = tombstoneIndexKey(itemId)
        const text = await dbs.index.get(key)
        return text === undefined ? undefined : (decodeIndexTombstone(text) ?? unreadable(key))
      },
    )
  }

  async *audit(query: AuditQuery = {}): AsyncGenerator<AuditEvent> {
    this.#assertOpen()
    if (this.#store) {
      yield* this.#store.audit(query)
      return
    }
    try {
      yield* queryAudit(this.#dbs!, query)
    } catch (err) {
      throw storageError(this.dir, err)
    }
  }

  damage(): StorageDamage | undefined {
    return this.#store?.damage()
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    const dbs = this.#dbs
    this.#dbs = undefined
    await dbs?.root.close()
    await this.#store?.close()
  }

  /** Answers from the index, or from the document when the index cannot (from then on). */
  async #read<T>(fromDocument: (store: Store) => T | Promise<T>, fromIndex: (dbs: Databases) => Promise<T | Unreadable>): Promise<T> {
    this.#assertOpen()
    if (!this.#store) {
      let answer: T | Unreadable
      try {
        answer = await fromIndex(this.#dbs!)
      } catch (err) {
        throw storageError(this.dir, err)
      }
      if (!(answer instanceof Unreadable)) return answer
      this.logger.warn(`the index row ${answer.row} of ${this.dir} is unreadable; reading the document instead. \`docket doctor --fix\` rebuilds the index.`)
      return fromDocument(await this.useDocument(`the index row ${answer.row} is unreadable`))
    }
    return fromDocument(this.#store)
  }

  async #item(dbs: Databases, id: ItemId): Promise<Item | undefined | Unreadable> {
    const key = itemIndexKey(id)
    const text = await dbs.index.get(key)
    if (text === undefined) return undefined
    return decodeIndexItem(key, text) ?? unreadable(key)
  }

  /** The live item at `id`, or the error a Store throws for it (NOT_FOUND, TOMBSTONED). */
  async #live(dbs: Databases, id: ItemId): Promise<Item | Unreadable> {
    const item = await this.#item(dbs, id)
    if (item !== undefined) return item
    throw missingItem(id, (await dbs.index.get(tombstoneIndexKey(id))) !== undefined)
  }

  async #blob(dbs: Databases, ref: ContentRef, id: ItemId, slot: string): Promise<Uint8Array> {
    const bytes = await dbs.blob.get(ref.sha256)
    if (bytes !== undefined) return new Uint8Array(bytes)
    throw new DocketError(
      'CONTENT_UNAVAILABLE',
      `Slot "${slot}" of item ${id} was written on another replica and its content (${ref.size} bytes, sha256 ${ref.sha256.slice(0, 12)}…) has not reached this one: run \`docket sync\` (with --sync or DOCKET_SYNC_URL) to fetch it.`,
      { details: { id, slot, sha256: ref.sha256, size: ref.size } },
    )
  }

  #assertOpen(): void {
    if (this.#closed) throw new DocketError('STORE_CLOSED', `The reader of ${this.dir} is closed: open it again with openReader().`, { details: { dir: this.dir } })
  }
}

/** What an index read returns for a row it cannot trust: the reader then answers from the document. */
class Unreadable {
  constructor(readonly row: string) {}
}

function unreadable(row: string): Unreadable {
  return new Unreadable(row)
}
