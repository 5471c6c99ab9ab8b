import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { openStore, type OpenStoreOptions, type Store } from '@docket/core'

/** Opens `count` stores in fresh temp dirs; `close` closes them and removes the dirs. */
export async function openReplicas(
  count: number,
  options: Partial<OpenStoreOptions> = {},
): Promise<{ stores: Store[]; dirs: string[]; close: () => Promise<void> }> {
  const dirs: string[] = []
  const stores: Store[] = []
  const quiet = process.env.DOCKET_DEBUG ? { warn: (m: string) => console.error('WARN', m), error: (m: string) => console.error('ERROR', m) } : { warn: () => {}, info: () => {}, error: () => {} }
  for (let i = 0; i < count; i++) {
    const dir = await mkdtemp(join(tmpdir(), 'docket-prop-'))
    dirs.push(dir)
    stores.push(await openStore({ dir, durability: 'relaxed', replicaId: `replica-${String.fromCharCode(97 + i)}`, logger: quiet, ...options }))
  }
  return {
    stores,
    dirs,
    close: async () => {
      await Promise.allSettled(stores.map((s) => s.close()))
      await Promise.allSettled(dirs.map((d) => rm(d, { recursive: true, force: true })))
    },
  }
}
