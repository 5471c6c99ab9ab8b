import * as Y from 'yjs'
import { describe, expect, it } from 'vitest'
import { MAX_CONTENT_BYTES, MAX_ITEM_NUMBER, type Store } from '../src/index.js'
import { readRawRows } from '../src/testing.js'
import { collect, tempDir, testStore, peerTx, pull } from './support.js'


/** Issue 10: grow-only means grow-only — no remote update may rewrite history. */
describe('a remote update that would rewrite history is refused whole', () => {
  async function prepared(): Promise<{ store: Store; done: string; deleted: string; uid: string }> {
    const store = await testStore({ dir: await tempDir() })
    const done = await store.createItem({ name: 'done' })
    for (const event of ['start', 'gates_passed', 'accepted', 'merge_succeeded'] as const) await store.apply(done.id, event)
    const gone = await store.createItem({ name: 'gone' })
    await store.deleteItem(gone.id)
    return { store, done: done.id, deleted: gone.id, uid: done.uid }
  }

  const hostile: Array<[string, (doc: Y.Doc, ctx: { done: string; deleted: string; uid: string }) => void]> = [
    ['removing a tombstone', (doc, c) => doc.getMap('tombstones').delete(c.deleted)],
    ['removing a deleted uid', (doc) => doc.getMap('deleted').clear()],
    ['removing an id claim', (doc, c) => doc.getMap('claims').delete(`${c.done}/${c.uid}`)],
    ['removing stage entries of a done item', (doc, c) => {
      const stages = doc.getMap<Y.Map<unknown>>('records').get(c.uid)!.get('stages') as Y.Array<unknown>
      stages.delete(1, stages.length - 1)
    }],
    ['replacing the stage log of a done item', (doc, c) => doc.getMap<Y.Map<unknown>>('records').get(c.uid)!.set('stages', new Y.Array())],
    ['removing an item without recording its deletion', (doc, c) => doc.getMap('records').delete(c.uid)],
  ]
  for (const [name, write] of hostile) {
    it(`${name}: nothing of it is applied, it is kept as evidence and audited`, async () => {
      const { store, done, deleted, uid } = await prepared()
      const before = store.encodeStateVector()
      const update = peerTx(store.encodeStateAsUpdate(), (doc) => {
        doc.getMap('meta').set('note', 'riding along') // refused whole: this does not land either
        write(doc, { done, deleted, uid })
      })
      await expect(store.applyUpdate(update, 'peer-x')).rejects.toMatchObject({ code: 'UPDATE_REFUSED', details: { source: 'peer-x' } })
      expect(Buffer.from(store.encodeStateVector())).toEqual(Buffer.from(before))
      expect(store.getItem(done)?.stage).toBe('done')
      expect(store.isTombstoned(deleted)).toBe(true)
      expect(store.peekNextId()).toBe('3')
      const refused = await collect(store.audit({ kinds: ['update_refused'] }))
      expect(refused).toMatchObject([{ data: { source: 'peer-x', reason: expect.any(String) } }])
      await store.close()
      const rows = (await readRawRows(store.dir)).filter((r) => r.sublevel === 'refused')
      expect(rows.map((r) => Buffer.from(r.value))).toEqual([Buffer.from(update)])
    })
  }

  it('ordinary replication is never refused: deletes, concurrent writes of one key, re-anchorings, stage changes', async () => {
    const a = await testStore({ replicaId: 'replica-a' })
    const b = await testStore({ replicaId: 'replica-b' })
    const one = await a.createItem({ name: 'one' })
    await pull(b, a)
    // concurrent deletes of the same item, concurrent creates of the same id, transitions
    await a.deleteItem(one.id)
    await b.deleteItem(one.id)
    const x = await a.createItem({ name: 'x' })
    const y = await b.createItem({ name: 'y' })
    await a.apply(x.id, 'start')
    await b.apply(y.id, 'start')
    await b.writeContent(y.id, 'body', 'first')
    await b.writeContent(y.id, 'body', null)
    for (let round = 0; round < 3; round++) {
      await pull(a, b)
      await pull(b, a)
    }
    for (const store of [a, b]) {
      expect((await collect(store.audit({ kinds: ['update_refused'] })))).toEqual([])
      expect(store.listItems().map((i) => i.name).sort()).toEqual(['x', 'y'])
    }
  })
})

const MiB = 1024 * 1024
const HIGH = 2 ** 40 // one above MAX_ITEM_NUMBER
const U = (n: number) => `01J${String(n).padStart(23, '0')}`

interface Victim {
  store: Store
  id: string
  uid: string
  replicaId: string
}

/** A store with one started item (body "kept body", so it has a content map), one deleted item and its own allocator mark. */
async function victim(): Promise<Victim> {
  const store = await testStore({ dir: await tempDir() })
  const item = await store.createItem({ name: 'target', body: 'kept body' })
  await store.apply(item.id, 'start')
  const gone = await store.createItem({ name: 'gone' })
  await store.deleteItem(gone.id)
  return { store, id: item.id, uid: item.uid, replicaId: store.replicaId }
}

/**
 * The update is refused whole with UPDATE_REFUSED and `reason`, nothing of it lands (the
 * document is byte for byte what it was), it is audited as update_refused with the reason and
 * kept as evidence. Closes the store.
 */
async function expectRefused(v: Victim, update: Uint8Array, reason: string | RegExp): Promise<void> {
  const { store } = v
  const before = { doc: Buffer.from(store.encodeStateAsUpdate()), items: JSON.stringify(store.listItems()) }
  const expected = typeof reason === 'string' ? reason : expect.stringMatching(reason)
  await expect(store.applyUpdate(update, 'peer-x')).rejects.toMatchObject({ code: 'UPDATE_REFUSED', details: { source: 'peer-x', reason: expected } })
  await store.flush()
  expect(Buffer.from(store.encodeStateAsUpdate()).equals(before.doc)).toBe(true)
  expect(JSON.stringify(store.listItems())).toBe(before.items)
  expect(await store.readContent(v.id)).toBe('kept body')
  const refused = await collect(store.audit({ kinds: ['update_refused'] }))
  expect(refused).toMatchObject([{ data: { source: 'peer-x', reason: expected, bytes: update.byteLength } }])
  await store.close()
  const rows = (await readRawRows(store.dir)).filter((r) => r.sublevel === 'refused')
  expect(rows).toHaveLength(1)
  expect(Buffer.from(rows[0]!.value).equals(Buffer.from(update))).toBe(true)
}

function record(doc: Y.Doc, v: Victim): Y.Map<unknown> {
  return doc.getMap<Y.Map<unknown>>('records').get(v.uid)!
}

function contentMap(doc: Y.Doc, v: Victim): Y.Map<unknown> {
  return record(doc, v).get('content') as Y.Map<unknown>
}

function nested(levels: number): unknown {
  let value: unknown = 'bottom'
  for (let i = 0; i < levels; i++) value = [value]
  return value
}

/** Deterministic bytes that are no update (mulberry32). */
function randomBytes(seed: number, length: number): Uint8Array {
  let s = seed
  return Uint8Array.from({ length }, () => {
    s = (s + 0x6d2b79f5) | 0
    let t = Math.imul(s ^ (s >>> 15), 1 | s)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) & 0xff
  })
}

function varUint(n: number): number[] {
  const out: number[] = []
  for (; n > 0x7f; n >>>= 7) out.push(0x80 | (n & 0x7f))
  out.push(n)
  return out
}

function varString(s: string): number[] {
  const bytes = [...Buffer.from(s, 'utf8')]
  return [...varUint(bytes.length), ...bytes]
}

/** A v1 update holding one ContentJSON value (legacy: Yjs decodes it but no longer writes it), set at root/key by a fresh client. */
function legacyJsonUpdate(root: string, key: string, value: unknown): Uint8Array {
  return new Uint8Array([
    ...varUint(1), // one client
    ...varUint(1), ...varUint(4242), ...varUint(0), // one struct, client 4242, from clock 0
    2 | 32, // content ref 2 (ContentJSON), with a map key; no origins, so the parent is named
    ...varUint(1), ...varString(root), ...varString(key),
    ...varUint(1), ...varString(JSON.stringify(value)),
    ...varUint(0), // an empty delete set
  ])
}

/** An update holding only what `write` adds to a Y.Text the victim has never received: text content without its type. */
function textOnly(v: Victim, prepare: (text: Y.Text) => void, write: (text: Y.Text) => void): Uint8Array {
  const peer = new Y.Doc()
  Y.applyUpdate(peer, v.store.encodeStateAsUpdate())
  const text = new Y.Text()
  peer.transact(() => {
    record(peer, v).set('notes', text)
    prepare(text)
  })
  const seen = Y.encodeStateVector(peer)
  peer.transact(() => write(text))
  const update = Y.encodeStateAsUpdate(peer, seen)
  peer.destroy()
  return update
}

/** Issue 10, second part: an update that writes what docket never writes is no docket replica's doing. */
describe('a remote update that writes what docket never writes is refused whole', () => {
  const never = (what: string, where: string) => `it writes ${what} into ${where}, a type docket never writes`
  const tooHigh = (what: string) => `${what}, above the highest item id 1099511627775 (2^40 − 1)`
  const cases: Array<[string, (doc: Y.Doc, v: Victim) => void, (v: Victim) => string | RegExp]> = [
    // types docket never writes
    ['a Y.Text as an item field', (doc, v) => record(doc, v).set('name', new Y.Text('renamed')), (v) => never('a Y.Text', `records/${v.uid}/name`)],
    ['a Y.Text as a content slot', (doc, v) => contentMap(doc, v).set('body', new Y.Text('rewritten')), (v) => never('a Y.Text', `records/${v.uid}/content/body`)],
    ['a Y.XmlFragment as a record', (doc) => doc.getMap('records').set(U(1), new Y.XmlFragment()), () => never('a Y.XmlFragment', `records/${U(1)}`)],
    ['a Y.XmlElement appended to a stage log', (doc, v) => (record(doc, v).get('stages') as Y.Array<unknown>).push([new Y.XmlElement('p')]), (v) => never('a Y.XmlElement', `records/${v.uid}/stages[]`)],
    ['a Y.XmlText in meta', (doc) => doc.getMap('meta').set('note', new Y.XmlText('x')), () => never('a Y.XmlText', 'meta/note')],
    ['a Y.XmlHook (a Y.Map underneath) as a content slot', (doc, v) => contentMap(doc, v).set('hook', new Y.XmlHook('h')), (v) => never('a Y.XmlHook', `records/${v.uid}/content/hook`)],
    ['a subdocument', (doc, v) => contentMap(doc, v).set('sub', new Y.Doc()), (v) => `it writes a subdocument into records/${v.uid}/content/sub, which docket never writes`],
    // roots docket never uses
    ['a root docket does not use', (doc) => doc.getMap('future').set('x', 1), () => 'it writes into the root "future", which docket does not use'],
    ['list entries in a docket root', (doc) => doc.get('tombstones', Y.Array).push(['x']), () => 'it writes list entries into the root "tombstones", which docket only uses as a map'],
    // sizes
    ['a 50 MiB body', (doc, v) => contentMap(doc, v).set('body', 'x'.repeat(50 * MiB)), (v) => `it writes a value of more than 16 MiB into records/${v.uid}/content/body, more than a single value may hold`],
    ['a binary slot one byte over 16 MiB', (doc, v) => contentMap(doc, v).set('blob', new Uint8Array(MAX_CONTENT_BYTES + 1)), (v) => `it writes a value of more than 16 MiB into records/${v.uid}/content/blob, more than a single value may hold`],
    ['a body of 6 Mi characters that is 18 MiB in UTF-8', (doc, v) => contentMap(doc, v).set('body', '€'.repeat(6 * MiB)), (v) => `it writes a value of more than 16 MiB into records/${v.uid}/content/body, more than a single value may hold`],
    ['a JSON value of 17 strings of 1 MiB', (doc, v) => record(doc, v).set('blocked', { reason: Array.from({ length: 17 }, () => 'y'.repeat(MiB)) }), (v) => `it writes a value of more than 16 MiB into records/${v.uid}/blocked, more than a single value may hold`],
    ['a JSON value nested 33 levels deep', (doc, v) => record(doc, v).set('blocked', nested(33)), (v) => `it writes a value nested more than 32 levels deep into records/${v.uid}/blocked; docket's values are a few levels deep`],
    ['a map key of 5000 bytes', (doc, v) => contentMap(doc, v).set('k'.repeat(5000), 'v'), (v) => `it writes a key of more than 4096 bytes into records/${v.uid}/content; docket's keys are short names and ids`],
    // ids above the range
    ['a claim of an id above 2^40 − 1', (doc) => doc.getMap('claims').set(`${HIGH}/${U(9)}`, { at: '', by: 'peer', reason: 'created' }), () => tooHigh(`it claims id ${HIGH} (claims/${HIGH}/${U(9)})`)],
    ['a tombstone of an id above 2^40 − 1', (doc) => doc.getMap('tombstones').set(String(HIGH), { uid: U(8), at: '', by: 'peer', reason: 'deleted' }), () => tooHigh(`it tombstones id ${HIGH} (tombstones/${HIGH})`)],
    ['an alias of an id above 2^40 − 1', (doc, v) => doc.getMap('aliases').set(`${HIGH}/${v.uid}`, { uid: v.uid, oldId: String(HIGH), newId: v.id, at: '', by: 'peer', reason: 'collision' }), (v) => tooHigh(`it records an alias of id ${HIGH} (aliases/${HIGH}/${v.uid})`)],
    ['a new allocator mark above 2^40 − 1', (doc) => doc.getMap('alloc').set('peer', HIGH), () => tooHigh(`it sets the allocator mark of "peer" to ${HIGH}`)],
    // An overwrite names the value it replaces, not its root: where it goes is looked up in the local document.
    ['raising an existing allocator mark above 2^40 − 1', (doc, v) => doc.getMap('alloc').set(v.replicaId, Number.MAX_SAFE_INTEGER), (v) => tooHigh(`it sets the allocator mark of "${v.replicaId}" to ${Number.MAX_SAFE_INTEGER}`)],
  ]
  for (const [name, write, reason] of cases) {
    it(`${name}: nothing of it is applied, it is kept as evidence and audited`, async () => {
      const v = await victim()
      const update = peerTx(v.store.encodeStateAsUpdate(), (doc) => {
        record(doc, v).set('name', 'riding along') // refused whole: this does not land either
        write(doc, v)
      })
      await expectRefused(v, update, reason(v))
    })
  }

  it('text content that arrives without its Y.Text (ContentString, ContentFormat, ContentEmbed)', async () => {
    const updates: Array<[Uint8Array, string]> = [
      [textOnly(await victim(), () => {}, (t) => t.insert(0, 'hello')), 'text (Y.Text content)'],
      [textOnly(await victim(), (t) => t.insert(0, 'hello'), (t) => t.format(0, 5, { bold: true })), 'text formatting'],
      [textOnly(await victim(), () => {}, (t) => t.insertEmbed(0, { image: 'x.png' })), 'a text embed'],
    ]
    for (const [update, what] of updates) {
      // Nothing else is in it: its parent is a Y.Text this replica never received.
      await expectRefused(await victim(), update, `it writes ${what} into a part of the document this replica has not received, which docket never writes`)
    }
  })

  it('a legacy JSON value (ContentJSON), which Yjs still decodes', async () => {
    const update = legacyJsonUpdate('meta', 'legacy', { a: 1 })
    expect(Y.decodeUpdate(update).structs[0]).toMatchObject({ content: expect.any(Y.ContentJSON) })
    await expectRefused(await victim(), update, 'it writes a legacy JSON value (ContentJSON) into meta/legacy, which docket never writes')
  })

  it('an update that cannot be decoded: random bytes, a truncated update, no bytes at all', async () => {
    const undecodable = /^it cannot be decoded as a Yjs update \(.+\), so nothing of it can be checked$/
    await expectRefused(await victim(), randomBytes(7, 64), undecodable)
    await expectRefused(await victim(), new Uint8Array(0), undecodable)
    // Cut off in its delete set: Yjs would integrate its structs and only then fail — it used to land in part.
    const v = await victim()
    const whole = peerTx(v.store.encodeStateAsUpdate(), (doc) => doc.getMap('meta').set('note', 'half of an update'))
    await expectRefused(v, whole.slice(0, whole.length - 1), undecodable)
  })

  it('garbled copies of a real update are admitted or refused whole, never half-applied or failing otherwise', async () => {
    const v = await victim()
    const whole = peerTx(v.store.encodeStateAsUpdate(), (doc) => {
      doc.getMap('meta').set('note', 'x')
      record(doc, v).set('name', 'renamed')
      contentMap(doc, v).set('body', 'new body')
      doc.getMap('tombstones').set('77', { uid: U(7), at: '', by: 'peer', reason: 'deleted' })
    })
    const noise = randomBytes(11, 4 * 300)
    let refused = 0
    for (let i = 0; i < 300; i++) {
      const garbled = i % 2 === 0 ? whole.slice(0, noise[4 * i]! % whole.length) : whole.slice()
      if (i % 2 === 1) for (let k = 1; k < 4; k++) garbled[(noise[4 * i + k]! * 7919) % garbled.length] = noise[4 * i]!
      const before = Buffer.from(v.store.encodeStateAsUpdate())
      const outcome = await v.store.applyUpdate(garbled, 'peer').then(() => 'admitted', (err: { code?: string }) => err.code)
      expect(['admitted', 'UPDATE_REFUSED']).toContain(outcome)
      if (outcome === 'UPDATE_REFUSED') {
        refused++
        expect(Buffer.from(v.store.encodeStateAsUpdate()).equals(before)).toBe(true)
      }
    }
    expect(refused).toBeGreaterThan(100)
    await v.store.flush()
    expect((await v.store.verify()).ok).toBe(true)
  })

  it('what docket writes is admitted: items, a 1 MiB body, bytes, edits, stage moves, deletes', async () => {
    const a = await testStore({ replicaId: 'replica-a' })
    const b = await testStore({ replicaId: 'replica-b' })
    const body = 'é'.repeat(MiB / 2) // 1 MiB of UTF-8
    const bytes = Uint8Array.from({ length: MiB }, (_, i) => i % 251)
    const item = await a.createItem({ name: 'big', body, dependsOn: [] })
    await a.writeContent(item.id, 'blob', bytes)
    await a.updateItem(item.id, { name: 'renamed', blocked: { reason: 'waiting' }, agent: 'agent-1', retries: 2 })
    for (const event of ['start', 'gates_passed'] as const) await a.apply(item.id, event, { force: true }) // blocked: moving it takes force
    const gone = await a.createItem({ name: 'gone' })
    await a.deleteItem(gone.id)
    await pull(b, a)
    const other = await b.createItem({ name: 'other', dependsOn: [item.id] })
    await b.apply(item.id, 'demote', { force: true })
    await b.writeContent(item.id, 'blob', null)
    await pull(a, b)
    await pull(b, a)
    for (const store of [a, b]) {
      expect(await collect(store.audit({ kinds: ['update_refused'] })), store.replicaId).toEqual([])
      expect(await store.readContent(item.id)).toBe(body)
      expect(store.contentSlots(item.id)).toEqual(['body'])
      expect(store.getItem(item.id)).toMatchObject({ name: 'renamed', stage: 'backlog', blocked: { reason: 'waiting' } })
      expect(store.getItem(other.id)?.dependsOn).toEqual([item.id])
      expect(store.isTombstoned(gone.id)).toBe(true)
    }
    // The bytes went through too, before b removed them.
    const c = await testStore({ replicaId: 'replica-c' })
    const d = await testStore({ replicaId: 'replica-d' })
    const binary = await c.createItem({ name: 'binary' })
    await c.writeContent(binary.id, 'blob', bytes)
    await pull(d, c)
    expect(Buffer.from((await d.readContentBytes(binary.id, 'blob'))!).equals(Buffer.from(bytes))).toBe(true)
    expect(await collect(d.audit({ kinds: ['update_refused'] }))).toEqual([])
  })

  it('at the bounds: a body of exactly 16 MiB, a value 32 levels deep and a mark of 2^40 − 1 are admitted', async () => {
    const a = await testStore({ replicaId: 'replica-a' })
    const b = await testStore({ replicaId: 'replica-b' })
    const item = await a.createItem({ name: 'largest' })
    await a.writeContent(item.id, 'body', 'z'.repeat(MAX_CONTENT_BYTES))
    await pull(b, a)
    expect((await b.readContent(item.id))?.length).toBe(MAX_CONTENT_BYTES)
    await b.applyUpdate(peerTx(b.encodeStateAsUpdate(), (doc) => {
      doc.getMap('meta').set('deep', nested(32))
      doc.getMap('alloc').set('peer', MAX_ITEM_NUMBER)
    }), 'peer')
    await b.flush()
    expect(await collect(b.audit({ kinds: ['update_refused'] }))).toEqual([])
  })

  it('keys that are no id at all are left to the readers, which ignore them', async () => {
    const v = await victim()
    const next = v.store.peekNextId()
    await v.store.applyUpdate(peerTx(v.store.encodeStateAsUpdate(), (doc) => {
      doc.getMap('tombstones').set('not-an-id', { uid: U(1), at: '', by: 'peer', reason: 'deleted' })
      doc.getMap('tombstones').set(`0${HIGH}`, { uid: U(2), at: '', by: 'peer', reason: 'deleted' })
      doc.getMap('claims').set('x/y', { at: '', by: 'peer', reason: 'created' })
      doc.getMap('alloc').set('peer', 'lots')
      doc.getMap('alloc').set('peer-2', -5)
    }), 'peer')
    await v.store.flush()
    expect(await collect(v.store.audit({ kinds: ['update_refused'] }))).toEqual([])
    expect(v.store.peekNextId()).toBe(next)
    expect((await v.store.verify()).ok).toBe(true)
  })
})
