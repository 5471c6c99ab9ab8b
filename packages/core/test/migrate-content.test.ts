// Schema 2 → 3: content moves out of the Yjs document into blobs. A store written by the last
// schema 2 code (d32c385, taken from git history at test time and run in a child process) is
// opened with the current code.
import { createHash } from 'node:crypto'
import { cp, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import { discoverOrphans, recoverOrphans } from '../../recover/src/index.js'
import { openReader, openStore, type Item, type StageHistoryEntry, type Store } from '../src/index.js'
import { collect, runFixture, snapshotRows, tempDir, testStore, extractCoreSource } from './support.js'

/** The last commit that writes schema 2. */
const SCHEMA2_COMMIT = 'd32c385'
const MIGRATE_STEPS = ['migrate:verified', 'migrate:before-write', 'migrate:written'] as const

interface Schema2Item extends Item {
  /** slot → bytes as hex */
  slots: Record<string, string>
  body: string | null
  history: StageHistoryEntry[]
}

interface Schema2Summary {
  schema: number
  replicaId: string
  items: Schema2Item[]
  tombstones: Array<{ id: string; uid: string; at: string; by: string; reason: string | null }>
  aliases: unknown[]
  nextId: string
  audit: Record<string, number>
  docBytes: number
  twinBody: string
  byteSlots: string[]
  ids: Record<'epic' | 'parser' | 'crash' | 'deleted' | 'ship' | 'spike' | 'refactor' | 'dropped' | 'twinA' | 'twinB' | 'unicode' | 'big' | 'bigBinary' | 'rewritten', string>
  orphan: { id: string; uid: string; name: string; body: string; slots: Record<string, string> }
}

interface Ref {
  sha256: string
  size: number
  text: boolean
}

let oldRoot: string | undefined
let builtParent: string | undefined
let storeDir: string
let summary: Schema2Summary

function extractSchema2Source(): string {
  const extracted = extractCoreSource(SCHEMA2_COMMIT, 'schema2', 'the last commit that writes schema 2')
  oldRoot = extracted.root
  return extracted.src
}

let setupError: unknown
beforeAll(async () => {
  try {
    const oldSrc = extractSchema2Source()
    builtParent = await mkdtemp(join(tmpdir(), 'docket-schema2-'))
    storeDir = join(builtParent, 'store')
    const result = await runFixture('schema2-store.ts', [oldSrc, storeDir], 50_000)
    if (result.code !== 0) throw new Error(`the schema 2 fixture failed (${result.code}/${result.signal}): ${result.stderr}${result.stdout.slice(0, 2000)}`)
    summary = JSON.parse(result.stdout.trim().split('\n').pop() ?? '') as Schema2Summary
  } catch (err) {
    setupError = err
  }
}, 60_000)
// Without the schema 2 fixture every test FAILS, saying why (never skipped).
beforeEach(() => {
  if (setupError) throw setupError
})

afterAll(async () => {
  if (builtParent) await rm(builtParent, { recursive: true, force: true })
  if (oldRoot) await rm(oldRoot, { recursive: true, force: true })
})

/** A copy of the built schema 2 store, in a temp dir removed after the test. */
async function copyOfStore(): Promise<string> {
  const dir = join(await tempDir('docket-migrate-content-'), 'store')
  await cp(storeDir, dir, { recursive: true })
  return dir
}

const quiet = { warn: () => {}, info: () => {}, error: () => {} }
const num = (id: string) => Number(id)
const pad = (id: string) => id.padStart(16, '0')
const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex')
const fromHex = (hex: string) => new Uint8Array(Buffer.from(hex, 'hex'))
const utf8 = new TextDecoder('utf-8', { fatal: true })

function textOf(hex: string): string | undefined {
  try {
    return utf8.decode(fromHex(hex))
  } catch {
    return undefined
  }
}

function itemOnly(item: Schema2Item): Item {
  const { slots: _s, body: _b, history: _h, ...rest } = item
  return rest
}

function rawText(rows: Map<string, string>, key: string): string | undefined {
  const hex = rows.get(key)
  return hex === undefined ? undefined : Buffer.from(hex, 'hex').toString('utf8')
}

function keysOf(rows: Map<string, string>, prefix: string): string[] {
  return [...rows.keys()].filter((k) => k.startsWith(prefix))
}

function rawKinds(rows: Map<string, string>): string[] {
  return keysOf(rows, '!audit!').map((k) => (JSON.parse(rawText(rows, k)!) as { kind: string }).kind)
}

/** What a content row holds, if it is a schema 3 reference (exactly `{ sha256, size, text }`). */
function refOfRow(hex: string): Ref | undefined {
  const text = textOf(hex)
  if (text === undefined) return undefined
  try {
    const value = JSON.parse(text) as Ref
    if (Object.keys(value).sort().join(',') !== 'sha256,size,text') return undefined
    return /^[0-9a-f]{64}$/.test(value.sha256) && Number.isSafeInteger(value.size) && typeof value.text === 'boolean' ? value : undefined
  } catch {
    return undefined
  }
}

/** The reference schema 3 writes for a slot of the fixture (text unless it was written as bytes). */
function refOf(id: string, slot: string, hex: string): Ref {
  const bytes = fromHex(hex)
  return { sha256: sha256(bytes), size: bytes.byteLength, text: !summary.byteSlots.includes(`${id}/${slot}`) }
}

/** Every content slot of the fixture: the live items' and the orphan's, as `<padded id>/<slot>` → hex. */
function contentSlots(): Map<string, { id: string; slot: string; hex: string }> {
  const out = new Map<string, { id: string; slot: string; hex: string }>()
  for (const item of summary.items) for (const [slot, hex] of Object.entries(item.slots)) out.set(`${pad(item.id)}/${slot}`, { id: item.id, slot, hex })
  for (const [slot, hex] of Object.entries(summary.orphan.slots)) out.set(`${pad(summary.orphan.id)}/${slot}`, { id: summary.orphan.id, slot, hex })
  return out
}

/** The distinct blobs the fixture's content makes. */
function expectedBlobs(): Set<string> {
  return new Set([...contentSlots().values()].map((s) => sha256(fromHex(s.hex))))
}

/** Every content value the document holds, by item uid and slot (`records` and `items` alike). */
function documentContent(update: Uint8Array): Map<string, Map<string, unknown>> {
  const doc = new Y.Doc()
  Y.applyUpdate(doc, update)
  const out = new Map<string, Map<string, unknown>>()
  for (const root of ['records', 'items']) {
    for (const [key, map] of doc.getMap(root)) {
      if (!(map instanceof Y.Map)) continue
      const content = map.get('content')
      if (!(content instanceof Y.Map)) continue
      out.set(`${root}:${key}`, new Map(content.entries()))
    }
  }
  const schema = doc.getMap('meta').get('schema')
  doc.destroy()
  out.set('meta:schema', new Map([['schema', schema]]))
  return out
}

/** Every item of the fixture is there, the same, under the same id: fields, slots (text and bytes), body and stage history. */
async function expectItemsKept(store: Store, alsoLive: string[] = []): Promise<void> {
  expect(store.listItems().map((i) => i.id)).toEqual([...summary.items.map((i) => i.id), ...alsoLive].sort((x, y) => num(x) - num(y)))
  for (const old of summary.items) {
    expect(store.getItem(old.id), `item ${old.id}`).toEqual(itemOnly(old))
    expect(store.maintenance.uidAt(old.id)).toBe(old.uid)
    expect(store.contentSlots(old.id), `slots of ${old.id}`).toEqual(Object.keys(old.slots).sort())
    for (const [slot, hex] of Object.entries(old.slots)) {
      expect(Buffer.from((await store.readContentBytes(old.id, slot))!).toString('hex'), `bytes of slot ${slot} of ${old.id}`).toBe(hex)
      const text = textOf(hex)
      if (text === undefined) await expect(store.readContent(old.id, slot), `text of slot ${slot} of ${old.id}`).rejects.toMatchObject({ code: 'INVALID_INPUT' })
      else expect(await store.readContent(old.id, slot), `text of slot ${slot} of ${old.id}`).toBe(text)
    }
    expect((await store.readContent(old.id)) ?? null, `body of ${old.id}`).toBe(old.body)
    expect(store.stageHistory(old.id), `stage history of ${old.id}`).toEqual(old.history)
  }
}

function expectTombstonesKept(store: Store): void {
  expect(store.tombstonedIds()).toEqual(summary.tombstones.map((t) => t.id))
  for (const { id, ...tomb } of summary.tombstones) {
    expect(store.tombstone(id)).toEqual(tomb)
    expect(store.getItem(id)).toBeUndefined()
    expect(store.maintenance.isDeletedUid(tomb.uid)).toBe(true)
  }
  expect(num(store.peekNextId())).toBeGreaterThanOrEqual(num(summary.nextId))
}

/** The document of a migrated store holds references only, each the one of its slot's bytes; it is small. */
function expectDocumentOfRefs(store: Store): void {
  const update = store.encodeStateAsUpdate()
  const content = documentContent(update)
  expect(content.get('meta:schema')?.get('schema')).toBe(3)
  for (const item of summary.items) {
    const slots = content.get(`records:${item.uid}`)
    expect(slots, `content of ${item.id}`).toBeDefined()
    expect(Object.fromEntries(slots!), `content of ${item.id}`).toEqual(Object.fromEntries(Object.entries(item.slots).map(([slot, hex]) => [slot, refOf(item.id, slot, hex)])))
  }
  // Nothing inline anywhere, not even in maps that are no live item.
  for (const [where, slots] of content) {
    if (where === 'meta:schema') continue
    for (const [slot, value] of slots) expect(value, `${where} ${slot}`).toEqual({ sha256: expect.stringMatching(/^[0-9a-f]{64}$/), size: expect.any(Number), text: expect.any(Boolean) })
  }
  // The bodies were most of the document: a reference weighs ~100 bytes whatever the body.
  expect(update.byteLength).toBeLessThan(32 * 1024)
  expect(update.byteLength * 20).toBeLessThan(summary.docBytes)
}

/**
 * The rows of a migrated store: every content row is the reference of the bytes it held (the
 * orphan's too), every referenced blob is there and holds those bytes, duplicate content is one
 * blob, and the upload queue holds every blob.
 */
function expectContentRows(rows: Map<string, string>): void {
  expect(rawText(rows, '!meta!schema')).toBe('3')
  const slots = contentSlots()
  expect(keysOf(rows, '!content!').sort()).toEqual([...slots.keys()].map((k) => `!content!${k}`).sort())
  for (const [key, { id, slot, hex }] of slots) {
    const ref = refOfRow(rows.get(`!content!${key}`)!)
    expect(ref, `content row ${key} is a reference`).toBeDefined()
    const bytes = fromHex(hex)
    if (id === summary.orphan.id) expect(ref).toMatchObject({ sha256: sha256(bytes), size: bytes.byteLength })
    else expect(ref, `content row ${key}`).toEqual(refOf(id, slot, hex))
    expect(rows.get(`!blob!${ref!.sha256}`), `blob of ${key}`).toBe(hex)
  }
  const blobs = expectedBlobs()
  expect(keysOf(rows, '!blob!').sort()).toEqual([...blobs].map((s) => `!blob!${s}`).sort())
  for (const key of keysOf(rows, '!blob!')) expect(sha256(fromHex(rows.get(key)!)), key).toBe(key.slice('!blob!'.length))
  expect(keysOf(rows, '!upload!').sort()).toEqual([...blobs].map((s) => `!upload!${s}`).sort())
  // The three copies of the twin body are one blob.
  const twin = sha256(new Uint8Array(Buffer.from(summary.twinBody, 'utf8')))
  for (const key of [`${pad(summary.ids.twinA)}/body`, `${pad(summary.ids.twinB)}/body`, `${pad(summary.ids.epic)}/copy`]) expect(refOfRow(rows.get(`!content!${key}`)!)?.sha256, key).toBe(twin)
}

/** The migration's report of the fixture. */
function expectedReport(): Record<string, unknown> {
  const live = summary.items.reduce((n, item) => n + Object.keys(item.slots).length, 0)
  return {
    from: 2,
    to: 3,
    claimed: 0,
    reanchored: [],
    droppedJournal: [],
    unreadable: [],
    liveBefore: summary.items.length,
    liveAfter: summary.items.length,
    tombstones: summary.tombstones.length,
    aliases: 0,
    content: { values: live, rows: live + Object.keys(summary.orphan.slots).length, blobs: expectedBlobs().size },
  }
}

/** Consistent, except for the orphan planted behind schema 2's back. */
async function expectConsistentButTheOrphan(store: Store, options: { readOnlyMisreadsRefShapedRows?: boolean } = {}): Promise<void> {
  const report = await store.verify()
  // See the test 'BUG: a read-only open of a schema 2 store …' below: that slot alone, nothing else.
  if (options.readOnlyMisreadsRefShapedRows) report.missingContent = report.missingContent.filter((m) => !(m.id === summary.ids.crash && m.slot === 'gate_json'))
  expect(report).toMatchObject({
    items: summary.items.length,
    crdtOnly: [],
    staleShadow: [],
    missingContent: [],
    strayContent: [],
    untracked: [summary.orphan.id],
    corrupt: [],
    pendingIntents: [],
    pendingReanchors: [],
    malformed: [],
    ok: false,
  })
}

/** @docket/recover still finds the orphan, and its rows still read as the bytes schema 2 planted. */
async function expectOrphanFound(store: Store): Promise<void> {
  const { orphan } = summary
  const discovery = await discoverOrphans(store)
  expect(discovery.orphans).toEqual([
    expect.objectContaining({ id: orphan.id, kind: 'missing', uid: orphan.uid, name: orphan.name, bodyBytes: Buffer.byteLength(orphan.body), slots: ['body', 'trace'] }),
  ])
  for (const [slot, hex] of Object.entries(orphan.slots)) expect(await store.maintenance.readStoredContent(orphan.id, slot), `orphan slot ${slot}`).toEqual(fromHex(hex))
}

async function migratedEvents(store: Store) {
  return collect(store.audit({ kinds: ['schema_migrated'] }))
}

describe(`the schema 2 fixture (built with the code of ${SCHEMA2_COMMIT})`, () => {
  it('is a real schema 2 store whose content is inline: in the document and in the content rows', async () => {
    expect(summary.schema).toBe(2)
    const rows = await snapshotRows(await copyOfStore())
    expect(rawText(rows, '!meta!schema')).toBe('2')
    expect(keysOf(rows, '!blob!')).toEqual([])
    expect(keysOf(rows, '!upload!')).toEqual([])
    const stages = new Set(summary.items.map((i) => i.stage))
    for (const stage of ['backlog', 'coding', 'qa', 'done', 'merge_failure', 'abandoned']) expect(stages).toContain(stage)
    expect(summary.tombstones).toHaveLength(1)
    expect(summary.items.find((i) => i.id === summary.ids.rewritten)?.slots).toEqual({ body: Buffer.from('third and last version').toString('hex') })
    // The content rows hold the bytes themselves.
    const slots = contentSlots()
    expect(keysOf(rows, '!content!').sort()).toEqual([...slots.keys()].map((k) => `!content!${k}`).sort())
    for (const [key, { hex }] of slots) expect(rows.get(`!content!${key}`), key).toBe(hex)
    // The document holds the content inline: strings for text, bytes for bytes.
    const doc = new Y.Doc()
    for (const key of keysOf(rows, '!doc!').sort()) Y.applyUpdate(doc, fromHex(rows.get(key)!))
    const inline = documentContent(Y.encodeStateAsUpdate(doc))
    doc.destroy()
    expect(inline.get('meta:schema')?.get('schema')).toBe(2)
    for (const item of summary.items) {
      const content = inline.get(`records:${item.uid}`)!
      for (const [slot, hex] of Object.entries(item.slots)) {
        const value = content.get(slot)
        if (summary.byteSlots.includes(`${item.id}/${slot}`)) expect(Buffer.from(value as Uint8Array).toString('hex')).toBe(hex)
        else expect(value).toBe(textOf(hex))
      }
    }
    expect(summary.docBytes).toBeGreaterThan(700_000)
    // Duplicate content, and a text that has the shape of a reference.
    expect(summary.items.filter((i) => i.body === summary.twinBody)).toHaveLength(2)
    expect(refOfRow(rows.get(`!content!${pad(summary.ids.crash)}/gate_json`)!)).toBeDefined()
  })
})

describe('opening a schema 2 store migrates its content out of the document', () => {
  it('keeps every item and body; the document holds references; every content row names a blob that is there; one schema_migrated event', async () => {
    const dir = await copyOfStore()
    const store = await testStore({ dir })
    expect(store.schema).toEqual({ onDisk: 3, migrated: expectedReport() })

    await expectItemsKept(store)
    expectTombstonesKept(store)
    expect(store.aliases()).toEqual([])
    expectDocumentOfRefs(store)
    await expectConsistentButTheOrphan(store)
    await expectOrphanFound(store)
    expect(await store.missingBlobs()).toEqual([])

    // The audit log of schema 2 is kept, plus exactly one schema_migrated event with the content counts.
    const kinds: Record<string, number> = {}
    for (const e of await collect(store.audit())) kinds[e.kind] = (kinds[e.kind] ?? 0) + 1
    expect(kinds).toEqual({ ...summary.audit, schema_migrated: 1 })
    expect(await migratedEvents(store)).toMatchObject([{ replicaId: summary.replicaId, data: expectedReport() }])

    // Deleted ids stay deleted, and the deleted item's content is not brought back.
    await expect(store.createItem({ name: 'reuse a deleted id', id: summary.ids.deleted })).rejects.toMatchObject({ code: 'TOMBSTONED' })
    const listed = store.listItems()
    await store.close()
    // The open after the migration built the index: reads no longer decode the document.
    const reader = await openReader({ dir })
    try {
      expect(reader.source).toBe('index')
      expect(await reader.listItems()).toEqual(listed)
      for (const item of summary.items) if (item.body !== null) expect(await reader.readContent(item.id)).toBe(item.body)
      expect(await reader.tombstone(summary.ids.deleted)).toBeDefined()
    } finally {
      await reader.close()
    }
    const rows = await snapshotRows(dir)
    expectContentRows(rows)
    expect(keysOf(rows, '!journal!')).toEqual([])
    expect(rows.has(`!blob!${sha256(new Uint8Array(Buffer.from('delete me: this body must not come back')))}`)).toBe(false)
  })

  it('is idempotent: a reopen does not migrate again; writes after the migration reuse blobs', async () => {
    const dir = await copyOfStore()
    const first = await openStore({ dir, logger: quiet })
    expect(first.schema.migrated).toEqual(expectedReport())
    await first.close()
    const afterMigration = await snapshotRows(dir)

    const second = await openStore({ dir, logger: quiet })
    expect(second.schema).toEqual({ onDisk: 3, migrated: undefined })
    await expectItemsKept(second)
    expect(await migratedEvents(second)).toHaveLength(1)
    await second.close()
    // Opening a migrated store changes nothing.
    expect(await snapshotRows(dir)).toEqual(afterMigration)

    const third = await openStore({ dir, logger: quiet })
    const twin = await third.createItem({ name: 'a third twin', body: summary.twinBody })
    await third.writeContent(summary.ids.big, 'body', 'a short body now')
    await third.apply(summary.ids.twinA, 'start')
    await third.close()
    const rows = await snapshotRows(dir)
    // The twin body is still one blob; the new body is one more.
    expect(keysOf(rows, '!blob!')).toHaveLength(expectedBlobs().size + 1)
    const fourth = await openStore({ dir, logger: quiet })
    try {
      expect(fourth.schema.migrated).toBeUndefined()
      expect(await fourth.readContent(twin.id)).toBe(summary.twinBody)
      expect(await fourth.readContent(summary.ids.big)).toBe('a short body now')
      expect(await fourth.readContent(summary.ids.big, 'gate_output')).toBe(textOf(summary.items.find((i) => i.id === summary.ids.big)!.slots.gate_output!))
      expect(fourth.getItem(summary.ids.twinA)?.stage).toBe('coding')
      expect(await migratedEvents(fourth)).toHaveLength(1)
      expect((await fourth.verify()).untracked).toEqual([summary.orphan.id])
    } finally {
      await fourth.close()
    }
  })

  it('the orphan, migrated to references, is recovered with its content; then the store verifies ok', async () => {
    const dir = await copyOfStore()
    const store = await testStore({ dir })
    const result = await recoverOrphans(store, { ids: [summary.orphan.id], dryRun: false, offline: true })
    expect(result.failed).toEqual([])
    expect(result.recovered).toEqual([expect.objectContaining({ oldId: summary.orphan.id, uid: summary.orphan.uid, kind: 'missing' })])
    const newId = result.recovered[0]!.newId!
    expect(store.getItem(newId)).toMatchObject({ uid: summary.orphan.uid, name: summary.orphan.name })
    expect(await store.readContent(newId)).toBe(summary.orphan.body)
    expect(await store.readContentBytes(newId, 'trace')).toEqual(fromHex(summary.orphan.slots.trace!))
    const report = await store.verify()
    expect(report, JSON.stringify(report)).toMatchObject({ crdtOnly: [], staleShadow: [], missingContent: [], strayContent: [], untracked: [], corrupt: [], ok: true })
    await expectItemsKept(store, [newId])
  })

  it('read-only: migrates in memory without moving the content, reads every body, and writes nothing', async () => {
    const dir = await copyOfStore()
    const before = await snapshotRows(dir)
    const store = await openStore({ dir, readOnly: true, logger: quiet })
    try {
      expect(store.schema).toEqual({ onDisk: 2, migrated: { ...expectedReport(), content: null } })
      await expectItemsKept(store)
      expectTombstonesKept(store)
      await expectConsistentButTheOrphan(store, { readOnlyMisreadsRefShapedRows: true })
      await expectOrphanFound(store)
      // In memory the content is still inline: there is no blob to name.
      const content = documentContent(store.encodeStateAsUpdate())
      expect(content.get(`records:${summary.items[0]!.uid}`)?.get('body')).toBe(summary.items[0]!.body)
      expect(await migratedEvents(store)).toEqual([])
      await expect(store.createItem({ name: 'no' })).rejects.toMatchObject({ code: 'STORE_READ_ONLY' })
    } finally {
      await store.close()
    }
    expect(await snapshotRows(dir)).toEqual(before)
    // A reader of a schema 2 store answers from the document, and writes nothing either.
    const reader = await openReader({ dir, logger: quiet })
    try {
      expect(reader.source).toBe('document')
      expect(reader.fallback).toMatch(/schema 2/)
      expect((await reader.listItems()).map((i) => i.id)).toEqual(summary.items.map((i) => i.id))
      expect(await reader.readContent(summary.items[0]!.id)).toBe(summary.items[0]!.body)
    } finally {
      await reader.close()
    }
    expect(await snapshotRows(dir)).toEqual(before)

    // A writable open afterwards migrates it, once.
    const store2 = await testStore({ dir })
    expect(store2.schema.migrated).toEqual(expectedReport())
    expect(await migratedEvents(store2)).toHaveLength(1)
  })

  // BUG (store/evidence.ts slotValueOfRow, used by verify.ts and Maintenance.readStoredContent):
  // a read-only open does not convert content, so the content rows are schema 2's, holding the
  // bytes; but a row is read as a reference whenever its bytes parse as one. A text slot whose
  // text has the shape of a reference (here `gate_json`) is then reported as different content by
  // verify, and readStoredContent looks up a blob instead of returning the row's bytes. Whether
  // a row holds a reference should follow from the schema on disk, not from its bytes.
  it('BUG: a read-only open of a schema 2 store reads a content row whose text has the shape of a reference as the text it is', async () => {
    const dir = await copyOfStore()
    const store = await openStore({ dir, readOnly: true, logger: quiet })
    try {
      const hex = summary.items.find((i) => i.id === summary.ids.crash)!.slots.gate_json!
      expect(await store.readContent(summary.ids.crash, 'gate_json')).toBe(textOf(hex))
      expect((await store.verify()).missingContent).toEqual([])
      expect(await store.maintenance.readStoredContent(summary.ids.crash, 'gate_json')).toEqual(fromHex(hex))
    } finally {
      await store.close()
    }
  })
})

describe('a migration killed at each step leaves schema 2 untouched or schema 3 complete', () => {
  // The three kills run at once (each in its own child process, on its own copy), then each test checks its own.
  const crashed = new Map<string, Promise<{ dir: string; before: Map<string, string>; result: Awaited<ReturnType<typeof runFixture>> }>>()
  const crashDirs: string[] = []
  beforeAll(() => {
    if (setupError) return
    for (const step of MIGRATE_STEPS) {
      const run = (async () => {
        const parent = await mkdtemp(join(tmpdir(), 'docket-migrate-content-crash-'))
        crashDirs.push(parent)
        const dir = join(parent, 'store')
        await cp(storeDir, dir, { recursive: true })
        const before = await snapshotRows(dir)
        return { dir, before, result: await runFixture('crash-migrate.ts', [dir, step]) }
      })()
      run.catch(() => {})
      crashed.set(step, run)
    }
  })
  afterAll(async () => {
    await Promise.allSettled([...crashed.values()])
    await Promise.allSettled(crashDirs.map((d) => rm(d, { recursive: true, force: true })))
  })

  for (const step of MIGRATE_STEPS) {
    it(`killed at ${step}`, async () => {
      const { dir, before, result } = await crashed.get(step)!
      expect(result.signal, `${result.stdout}${result.stderr}`).toBe('SIGKILL')

      const after = await snapshotRows(dir)
      const schema = rawText(after, '!meta!schema')
      if (schema === '2') {
        expect(after).toEqual(before)
      } else {
        // Complete: every row of schema 2 is there as it was, but the content rows, which are
        // now the references of the bytes they held, and the document rows, which gave way to one
        // snapshot without the inline content; plus its audit event, the blobs and their
        // uploads, and the marker.
        expectContentRows(after)
        expect(keysOf(after, '!doc!')).toHaveLength(1)
        for (const [key, value] of before) {
          if (key === '!meta!schema' || key.startsWith('!doc!')) continue
          expect(after.has(key), key).toBe(true)
          if (key.startsWith('!content!')) expect(refOfRow(after.get(key)!), key).toMatchObject({ sha256: sha256(fromHex(value)), size: value.length / 2 })
          else expect(after.get(key), key).toBe(value)
        }
        expect(rawKinds(after).filter((k) => k === 'schema_migrated')).toHaveLength(1)
        const added = [...after.keys()].filter((k) => !before.has(k))
        expect(added.filter((k) => k.startsWith('!doc!'))).toHaveLength(1)
        expect(added.filter((k) => k.startsWith('!audit!'))).toHaveLength(1)
        expect(added.filter((k) => !/^!(doc|audit|blob|upload)!/.test(k))).toEqual([])
      }
      // What the migration writes in one batch is on disk from migrate:written on, and not before.
      expect(schema).toBe(step === 'migrate:written' ? '3' : '2')

      // The next open completes it (or finds it complete).
      const store = await testStore({ dir })
      expect(store.schema.onDisk).toBe(3)
      expect(store.schema.migrated).toEqual(schema === '3' ? undefined : expectedReport())
      await expectItemsKept(store)
      expectTombstonesKept(store)
      expectDocumentOfRefs(store)
      expect(await migratedEvents(store)).toHaveLength(1)
      await expectConsistentButTheOrphan(store)
      await expectOrphanFound(store)
      await store.close()
      expectContentRows(await snapshotRows(dir))
    })
  }
})
