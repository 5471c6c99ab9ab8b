import { HocuspocusProvider, HocuspocusProviderWebsocket } from '@hocuspocus/provider'
import * as encoding from 'lib0/encoding'
import { join } from 'node:path'
import WebSocket from 'ws'
import * as Y from 'yjs'
import { describe, expect, it } from 'vitest'
import { readStoredDocument, startServer, type RunningServer } from '@docket/server'
import { isDocketError, SCHEMA_VERSION, updateRefusal } from '../src/index.js'
import { tempDir } from './support.js'
import { eventually, freePort, serverProcess, synced, TOKEN } from './sync-support.js'

const READ_TOKEN = 'a-token-that-may-only-read'

async function guardedServer(options: { readToken?: string; maxConnectionsPerAddress?: number } = {}): Promise<RunningServer & { dir: string; warnings: string[] }> {
  const warnings: string[] = []
  const dir = join(await tempDir('docket-server-'), 'server')
  const server = await startServer({ dir, port: 0, token: TOKEN, debounceMs: 50, maxDebounceMs: 200, admit: updateRefusal, logger: { info: () => {}, warn: (m) => warnings.push(m) }, ...options })
  return Object.assign(server, { dir, warnings })
}

/** A bare Hocuspocus client with a document of its own (a dashboard, or a peer up to no good). */
async function bareClient(url: string, token: string): Promise<{ doc: Y.Doc; provider: HocuspocusProvider; stateless: string[]; close: () => void }> {
  const doc = new Y.Doc()
  const socket = new HocuspocusProviderWebsocket({ url, WebSocketPolyfill: WebSocket, maxAttempts: 1 })
  const provider = new HocuspocusProvider({ websocketProvider: socket, name: 'docket', document: doc, token: JSON.stringify({ schema: SCHEMA_VERSION, token }) })
  const stateless: string[] = []
  provider.on('stateless', ({ payload }: { payload: string }) => stateless.push(payload))
  provider.attach()
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the bare client did not sync')), 5000)
    provider.on('synced', () => {
      clearTimeout(timer)
      resolve()
    })
  })
  return {
    doc,
    provider,
    stateless,
    close: () => {
      provider.destroy()
      socket.destroy()
      doc.destroy()
    },
  }
}

function storedNames(update: Uint8Array): string[] {
  const doc = new Y.Doc()
  Y.applyUpdate(doc, update)
  return [...doc.getMap<Y.Map<unknown>>('records').values()].map((m) => String(m.get('name'))).sort()
}

describe('a change counts as synced only once the server has stored it', () => {
  it('kill -9 of the server right after whenSynced() loses nothing: the restarted server has the change', async () => {
    const dir = await tempDir('docket-server-')
    const port = await freePort()
    // A long store debounce: a server that acknowledged before storing would lose the change.
    let srv = await serverProcess(dir, port, [1500, 3000])
    const url = `ws://127.0.0.1:${port}`
    const a = await synced(url)
    await a.whenSynced(10_000)
    const item = await a.createItem({ name: 'stored before it counted', body: 'the body' })
    await a.apply(item.id, 'start')
    await a.whenSynced(10_000)
    srv.kill('SIGKILL')
    await new Promise((r) => srv.once('close', r))
    // What the server's disk holds, with no replica to send it again.
    await a.close()
    expect(storedNames(await readStoredDocument(dir))).toEqual(['stored before it counted'])
    srv = await serverProcess(dir, port)
    const b = await synced(url)
    await b.whenSynced(10_000)
    expect(b.getItem(item.id)).toMatchObject({ name: 'stored before it counted', stage: 'coding' })
    expect(await b.readContent(item.id)).toBe('the body')
  }, 60_000)

  it('whenSynced() waits for the store, and a deletion (which no state vector shows) is confirmed too', async () => {
    const dir = await tempDir('docket-server-')
    const port = await freePort()
    const srv = await serverProcess(dir, port, [800, 1600])
    const url = `ws://127.0.0.1:${port}`
    const a = await synced(url)
    await a.whenSynced(10_000)
    const keep = await a.createItem({ name: 'kept' })
    const gone = await a.createItem({ name: 'deleted' })
    await a.whenSynced(10_000)
    await a.deleteItem(gone.id)
    expect(a.syncState().synced).toBe(false)
    await a.whenSynced(10_000)
    srv.kill('SIGKILL')
    await new Promise((r) => srv.once('close', r))
    await a.close()
    expect(storedNames(await readStoredDocument(dir))).toEqual([keep.name])
  }, 60_000)

  it('close() waits for the store: a process that creates and exits leaves the change on the server', async () => {
    const dir = await tempDir('docket-server-')
    const port = await freePort()
    const srv = await serverProcess(dir, port, [1000, 2000])
    const a = await synced(`ws://127.0.0.1:${port}`, { sync: { url: `ws://127.0.0.1:${port}`, token: TOKEN, closeTimeoutMs: 10_000 } })
    await a.whenSynced(10_000)
    await a.createItem({ name: 'created, then the process closed' })
    await a.close()
    srv.kill('SIGKILL')
    await new Promise((r) => srv.once('close', r))
    expect(storedNames(await readStoredDocument(dir))).toEqual(['created, then the process closed'])
  }, 60_000)
})

describe('read-only tokens', () => {
  it('a read-only replica receives everything, reports readOnly, and refuses its own changes', async () => {
    const srv = await guardedServer({ readToken: READ_TOKEN })
    const writer = await synced(srv.url)
    const item = await writer.createItem({ name: 'seen by the dashboard', body: 'b' })
    await writer.whenSynced(10_000)
    const board = await synced(srv.url, { sync: { url: srv.url, token: READ_TOKEN } })
    const state = await board.whenSynced(10_000)
    expect(state).toMatchObject({ synced: true, readOnly: true, connected: true })
    expect(board.getItem(item.id)?.name).toBe('seen by the dashboard')
    await writer.apply(item.id, 'start')
    await eventually('the board sees the move', () => board.getItem(item.id)?.stage === 'coding')
    const refused = await board.createItem({ name: 'from the dashboard' }).catch((e: unknown) => e)
    expect(isDocketError(refused, 'STORE_READ_ONLY')).toBe(true)
    expect((refused as Error).message).toMatch(/read-only token.*read-write token/)
    expect(writer.syncState().readOnly).toBe(false)
  })

  it('an update sent with the read-only token is neither applied, stored nor forwarded', async () => {
    const srv = await guardedServer({ readToken: READ_TOKEN })
    const writer = await synced(srv.url)
    await writer.createItem({ name: 'real' })
    await writer.whenSynced(10_000)
    const peer = await bareClient(srv.url, READ_TOKEN)
    try {
      peer.doc.getMap('meta').set('written-by', 'the read-only peer')
      await eventually('the server says it refused', () => srv.warnings.some((w) => w.includes('read-only token')))
      // A write from the read-write side still flows, and the refused one never arrives.
      await writer.createItem({ name: 'later' })
      await eventually('the peer receives later writes', () => [...peer.doc.getMap<Y.Map<unknown>>('records').values()].some((m) => m.get('name') === 'later'))
      await writer.whenSynced(10_000)
      expect(writer.listItems().map((i) => i.name).sort()).toEqual(['later', 'real'])
    } finally {
      peer.close()
    }
    await writer.close()
    await srv.close()
    const stored = new Y.Doc()
    Y.applyUpdate(stored, await readStoredDocument(srv.dir))
    expect(stored.getMap('meta').get('written-by')).toBeUndefined()
  })

  it('refuses a read-only token equal to the token', async () => {
    await expect(startServer({ dir: join(await tempDir(), 's'), port: 0, token: TOKEN, readToken: TOKEN })).rejects.toThrow(/read-only token must be .* different from the token/)
  })
})

describe('what one connection or address may do', () => {
  it('closes connections beyond maxConnectionsPerAddress with 1013, and accepts again once one left', async () => {
    const srv = await guardedServer({ maxConnectionsPerAddress: 3 })
    const open = async () => {
      const ws = new WebSocket(srv.url)
      await new Promise((r) => ws.once('open', r))
      return ws
    }
    const held = [await open(), await open(), await open()]
    const extra = await open()
    const code = await new Promise<number>((resolve) => extra.once('close', (c) => resolve(c)))
    expect(code).toBe(1013)
    expect(srv.warnings.some((w) => w.includes('the limit per address is 3'))).toBe(true)
    held[0]!.close()
    await new Promise((r) => held[0]!.once('close', r))
    await eventually('a new connection stays open', async () => {
      const again = await open()
      await new Promise((r) => setTimeout(r, 100))
      const stays = again.readyState === WebSocket.OPEN
      again.close()
      return stays
    })
    for (const ws of held) ws.close()
  })

  it('a client may not broadcast stateless messages (a forged store confirmation): its connection is closed and nobody receives it', async () => {
    const srv = await guardedServer()
    const listener = await bareClient(srv.url, TOKEN)
    try {
      const ws = new WebSocket(srv.url)
      await new Promise((r) => ws.once('open', r))
      const auth = encoding.createEncoder()
      encoding.writeVarString(auth, 'docket')
      encoding.writeVarUint(auth, 2) // Auth
      encoding.writeVarUint(auth, 0) // a token
      encoding.writeVarString(auth, JSON.stringify({ schema: SCHEMA_VERSION, token: TOKEN }))
      ws.send(encoding.toUint8Array(auth))
      await new Promise((r) => ws.once('message', r)) // authenticated
      const closed = new Promise((r) => ws.once('close', r))
      const broadcast = encoding.createEncoder()
      encoding.writeVarString(broadcast, 'docket')
      encoding.writeVarUint(broadcast, 6) // BroadcastStateless
      encoding.writeVarString(broadcast, JSON.stringify({ docket: 'stored', n: 1_000_000 }))
      ws.send(encoding.toUint8Array(broadcast))
      await closed
      expect(srv.warnings.some((w) => w.includes('clients may not broadcast'))).toBe(true)
      await new Promise((r) => setTimeout(r, 200))
      expect(listener.stateless.filter((p) => p.includes('1000000'))).toEqual([])
    } finally {
      listener.close()
    }
  })
})
