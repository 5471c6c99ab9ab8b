import { connectHolder, handleOf, openStore, type Logger, type StoreHandle, type SyncOptions } from '@docket/core'

/**
 * Where the board reads from: the process that holds the store (an orchestrator, `docket
 * daemon`), or — when nobody does — the store opened by the board itself, which then serves it
 * to `docket` commands as any holder does. Either way it tells the board when something changed
 * (`trouble` set: it lost its view of the store, and is finding it again).
 */
export interface BoardSource {
  /** The store as the board reads it now (it changes when a holder goes away). */
  readonly handle: StoreHandle
  /** `held`: another process holds the store; `own`: the board opened it. */
  readonly kind: 'held' | 'own'
  onChange(listener: (trouble?: string) => void): () => void
  close(): Promise<void>
}

/** How often a board that reads through another process's holder asks whether anything changed. */
const POLL_MS = 300

export async function openSource(dir: string, logger: Logger, sync?: SyncOptions): Promise<BoardSource> {
  const listeners = new Set<(trouble?: string) => void>()
  const tell = (trouble?: string) => {
    for (const listener of [...listeners]) listener(trouble)
  }
  let handle!: StoreHandle
  let kind!: 'held' | 'own'
  let release: () => Promise<void> = async () => {}
  let timer: NodeJS.Timeout | undefined
  let closed = false

  /** Reads through the holder if there is one, else opens the store (and holds it). */
  const attach = async (): Promise<void> => {
    const held = await connectHolder(dir)
    if (held) {
      handle = held
      kind = 'held'
      // The holder's listeners stay in its process: a cheap question, often, tells what changed.
      const fingerprint = async () => {
        const s = await held.stats()
        const state = await held.syncState()
        return JSON.stringify([s.items, s.tombstones, s.updateRows, s.updateBytes, s.highestId, state.connected, state.synced])
      }
      let last = await fingerprint()
      let busy = false
      timer = setInterval(() => {
        if (busy || closed) return
        busy = true
        fingerprint()
          .then((now) => {
            if (now !== last) {
              last = now
              tell()
            }
          })
          .catch(async (err: unknown) => {
            // The holder went away (or stopped answering): said once, then found again.
            clearInterval(timer)
            tell(`lost the process that holds the store (${(err as Error).message}); finding it again`)
            logger.warn(`the board lost the process that holds the store (${(err as Error).message}); reading through the next holder, or opening the store itself`)
            await held.close().catch(() => {})
            await reattach()
          })
          .finally(() => (busy = false))
      }, POLL_MS)
      timer.unref()
      release = async () => {
        clearInterval(timer)
        await held.close()
      }
      return
    }
    // A replica of its own: with a sync server, other replicas' changes arrive (and are told) as any do.
    const store = await openStore({ dir, create: false, serve: true, logger, ...(sync ? { sync } : {}) })
    const off = store.subscribe(() => tell())
    handle = handleOf(store)
    kind = 'own'
    release = async () => {
      off()
      await store.close()
    }
  }

  const reattach = async (): Promise<void> => {
    for (let attempt = 0; !closed; attempt++) {
      try {
        await attach()
        tell()
        return
      } catch (err) {
        if (attempt === 0) logger.warn(`the board cannot read the store yet (${(err as Error).message}); trying again every second`)
        await new Promise((r) => setTimeout(r, 1000).unref())
      }
    }
  }

  await attach()
  return {
    get handle() {
      return handle
    },
    get kind() {
      return kind
    },
    onChange: (listener) => (listeners.add(listener), () => listeners.delete(listener)),
    close: async () => {
      closed = true
      await release()
    },
  }
}
