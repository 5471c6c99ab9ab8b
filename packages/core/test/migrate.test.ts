// Schema 1 → 3: stores written by the previous release (the code of ef7d12b, taken from git
// history at test time and run in a child process) are opened with the current code, which
// migrates them in one step: schema 1's items claim their ids (schema 2) and their content moves
// out of the document into blobs (schema 3). migrate-content.test.ts covers schema 2 → 3.
import { createHash } from 'node:crypto'
import { cp, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import { discoverOrphans } from '../../recover/src/index.js'
import { openStore, type Alias, type Item, type StageHistoryEntry, type Store } from '../src/index.js'
import { collect, delRaw, putRaw, runFixture, snapshotRows, tempDir, testStore, extractCoreSource } from './support.js'

/** The last commit that writes schema 1 (the previous release). */
const SCHEMA1_COMMIT = 'ef7d12b'
const MIGRATE_STEPS = ['migrate:verified', 'migrate:before-write', 'migrate:written'] as const

interface Schema1Item extends Item {
  /** slot → bytes as hex */
  slots: Record<string, string>
  body: string | null
  history: StageHistoryEntry[]
}

interface Schema1Summary {
  schema: number
  replicaId: string
  peerReplicaId: string
  items: Schema1Item[]
  tombstones: Array<{ id: string; uid: string; at: string; by: string; reason: string | null }>
  aliases: Alias[]
  nextId: string
  audit: Record<string, number>
  collision: { id: string; winnerUid: string; loserUid: string; newId: string }
  ids: Record<'epic' | 'parser' | 'crash' | 'deleted' | 'ship' | 'spike' | 'refactor' | 'dropped' | 'after', string>
  orphan?: { id: string; uid: string; name: string; body: string }
  /** A replica that went offline during the collision (it still shows the loser at the contested id). */
  peerDir?: string
  staleDir?: string
  staleReplicaId?: string
  interrupted?: { id: string; uid: string; name: string; stage: string; slots: Record<string, string>; winnerUid: string; winnerName: string }
}

interface Built {
  dir: string
  summary: Schema1Summary
}

let oldRoot: string | undefined
const builtDirs: string[] = []
let base: Built
let interrupted: Built

function extractSchema1Source(): string {
  const extracted = extractCoreSource(SCHEMA1_COMMIT, 'schema1', 'the last release that writes schema 1')
  oldRoot = extracted.root
  return extracted.src
}

/** Runs fixtures/schema1-store.ts: a real schema 1 store, written by the schema 1 code. */
async function buildSchema1(oldSrc: string, mode?: 'interrupted-reanchor'): Promise<Built> {
  const parent = await mkdtemp(join(tmpdir(), 'docket-schema1-'))
  builtDirs.push(parent)
  const dir = join(parent, 'store')
  const result = await runFixture('schema1-store.ts', [oldSrc, dir, ...(mode ? [mode] : [])], 50_000)
  const line = result.stdout.trim().split('\n').pop() ?? ''
  if (mode === 'interrupted-reanchor') {
    if (result.signal !== 'SIGKILL') throw new Error(`the schema 1 fixture was not killed at reanchor:read (${result.code}/${result.signal}): ${result.stderr}`)
  } else if (result.code !== 0) {
    throw new Error(`the schema 1 fixture failed (${result.code}/${result.signal}): ${result.stderr}${result.stdout}`)
  }
  return { dir, summary: JSON.parse(line) as Schema1Summary }
}

let setupError: unknown
beforeAll(async () => {
  try {
    const oldSrc = extractSchema1Source()
    ;[base, interrupted] = await Promise.all([buildSchema1(oldSrc), buildSchema1(oldSrc, 'interrupted-reanchor')])
  } catch (err) {
    setupError = err
  }
}, 60_000)
// Without the schema 1 fixture every test FAILS, saying why (never skipped).
beforeEach(() => {
  if (setupError) throw setupError
})

afterAll(async () => {
  await Promise.allSettled(builtDirs.map((d) => rm(d, { recursive: true, force: true })))
  if (oldRoot) await rm(oldRoot, { recursive: true, force: true })
})

/** A copy of a built schema 1 store, in a temp dir removed after the test. */
async function copyOf(built: Built | string): Promise<string> {
  const dir = join(await tempDir('docket-migrate-'), 'store')
  await cp(typeof built === 'string' ? built : built.dir, dir, { recursive: true })
  return dir
}

/** Sends each store what the other lacks, until both hold the same document. */
async function exchange(x: Store, y: Store): Promise<void> {
  for (let round = 0; round < 3; round++) {
    await x.applyUpdate(y.encodeStateAsUpdate(x.encodeStateVector()), 'peer')
    await x.flush()
    await y.applyUpdate(x.encodeStateAsUpdate(y.encodeStateVector()), 'peer')
    await y.flush()
  }
}

const quiet = { warn: () => {}, info: () => {}, error: () => {} }
const num = (id: string) => Number(id)

function itemOnly(item: Schema1Item): Item {
  const { slots: _s, body: _b, history: _h, ...rest } = item
  return rest
}

function rawText(rows: Map<string, string>, key: string): string | undefined {
  const hex = rows.get(key)
  return hex === undefined ? undefined : Buffer.from(hex, 'hex').toString('utf8')
}

function rawKinds(rows: Map<string, string>): string[] {
  return [...rows].filter(([k]) => k.startsWith('!audit!')).map(([, hex]) => (JSON.parse(Buffer.from(hex, 'hex').toString('utf8')) as { kind: string }).kind)
}

function keysOf(rows: Map<string, string>, prefix: string): string[] {
  return [...rows.keys()].filter((k) => k.startsWith(prefix))
}

const sha256 = (hex: string) => createHash('sha256').update(Buffer.from(hex, 'hex')).digest('hex')

/** A content row of schema 3: the reference `{ sha256, size, text }` of the slot's bytes, as JSON. */
function refOfRow(hex: string): { sha256: string; size: number; text: boolean } | undefined {
  try {
    const value = JSON.parse(Buffer.from(hex, 'hex').toString('utf8')) as { sha256: string; size: number; text: boolean }
    return Object.keys(value).sort().join(',') === 'sha256,size,text' && /^[0-9a-f]{64}$/.test(value.sha256) ? value : undefined
  } catch {
    return undefined
  }
}

/** The content counts of the migration: every live item's slots move out of the document; every content row (the orphan's too) becomes a reference. */
function contentReport(summary: Schema1Summary): { values: number; rows: number; blobs: number } {
  const slots = summary.items.flatMap((i) => Object.values(i.slots))
  const orphan = summary.orphan ? [Buffer.from(summary.orphan.body).toString('hex')] : []
  return { values: slots.length, rows: slots.length + orphan.length, blobs: new Set([...slots, ...orphan].map(sha256)).size }
}

/**
 * The content rows of a migrated store: each is the reference of the bytes the item's slot (or
 * the orphan's row) holds; every referenced blob is there with those bytes, and queued for upload.
 * `written`: content rows written after the migration (the blobs they replaced stay).
 */
function expectContentRefs(rows: Map<string, string>, summary: Schema1Summary, written: Record<string, string> = {}): void {
  const expected = new Map<string, string>()
  for (const item of summary.items) for (const [slot, hex] of Object.entries(item.slots)) expected.set(`!content!${item.id.padStart(16, '0')}/${slot}`, hex)
  if (summary.orphan) expected.set(`!content!${summary.orphan.id.padStart(16, '0')}/body`, Buffer.from(summary.orphan.body).toString('hex'))
  const migrated = [...expected.values()]
  for (const [key, hex] of Object.entries(written)) expected.set(key, hex)
  expect(keysOf(rows, '!content!').sort()).toEqual([...expected.keys()].sort())
  for (const [key, hex] of expected) {
    expect(refOfRow(rows.get(key)!), key).toMatchObject({ sha256: sha256(hex), size: hex.length / 2 })
    expect(rows.get(`!blob!${sha256(hex)}`), `blob of ${key}`).toBe(hex)
  }
  const blobs = [...new Set([...migrated, ...expected.values()].map(sha256))].sort()
  expect(keysOf(rows, '!blob!').sort()).toEqual(blobs.map((s) => `!blob!${s}`))
  expect(keysOf(rows, '!upload!').sort()).toEqual(blobs.map((s) => `!upload!${s}`))
}

/** Every schema 1 item is there, the same, under the same id: fields, slots, body and stage history. */
async function expectItemsKept(store: Store, summary: Schema1Summary, alsoLive: string[] = []): Promise<void> {
  expect(store.listItems().map((i) => i.id)).toEqual([...summary.items.map((i) => i.id), ...alsoLive].sort((x, y) => num(x) - num(y)))
  for (const old of summary.items) {
    expect(store.getItem(old.id), `item ${old.id}`).toEqual(itemOnly(old))
    expect(store.maintenance.uidAt(old.id)).toBe(old.uid)
    expect(store.contentSlots(old.id), `slots of ${old.id}`).toEqual(Object.keys(old.slots).sort())
    for (const [slot, hex] of Object.entries(old.slots)) {
      expect(Buffer.from((await store.readContentBytes(old.id, slot))!).toString('hex'), `slot ${slot} of ${old.id}`).toBe(hex)
    }
    if (old.body !== null) expect(await store.readContent(old.id)).toBe(old.body)
    expect(store.stageHistory(old.id), `stage history of ${old.id}`).toEqual(old.history)
  }
}

function expectTombstonesKept(store: Store, summary: Schema1Summary): void {
  expect(store.tombstonedIds()).toEqual(summary.tombstones.map((t) => t.id))
  for (const t of summary.tombstones) {
    const { id, ...tomb } = t
    expect(store.tombstone(id)).toEqual(tomb)
    expect(store.getItem(id)).toBeUndefined()
    expect(store.maintenance.isDeletedUid(t.uid)).toBe(true)
  }
  // Never reissued: the next id is past every id schema 1 ever used (items, tombstones, orphan rows).
  const used = [...summary.items.map((i) => i.id), ...summary.tombstones.map((t) => t.id), ...(summary.orphan ? [summary.orphan.id] : []), ...(summary.interrupted ? [summary.interrupted.id] : [])]
  expect(num(store.peekNextId())).toBeGreaterThan(Math.max(...used.map(num)))
  expect(num(store.peekNextId())).toBeGreaterThanOrEqual(num(summary.nextId))
}

async function migratedEvents(store: Store) {
  return collect(store.audit({ kinds: ['schema_migrated'] }))
}

/** What the document says about its own schema. */
function docSchema(store: Store): unknown {
  const doc = new Y.Doc()
  Y.applyUpdate(doc, store.encodeStateAsUpdate())
  const schema = doc.getMap('meta').get('schema')
  doc.destroy()
  return schema
}

describe('the schema 1 fixture (built with the code of ef7d12b)', () => {
  it('is a real, rich schema 1 store', async () => {
    const { summary } = base
    expect(summary.schema).toBe(1)
    const rows = await snapshotRows(await copyOf(base))
    expect(rawText(rows, '!meta!schema')).toBe('1')
    const stages = new Set(summary.items.map((i) => i.stage))
    for (const stage of ['backlog', 'coding', 'qa', 'done', 'merge_failure', 'abandoned']) expect(stages).toContain(stage)
    expect(summary.items.length).toBeGreaterThanOrEqual(10)
    expect(summary.items.some((i) => i.dependsOn.length > 1)).toBe(true)
    expect(summary.items.some((i) => i.blocked !== null)).toBe(true)
    expect(summary.items.some((i) => i.frozen)).toBe(true)
    expect(summary.items.some((i) => i.agent !== undefined && i.retries > 0)).toBe(true)
    expect(summary.items.some((i) => Object.keys(i.slots).length > 1)).toBe(true)
    expect(summary.tombstones).toHaveLength(1)
    expect(summary.aliases).toEqual([expect.objectContaining({ uid: summary.collision.loserUid, oldId: summary.collision.id, newId: summary.collision.newId, reason: 'collision' })])
    expect(summary.items.find((i) => i.id === summary.collision.id)).toMatchObject({ uid: summary.collision.winnerUid, createdBy: summary.peerReplicaId })
    expect(summary.audit.reanchored).toBe(1)
    expect(summary.orphan).toBeDefined()
    expect(rows.has(`!shadow!${summary.orphan!.id.padStart(16, '0')}`)).toBe(true)
    expect(keysOf(rows, '!journal!')).toEqual([])
    // The document is schema 1's: items under their ids, no claims, no records, no schema marker.
    const doc = new Y.Doc()
    for (const key of keysOf(rows, '!doc!').sort()) Y.applyUpdate(doc, Buffer.from(rows.get(key)!, 'hex'))
    expect([...doc.getMap('items').keys()].sort((x, y) => num(x) - num(y))).toEqual(summary.items.map((i) => i.id))
    expect(doc.getMap('claims').size).toBe(0)
    expect(doc.getMap('records').size).toBe(0)
    expect(doc.getMap('meta').get('schema')).toBeUndefined()
    doc.destroy()
  })
})

describe('opening a schema 1 store migrates it', () => {
  it('keeps every item (id, uid, fields, body, slots, history), tombstone, alias and the orphan; one schema_migrated event', async () => {
    const dir = await copyOf(base)
    const { summary } = base
    const store = await testStore({ dir })
    expect(store.schema.onDisk).toBe(3)
    expect(store.schema.migrated).toMatchObject({
      from: 1,
      to: 3,
      claimed: summary.items.length,
      reanchored: [],
      droppedJournal: [],
      unreadable: [],
      liveBefore: summary.items.length,
      liveAfter: summary.items.length,
      tombstones: summary.tombstones.length,
      aliases: 1,
      content: contentReport(summary),
    })
    expect(docSchema(store)).toBe(3)

    await expectItemsKept(store, summary)
    expectTombstonesKept(store, summary)
    // The collision of schema 1: the winner keeps the id, the re-anchored item its new one and its alias.
    expect(store.getItem(summary.collision.id)?.uid).toBe(summary.collision.winnerUid)
    expect(store.getItem(summary.collision.newId)?.uid).toBe(summary.collision.loserUid)
    expect(store.aliases()).toEqual(summary.aliases)
    expect(store.aliases(summary.collision.id)).toEqual(summary.aliases)
    expect(store.maintenance.pendingReanchors()).toEqual([])

    // Consistent, except for the orphan planted behind schema 1's back — which discovery still finds.
    const report = await store.verify()
    expect(report).toMatchObject({
      items: summary.items.length,
      crdtOnly: [],
      staleShadow: [],
      missingContent: [],
      strayContent: [],
      untracked: [summary.orphan!.id],
      corrupt: [],
      pendingIntents: [],
      pendingReanchors: [],
      ok: false,
    })
    const discovery = await discoverOrphans(store)
    expect(discovery.orphans).toEqual([expect.objectContaining({ id: summary.orphan!.id, kind: 'missing', uid: summary.orphan!.uid, name: summary.orphan!.name })])
    expect(await store.maintenance.readStoredContent(summary.orphan!.id)).toEqual(new Uint8Array(Buffer.from(summary.orphan!.body)))

    // The audit log of schema 1 is kept, plus exactly one schema_migrated event.
    const events = await collect(store.audit())
    const kinds: Record<string, number> = {}
    for (const e of events) kinds[e.kind] = (kinds[e.kind] ?? 0) + 1
    expect(kinds).toEqual({ ...summary.audit, schema_migrated: 1 })
    expect(await migratedEvents(store)).toMatchObject([
      { replicaId: summary.replicaId, data: { from: 1, to: 3, liveBefore: summary.items.length, liveAfter: summary.items.length, content: contentReport(summary) } },
    ])

    // Deleted ids stay deleted; new items get fresh ids; migrated items take writes.
    await expect(store.createItem({ name: 'reuse a deleted id', id: summary.ids.deleted })).rejects.toMatchObject({ code: 'TOMBSTONED' })
    await expect(store.createItem({ name: 'reuse a live id', id: summary.ids.epic })).rejects.toMatchObject({ code: 'ALREADY_EXISTS' })
    await expect(store.createItem({ name: 'reuse the orphan id', id: summary.orphan!.id })).rejects.toMatchObject({ code: 'ALREADY_EXISTS' })
    const next = store.peekNextId()
    const created = await store.createItem({ name: 'first schema 3 item', dependsOn: [summary.collision.newId] })
    expect(created.id).toBe(next)
    const moved = await store.apply(summary.collision.newId, 'start')
    expect(moved).toMatchObject({ id: summary.collision.newId, uid: summary.collision.loserUid, stage: 'coding' })
    await store.writeContent(summary.ids.parser, 'gate_output', 'rerun: ok')
    expect((await store.verify()).untracked).toEqual([summary.orphan!.id])

    await store.close()
    const rows = await snapshotRows(dir)
    expect(rawText(rows, '!meta!schema')).toBe('3')
    expect(keysOf(rows, '!journal!')).toEqual([])
    // Content rows are references now, to blobs that are there; the slot written after the migration too.
    expectContentRefs(rows, summary, { [`!content!${summary.ids.parser.padStart(16, '0')}/gate_output`]: Buffer.from('rerun: ok').toString('hex') })
  })

  it('is idempotent: a reopen does not migrate again, and what was written after the migration stays', async () => {
    const dir = await copyOf(base)
    const { summary } = base
    const first = await openStore({ dir, logger: quiet })
    expect(first.schema.migrated).toBeDefined()
    await first.close()
    const afterMigration = await snapshotRows(dir)

    const second = await openStore({ dir, logger: quiet })
    expect(second.schema).toEqual({ onDisk: 3, migrated: undefined })
    await expectItemsKept(second, summary)
    expect(await migratedEvents(second)).toHaveLength(1)
    await second.close()
    // Opening a migrated store changes nothing.
    expect(await snapshotRows(dir)).toEqual(afterMigration)

    const third = await openStore({ dir, logger: quiet })
    await third.apply(summary.ids.epic, 'start')
    const created = await third.createItem({ name: 'after the migration', body: 'schema 3 body' })
    await third.close()
    const fourth = await openStore({ dir, logger: quiet })
    try {
      expect(fourth.schema.migrated).toBeUndefined()
      expect(fourth.getItem(summary.ids.epic)?.stage).toBe('coding')
      expect(await fourth.readContent(created.id)).toBe('schema 3 body')
      expect(fourth.aliases()).toEqual(summary.aliases)
      expect(await migratedEvents(fourth)).toHaveLength(1)
      expect((await fourth.verify()).untracked).toEqual([summary.orphan!.id])
    } finally {
      await fourth.close()
    }
  })

  it('read-only: migrates in memory only, shows the same items and writes nothing', async () => {
    const dir = await copyOf(base)
    const { summary } = base
    const before = await snapshotRows(dir)
    const store = await openStore({ dir, readOnly: true, logger: quiet })
    try {
      expect(store.schema.onDisk).toBe(1)
      // Content is not moved by a read-only open (there is nowhere to write the blobs): inline values read as they are.
      expect(store.schema.migrated).toMatchObject({ from: 1, to: 3, liveBefore: summary.items.length, liveAfter: summary.items.length, reanchored: [], content: null })
      await expectItemsKept(store, summary)
      expectTombstonesKept(store, summary)
      expect(store.aliases()).toEqual(summary.aliases)
      expect((await store.verify()).untracked).toEqual([summary.orphan!.id])
      expect(await migratedEvents(store)).toEqual([])
      await expect(store.createItem({ name: 'no' })).rejects.toMatchObject({ code: 'STORE_READ_ONLY' })
    } finally {
      await store.close()
    }
    expect(await snapshotRows(dir)).toEqual(before)

    // A writable open afterwards migrates it, once.
    const store2 = await testStore({ dir })
    expect(store2.schema.migrated).toBeDefined()
    expect(await migratedEvents(store2)).toHaveLength(1)
  })
})

describe('a migration killed at each step leaves schema 1 untouched or schema 3 complete', () => {
  for (const step of MIGRATE_STEPS) {
    it(`killed at ${step}`, async () => {
      const dir = await copyOf(base)
      const { summary } = base
      const before = await snapshotRows(dir)
      const result = await runFixture('crash-migrate.ts', [dir, step])
      expect(result.signal, `${result.stdout}${result.stderr}`).toBe('SIGKILL')

      const after = await snapshotRows(dir)
      const schema = rawText(after, '!meta!schema')
      if (schema === '1') {
        expect(after).toEqual(before)
      } else {
        // Complete: the rows of schema 1 are all there (journal rows aside), the content rows as
        // the references of the bytes they held; plus the migration's document row, its audit
        // event, the blobs with their uploads, and the marker.
        expect(schema).toBe('3')
        // The document rows gave way to one snapshot without the inline content.
        expect(keysOf(after, '!doc!')).toHaveLength(1)
        for (const [key, value] of before) {
          if (key.startsWith('!journal!') || key.startsWith('!doc!') || key === '!meta!schema') continue
          if (key.startsWith('!content!')) expect(refOfRow(after.get(key)!), key).toMatchObject({ sha256: sha256(value), size: value.length / 2 })
          else expect(after.get(key), key).toBe(value)
        }
        expect(keysOf(after, '!journal!')).toEqual([])
        expect(rawKinds(after).filter((k) => k === 'schema_migrated')).toHaveLength(1)
        const added = [...after.keys()].filter((k) => !before.has(k))
        expect(added.filter((k) => k.startsWith('!doc!'))).toHaveLength(1)
        expect(added.filter((k) => k.startsWith('!audit!'))).toHaveLength(1)
        expect(added.filter((k) => !/^!(doc|audit|blob|upload)!/.test(k))).toEqual([])
        expectContentRefs(after, summary)
      }
      // What the migration writes in one batch is on disk from migrate:written on, and not before.
      expect(schema).toBe(step === 'migrate:written' ? '3' : '1')

      const store = await testStore({ dir })
      expect(store.schema.onDisk).toBe(3)
      expect(store.schema.migrated === undefined).toBe(schema === '3')
      await expectItemsKept(store, summary)
      expectTombstonesKept(store, summary)
      expect(store.aliases()).toEqual(summary.aliases)
      expect(await migratedEvents(store)).toHaveLength(1)
      expect((await store.verify()).untracked).toEqual([summary.orphan!.id])
      await store.close()
      expectContentRefs(await snapshotRows(dir), summary)
    })
  }
})

describe('schema 1 journal rows', () => {
  /** Opens a copy of the store whose schema 1 re-anchoring was interrupted; checks the journal it left. */
  async function openInterrupted(): Promise<{ store: Store; newId: string }> {
    const dir = await copyOf(interrupted)
    const lost = interrupted.summary.interrupted!
    const before = await snapshotRows(dir)
    expect(rawText(before, '!meta!schema')).toBe('1')
    const journal = keysOf(before, '!journal!').map((k) => JSON.parse(rawText(before, k)!) as Record<string, unknown>)
    expect(journal).toEqual([{ kind: 'reanchor', id: lost.id, uid: lost.uid, reason: 'collision', source: 'shadow' }])
    // Schema 1 left the displaced item's rows where they were: they are the evidence of the move.
    expect(JSON.parse(rawText(before, `!shadow!${lost.id.padStart(16, '0')}`)!)).toMatchObject({ uid: lost.uid, name: lost.name })
    const store = await testStore({ dir })
    const newId = store.schema.migrated?.reanchored[0]?.newId
    expect(newId).toBeDefined()
    return { store, newId: newId! }
  }

  it('an interrupted schema 1 re-anchoring is finished by the migration: the item moves to a fresh id with its data and alias', async () => {
    const { summary } = interrupted
    const lost = summary.interrupted!
    const { store, newId } = await openInterrupted()
    const migrated = store.schema.migrated!
    expect(migrated.droppedJournal).toEqual([{ key: expect.any(String), kind: 'reanchor' }])
    expect(migrated.reanchored).toEqual([{ uid: lost.uid, oldId: lost.id, newId }])
    expect(num(newId)).toBeGreaterThan(num(lost.id))
    expect(store.getItem(lost.id)).toMatchObject({ uid: lost.winnerUid, name: lost.winnerName })
    expect(store.getItem(newId)).toMatchObject({ uid: lost.uid, name: lost.name, stage: lost.stage, createdBy: summary.replicaId })
    for (const [slot, hex] of Object.entries(lost.slots)) expect(Buffer.from((await store.readContentBytes(newId, slot))!).toString('hex')).toBe(hex)
    expect(store.aliases(lost.id)).toEqual([expect.objectContaining({ uid: lost.uid, oldId: lost.id, newId, reason: 'collision' })])
    await expectItemsKept(store, summary, [lost.id, newId])
    expectTombstonesKept(store, summary)
    expect(store.maintenance.pendingIntents()).toEqual([])
    expect(store.maintenance.pendingReanchors()).toEqual([])
    expect(await migratedEvents(store)).toHaveLength(1)
  })

  // BUG (migrate.ts, writeMigration): the batch holds the document update, the journal deletions,
  // the audit event and the marker — but no shadow/content rows. Schema 1's re-anchoring rewrote
  // the rows of the old id (for the item that won it) and wrote the moved item's rows at its new
  // id in the same batch; the migration finishes the move in the document only.
  it('an interrupted schema 1 re-anchoring finished by the migration leaves the shadow content store matching the document', async () => {
    const lost = interrupted.summary.interrupted!
    const { store, newId } = await openInterrupted()
    const report = await store.verify()
    expect(report, JSON.stringify(report)).toMatchObject({ crdtOnly: [], staleShadow: [], missingContent: [], strayContent: [], untracked: [], ok: true })
    expect(await store.maintenance.readShadowRow(lost.id)).toMatchObject({ row: { uid: lost.winnerUid, name: lost.winnerName } })
    expect(await store.maintenance.readShadowRow(newId)).toMatchObject({ row: { uid: lost.uid, name: lost.name } })
    expect(await store.maintenance.readStoredContent(newId, 'body')).toEqual(new Uint8Array(Buffer.from(lost.slots.body!, 'hex')))
    expect(await store.maintenance.readStoredContent(lost.id, 'gate_output')).toBeUndefined()
    expect((await discoverOrphans(store)).orphans).toEqual([])
  })

  it('a re-anchoring whose rows are gone cannot be verified: MIGRATION_FAILED, and nothing is written', async () => {
    const dir = await copyOf(interrupted)
    const lost = interrupted.summary.interrupted!
    await delRaw(dir, `!shadow!${lost.id.padStart(16, '0')}`)
    const before = await snapshotRows(dir)
    const err = await openStore({ dir, logger: quiet }).catch((e: unknown) => e)
    expect(err).toMatchObject({ code: 'MIGRATION_FAILED', details: { id: lost.id, uid: lost.uid } })
    expect((err as Error).message).toContain(`--story-ids ${lost.id}`)
    expect(await snapshotRows(dir)).toEqual(before)
    // The failed open released the store: it can be opened again (and fails the same way).
    await expect(openStore({ dir, logger: quiet })).rejects.toMatchObject({ code: 'MIGRATION_FAILED' })
    expect(await snapshotRows(dir)).toEqual(before)
  })

  it('a re-anchoring journal row that names no valid item: MIGRATION_FAILED, and nothing is written', async () => {
    const dir = await copyOf(base)
    await putRaw(dir, '!journal!01JD0000000000000000000JJJ', JSON.stringify({ kind: 'reanchor', id: 'not-an-id', uid: 'nope', reason: 'collision', source: 'shadow' }))
    const before = await snapshotRows(dir)
    await expect(openStore({ dir, logger: quiet })).rejects.toMatchObject({ code: 'MIGRATION_FAILED' })
    await expect(openStore({ dir, readOnly: true, logger: quiet })).rejects.toMatchObject({ code: 'MIGRATION_FAILED' })
    expect(await snapshotRows(dir)).toEqual(before)
  })
})

// BUG (migrate.ts, migrateInMemory): every replica claims `<id>/<uid>` for whatever its own copy
// holds at each schema 1 key. A replica that was offline during a collision holds the item that
// LOST the id there, and claims it; claims are won by the lowest uid, so when the loser was created
// first, its stale claim beats the claim of the item schema 1 settled on. That item then shows no
// id at all (it disappears from every replica, its rows are deleted) until its creator migrates
// and moves it to a fresh id; the contested id becomes an alias and shows nothing.
describe('replicas that migrate different copies of the same pipeline', () => {
  it('a replica that was offline during a schema 1 collision migrates too, and after syncing every item keeps the id schema 1 settled on', async () => {
    const { summary } = base
    const { collision } = summary
    // This fixture's collision is the case that matters: the item that lost the id is the older one.
    expect(collision.loserUid < collision.winnerUid).toBe(true)
    const a = await testStore({ dir: await copyOf(base) })
    const c = await testStore({ dir: await copyOf(summary.staleDir!) })
    expect(c.replicaId).toBe(summary.staleReplicaId)
    // The stale replica migrated what it had: the loser of the collision, under the contested id.
    expect(c.schema.migrated).toBeDefined()
    expect(c.getItem(collision.id)?.uid).toBe(collision.loserUid)

    await exchange(a, c)
    for (const store of [a, c]) {
      const where = store.replicaId
      expect(store.getItem(collision.id)?.uid, `${where}: item ${collision.id}`).toBe(collision.winnerUid)
      expect(store.getItem(collision.newId)?.uid, `${where}: item ${collision.newId}`).toBe(collision.loserUid)
      expect(store.listItems().map((i) => [i.id, i.uid]), where).toEqual(summary.items.map((i) => [i.id, i.uid]))
    }

    // The winner's creator migrates and syncs last: the winner still keeps its id.
    const b = await testStore({ dir: await copyOf(summary.peerDir!) })
    await exchange(a, b)
    await exchange(b, c)
    for (const store of [a, b, c]) {
      expect(store.listItems().map((i) => [i.id, i.uid]), store.replicaId).toEqual(summary.items.map((i) => [i.id, i.uid]))
      expect(store.aliases(), store.replicaId).toEqual(summary.aliases)
    }
  })
})
