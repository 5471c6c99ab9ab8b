import { connectHolder, handleOf, openStore, type Logger, type StoreHandle, type SyncOptions } from '@docket/core'

/**
 * Where the board reads from: the process that holds the store (an orchestrator, `docket
 * daemon`), or — when nobody does — the store opened by the board itself, which then serves it
 * to `docket` commands as any holder does. Either way it tells the board when something changed.
 */
export interface BoardSource {
  handle: StoreHandle
  /** `held`: another process holds the store; `own`: the board opened it. */
  kind: 'held' | 'own'
  onChange(listener: () => void): () => void
  close(): Promise<void>
}

/** How often a board that reads through another process's holder asks whether anything changed. */
const POLL_MS = 300

export async function openSource(dir: string, logger: Logger, sync?: SyncOptions): Promise<BoardSource> {
  const listeners = new Set<() => void>()
  const tell = () => {
    for (const listener of [...listeners]) listener()
  }
  const held = await connectHolder(dir)
  if (held) {
    // The holder's listeners stay in its process: a cheap question, often, tells what changed.
    let last = ''
    const fingerprint = async () => {
      const s = await held.stats()
      const sync = await held.syncState()
      return JSON.stringify([s.items, s.tombstones, s.updateRows, s.updateBytes, s.highestId, sync.lastSyncedAt, sync.connected])
    }
    last = await fingerprint()
    let busy = false
    const timer = setInterval(() => {
      if (busy) return
      busy = true
      fingerprint()
        .then((now) => {
          if (now !== last) {
            last = now
            tell()
          }
        })
        .catch((err: unknown) => logger.warn(`the board lost its view of the store (${(err as Error).message}); restart docket board`))
        .finally(() => (busy = false))
    }, POLL_MS)
    timer.unref()
    return {
      handle: held,
      kind: 'held',
      onChange: (listener) => (listeners.add(listener), () => listeners.delete(listener)),
      close: async () => {
        clearInterval(timer)
        await held.close()
      },
    }
  }
  // A replica of its own: with a sync server, other replicas' changes arrive (and are told) as any do.
  const store = await openStore({ dir, create: false, serve: true, logger, ...(sync ? { sync } : {}) })
  const off = store.subscribe(() => tell())
  return {
    handle: handleOf(store),
    kind: 'own',
    onChange: (listener) => (listeners.add(listener), () => listeners.delete(listener)),
    close: async () => {
      off()
      await store.close()
    },
  }
}
