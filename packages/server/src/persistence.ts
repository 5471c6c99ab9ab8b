import { Level } from 'level'
import { LeveldbPersistence } from 'y-leveldb'
import * as Y from 'yjs'

/** Stored states of one document kept before they are folded into one. */
const COMPACT_EVERY = 100

export class PersistenceError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'PersistenceError'
  }
}

/**
 * y-leveldb behind a door that does not swallow errors: y-leveldb catches every failure,
 * logs it and resolves `null`; here a `null` is a failure that says what to do.
 */
export class DocumentStore {
  readonly #ldb: LeveldbPersistence
  readonly #dir: string
  readonly #stores = new Map<string, number>()

  private constructor(dir: string) {
    this.#dir = dir
    // y-leveldb takes the Level *class* as `Level`; a lowercase `level` would be ignored.
    this.#ldb = new LeveldbPersistence(dir, { Level })
  }

  /** Opens the directory, refusing one that another process holds (y-leveldb would answer null forever). */
  static async open(dir: string): Promise<DocumentStore> {
    await probe(dir)
    const store = new DocumentStore(dir)
    const names = await store.#ldb.getAllDocNames()
    if (names === null) {
      await store.#ldb.destroy().catch(() => {})
      throw new PersistenceError(`The server's store at ${dir} cannot be opened (another docket serve holds it, or it is unreadable): stop the other server or use another --dir.`)
    }
    return store
  }

  async load(name: string): Promise<Uint8Array> {
    const doc = (await this.#ldb.getYDoc(name)) as Y.Doc | null
    if (!doc) throw new PersistenceError(`Reading document ${name} from ${this.#dir} failed.`)
    const update = Y.encodeStateAsUpdate(doc)
    doc.destroy()
    return update
  }

  async store(name: string, state: Uint8Array): Promise<void> {
    const clock = (await this.#ldb.storeUpdate(name, state)) as number | null
    if (clock === null) throw new PersistenceError(`Writing document ${name} to ${this.#dir} failed.`)
    // y-leveldb keeps every stored state until a flush, which only its load does; a server
    // that runs for weeks must fold them itself.
    const stores = (this.#stores.get(name) ?? 0) + 1
    this.#stores.set(name, stores % COMPACT_EVERY)
    if (stores >= COMPACT_EVERY) {
      const flushed = (await this.#ldb.flushDocument(name)) as unknown
      if (flushed === null) throw new PersistenceError(`Compacting document ${name} in ${this.#dir} failed.`)
    }
  }

  /** The metadata kept beside a document (the arbiter's table: arbiter/local.ts). */
  async metas(name: string): Promise<Map<string, unknown>> {
    const metas = (await this.#ldb.getMetas(name)) as Map<string, unknown> | null
    if (metas === null) throw new PersistenceError(`Reading the metadata of document ${name} from ${this.#dir} failed.`)
    return metas
  }

  /** Writes one metadata value; resolves once LevelDB has it (y-leveldb answers null on failure). */
  async putMeta(name: string, key: string, value: unknown): Promise<void> {
    const done = (await this.#ldb.setMeta(name, key, value)) as unknown
    if (done === null) throw new PersistenceError(`Writing ${key} of document ${name} to ${this.#dir} failed: check the server's disk.`)
  }

  async deleteMeta(name: string, key: string): Promise<void> {
    const done = (await this.#ldb.delMeta(name, key)) as unknown
    if (done === null) throw new PersistenceError(`Deleting ${key} of document ${name} in ${this.#dir} failed: check the server's disk.`)
  }

  async close(): Promise<void> {
    await this.#ldb.destroy()
  }
}

/**
 * Opens and closes the directory once first: y-leveldb reports a held lock as a stack trace on
 * stderr before it answers null, and the operator should see one clear sentence instead.
 */
async function probe(dir: string): Promise<void> {
  const db = new Level(dir)
  try {
    await db.open()
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause
    const held = (err as { code?: string }).code === 'LEVEL_LOCKED' || cause?.code === 'LEVEL_LOCKED'
    throw new PersistenceError(
      held
        ? `The server's store at ${dir} is held by another process (another docket serve on the same --dir): stop it, or give this server another --dir.`
        : `The server's store at ${dir} cannot be opened (${(err as Error).message}): check its permissions and free space, or give this server another --dir.`,
    )
  } finally {
    await db.close().catch(() => {})
  }
}

/** The state a (stopped) server holds for `name`, for tests and inspection. */
export async function readStoredDocument(dir: string, name = 'docket'): Promise<Uint8Array> {
  const store = await DocumentStore.open(dir)
  try {
    return await store.load(name)
  } finally {
    await store.close()
  }
}
