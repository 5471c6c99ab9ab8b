import { mkdtemp, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { DocumentStore, readStoredDocument, startServer } from '../src/index.js'
import * as Y from 'yjs'

const dirs: string[] = []
afterEach(async () => {
  await Promise.allSettled(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })))
})
async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'docket-server-'))
  dirs.push(dir)
  return dir
}
const quiet = { info: () => {}, warn: () => {} }

describe('DocumentStore (y-leveldb without the silent nulls)', () => {
  it('stores and loads a document', async () => {
    const dir = await tempDir()
    const store = await DocumentStore.open(dir)
    const doc = new Y.Doc()
    doc.getMap('items').set('1', 'x')
    await store.store('docket', Y.encodeStateAsUpdate(doc))
    await store.close()
    const loaded = new Y.Doc()
    Y.applyUpdate(loaded, await readStoredDocument(dir))
    expect(loaded.getMap('items').get('1')).toBe('x')
  })

  it('refuses a directory that another store holds, instead of answering null forever', async () => {
    const dir = await tempDir()
    const first = await DocumentStore.open(dir)
    // One clear sentence, and no y-leveldb stack trace on stderr before it.
    const printed = vi.spyOn(console, 'error')
    try {
      await expect(DocumentStore.open(dir)).rejects.toThrow(/held by another process \(another docket serve on the same --dir\)/)
      expect(printed).not.toHaveBeenCalled()
    } finally {
      printed.mockRestore()
    }
    await first.close()
    const again = await DocumentStore.open(dir)
    await again.close()
  })

  it('turns a failed write into an error, not null', async () => {
    const dir = await tempDir()
    const store = await DocumentStore.open(dir)
    await store.close()
    await expect(store.store('docket', new Uint8Array([0, 0]))).rejects.toThrow(/Writing document docket/)
    await expect(store.load('docket')).rejects.toThrow(/Reading document docket/)
  })
})

describe('startServer', () => {
  it('needs a token, binds loopback by default, and says when the port is taken', async () => {
    const dir = await tempDir()
    await expect(startServer({ dir, token: '', port: 0, logger: quiet })).rejects.toThrow(/needs a token/)
    const server = await startServer({ dir: join(dir, 'a'), token: 't', port: 0, logger: quiet })
    expect(server.host).toBe('127.0.0.1')
    expect(server.url).toBe(`ws://127.0.0.1:${server.port}`)
    await expect(startServer({ dir: join(dir, 'b'), token: 't', port: server.port, logger: quiet })).rejects.toThrow(`port ${server.port} on 127.0.0.1 is in use`)
    await Promise.all([server.close(), server.close()])
  })

  it('refuses an option it does not know (a misspelt limit must not stay at its default), before it opens anything', async () => {
    const dir = join(await tempDir(), 'never-created')
    await expect(startServer({ dir, token: 't', port: 0, maxPayload: 1024 } as never)).rejects.toThrow(/unknown option maxPayload for startServer\(\): did you mean maxPayloadBytes\? accepted: dir, blobDir, host/)
    await expect(startServer({ dir, token: 't', port: 0, redis: { host: 'h', port: 1, db: 2 } } as never)).rejects.toThrow(/unknown option db for startServer\(\) redis/)
    await expect(stat(dir)).rejects.toMatchObject({ code: 'ENOENT' })
  })
})

describe('DocumentStore compaction', () => {
  it('folds stored states every so often, so a long-running server does not grow without bound', async () => {
    const dir = await tempDir()
    const store = await DocumentStore.open(dir)
    const doc = new Y.Doc()
    for (let i = 0; i < 250; i++) {
      doc.getMap('items').set(String(i % 5), `value ${i}`)
      await store.store('docket', Y.encodeStateAsUpdate(doc))
    }
    await store.close()
    const { Level } = await import('level')
    const db = new Level<Uint8Array, Uint8Array>(dir, { keyEncoding: 'view', valueEncoding: 'view' })
    let rows = 0
    for await (const _ of db.keys()) rows++
    await db.close()
    expect(rows).toBeLessThan(100) // 250 stores, folded every 100
    const loaded = new Y.Doc()
    Y.applyUpdate(loaded, await readStoredDocument(dir))
    expect(loaded.getMap('items').get('4')).toBe('value 249')
  })
})
