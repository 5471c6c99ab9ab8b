import { HocuspocusProvider, HocuspocusProviderWebsocket } from '@hocuspocus/provider'
import WebSocket from 'ws'
import * as Y from 'yjs'
import { describe, expect, it } from 'vitest'
import { readStoredDocument } from '@docket/server'
import { eventually, server, synced, TOKEN } from './sync-support.js'
import { SCHEMA_VERSION } from '../src/index.js'
import { collect } from './support.js'

/** Connects a bare Hocuspocus client (as a docket of another schema would) and returns why it was refused. */
async function refusal(url: string, token: string, write: (doc: Y.Doc) => void): Promise<string> {
  const doc = new Y.Doc()
  write(doc)
  const socket = new HocuspocusProviderWebsocket({ url, WebSocketPolyfill: WebSocket })
  const provider = new HocuspocusProvider({ websocketProvider: socket, name: 'docket', document: doc, token })
  provider.attach()
  try {
    return await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('the server accepted a client of another schema')), 5000)
      provider.on('authenticationFailed', ({ reason }: { reason: string }) => {
        clearTimeout(timer)
        resolve(reason)
      })
      provider.on('synced', () => {
        clearTimeout(timer)
        reject(new Error('the server synced with a client of another schema'))
      })
    })
  } finally {
    provider.destroy()
    socket.destroy()
    doc.destroy()
  }
}

describe('replicas of two schemas never merge through a server', () => {
  it('refuses a schema 1 replica (bare token) and a newer one, with a reason that says what to do; the document keeps nothing of them', async () => {
    const srv = await server()
    const a = await synced(srv.url)
    await a.createItem({ name: 'schema 2 item' })
    await a.whenSynced(10_000)
    const v1 = await refusal(srv.url, TOKEN, (doc) => {
      const item = new Y.Map<unknown>()
      item.set('uid', '01ARZ3NDEKTSV4RRFFQ69G5FAV')
      item.set('name', 'written by schema 1')
      doc.getMap('items').set('1', item)
    })
    expect(v1).toMatch(/^schema-mismatch: .*older than schema 2.*same docket version/)
    const v3 = await refusal(srv.url, JSON.stringify({ schema: SCHEMA_VERSION + 1, token: TOKEN }), (doc) => doc.getMap('future').set('x', 1))
    expect(v3).toMatch(new RegExp(`schema-mismatch: .*schema ${SCHEMA_VERSION + 1}`))
    // A wrong token is still a wrong token, whatever the schema.
    expect(await refusal(srv.url, JSON.stringify({ schema: SCHEMA_VERSION, token: 'wrong' }), () => {})).toBe('invalid-token')
    await a.close()
    await srv.close()
    const stored = new Y.Doc()
    Y.applyUpdate(stored, await readStoredDocument(srv.dir))
    expect([...stored.getMap('items').keys()]).toEqual([])
    expect(stored.getMap('future').size).toBe(0)
    expect([...stored.getMap<Y.Map<unknown>>('records').values()].map((m) => m.get('name'))).toEqual(['schema 2 item'])
  })
})

describe('the sync server runs the grow-only check too', () => {
  it('refuses an update that removes a tombstone, closes the connection that sent it, and stores and forwards nothing of it', async () => {
    const srv = await server()
    const a = await synced(srv.url)
    const b = await synced(srv.url)
    const gone = await a.createItem({ name: 'gone' })
    await a.deleteItem(gone.id)
    await a.whenSynced(10_000)
    await eventually('b has the tombstone', () => b.isTombstoned(gone.id))
    // A client with the token that removes the tombstone from its copy and sends that.
    const doc = new Y.Doc()
    Y.applyUpdate(doc, a.encodeStateAsUpdate())
    const socket = new HocuspocusProviderWebsocket({ url: srv.url, WebSocketPolyfill: WebSocket })
    const provider = new HocuspocusProvider({ websocketProvider: socket, name: 'docket', document: doc, token: JSON.stringify({ schema: SCHEMA_VERSION, token: TOKEN }) })
    provider.attach()
    try {
      await new Promise<void>((resolve) => provider.on('synced', () => resolve()))
      const closed = new Promise<{ code: number; reason: string }>((resolve) => provider.on('close', ({ event }: { event: { code: number; reason: string } }) => resolve(event)))
      doc.getMap('tombstones').delete(gone.id)
      const event = await closed
      expect(event.reason).toMatch(/^update-refused: it removes the tombstones entry/)
    } finally {
      provider.destroy()
      socket.destroy()
      doc.destroy()
    }
    const c = await synced(srv.url)
    await c.whenSynced(10_000)
    for (const store of [a, b, c]) expect(store.isTombstoned(gone.id), store.replicaId).toBe(true)
    expect(await collect(b.audit({ kinds: ['update_refused'] }))).toEqual([])
  })
})
