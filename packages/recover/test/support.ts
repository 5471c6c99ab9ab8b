import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach } from 'vitest'
import { openStore, type OpenStoreOptions, type Store } from '@docket/core'

const dirs: string[] = []
const stores: Store[] = []

afterEach(async () => {
  await Promise.allSettled(stores.splice(0).map((s) => s.close()))
  await Promise.allSettled(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })))
})

export async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'docket-recover-'))
  dirs.push(dir)
  return dir
}

const quiet = { warn: () => {}, error: () => {} }

export async function open(dir: string, options: Partial<OpenStoreOptions> = {}): Promise<Store> {
  const store = await openStore({ dir, durability: 'relaxed', logger: quiet, ...options })
  stores.push(store)
  return store
}

/** A store with `live` items (1..live), of which `deleted` are deleted, closed again. */
export async function seedStore(dir: string, live: number, deleted: readonly string[] = []): Promise<void> {
  const store = await openStore({ dir, durability: 'relaxed', logger: { warn: () => {} } })
  for (let i = 1; i <= live; i++) await store.createItem({ name: `Live ${i}`, body: `---\nname: Live ${i}\n---\n` })
  for (const id of deleted) await store.deleteItem(id)
  await store.close()
}
