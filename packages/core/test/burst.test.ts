import { describe, expect, it } from 'vitest'
import type { Item, Store, Uid } from '../src/index.js'
import { tempDir } from './support.js'
import { converged, eventually, server, synced } from './sync-support.js'

/**
 * The reconnect burst of issue 9: replicas create offline, then come online through one
 * server at once and keep creating concurrently. Every acknowledged item must be on every
 * replica afterwards, under the id its create returned or an alias chain from it.
 */
async function followAliases(store: Store, uid: Uid, id: string): Promise<Item | undefined> {
  let at = id
  for (let hops = 0; hops < 100; hops++) {
    const item = store.getItem(at)
    if (item?.uid === uid) return item
    const next = store.aliases(at).find((a) => a.uid === uid)
    if (!next) return undefined
    at = next.newId
  }
  return undefined
}

describe('reconnect burst through a real server', () => {
  it('loses no acknowledged item when three replicas come online together and keep creating', async () => {
    const srv = await server()
    const dirs = [await tempDir(), await tempDir(), await tempDir()]
    const acknowledged: Array<{ uid: Uid; id: string; name: string }> = []
    for (const [r, dir] of dirs.entries()) {
      const offline = await synced(undefined, { dir, replicaId: `burst-${r}` })
      for (let i = 0; i < 60; i++) {
        const item = await offline.createItem({ name: `r${r} offline ${i}`, body: `offline body ${r}/${i}` })
        acknowledged.push({ uid: item.uid, id: item.id, name: item.name })
      }
      await offline.close()
    }
    const replicas = await Promise.all(dirs.map((dir) => synced(srv.url, { dir })))
    const failures: unknown[] = []
    await Promise.all(
      replicas.map(async (store, r) => {
        for (let i = 0; i < 60; i++) {
          try {
            const item = await store.createItem({ name: `r${r} online ${i}`, body: `online body ${r}/${i}` })
            acknowledged.push({ uid: item.uid, id: item.id, name: item.name })
          } catch (err) {
            failures.push(err)
          }
        }
      }),
    )
    expect(failures).toEqual([])
    await eventually('the replicas converge', () => converged(replicas), 60_000)
    for (const store of replicas) {
      const items = store.listItems()
      expect(items).toHaveLength(360)
      expect(new Set(items.map((i) => i.id)).size).toBe(360)
      for (const ack of acknowledged) {
        const found = await followAliases(store, ack.uid, ack.id)
        expect(found?.name, `acknowledged item ${ack.uid} (#${ack.id}, ${ack.name}) on ${store.replicaId}`).toBe(ack.name)
      }
    }
  }, 120_000)
})
