import { resolve } from 'node:path'
import { DocketError, isDocketError, openReader, openStore, type StorageDamage, type Store, type StoreReader, type SyncOptions } from '@docket/core'
import type { Command } from 'commander'
import { Output, type Io } from './output.js'

export interface GlobalOptions {
  dir?: string
  json?: boolean
  sync?: string
  token?: string
}

/**
 * How a command relates to the sync server: `read` reports local state and says how stale it
 * may be; `write` tries to catch up first and works offline if it cannot; `repair` refuses
 * (BEHIND_REMOTE, exit 4) unless the replica is synced or the command runs --offline.
 */
export type SyncMode = 'read' | 'write' | 'repair'

/** What every command gets: the I/O, the global options, and how to open the store. */
export class Context {
  exitCode = 0
  readonly io: Io
  #output: Output | undefined

  constructor(io: Io) {
    this.io = io
  }

  globals(command: Command): GlobalOptions {
    return command.optsWithGlobals<GlobalOptions>()
  }

  output(command: Command): Output {
    this.#output ??= new Output(this.io, this.globals(command).json === true)
    return this.#output
  }

  /** The store directory: --dir, then DOCKET_DIR, then .docket in the working directory. */
  dir(command: Command): string {
    const env = this.io.env.DOCKET_DIR
    const chosen = this.globals(command).dir ?? (env !== undefined && env !== '' ? env : '.docket')
    return resolve(this.io.cwd, chosen)
  }

  /** The sync server: --sync, else DOCKET_SYNC_URL; its token: --token, else DOCKET_TOKEN. */
  sync(command: Command): SyncOptions | undefined {
    const globals = this.globals(command)
    const url = globals.sync ?? this.io.env.DOCKET_SYNC_URL
    if (url === undefined || url === '') return undefined
    const token = this.token(command)
    return { url, ...(token ? { token } : {}) }
  }

  /** The sync server's token (for clients and for `docket serve`): --token, else DOCKET_TOKEN. */
  token(command: Command): string | undefined {
    return this.globals(command).token ?? this.io.env.DOCKET_TOKEN
  }

  syncTimeoutMs(): number {
    const value = Number(this.io.env.DOCKET_SYNC_TIMEOUT_MS)
    return Number.isFinite(value) && value > 0 ? value : 5000
  }

  /** Opens the store for one command and closes it afterwards, whatever happens. */
  async withStore<T>(
    command: Command,
    options: { readOnly?: boolean; sync?: SyncMode; offline?: boolean; acceptDamage?: boolean; allowDamage?: boolean },
    fn: (store: Store) => Promise<T>,
  ): Promise<T> {
    const out = this.output(command)
    const sync = this.sync(command)
    const readOnly = options.readOnly === true
    const store = await openStore({
      dir: this.dir(command),
      create: false, // only `docket init` creates a store
      readOnly,
      ...(options.acceptDamage === true ? { acceptDamage: true } : {}),
      ...(sync ? { sync } : {}),
      logger: { warn: (m) => out.warn(m), error: (m) => out.error(m), info: () => {} },
    })
    const damage = store.readOnly ? store.damage() : undefined
    if (damage) {
      if (!options.allowDamage) {
        await store.close()
        throw damaged(store.dir, damage)
      }
      out.warn(`the store is missing work it had acknowledged: ${damage.findings.join('; ')}`)
    }
    try {
      if (sync) await this.#catchUp(store, out, readOnly ? 'read' : (options.sync ?? 'write'), options.offline === true)
      return await fn(store)
    } finally {
      await store.close()
    }
  }

  /**
   * Opens the store for a read (list, show, log): from the index rows when they are complete,
   * so that a read never decodes the document; the answers are the same either way.
   */
  async withReader<T>(command: Command, fn: (reader: StoreReader) => Promise<T>): Promise<T> {
    const out = this.output(command)
    const reader = await openReader({ dir: this.dir(command), logger: { warn: (m) => out.warn(m), error: (m) => out.error(m), info: () => {} } })
    try {
      const damage = reader.damage()
      if (damage) throw damaged(reader.dir, damage)
      const sync = this.sync(command)
      if (sync) staleNote(out, sync.url, reader.lastSyncedAt)
      return await fn(reader)
    } finally {
      await reader.close()
    }
  }

  async #catchUp(store: Store, out: Output, mode: SyncMode, offline: boolean): Promise<void> {
    const url = store.syncState().url
    if (mode === 'read') {
      staleNote(out, url, store.syncState().lastSyncedAt)
      return
    }
    if (mode === 'repair') {
      if (offline) out.warn(`--offline: repairing without confirming this replica is caught up with ${url}`)
      await store.assertSynced({ offline, timeoutMs: this.syncTimeoutMs() })
      return
    }
    try {
      await store.whenSynced(this.syncTimeoutMs())
    } catch (err) {
      if (isDocketError(err, 'SYNC_UNAUTHORIZED')) throw err
      out.warn(`working offline (${(err as Error).message}); the change reaches ${url} when it is reachable`)
    }
  }
}

/** Never silently: a report on a store that lost acknowledged work says so; only the commands that help with it (doctor, a recovery dry run, export) go on. */
function damaged(dir: string, damage: StorageDamage): DocketError {
  return new DocketError(
    'STORE_CORRUPT',
    `The store at ${dir} is missing work it had acknowledged: ${damage.findings.join('; ')}. Run \`docket doctor\` to see what survived; \`docket export\` saves what is readable; \`docket doctor --fix --accept-loss\` goes on with it.`,
    { details: { ...damage } },
  )
}

function staleNote(out: Output, url: string | null, last: string | null): void {
  out.note(`note: this report is from the local replica; it last synced with ${url} ${last ? `at ${last}` : 'never'}, so it may be stale (run \`docket sync\` to catch up)`)
}
