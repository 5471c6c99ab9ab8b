import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { connectHolder, DocketError, handleOf, readerOf, isDocketError, type StoreHandle, type StoreReader } from '@docket/core/client'
import type { Logger, StorageDamage, Store, SyncOptions } from '@docket/core'
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

  /** How long one call through the store's holder may take: DOCKET_HOLDER_TIMEOUT_MS, else 60 s. */
  holderTimeoutMs(): number {
    const value = Number(this.io.env.DOCKET_HOLDER_TIMEOUT_MS)
    return Number.isFinite(value) && value > 0 ? value : 60_000
  }

  /**
   * The store for one command, closed (or disconnected from) afterwards whatever happens: through
   * the process that holds it when there is one (an orchestrator, `docket daemon`), so that the
   * command works while it runs and its listeners see the change; else opened here.
   */
  async withStore<T>(
    command: Command,
    options: { readOnly?: boolean; sync?: SyncMode; offline?: boolean; acceptDamage?: boolean; allowDamage?: boolean },
    fn: (store: StoreHandle) => Promise<T>,
  ): Promise<T> {
    const out = this.output(command)
    const dir = this.dir(command)
    const readOnly = options.readOnly === true
    const sync = this.sync(command)
    const opened = await this.#openOrReach(dir, async () =>
      (await core()).openStore({
        dir,
        create: false, // only `docket init` creates a store
        readOnly,
        serve: false, // a command is over in a moment: it never serves others
        ...(options.acceptDamage === true ? { acceptDamage: true } : {}),
        ...(sync ? { sync } : {}),
        logger: this.logger(out),
      }),
    )
    const held = 'held' in opened ? opened.held : undefined
    const store = held ?? handleOf((opened as { opened: Store }).opened)
    try {
      const damage = store.readOnly ? await store.damage() : undefined
      if (damage) {
        if (!options.allowDamage) throw damaged(store.dir, damage)
        out.warn(`the store is missing work it had acknowledged: ${damage.findings.join('; ')}`)
      }
      // Through a holder, its own sync settings count: it is the replica that syncs.
      const syncs = held ? (await store.syncState()).configured : sync !== undefined
      if (syncs) await this.#catchUp(store, out, readOnly ? 'read' : (options.sync ?? 'write'), options.offline === true)
      return await fn(store)
    } finally {
      await store.close()
    }
  }

  /**
   * Opens the store for a read (list, show, log): through its holder when there is one, else
   * from the index rows when they are complete, so that a read never decodes the document; the
   * answers are the same either way.
   */
  async withReader<T>(command: Command, fn: (reader: StoreReader) => Promise<T>, retried = false): Promise<T> {
    const out = this.output(command)
    const dir = this.dir(command)
    const opened = await this.#openOrReach(dir, async () => (await import('@docket/core/read')).openReader({ dir, logger: this.logger(out) }))
    const held = 'held' in opened ? opened.held : undefined
    try {
      const reader = held ? await readerOf(held).catch(async (err: unknown) => {
        await held.close()
        throw err
      }) : (opened as { opened: StoreReader }).opened
      try {
        const damage = reader.damage()
        if (damage) throw damaged(reader.dir, damage)
        const url = held ? (await held.syncState()).url : (this.sync(command)?.url ?? null)
        if (url !== null) staleNote(out, url, reader.lastSyncedAt)
        return await fn(reader)
      } finally {
        await reader.close()
      }
    } catch (err) {
      // A read through a holder that went away (it closed the store meanwhile) is simply read again: reading twice is harmless.
      if (held === undefined || retried || !isDocketError(err, 'HOLDER_UNAVAILABLE')) throw err
    }
    return this.withReader(command, fn, true)
  }

  /** A fresh, empty store in a temporary directory, removed afterwards: what a dry run without a store runs against. */
  async withScratchStore<T>(fn: (store: StoreHandle) => Promise<T>): Promise<T> {
    const dir = await mkdtemp(join(tmpdir(), 'docket-dry-run-'))
    try {
      const store = await (await core()).openStore({ dir, durability: 'relaxed', serve: false, logger: { warn: () => {}, error: () => {}, info: () => {} } })
      try {
        return await fn(handleOf(store))
      } finally {
        await store.close()
      }
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  }

  logger(out: Output): Logger {
    return { warn: (m) => out.warn(m), error: (m) => out.error(m), info: () => {} }
  }

  #held(dir: string): Promise<StoreHandle | undefined> {
    return connectHolder(dir, { timeoutMs: this.holderTimeoutMs() })
  }

  /**
   * The holder of the store if a process holds it; else the store opened here. A holder that is
   * starting has the lock a moment before it listens, so on STORE_LOCKED it is asked again for
   * up to a second before STORE_LOCKED stands.
   */
  async #openOrReach<S>(dir: string, open: () => Promise<S>): Promise<{ held: StoreHandle } | { opened: S }> {
    for (let attempt = 0; ; attempt++) {
      const held = await this.#held(dir)
      if (held) return { held }
      try {
        return { opened: await open() }
      } catch (err) {
        if (!isDocketError(err, 'STORE_LOCKED') || attempt >= 10) throw err
        await new Promise((r) => setTimeout(r, 100))
      }
    }
  }

  async #catchUp(store: StoreHandle, out: Output, mode: SyncMode, offline: boolean): Promise<void> {
    const state = await store.syncState()
    const url = state.url
    if (mode === 'read') {
      staleNote(out, url, state.lastSyncedAt)
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

/**
 * The whole of @docket/core (Yjs, the engine), loaded only by commands that open the store
 * themselves: a command that goes through a holder, or reads the index rows, never pays for it.
 */
function core(): Promise<typeof import('@docket/core')> {
  return import('@docket/core')
}
