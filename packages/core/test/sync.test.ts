import * as Y from 'yjs'
import { describe, expect, it } from 'vitest'
import { readStoredDocument } from '@docket/server'
import type { AuditEvent, Item, Store } from '../src/index.js'
import { collect, tempDir } from './support.js'
import { converged, eventually, freePort, server, serverProcess, synced, TOKEN } from './sync-support.js'

function summary(store: Store): string {
  return JSON.stringify(store.listItems().map((i: Item) => [i.id, i.uid, i.name, i.stage, i.dependsOn]))
}

describe('sync through a Hocuspocus server on 127.0.0.1', () => {
  it('propagates creates, stages and content, and reports its state', async () => {
    const srv = await server()
    const a = await synced(srv.url)
    const b = await synced(srv.url)
    await a.whenSynced(10_000)
    const item = await a.createItem({ name: 'shared', body: 'hello' })
    await a.apply(item.id, 'start')
    await eventually('b sees the item in coding', () => b.getItem(item.id)?.stage === 'coding')
    expect(await b.readContent(item.id)).toBe('hello')
    const state = b.syncState()
    expect(state).toMatchObject({ configured: true, url: srv.url, connected: true, error: null })
    await eventually('b is synced', () => b.syncState().synced)
    expect(b.syncState().lastSyncedAt).toEqual(expect.any(String))
  })

  it('three replicas that each created 200 items offline converge on 600 items with unique ids and intact bodies', async () => {
    const srv = await server()
    const dirs = [await tempDir(), await tempDir(), await tempDir()]
    const created: Array<{ uid: string; body: string }> = []
    for (const [r, dir] of dirs.entries()) {
      const offline = await synced(undefined, { dir, replicaId: `replica-${r}` })
      for (let i = 0; i < 200; i += 50) {
        const items = await Promise.all(Array.from({ length: 50 }, (_, k) => offline.createItem({ name: `r${r} item ${i + k}`, body: `body of r${r}/${i + k}` })))
        for (const item of items) created.push({ uid: item.uid, body: `body of r${r}/${i + k(items, item)}` })
      }
      await offline.close()
    }
    const replicas = await Promise.all(dirs.map((dir) => synced(srv.url, { dir })))
    await eventually('the replicas converge', () => converged(replicas), 60_000)
    const first = summary(replicas[0]!)
    for (const r of replicas) {
      expect(summary(r)).toBe(first)
      const items = r.listItems()
      expect(items).toHaveLength(600)
      expect(new Set(items.map((i) => i.id)).size).toBe(600)
      expect(new Set(items.map((i) => i.uid))).toEqual(new Set(created.map((c) => c.uid)))
    }
    for (const c of created.slice(0, 600)) {
      const item = replicas[1]!.listItems().find((i) => i.uid === c.uid)!
      expect(await replicas[1]!.readContent(item.id)).toBe(c.body)
    }
    // At least 400 items lost their id to a collision (more, when concurrent re-anchorings
    // collide again) and moved — each only ever by its own creator, who audited it.
    const moved = await Promise.all(replicas.map((r) => collect(r.audit({ kinds: ['reanchored'] }))))
    expect(moved.flat().length).toBeGreaterThanOrEqual(400)
    const aliases = replicas[0]!.aliases()
    expect(aliases).toHaveLength(moved.flat().length)
    const creators = new Map(replicas.map((r, i) => [r.replicaId, moved[i]!.map((e) => e.data.uid)]))
    for (const alias of aliases) expect(creators.get(alias.by)).toContain(alias.uid)
    // …and the server holds the same 600.
    await Promise.all(replicas.map((r) => r.close()))
    await srv.close()
    const doc = new Y.Doc()
    Y.applyUpdate(doc, await readStoredDocument(srv.dir))
    // (items live under their uid; the claims say which id each shows)
    expect([...doc.getMap('records').keys()].sort()).toEqual(JSON.parse(first).map((row: string[]) => row[1]).sort())
  }, 120_000)

  it('a stale replica cannot drag done items back; its demotes are audited as superseded; an informed reopen wins', async () => {
    const srv = await server()
    const aDir = await tempDir()
    const bDir = await tempDir()
    const a = await synced(srv.url, { dir: aDir, replicaId: 'replica-a' })
    let b = await synced(srv.url, { dir: bDir, replicaId: 'replica-b' })
    const items = await Promise.all(Array.from({ length: 50 }, (_, i) => a.createItem({ name: `item ${i}` })))
    for (const item of items) await a.apply(item.id, 'start')
    await eventually('b sees 50 items in coding', () => b.listItems({ stage: 'coding' }).length === 50)
    await b.close()
    b = await synced(undefined, { dir: bDir }) // offline since the items were in coding
    for (const item of items) for (const e of ['gates_passed', 'accepted', 'merge_succeeded'] as const) await a.apply(item.id, e)
    for (const item of items) {
      await b.apply(item.id, 'gates_passed')
      await b.apply(item.id, 'demote')
    }
    expect(b.listItems({ stage: 'backlog' })).toHaveLength(50)
    await b.close()
    b = await synced(srv.url, { dir: bDir })
    await eventually('both replicas converge', () => converged([a, b]))
    for (const store of [a, b]) expect(store.listItems({ stage: 'done' }).map((i) => i.id)).toEqual(items.map((i) => i.id))
    const superseded = (await collect(b.audit({ kinds: ['stale_transition_superseded'] }))) as AuditEvent[]
    const demotes = superseded.filter((e) => e.data.event === 'demote' && e.data.mine === true)
    expect(demotes).toHaveLength(50)
    expect(new Set(demotes.map((e) => e.itemId))).toEqual(new Set(items.map((i) => i.id)))
    // b has now seen done: its reopen is informed and wins everywhere
    await b.apply(items[0]!.id, 'reopen')
    await eventually('a sees the reopen', () => a.getItem(items[0]!.id)?.stage === 'coding')
  }, 60_000)

  it('a deleted item stays deleted when a stale replica edits it; its id is never reissued anywhere', async () => {
    const srv = await server()
    const bDir = await tempDir()
    const a = await synced(srv.url)
    let b = await synced(srv.url, { dir: bDir })
    const item = await a.createItem({ name: 'doomed', body: 'v1' })
    await eventually('b has the item', () => b.getItem(item.id) !== undefined)
    await b.close()
    b = await synced(undefined, { dir: bDir })
    await a.deleteItem(item.id, { reason: 'not needed' })
    await b.updateItem(item.id, { name: 'edited while offline' })
    await b.writeContent(item.id, 'body', 'v2')
    await b.close()
    b = await synced(srv.url, { dir: bDir })
    await eventually('converged', () => converged([a, b]))
    for (const store of [a, b]) {
      expect(store.getItem(item.id)).toBeUndefined()
      expect(store.isTombstoned(item.id)).toBe(true)
      expect(store.peekNextId()).not.toBe(item.id)
      const next = await store.createItem({ name: 'after' })
      expect(Number(next.id)).toBeGreaterThan(Number(item.id))
    }
  }, 60_000)

  it('refuses a wrong or missing token with a clear error; the server keeps nothing from that client', async () => {
    const srv = await server()
    const good = await synced(srv.url)
    await good.createItem({ name: 'legit' })
    await good.whenSynced(10_000)
    for (const token of ['wrong', undefined]) {
      const intruder = await synced(srv.url, { sync: { url: srv.url, ...(token ? { token } : { token: '' }) } })
      await intruder.createItem({ name: `intruder ${token ?? 'none'}` })
      await expect(intruder.whenSynced(5000)).rejects.toMatchObject({ code: 'SYNC_UNAUTHORIZED', message: expect.stringContaining('token') })
      expect(intruder.syncState()).toMatchObject({ connected: false, synced: false, error: { code: 'SYNC_UNAUTHORIZED' } })
      expect(intruder.log.lines.some((l) => l.includes('refused this replica'))).toBe(true)
      expect(intruder.listItems().map((i) => i.name)).toEqual([`intruder ${token ?? 'none'}`]) // it still works offline
      await intruder.close()
    }
    await good.close()
    await srv.close()
    const doc = new Y.Doc()
    Y.applyUpdate(doc, await readStoredDocument(srv.dir))
    const names = [...doc.getMap<Y.Map<unknown>>('records').values()].map((m) => m.get('name'))
    expect(names).toEqual(['legit'])
  })

  it('survives a server killed with SIGKILL and restarted in the middle of a stream of writes', async () => {
    const dir = await tempDir('docket-server-')
    const port = await freePort()
    let srv = await serverProcess(dir, port)
    const url = `ws://127.0.0.1:${port}`
    const a = await synced(url)
    const b = await synced(url)
    await Promise.all([a.whenSynced(10_000), b.whenSynced(10_000)])
    const written: string[] = []
    const writer = async (store: Store, tag: string) => {
      for (let i = 0; i < 60; i++) {
        written.push((await store.createItem({ name: `${tag} ${i}`, body: `${tag}-${i}` })).uid)
        await new Promise((r) => setTimeout(r, 10))
      }
    }
    const streams = Promise.all([writer(a, 'a'), writer(b, 'b')])
    await eventually('some writes went through', () => a.listItems().length >= 30)
    srv.kill('SIGKILL')
    await new Promise((r) => srv.once('close', r))
    await new Promise((r) => setTimeout(r, 300))
    srv = await serverProcess(dir, port)
    await streams
    await eventually('everything is everywhere', async () => (await converged([a, b])) && a.listItems().length === 120, 60_000)
    for (const store of [a, b]) expect(new Set(store.listItems().map((i) => i.uid))).toEqual(new Set(written))
    await Promise.all([a.close(), b.close()])
    srv.kill('SIGTERM')
    await new Promise((r) => srv.once('close', r))
    const doc = new Y.Doc()
    Y.applyUpdate(doc, await readStoredDocument(dir))
    expect(doc.getMap('records').size).toBe(120)
  }, 90_000)

  it('the pull gate: a repair refuses while the server is unreachable, runs with offline', async () => {
    const port = await freePort()
    const store = await synced(`ws://127.0.0.1:${port}`)
    await store.createItem({ name: 'x' })
    await expect(store.assertSynced({ timeoutMs: 500 })).rejects.toMatchObject({ code: 'BEHIND_REMOTE', message: expect.stringContaining('--offline') })
    await expect(store.assertSynced({ offline: true })).resolves.toBeUndefined()
    expect(store.syncState()).toMatchObject({ configured: true, connected: false, synced: false })
    expect(TOKEN.length).toBeGreaterThan(0)
  })
})

function k(items: Item[], item: Item): number {
  return items.indexOf(item)
}

describe('review findings: ids only the content store knows', () => {
  it('a syncing replica publishes the highest id of its content store, so that others never allocate it', async () => {
    const srv = await server()
    const aDir = await tempDir()
    const seedStore = await synced(undefined, { dir: aDir })
    await seedStore.createItem({ name: 'one' })
    await seedStore.close()
    const { writeRawRows, rawKeys } = await import('../src/testing.js')
    await writeRawRows(aDir, [{ type: 'put', sublevel: 'content', key: rawKeys.content('700'), value: 'stale row' }])
    const a = await synced(srv.url, { dir: aDir })
    await a.whenSynced(10_000)
    const b = await synced(srv.url)
    // Its lease starts above the server's floor, which counts a's mark.
    await eventually('b knows id 700 is taken', () => Number(b.peekNextId()) > 700 && b.idLeases().remaining > 0)
    expect(Number((await b.createItem({ name: 'after' })).id)).toBeGreaterThan(700)
  })
})
