import { createHash } from 'node:crypto'
import { cp, mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, relative, resolve } from 'node:path'
import fc from 'fast-check'
import { HocuspocusProvider, HocuspocusProviderWebsocket } from '@hocuspocus/provider'
import WebSocket from 'ws'
import * as Y from 'yjs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startServer, type RunningServer } from '@docket/server'
import { isDocketError, openStore, SCHEMA_VERSION, updateRefusal, type Item, type Store, type Uid } from '../src/index.js'
import { discoverOrphans } from '../../recover/src/index.js'
import { readRawRows } from '../src/testing.js'
import { propertyParameters } from '../../../test/src/seed.js'
import { exportFolders, exportJsonl } from '../../cli/src/legacy/export.js'
import { capturingLogger, collect, peerTx, tempDir, testStore } from './support.js'

/**
 * Issue 10, the generated half: whatever a token holder sends — malformed values of every kind
 * anywhere in the document, and removals from what only grows — a replica still opens, lists,
 * shows, reads, exports and verifies; no well-formed item is lost; nothing grow-only shrinks;
 * every refusal is audited (and counted by sync status), and every malformed entry that was
 * let in is quarantined: hidden from reads and reported by verify().
 *
 * The hostile changes are real Yjs: a peer Y.Doc seeded with the replica's state, changed, and
 * encoded against the replica's state vector — delivered by `applyUpdate`, and in the second
 * property through a real `docket serve` (startServer + updateRefusal) by a raw Hocuspocus
 * client holding the token.
 *
 * Replay a failure with the FC_SEED / FC_PATH the failure prints; FC_NUM_RUNS scales a run,
 * DOCKET_EXTENSIVE=1 runs 20× (the server property 10×).
 *
 * GAPS FOUND. The properties found product bugs (gaps 1–8, 10); each is pinned by a regression
 * test at the end of this file (describe 'found by the hostile property') and fixed, so the
 * properties no longer steer around them. Gap 9 is a documented limit (README, trust model): an
 * id at the top of the range, claimed like any other, ends allocation; the properties steer
 * around it (see orExhausted) unless DOCKET_HOSTILE_STRICT=9 (or =all). The steering of the
 * fixed gaps can be switched back on for comparison with DOCKET_HOSTILE_STEER=2,3,… :
 *   - gap 1: an update that does not decode was applied in part (refused whole now);
 *   - gap 2: a stage-entry look-alike holding a BigInt (see forStages);
 *   - gap 3: a malformed schema 1 entry that holds a uid claimed its key (see Hit 'items-root');
 *   - gap 4: an update that writes a root key and removes it again (see writtenNow);
 *   - gap 5: tombstone and alias values that are no plain object (see steerSet);
 *   - gap 6: `{"__proto__": bytes}` arrives as a fake Uint8Array (see steerProto);
 *   - gap 7: an entry set to `undefined` was not audited (see `unaudited` in checkReplica);
 *   - gap 8 (found by a probe): replacing an item's record with a fresh map reset its stage log;
 *   - gap 10: a slot referencing a blob nobody has made the whole export fail (it is named and
 *     skipped now; see unlessDangling).
 * By design (hostile.test.ts 'an item a peer made unreadable'), not steered: a peer that
 * overwrites an item's record, or a field every item needs (uid, name, type, createdBy), with a
 * value that is no item hides that item; the replica must then quarantine it (verify().malformed)
 * and keep its shadow row as the last good copy for `docket recover`.
 */
const STRICT_GAPS = (process.env.DOCKET_HOSTILE_STRICT ?? '').split(',').map((g) => g.trim())
const STEERED_GAPS = ['9', ...(process.env.DOCKET_HOSTILE_STEER ?? '').split(',').map((g) => g.trim())]
/** Whether the properties steer around gap `n` (see GAPS FOUND): only the documented limit, by default. */
function steering(n: number): boolean {
  return STEERED_GAPS.includes(String(n)) && !STRICT_GAPS.includes('all') && !STRICT_GAPS.includes(String(n))
}
/** DOCKET_HOSTILE_VERBOSE=1 prints every case and what became of it. */
const VERBOSE = process.env.DOCKET_HOSTILE_VERBOSE === '1'

/** fc.context's log (printed with a counterexample), and the console when verbose. */
function logger(ctx: fc.ContextValue, c: HostileCase): (line: string) => void {
  if (VERBOSE) console.info(`case${showCase(c)}`)
  const started = Date.now()
  return (line) => {
    ctx.log(line)
    if (VERBOSE) console.info(`  → ${line} [${Date.now() - started} ms]`)
  }
}

const MiB = 1024 * 1024
const REPLICA = 'victim'
const PEER = 'fixture-peer'
/** The highest ULID: a claim of it never beats a real item's; no record ever has it. */
const HIGH_UID = '7ZZZZZZZZZZZZZZZZZZZZZZZZZ'
/** A uid that a nested map may say it is (never a key of records). */
const FRESH_UID = '7ZZZZZZZZZZZZZZZZZZZZZZZZY'
/** A uid lower than every real item's: a claim by it wins any id it names. */
const LOW_UID = '00000000000000000000000001'
const GROW_ONLY = ['tombstones', 'deleted', 'aliases', 'claims'] as const
type GrowRoot = (typeof GROW_ONLY)[number]
const KNOWN_ROOTS = ['items', 'records', 'claims', 'tombstones', 'deleted', 'aliases', 'alloc', 'meta'] as const
const UNKNOWN_ROOTS = ['future', 'Records', '__proto__', '']
const REQUIRED_FIELDS = ['uid', 'name', 'type', 'createdBy'] as const
const FIELDS = ['uid', 'name', 'type', 'createdAt', 'updatedAt', 'createdBy', 'dependsOn', 'blocked', 'frozen', 'agent', 'retries', 'stages', 'content', '__proto__', 'toString', 'x']
const SLOTS = ['body', 'notes', 'blob', 'gate_output', '../../x', 'Gate Output', '__proto__', '']
/** Keys a value can be written under (per root, some are steered away from: see keyFor). */
const LITERAL_KEYS = ['', '__proto__', 'constructor', 'toString', '../../x', 'a/b', '\u0000', 'π', 'x'.repeat(600), 'schema', REPLICA, PEER, '0', '01', '-5', '1099511627776', '9007199254740993']
const CLAIM_IDS = ['1099511627776', '9007199254740993', '0', '01', '100007']
const CLAIM_UIDS = [HIGH_UID, 'not-a-ulid', HIGH_UID.toLowerCase()]
const OBJ_KEYS = ['uid', 'name', 'type', 'id', 'reason', 'stage', 'at', '__proto__', 'constructor', 'toString', '', 'k'.repeat(300)]
const BOGUS_EVENTS = ['bogus', '', '__proto__', 'toString', 'constructor', 'hasOwnProperty']

// ───────────────────────────── what a hostile peer writes ─────────────────────────────

/** A value a hostile peer writes, as data (printable, shrinkable); buildVal makes it. */
type Val =
  | { t: 'null' }
  | { t: 'undefined' }
  | { t: 'bool'; v: boolean }
  | { t: 'num'; v: number }
  | { t: 'bigint'; v: string }
  | { t: 'str'; v: string }
  | { t: 'big-str'; bytes: number }
  | { t: 'deep'; depth: number; array: boolean }
  | { t: 'obj'; entries: Array<[string, Val]> }
  | { t: 'arr'; items: Val[] }
  | { t: 'bytes'; n: number; fill: number }
  | { t: 'uid'; which: 'fresh' | 'low' | 'garbage' | number }
  | { t: 'entry-like'; event: string; stage: string; epoch: number; extra: Val | null }
  | { t: 'content-ref'; size: number; text: boolean }
  | { t: 'y-text'; text: string }
  | { t: 'y-xml'; text: string }
  | { t: 'y-map'; entries: Array<[string, Val]> }
  | { t: 'y-array'; items: Val[] }

/** Where in a root map it writes or removes (keyFor; some keys are steered away from deliberate deletions and claims). */
type Key =
  | { k: 'existing'; i: number }
  | { k: 'live-id'; i: number }
  | { k: 'fresh-id'; n: number }
  | { k: 'fresh-uid' }
  | { k: 'claim'; id: string; uid: string }
  | { k: 'literal'; s: string }

/** One change; `item` picks a fixture item (modulo), the deleted one included (it has no record). */
type Op =
  | { op: 'set'; root: string; key: Key; value: Val }
  | { op: 'as-list'; root: string; kind: 'array' | 'text' | 'xml'; values: Val[] }
  | { op: 'field'; item: number; field: string; value: Val }
  | { op: 'slot'; item: number; slot: string; value: Val }
  | { op: 'stage-insert'; item: number; at: number; values: Val[] }
  | { op: 'delete'; root: string; key: Key }
  | { op: 'clear'; root: string }
  | { op: 'delete-record'; item: number }
  | { op: 'delete-stages'; item: number; at: number; len: number }
  | { op: 'delete-field'; item: number; field: string }
  | { op: 'delete-slot'; item: number; slot: string }
  | { op: 'schema1-entry'; key: Key; uid: 'low' | 'fresh' | number }
  | { op: 'overwrite-then-delete'; root: string; key: Key }

/** What becomes of the encoded update on its way: nothing, mostly. */
type Mangle = { m: 'none' } | { m: 'truncate'; keep: number } | { m: 'flip'; at: number; xor: number } | { m: 'garbage'; bytes: number[] } | { m: 'v2' }

interface HostileUpdate {
  ops: Op[]
  mangle: Mangle
}

interface HostileCase {
  updates: HostileUpdate[]
}

const sizeArb = fc.oneof(
  { weight: 12, arbitrary: fc.integer({ min: 1024, max: 64 * 1024 }) },
  { weight: 3, arbitrary: fc.integer({ min: MiB, max: 3 * MiB }) },
  { weight: 1, arbitrary: fc.constant(16 * MiB + 1) },
)
const depthArb = fc.oneof({ weight: 8, arbitrary: fc.integer({ min: 2, max: 300 }) }, { weight: 3, arbitrary: fc.integer({ min: 1000, max: 3000 }) }, { weight: 1, arbitrary: fc.constant(7000) })
const numArb = fc.oneof(fc.integer(), fc.double(), fc.constantFrom(2 ** 40, 2 ** 40 - 1, Number.MAX_SAFE_INTEGER, -1, -0, 0.5, Number.NaN, Number.POSITIVE_INFINITY))
const strArb = fc.oneof(fc.string({ maxLength: 20 }), fc.constantFrom('', 'done', 'coding', 'story', '01', '1', '__proto__', '\u0000', '\uD800', '../../x'))

/**
 * Gap 6: lib0 decodes a JSON object's own `__proto__` key by assigning it, so `{"__proto__": bytes}`
 * arrives as an object whose prototype is a Uint8Array: it passes `instanceof Uint8Array`, and
 * reading its byteLength throws (applyUpdate throws a TypeError, synchronously). Steered (unless
 * strict): no `__proto__` key holds bytes.
 */
function steerProto([key, value]: [string, Val]): boolean {
  return !steering(6) || key !== '__proto__' || value.t !== 'bytes'
}

/**
 * Values: small ones nest (JSON-like, bytes, uids, Yjs types where Yjs allows them); the large
 * ones — strings of a few KiB to a few MiB and, now and then, over 16 MiB, and deeply nested
 * JSON — come only at the top of a write, so that a case stays a few MiB.
 */
function valueArbs(bigints: boolean): { plain: fc.Arbitrary<Val>; any: fc.Arbitrary<Val>; entryLike: fc.Arbitrary<Val> } {
  const leaves: Array<fc.Arbitrary<Val>> = [
    fc.constant<Val>({ t: 'null' }),
    fc.constant<Val>({ t: 'undefined' }),
    fc.boolean().map<Val>((v) => ({ t: 'bool', v })),
    numArb.map<Val>((v) => ({ t: 'num', v })),
    strArb.map<Val>((v) => ({ t: 'str', v })),
    fc.record({ n: fc.integer({ min: 0, max: 64 }), fill: fc.integer({ min: 0, max: 255 }) }).map<Val>(({ n, fill }) => ({ t: 'bytes', n, fill })),
    fc.oneof(fc.constantFrom<'fresh' | 'low' | 'garbage'>('fresh', 'low', 'garbage'), fc.nat(7)).map<Val>((which) => ({ t: 'uid', which })),
  ]
  if (bigints) leaves.push(fc.bigInt({ min: -(2n ** 70n), max: 2n ** 70n }).map<Val>((v) => ({ t: 'bigint', v: String(v) })))
  const leaf = fc.oneof(...leaves)
  const { plain } = fc.letrec<{ plain: Val }>((tie) => ({
    plain: fc.oneof(
      { depthSize: 'small', maxDepth: 3, withCrossShrink: true },
      leaf,
      fc.array(fc.tuple(fc.constantFrom(...OBJ_KEYS), tie('plain')), { maxLength: 3 }).map<Val>((entries) => ({ t: 'obj', entries: entries.filter(steerProto) })),
      fc.array(tie('plain'), { maxLength: 3 }).map<Val>((items) => ({ t: 'arr', items })),
    ),
  }))
  const entryLike = fc
    .record({ event: fc.constantFrom(...BOGUS_EVENTS), stage: fc.constantFrom('done', 'backlog', 'coding', 'nowhere', '__proto__'), epoch: fc.constantFrom(0, 1, 99, -1, 1e308), extra: fc.option(plain, { nil: null }) })
    .map<Val>((e) => ({ t: 'entry-like', ...e }))
  const { small } = fc.letrec<{ small: Val }>((tie) => ({
    small: fc.oneof(
      { depthSize: 'small', maxDepth: 2, withCrossShrink: true },
      { weight: 8, arbitrary: plain },
      { weight: 1, arbitrary: strArb.map<Val>((text) => ({ t: 'y-text', text })) },
      { weight: 1, arbitrary: strArb.map<Val>((text) => ({ t: 'y-xml', text })) },
      { weight: 2, arbitrary: fc.array(fc.tuple(fc.constantFrom(...OBJ_KEYS, 'stages', 'content'), tie('small')), { maxLength: 3 }).map<Val>((entries) => ({ t: 'y-map', entries })) },
      { weight: 2, arbitrary: fc.array(tie('small'), { maxLength: 3 }).map<Val>((items) => ({ t: 'y-array', items })) },
      { weight: 2, arbitrary: entryLike },
    ),
  }))
  const large = fc.oneof(
    sizeArb.map<Val>((bytes) => ({ t: 'big-str', bytes })),
    fc.record({ depth: depthArb, array: fc.boolean() }).map<Val>(({ depth, array }) => ({ t: 'deep', depth, array })),
  )
  const any = fc.oneof({ weight: 7, arbitrary: small }, { weight: 1, arbitrary: large })
  return { plain, any, entryLike }
}

const withBigints = valueArbs(true)
/**
 * Gap 2: a stage-entry look-alike (any object with the fields' types, whatever its event) goes
 * into the item's shadow row as it is, and a BigInt in it makes the row unserializable: the write
 * fails and the replica is STORE_CORRUPT until reopened — and, through a server that stored it,
 * at every sync. Steered: no BigInt inside a stage log.
 */
const forStages = steering(2) ? valueArbs(false) : withBigints

const keyArb: fc.Arbitrary<Key> = fc.oneof(
  fc.nat(20).map<Key>((i) => ({ k: 'existing', i })),
  fc.nat(20).map<Key>((i) => ({ k: 'live-id', i })),
  fc.nat(5).map<Key>((n) => ({ k: 'fresh-id', n })),
  fc.constant<Key>({ k: 'fresh-uid' }),
  fc.record({ id: fc.constantFrom(...CLAIM_IDS), uid: fc.constantFrom(...CLAIM_UIDS) }).map<Key>(({ id, uid }) => ({ k: 'claim', id, uid })),
  fc.constantFrom(...LITERAL_KEYS).map<Key>((s) => ({ k: 'literal', s })),
)
const rootArb = fc.oneof({ weight: 6, arbitrary: fc.constantFrom<string>(...KNOWN_ROOTS) }, { weight: 1, arbitrary: fc.constantFrom(...UNKNOWN_ROOTS) })
const itemArb = fc.nat(20)

/**
 * Gap 5: the readers of tombstones and aliases take any value for a plain object. tombstone()
 * (and so the export's header) spreads it: a string becomes one key per character (a 3 MiB one
 * takes seconds per read and a ~40 MB export line), a Y.Map or Y.Array becomes its Yjs internals,
 * which the export cannot serialize (circular), and so is a BigInt inside it; an `id` key in a
 * tombstone's value replaces the id in the export's header (`{ id, ...tombstone }`), so the
 * export loses that tombstone; aliases(oldId) reads a null's oldId (TypeError). Steered (unless
 * strict): at the root of either, no Yjs type, no BigInt, no `id` key, no string over 1 KiB; at
 * the root of aliases, no null or undefined.
 */
function steerSet(op: Extract<Op, { op: 'set' }>): Op {
  if (!steering(5) || (op.root !== 'tombstones' && op.root !== 'aliases')) return op
  const v = op.value
  if (v.t.startsWith('y-') || hasBigint(v) || v.t === 'entry-like' || (v.t === 'obj' && v.entries.some(([k]) => k === 'id')) || (op.root === 'aliases' && (v.t === 'null' || v.t === 'undefined'))) return { ...op, value: { t: 'obj', entries: [] } }
  if (v.t === 'big-str' && v.bytes > 1024) return { ...op, value: { t: 'big-str', bytes: 1024 } }
  return op
}

function hasBigint(v: Val): boolean {
  if (v.t === 'bigint') return true
  if (v.t === 'obj' || v.t === 'y-map') return v.entries.some(([, x]) => hasBigint(x))
  if (v.t === 'arr' || v.t === 'y-array') return v.items.some(hasBigint)
  if (v.t === 'entry-like') return v.extra !== null && hasBigint(v.extra)
  return false
}

const writeOp: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ op: fc.constant('set' as const), root: rootArb, key: keyArb, value: withBigints.any }).map(steerSet) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('as-list' as const), root: rootArb, kind: fc.constantFrom('array' as const, 'text' as const, 'xml' as const), values: fc.array(withBigints.any, { minLength: 1, maxLength: 3 }) }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constant('field' as const), item: itemArb, field: fc.constantFrom(...FIELDS), value: withBigints.any }) },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant('slot' as const),
      item: itemArb,
      slot: fc.constantFrom(...SLOTS),
      // Schema 3 keeps a slot's bytes out of the document, as a reference (crdt/content.ts): one to a blob nobody has.
      value: fc.oneof({ weight: 4, arbitrary: withBigints.any }, { weight: 1, arbitrary: fc.record({ size: fc.nat(100), text: fc.boolean() }).map<Val>(({ size, text }) => ({ t: 'content-ref', size, text })) }),
    }),
  },
  // A schema 1 entry (items/<key>) that is a map holding only a uid: malformed, and hidden as such.
  { weight: 1, arbitrary: fc.record({ op: fc.constant('schema1-entry' as const), key: keyArb, uid: fc.oneof(fc.constantFrom('low' as const, 'fresh' as const), fc.nat(7)) }) },
  {
    weight: 3,
    arbitrary: fc.record({ op: fc.constant('stage-insert' as const), item: itemArb, at: fc.nat(10), values: fc.array(fc.oneof(forStages.any, forStages.entryLike), { minLength: 1, maxLength: 3 }) }),
  },
)
const removeOp: fc.Arbitrary<Op> = fc.oneof(
  { weight: 1, arbitrary: fc.record({ op: fc.constant('overwrite-then-delete' as const), root: fc.constantFrom('tombstones', 'deleted', 'aliases', 'claims', 'records'), key: keyArb }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constant('delete' as const), root: rootArb, key: keyArb }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('clear' as const), root: rootArb }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('delete-record' as const), item: itemArb }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('delete-stages' as const), item: itemArb, at: fc.nat(10), len: fc.integer({ min: 1, max: 10 }) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('delete-field' as const), item: itemArb, field: fc.constantFrom(...FIELDS) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('delete-slot' as const), item: itemArb, slot: fc.constantFrom(...SLOTS) }) },
)
const mangleArb: fc.Arbitrary<Mangle> = fc.oneof(
  { weight: 12, arbitrary: fc.constant<Mangle>({ m: 'none' }) },
  { weight: 1, arbitrary: fc.double({ min: 0, max: 1, noNaN: true }).map<Mangle>((keep) => ({ m: 'truncate', keep })) },
  { weight: 1, arbitrary: fc.record({ at: fc.double({ min: 0, max: 1, noNaN: true }), xor: fc.integer({ min: 1, max: 255 }) }).map<Mangle>(({ at, xor }) => ({ m: 'flip', at, xor })) },
  { weight: 1, arbitrary: fc.array(fc.integer({ min: 0, max: 255 }), { maxLength: 40 }).map<Mangle>((bytes) => ({ m: 'garbage', bytes })) },
  { weight: 1, arbitrary: fc.constant<Mangle>({ m: 'v2' }) },
)
/** Two in three updates only write (so that malformed values get in and must be quarantined); the others also remove. */
const updateArb: fc.Arbitrary<HostileUpdate> = fc.record({
  ops: fc.oneof(
    { weight: 2, arbitrary: fc.array(writeOp, { minLength: 1, maxLength: 3 }) },
    { weight: 1, arbitrary: fc.tuple(fc.array(writeOp, { maxLength: 2 }), fc.array(removeOp, { minLength: 1, maxLength: 2 })).map(([w, r]) => [...w, ...r]) },
  ),
  mangle: mangleArb,
})

function caseArb(maxUpdates: number): fc.Arbitrary<HostileCase> {
  return fc.array(updateArb, { minLength: 1, maxLength: maxUpdates }).map((updates) => {
    const c: HostileCase = { updates }
    return Object.assign(c, { [fc.toStringMethod]: () => showCase(c) })
  })
}

// ───────────────────────────── printing ─────────────────────────────

function showVal(v: Val): string {
  switch (v.t) {
    case 'null':
    case 'undefined':
      return v.t
    case 'bool':
    case 'num':
      return Object.is(v.v, -0) ? '-0' : String(v.v)
    case 'bigint':
      return `${v.v}n`
    case 'str':
      return JSON.stringify(v.v)
    case 'big-str':
      return `<string of ${v.bytes} bytes>`
    case 'deep':
      return `<${v.array ? 'array' : 'object'} nested ${v.depth} deep>`
    case 'obj':
      return `{ ${v.entries.map(([k, x]) => `${JSON.stringify(k.length > 20 ? `${k.slice(0, 8)}…(${k.length})` : k)}: ${showVal(x)}`).join(', ')} }`
    case 'arr':
      return `[${v.items.map(showVal).join(', ')}]`
    case 'bytes':
      return `Uint8Array(${v.n} × 0x${v.fill.toString(16)})`
    case 'uid':
      return typeof v.which === 'number' ? `<uid of fixture item #${v.which}>` : `<${v.which} uid>`
    case 'content-ref':
      return `content-ref{sha256: <no blob has it>, size: ${v.size}, text: ${v.text}}`
    case 'entry-like':
      return `stage-entry-like{event:${JSON.stringify(v.event)}, stage:${JSON.stringify(v.stage)}, epoch:${v.epoch}${v.extra ? `, reason:${showVal(v.extra)}` : ''}}`
    case 'y-text':
      return `Y.Text(${JSON.stringify(v.text)})`
    case 'y-xml':
      return `Y.XmlFragment(${JSON.stringify(v.text)})`
    case 'y-map':
      return `Y.Map{ ${v.entries.map(([k, x]) => `${JSON.stringify(k)}: ${showVal(x)}`).join(', ')} }`
    case 'y-array':
      return `Y.Array[${v.items.map(showVal).join(', ')}]`
  }
}

function showKey(k: Key): string {
  switch (k.k) {
    case 'existing':
      return `<existing key #${k.i}>`
    case 'live-id':
      return `<live id #${k.i}>`
    case 'fresh-id':
      return `<fresh id ${100_000 + k.n}>`
    case 'fresh-uid':
      return '<fresh uid>'
    case 'claim':
      return JSON.stringify(`${k.id}/${k.uid}`)
    case 'literal':
      return JSON.stringify(k.s.length > 20 ? `${k.s.slice(0, 8)}…(${k.s.length} chars)` : k.s)
  }
}

function showOp(op: Op): string {
  const root = (r: string) => JSON.stringify(r)
  switch (op.op) {
    case 'set':
      return `${root(op.root)}[${showKey(op.key)}] = ${showVal(op.value)}`
    case 'as-list':
      return `${root(op.root)} used as a Y.${op.kind} root, inserting ${op.values.map(showVal).join(', ')}`
    case 'field':
      return `records[item #${op.item}].${op.field} = ${showVal(op.value)}`
    case 'slot':
      return `records[item #${op.item}].content[${JSON.stringify(op.slot)}] = ${showVal(op.value)}`
    case 'stage-insert':
      return `records[item #${op.item}].stages.insert(${op.at}, ${op.values.map(showVal).join(', ')})`
    case 'delete':
      return `delete ${root(op.root)}[${showKey(op.key)}]`
    case 'clear':
      return `clear ${root(op.root)}`
    case 'delete-record':
      return `delete records[item #${op.item}] (no deletion recorded)`
    case 'delete-stages':
      return `records[item #${op.item}].stages.delete(${op.at}, ${op.len})`
    case 'delete-field':
      return `delete records[item #${op.item}].${op.field}`
    case 'delete-slot':
      return `delete records[item #${op.item}].content[${JSON.stringify(op.slot)}]`
    case 'schema1-entry':
      return `"items"[${showKey(op.key)}] = Y.Map{ uid: ${showVal({ t: 'uid', which: op.uid })} }`
    case 'overwrite-then-delete':
      return `${root(op.root)}[${showKey(op.key)}] = "overwritten", then deleted (in one update)`
  }
}

function showMangle(m: Mangle): string {
  switch (m.m) {
    case 'none':
      return ''
    case 'truncate':
      return ` — truncated to ${(m.keep * 100).toFixed(0)}% of its bytes`
    case 'flip':
      return ` — byte at ${(m.at * 100).toFixed(0)}% xor 0x${m.xor.toString(16)}`
    case 'garbage':
      return ` — replaced by ${m.bytes.length} garbage bytes`
    case 'v2':
      return ' — sent in the v2 encoding'
  }
}

function showCase(c: HostileCase): string {
  return c.updates.map((u, i) => `\n  update ${i + 1}${showMangle(u.mangle)}:${u.ops.map((op) => `\n    ${showOp(op)}`).join('')}`).join('')
}

// ───────────────────────────── the fixture: a real store with well-formed items ─────────────────────────────

interface BaseItem {
  label: string
  id: string
  uid: string
}

interface Fixture {
  dir: string
  /** Live items, then the deleted one (ops on it find no record). */
  items: BaseItem[]
  deleted: BaseItem
}

let root: string
let fixture: Fixture

const quiet = () => capturingLogger()

async function buildFixture(): Promise<Fixture> {
  const dir = join(root, 'fixture')
  const peer = await openStore({ dir: join(root, 'fixture-peer'), replicaId: PEER, durability: 'relaxed', logger: quiet() })
  const elder = await peer.createItem({ name: 'elder', id: '20' }) // no content: it would have to come from a sync server
  await new Promise((r) => setTimeout(r, 5)) // a later ULID: the victim's item 20 loses the id to the elder
  const store = await openStore({ dir, replicaId: REPLICA, durability: 'relaxed', logger: quiet() })
  const keep = await store.createItem({ name: 'keep', body: 'kept body', content: { notes: 'some notes', blob: new Uint8Array([0xff, 0x00, 0xfe]) } })
  const moved = await store.createItem({ name: 'moved', type: 'bug', body: '---\ntitle: moved\n---\nbody' })
  for (const event of ['start', 'gates_passed', 'accepted'] as const) await store.apply(moved.id, event)
  const again = await store.createItem({ name: 'started twice' })
  for (const event of ['start', 'gates_passed', 'demote', 'start'] as const) await store.apply(again.id, event)
  const done = await store.createItem({ name: 'done', type: 'spike' })
  for (const event of ['start', 'qa_skipped', 'merge_succeeded'] as const) await store.apply(done.id, event)
  const frozen = await store.createItem({ name: 'frozen', agent: 'bot-1', retries: 2, blocked: { reason: 'waiting' }, frozen: true, dependsOn: [keep.id] })
  const gone = await store.createItem({ name: 'gone', body: 'bye' })
  await store.deleteItem(gone.id)
  const collider = await store.createItem({ name: 'collider', id: '20', body: 'collides' })
  await store.applyUpdate(peer.encodeStateAsUpdate(store.encodeStateVector()), PEER)
  await store.flush()
  const items: BaseItem[] = [keep, moved, again, done, frozen, store.getItem(elder.id)!, store.listItems().find((i) => i.uid === collider.uid)!].map((i) => ({ label: i.name, id: i.id, uid: i.uid }))
  // The fixture is what it says: the collider moved to a fresh id, leaving an alias.
  expect(items.find((i) => i.label === 'collider')!.id).not.toBe('20')
  expect(store.aliases()).toHaveLength(1)
  expect(store.getItem('20')?.uid).toBe(elder.uid)
  await store.close()
  await peer.close()
  return { dir, items, deleted: { label: 'gone', id: gone.id, uid: gone.uid } }
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'docket-hostile-'))
  fixture = await buildFixture()
}, 60_000)

afterAll(async () => {
  await rm(root, { recursive: true, force: true })
})

let runs = 0
async function freshCopy(): Promise<string> {
  const dir = join(root, `run-${++runs}`)
  await cp(fixture.dir, dir, { recursive: true })
  return dir
}

// ───────────────────────────── building the peer's update ─────────────────────────────

function buildVal(v: Val): unknown {
  switch (v.t) {
    case 'null':
      return null
    case 'undefined':
      return undefined
    case 'bool':
    case 'num':
    case 'str':
      return v.v
    case 'bigint':
      return BigInt(v.v)
    case 'big-str':
      return 'x'.repeat(v.bytes)
    case 'deep': {
      let out: unknown = 'bottom'
      for (let i = 0; i < v.depth; i++) out = v.array ? [out] : { a: out }
      return out
    }
    case 'obj': {
      const out: Record<string, unknown> = {}
      // defineProperty: "__proto__" becomes an own key, as a peer's JSON would have it
      for (const [k, x] of v.entries) Object.defineProperty(out, k, { value: buildVal(x), enumerable: true, writable: true, configurable: true })
      return out
    }
    case 'arr':
      return v.items.map(buildVal)
    case 'bytes':
      return new Uint8Array(v.n).fill(v.fill)
    case 'uid':
      if (v.which === 'fresh') return FRESH_UID
      if (v.which === 'low') return LOW_UID
      if (v.which === 'garbage') return 'not-a-uid'
      return fixture.items[v.which % fixture.items.length]!.uid
    case 'entry-like': {
      const entry: Record<string, unknown> = { id: '7ZZZZZZZZZZZZZZZZZZZZZZZZX', epoch: v.epoch, stage: v.stage, event: v.event, basedOn: null, by: 'hostile', at: '' }
      if (v.extra) entry.reason = buildVal(v.extra)
      return entry
    }
    case 'content-ref':
      return { sha256: createHash('sha256').update(`dangling ${v.size}`).digest('hex'), size: v.size, text: v.text }
    case 'y-text':
      return new Y.Text(v.text)
    case 'y-xml': {
      const fragment = new Y.XmlFragment()
      const element = new Y.XmlElement('p')
      element.setAttribute('onclick', v.text)
      element.insert(0, [new Y.XmlText(v.text)])
      fragment.insert(0, [element])
      return fragment
    }
    case 'y-map': {
      const map = new Y.Map<unknown>()
      for (const [k, x] of v.entries) map.set(k, insertable(buildVal(x), 'map'))
      return map
    }
    case 'y-array': {
      const array = new Y.Array<unknown>()
      array.push(v.items.map((x) => insertable(buildVal(x), 'list')))
      return array
    }
  }
}

/**
 * What Yjs's API lets a peer insert: it refuses undefined and BigInt as list entries, and any
 * object whose own `constructor` key hides Object's. Those go wrapped in an array (a peer that
 * writes the bytes by hand could send them bare; the readers see them inside JSON values anyway).
 */
function insertable(value: unknown, where: 'list' | 'map'): unknown {
  if (where === 'list' && (value === undefined || typeof value === 'bigint')) return [value]
  if (typeof value === 'object' && value !== null && Object.hasOwn(value, 'constructor')) return [value]
  return value
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- any Yjs type, whatever its events
type AnyType = Y.AbstractType<any>

/** Y's internals, read to tell an overwrite from a removal (as crdt/admission.ts does); any type, a root not typed yet too. */
function entryOf(type: AnyType | undefined, key: string): Y.Item | undefined {
  const item = (type as unknown as { _map?: Map<string, Y.Item> } | undefined)?._map?.get(key)
  return item && !item.deleted ? item : undefined
}

function keysOf(type: AnyType | undefined): string[] {
  const map = (type as unknown as { _map?: Map<string, Y.Item> } | undefined)?._map
  return map ? [...map].filter(([, item]) => !item.deleted).map(([key]) => key) : []
}

function listItemsOf(array: Y.Array<unknown>): Y.Item[] {
  const out: Y.Item[] = []
  for (let n = (array as unknown as { _start: Y.Item | null })._start; n; n = n.right) if (!n.deleted && n.countable) out.push(n)
  return out
}

function typeOf(item: Y.Item | undefined): AnyType | undefined {
  return item && item.content instanceof Y.ContentType ? (item.content.type as AnyType) : undefined
}

/** A root as it is, without giving it a type (a root a peer only received is not typed yet). */
function rootType(doc: Y.Doc, name: string): AnyType | undefined {
  return doc.share.get(name)
}

/** A root as a map, unless this update already made it something else. */
function rootMap(doc: Y.Doc, name: string): Y.Map<unknown> | undefined {
  const existing = doc.share.get(name)
  if (existing === undefined || existing.constructor === Y.AbstractType) return doc.getMap(name)
  return existing instanceof Y.Map ? (existing as Y.Map<unknown>) : undefined
}

/** The live ids of the fixture, for keys. */
function liveIdAt(i: number): string {
  return fixture.items[i % fixture.items.length]!.id
}

function keyFor(rootName: string, map: Y.Map<unknown>, key: Key): string {
  switch (key.k) {
    case 'existing': {
      const keys = [...map.keys()].sort()
      return keys.length === 0 ? 'x' : keys[key.i % keys.length]!
    }
    case 'live-id':
      // A tombstone or a claim of a live id is a deletion or a claim on purpose, which a token
      // holder may do (README, trust model): not a malformed value. Steered to a fresh id.
      if (rootName === 'tombstones') return String(100_000 + key.i)
      if (rootName === 'claims') return `${liveIdAt(key.i)}/${HIGH_UID}`
      return liveIdAt(key.i)
    case 'fresh-id':
      return rootName === 'claims' ? `${100_000 + key.n}/${HIGH_UID}` : String(100_000 + key.n)
    case 'fresh-uid':
      return HIGH_UID
    case 'claim':
      return `${key.id}/${key.uid}`
    case 'literal':
      return key.s
  }
}

interface RecordShape {
  rec: Y.Item | undefined
  stages: Y.Item | undefined
  stageItems: Y.Item[]
  fields: Map<string, Y.Item | undefined>
  content: Y.Item | undefined
  slots: Map<string, Y.Item>
}

function shapeOf(records: AnyType | undefined, uid: string): RecordShape {
  const rec = entryOf(records, uid)
  const map = typeOf(rec)
  const shape: RecordShape = { rec, stages: undefined, stageItems: [], fields: new Map(), content: undefined, slots: new Map() }
  if (!(map instanceof Y.Map)) return shape
  shape.stages = entryOf(map, 'stages')
  const stages = typeOf(shape.stages)
  if (stages instanceof Y.Array) shape.stageItems = listItemsOf(stages)
  for (const f of REQUIRED_FIELDS) shape.fields.set(f, entryOf(map, f))
  shape.content = entryOf(map, 'content')
  const content = typeOf(shape.content)
  if (content instanceof Y.Map) for (const slot of content.keys()) shape.slots.set(slot, entryOf(content, slot)!)
  return shape
}

type Hit = 'record' | 'field' | 'name' | 'type' | 'items-root'

/** What one update does, read from the peer's copy before and after it: the oracle of the checks. */
interface Effects {
  /** Why the update must be refused (a removal from what only grows), if it must. */
  mustRefuse: string[]
  /** Items whose record, required fields or id claim a hostile write touched. */
  hits: Map<string, Set<Hit>>
  /** `${uid}/${slot}` or `${uid}/*`: content the update may change (content is not grow-only). */
  touched: Set<string>
  /** `${root}/${key}` written at the root of records or items. */
  rootWrites: Set<string>
  /** Whether it wrote a content reference to a blob nobody has (gap 10). */
  danglingRefs: boolean
}

function emptyEffects(): Effects {
  return { mustRefuse: [], hits: new Map(), touched: new Set(), rootWrites: new Set(), danglingRefs: false }
}

function mergeEffects(into: Effects, from: Effects): void {
  for (const [uid, hits] of from.hits) for (const h of hits) hit(into, uid, h)
  for (const t of from.touched) into.touched.add(t)
  for (const w of from.rootWrites) into.rootWrites.add(w)
  into.danglingRefs ||= from.danglingRefs
}

function hit(e: Effects, uid: string, h: Hit): void {
  let set = e.hits.get(uid)
  if (!set) e.hits.set(uid, (set = new Set()))
  set.add(h)
}

/**
 * Gap 4: a root key that this very update wrote and then removes passes the grow-only check
 * (the write counts as an overwrite of the old value). Steered: such a removal is skipped.
 */
function writtenNow(doc: Y.Doc, map: Y.Map<unknown>, key: string): boolean {
  return steering(4) && entryOf(map, key)?.id.client === doc.clientID
}

function applyOp(doc: Y.Doc, op: Op): void {
  const itemMap = (i: number): Y.Map<unknown> | undefined => {
    const all = [...fixture.items, fixture.deleted]
    const value = rootMap(doc, 'records')?.get(all[i % all.length]!.uid)
    return value instanceof Y.Map ? (value as Y.Map<unknown>) : undefined
  }
  switch (op.op) {
    case 'set': {
      const map = rootMap(doc, op.root)
      if (map) map.set(keyFor(op.root, map, op.key), insertable(buildVal(op.value), 'map'))
      return
    }
    case 'as-list': {
      const existing = doc.share.get(op.root)
      if (existing !== undefined && existing.constructor !== Y.AbstractType) return
      if (op.kind === 'text') doc.getText(op.root).insert(0, op.values.map(showVal).join(' '))
      else if (op.kind === 'xml') doc.getXmlFragment(op.root).insert(0, [new Y.XmlText(op.values.map(showVal).join(' '))])
      else doc.getArray(op.root).push(op.values.map((x) => insertable(buildVal(x), 'list')))
      return
    }
    case 'field':
      itemMap(op.item)?.set(op.field, insertable(buildVal(op.value), 'map'))
      return
    case 'slot': {
      const content = itemMap(op.item)?.get('content')
      if (content instanceof Y.Map) content.set(op.slot, insertable(buildVal(op.value), 'map'))
      return
    }
    case 'stage-insert': {
      const stages = itemMap(op.item)?.get('stages')
      if (stages instanceof Y.Array) stages.insert(op.at % (stages.length + 1), op.values.map((x) => insertable(buildVal(x), 'list')))
      return
    }
    case 'delete': {
      const map = rootMap(doc, op.root)
      const key = map && keyFor(op.root, map, op.key)
      if (map && key !== undefined && !writtenNow(doc, map, key)) map.delete(key)
      return
    }
    case 'clear': {
      const map = rootMap(doc, op.root)
      if (map && ![...map.keys()].some((key) => writtenNow(doc, map, key))) map.clear()
      return
    }
    case 'delete-record': {
      const all = [...fixture.items, fixture.deleted]
      const map = rootMap(doc, 'records')
      const uid = all[op.item % all.length]!.uid
      if (map && !writtenNow(doc, map, uid)) map.delete(uid)
      return
    }
    case 'delete-stages': {
      const stages = itemMap(op.item)?.get('stages')
      if (stages instanceof Y.Array && stages.length > 0) {
        const at = op.at % stages.length
        stages.delete(at, Math.min(op.len, stages.length - at))
      }
      return
    }
    case 'delete-field':
      itemMap(op.item)?.delete(op.field)
      return
    case 'delete-slot': {
      const content = itemMap(op.item)?.get('content')
      if (content instanceof Y.Map) content.delete(op.slot)
      return
    }
    case 'schema1-entry': {
      const map = rootMap(doc, 'items')
      if (!map) return
      const entry = new Y.Map<unknown>()
      entry.set('uid', buildVal({ t: 'uid', which: op.uid }))
      map.set(keyFor('items', map, op.key), entry)
      return
    }
    case 'overwrite-then-delete': {
      const map = rootMap(doc, op.root)
      if (!map) return
      const key = keyFor(op.root, map, op.key)
      map.set(key, 'overwritten')
      if (!writtenNow(doc, map, key)) map.delete(key)
      return
    }
  }
}

/**
 * The update a peer holding `base` sends after `u`, and what it does (read from the peer's copy:
 * a removal is a key that is gone with nothing in its place, as the admission check sees it).
 */
function hostileUpdate(base: Uint8Array, stateVector: Uint8Array, u: HostileUpdate, clientId: number): { bytes: Uint8Array | undefined; effects: Effects; error?: string } {
  const peer = new Y.Doc()
  peer.clientID = clientId
  Y.applyUpdate(peer, base)
  const records = () => rootType(peer, 'records')
  const grow = new Map(GROW_ONLY.map((r) => [r, new Map(keysOf(rootType(peer, r)).map((k) => [k, entryOf(rootType(peer, r), k)!]))] as const))
  const rootItems = new Map((['records', 'items'] as const).map((r) => [r, new Map(keysOf(rootType(peer, r)).map((k) => [k, entryOf(rootType(peer, r), k)]))] as const))
  const before = new Map(fixture.items.map((i) => [i.uid, shapeOf(records(), i.uid)]))
  const effects = emptyEffects()
  effects.danglingRefs = u.ops.some((op) => op.op === 'slot' && op.value.t === 'content-ref')
  try {
    // Lists first: once a root is used as a map it can no longer be used as a list.
    peer.transact(() => {
      for (const op of u.ops) if (op.op === 'as-list') applyOp(peer, op)
      for (const op of u.ops) if (op.op !== 'as-list') applyOp(peer, op)
    })
  } catch (err) {
    peer.destroy()
    return { bytes: undefined, effects, error: `the peer could not make this change: ${(err as Error).message}` }
  }
  for (const [rootName, entries] of grow) {
    for (const [key] of entries) if (!entryOf(rootType(peer, rootName), key)) effects.mustRefuse.push(`it removes ${rootName}/${JSON.stringify(key)}`)
  }
  for (const item of fixture.items) {
    const pre = before.get(item.uid)!
    const now = shapeOf(records(), item.uid)
    if (!now.rec) {
      if (!entryOf(rootType(peer, 'deleted'), item.uid)) effects.mustRefuse.push(`it removes item ${item.label} without recording its deletion`)
      continue
    }
    if (now.rec !== pre.rec) {
      hit(effects, item.uid, 'record')
      effects.touched.add(`${item.uid}/*`)
      continue
    }
    if (now.stages !== pre.stages) effects.mustRefuse.push(`it replaces or removes the stage log of ${item.label}`)
    else if (pre.stageItems.some((s) => s.deleted)) effects.mustRefuse.push(`it removes stage entries of ${item.label}`)
    for (const f of REQUIRED_FIELDS) if (now.fields.get(f) !== pre.fields.get(f)) hit(effects, item.uid, f === 'name' ? 'name' : f === 'type' ? 'type' : 'field')
    if (now.content !== pre.content) effects.touched.add(`${item.uid}/*`)
    else for (const [slot, s] of pre.slots) if (now.slots.get(slot) !== s) effects.touched.add(`${item.uid}/${slot}`)
  }
  for (const [rootName, entries] of rootItems) {
    const type = rootType(peer, rootName)
    for (const key of keysOf(type)) {
      const now = entryOf(type, key)
      if (!now || now === entries.get(key)) continue
      effects.rootWrites.add(`${rootName}/${key}`)
      if (rootName !== 'items') continue
      // Gap 3: a schema 1 entry claims its key for the uid it holds, however malformed it is.
      const holder = fixture.items.find((i) => i.id === key)
      if (holder) hit(effects, holder.uid, 'items-root')
      const value = typeOf(now)
      const uid = value instanceof Y.Map ? value.get('uid') : undefined
      const named = fixture.items.find((i) => i.uid === uid)
      if (named) hit(effects, named.uid, 'items-root')
    }
  }
  try {
    const bytes = Y.encodeStateAsUpdate(peer, stateVector)
    return { bytes: u.mangle.m === 'v2' ? Y.encodeStateAsUpdateV2(peer, stateVector) : mangle(bytes, u.mangle), effects }
  } catch (err) {
    // A value nested deeper than the encoder's stack: the peer cannot send it at all.
    return { bytes: undefined, effects, error: `the peer could not encode this change: ${(err as Error).message}` }
  } finally {
    peer.destroy()
  }
}

function mangle(bytes: Uint8Array, m: Mangle): Uint8Array {
  switch (m.m) {
    case 'none':
    case 'v2':
      return bytes
    case 'truncate':
      return bytes.slice(0, Math.floor(bytes.length * m.keep))
    case 'flip': {
      const out = bytes.slice()
      if (out.length > 0) out[Math.min(out.length - 1, Math.floor(out.length * m.at))]! ^= m.xor
      return out
    }
    case 'garbage':
      return new Uint8Array(m.bytes)
  }
}

// ───────────────────────────── what must hold ─────────────────────────────

interface Snapshot {
  items: Array<BaseItem & { name: string; type: string; stage: string; slots: Map<string, Buffer> }>
  uids: Set<string>
  tombstoned: string[]
  grow: Record<GrowRoot, Set<string>>
  stageIds: Map<string, string[]>
  /** Every id ever claimed or tombstoned: never issued again. */
  used: Set<string>
  refusedAudits: number
}

function docOf(store: Store): Y.Doc {
  const doc = new Y.Doc()
  Y.applyUpdate(doc, store.encodeStateAsUpdate())
  return doc
}

function stageIdsOf(doc: Y.Doc, uid: string): string[] | undefined {
  const rec = doc.getMap('records').get(uid)
  const stages = rec instanceof Y.Map ? rec.get('stages') : undefined
  if (!(stages instanceof Y.Array)) return undefined
  return stages.toArray().flatMap((e) => (typeof e === 'object' && e !== null && typeof (e as { id?: unknown }).id === 'string' ? [(e as { id: string }).id] : []))
}

async function snapshot(store: Store): Promise<Snapshot> {
  const items: Snapshot['items'] = []
  for (const base of fixture.items) {
    const item = store.getItem(base.id)!
    expect(item, `fixture item ${base.label}`).toMatchObject({ uid: base.uid })
    const slots = new Map<string, Buffer>()
    for (const slot of store.contentSlots(base.id)) slots.set(slot, Buffer.from((await store.readContentBytes(base.id, slot))!))
    items.push({ ...base, name: item.name, type: item.type, stage: item.stage, slots })
  }
  const doc = docOf(store)
  const grow = Object.fromEntries(GROW_ONLY.map((r) => [r, new Set(doc.getMap(r).keys())])) as Snapshot['grow']
  const stageIds = new Map(fixture.items.map((i) => [i.uid, stageIdsOf(doc, i.uid)!]))
  const used = new Set<string>([...grow.tombstones, ...[...grow.claims].map((k) => k.split('/')[0]!)])
  doc.destroy()
  return {
    items,
    uids: new Set(fixture.items.map((i) => i.uid)),
    tombstoned: store.tombstonedIds(),
    grow,
    stageIds,
    used,
    refusedAudits: (await collect(store.audit({ kinds: ['update_refused'] }))).length,
  }
}

interface CheckOptions {
  phase: string
  /** The replica that held the items before (its shadow rows are their last good copies). */
  holder: boolean
  /**
   * Refusals this replica must have audited and kept: distinct updates (one sent again, as a
   * server does on every reconnect, is recorded once per process).
   */
  refusals?: number
  log: (line: string) => void
}

/** Runs one step of a check; a throw says which step threw (assertion failures say it themselves). */
async function step<T>(what: string, fn: () => T | Promise<T>): Promise<T> {
  try {
    return await fn()
  } catch (err) {
    if ((err as Error)?.name === 'AssertionError') throw err
    throw new Error(`${what} threw ${describeError(err)}`, { cause: err })
  }
}

/** Reads everything a user can read; a throw that is not a documented DocketError fails the case. */
async function readAll(store: Store, phase: string): Promise<Item[]> {
  const items = store.listItems()
  for (const item of items) {
    expect(store.getItem(item.id), `${phase}: getItem(${item.id})`).toEqual(item)
    store.stageHistory(item.id)
    store.validEvents(item.id)
    for (const slot of store.contentSlots(item.id)) {
      // A slot a peer made up may not read (bytes that are no text, content that is not here):
      // that is a documented DocketError; anything else fails.
      for (const read of [() => store.readContentBytes(item.id, slot), () => store.readContent(item.id, slot)]) {
        await read().catch((err: unknown) => {
          if (!isDocketError(err)) throw err
        })
      }
    }
  }
  store.listItems({ ready: true })
  store.aliases()
  for (const id of new Set([...items.map((i) => i.id), ...fixture.items.map((i) => i.id), '20'])) store.aliases(id)
  store.stats()
  for (const id of store.tombstonedIds()) store.tombstone(id)
  await collect(store.audit())
  return items
}

async function checkReplica(store: Store, base: Snapshot, effects: Effects, o: CheckOptions): Promise<void> {
  const { phase } = o
  const items = await step(`${phase}: reading every item`, () => readAll(store, phase))
  const byUid = new Map<string, Item>(items.map((i) => [i.uid, i]))
  // Nothing a peer wrote shows as an item.
  for (const item of items) expect(base.uids.has(item.uid), `${phase}: item ${item.id} (${item.name}) is none of the fixture's: a hostile value shows as an item`).toBe(true)
  const report = await step(`${phase}: verify()`, () => store.verify())
  const malformed = new Set(report.malformed.map((m) => `${m.root}/${m.key}`))
  for (const b of base.items) {
    const hits = effects.hits.get(b.uid) ?? new Set<Hit>()
    const item = byUid.get(b.uid)
    const what = `${phase}: fixture item ${b.label} (id ${b.id}, hit by ${[...hits].join(', ') || 'nothing'})`
    const hidable = hits.has('record') || hits.has('field') || hits.has('name') || hits.has('type')
    // Gap 3: a schema 1 entry claims its key for the uid it holds even when it is malformed (and
    // hidden as such): it displaces a live item — to a fresh id if this replica created it, to
    // nowhere until its creator comes back if not — or renumbers one. Steered: such an item may
    // show under another id, or not at all.
    const displaced = steering(3) && hits.has('items-root')
    if (!item) {
      if (displaced && !hidable) continue
      // By design: an item whose record a peer made unreadable is hidden, quarantined, and its rows kept.
      expect(hidable, `${what} is gone`).toBe(true)
      expect(malformed.has(`records/${b.uid}`), `${what} is hidden but verify() does not report records/${b.uid} as malformed`).toBe(true)
      expect(store.getItem(b.id)?.uid === b.uid, `${what}`).toBe(false)
      if (o.holder && !displaced) {
        const shadow = await store.maintenance.readShadowRow(b.id)
        expect(shadow && 'row' in shadow ? { uid: shadow.row.uid, name: shadow.row.name, stage: shadow.row.stage } : shadow, `${what}: its last good copy (shadow row) is kept`).toEqual({ uid: b.uid, name: b.name, stage: b.stage })
      }
      continue
    }
    expect(item.id === b.id || displaced, `${what} shows as id ${item.id}`).toBe(true)
    expect(item.stage, `${what}: its stage`).toBe(b.stage)
    if (!hits.has('name')) expect(item.name, `${what}: its name`).toBe(b.name)
    if (!hits.has('type')) expect(item.type, `${what}: its type`).toBe(b.type)
    for (const [slot, bytes] of b.slots) {
      if (effects.touched.has(`${b.uid}/*`) || effects.touched.has(`${b.uid}/${slot}`)) continue
      const now = await store.readContentBytes(item.id, slot)
      expect(now && Buffer.from(now).equals(bytes), `${what}: slot ${slot} reads as it was`).toBe(true)
    }
  }
  for (const id of base.tombstoned) {
    expect(store.isTombstoned(id), `${phase}: id ${id} is still tombstoned`).toBe(true)
    expect(store.getItem(id), `${phase}: tombstoned id ${id} shows an item`).toBeUndefined()
  }
  // Grow-only, in the document itself.
  const doc = docOf(store)
  const unaudited = new Set<string>()
  try {
    for (const r of GROW_ONLY) {
      const now = new Set(doc.getMap(r).keys())
      const lost = [...base.grow[r]].filter((k) => !now.has(k))
      expect(lost, `${phase}: ${r} lost keys`).toEqual([])
    }
    for (const b of base.items) {
      if (effects.hits.get(b.uid)?.has('record')) continue // replaced whole, by design hidden (above)
      const now = new Set(stageIdsOf(doc, b.uid) ?? [])
      const lost = base.stageIds.get(b.uid)!.filter((id) => !now.has(id))
      expect(lost, `${phase}: the stage log of ${b.label} lost entries`).toEqual([])
    }
    // Quarantine: every entry of records or items that is no live item, nor deleted, is reported.
    const live = new Set<string>(items.map((i) => i.uid))
    const deleted = doc.getMap('deleted')
    for (const key of doc.getMap('records').keys()) {
      if (live.has(key) || deleted.has(key)) continue
      if (steering(3) && effects.hits.get(key)?.has('items-root') && !malformed.has(`records/${key}`)) continue // displaced, awaiting its creator
      expect(malformed.has(`records/${key}`), `${phase}: records/${JSON.stringify(key)} is neither an item nor reported malformed`).toBe(true)
    }
    for (const key of doc.getMap('items').keys()) expect(malformed.has(`items/${key}`), `${phase}: items/${JSON.stringify(key)} is not reported malformed`).toBe(true)
    // Gap 7: an entry whose value is `undefined` is reported by verify() but never audited
    // (capture takes `undefined` for "no value"). Steered: not required.
    for (const key of effects.rootWrites) {
      const [rootName, ...rest] = key.split('/')
      if (steering(7) && doc.getMap(rootName!).has(rest.join('/')) && doc.getMap(rootName!).get(rest.join('/')) === undefined) unaudited.add(key)
    }
  } finally {
    doc.destroy()
  }
  const audited = await collect(store.audit({ kinds: ['malformed_entry'] }))
  const reported = new Set(audited.map((e) => `${String(e.data.root)}/${String(e.data.key)}`))
  for (const key of effects.rootWrites) if (malformed.has(key) && !unaudited.has(key)) expect(reported.has(key), `${phase}: malformed ${key} was not audited`).toBe(true)
  if (o.refusals !== undefined) {
    const refused = await collect(store.audit({ kinds: ['update_refused'] }))
    expect(refused.length, `${phase}: update_refused events`).toBe(base.refusedAudits + o.refusals)
    expect(store.syncState().refusedUpdates, `${phase}: syncState().refusedUpdates`).toBe(base.refusedAudits + o.refusals)
  }
  // No id is issued again.
  const next = await step(`${phase}: peekNextId()`, () => orExhausted(() => store.peekNextId()))
  if (next !== undefined) expect(base.used.has(next), `${phase}: the next id ${next} was used before`).toBe(false)
  // An export works, and holds every item and tombstone.
  const lines: string[] = []
  const summary = await step(`${phase}: the JSONL export`, () =>
    unlessDangling(effects, o, () =>
      exportJsonl(store, (line) => {
        lines.push(line)
      }),
    ),
  )
  o.log(`${phase}: ${items.length} items, ${report.malformed.length} malformed entries quarantined${report.ok ? '' : ' (verify: not ok)'}`)
  if (summary === undefined) return
  expect(summary.items, `${phase}: exported items`).toBe(items.length)
  const header = JSON.parse(lines[0]!) as { tombstones: Array<{ id: string }> }
  const exportedTombs = new Set(header.tombstones.map((t) => t.id))
  for (const id of base.tombstoned) expect(exportedTombs.has(id), `${phase}: export lost tombstone ${id}`).toBe(true)
  for (const line of lines.slice(1)) JSON.parse(line)
}

/**
 * Gap 9: one allocator mark, claim or tombstone at 2^40 − 1 (the highest id, so not refused)
 * exhausts the id space: peekNextId and createItem throw INVALID_INPUT. Steered: undefined.
 */
async function orExhausted<T>(fn: () => T | Promise<T>): Promise<T | undefined> {
  try {
    return await fn()
  } catch (err) {
    if (steering(9) && isDocketError(err, 'INVALID_INPUT') && err.message.includes('exhausted')) return undefined
    throw err
  }
}

/**
 * Gap 10 (schema 3, issue 11's work in progress): a slot that references a blob nobody has makes
 * the whole export fail with CONTENT_UNAVAILABLE — one bogus reference from a token holder, and
 * no replica can export. Steered: after such a write, that failure is logged, not failed.
 */
async function unlessDangling<T>(effects: Effects, o: CheckOptions, fn: () => Promise<T>): Promise<T | undefined> {
  try {
    return await fn()
  } catch (err) {
    if (steering(10) && effects.danglingRefs && isDocketError(err) && (err.code as string) === 'CONTENT_UNAVAILABLE') {
      o.log(`${o.phase}: the export failed on a dangling content reference (gap 10)`)
      return undefined
    }
    throw err
  }
}

/** Closes, reopens the same directory (no sync), checks again, exports as folders, creates one item. */
async function reopenAndCheck(dir: string, base: Snapshot, effects: Effects, o: CheckOptions): Promise<void> {
  const store = await step(`${o.phase}: openStore`, () => openStore({ dir, durability: 'relaxed', logger: quiet() }))
  try {
    await checkReplica(store, base, effects, o)
    const out = join(root, `export-${runs}`)
    await step(`${o.phase}: the folder export`, () => unlessDangling(effects, o, () => exportFolders(store, out)))
    for (const file of await readdir(out, { recursive: true }).catch(() => [])) expect(relative(out, resolve(out, file)).startsWith('..'), `export wrote ${file} outside its folder`).toBe(false)
    await rm(out, { recursive: true, force: true })
    // Repairs still work: discovery runs, and finds every hidden item's last good copy.
    const discovery = await step(`${o.phase}: discoverOrphans`, () => discoverOrphans(store))
    const orphans = new Set(discovery.orphans.map((orphan) => orphan.uid))
    for (const b of base.items) {
      const shown = store.listItems().some((i) => i.uid === b.uid)
      const displaced = steering(3) && effects.hits.get(b.uid)?.has('items-root')
      if (!shown && o.holder && !displaced) expect(orphans.has(b.uid as Uid), `${o.phase}: hidden item ${b.label} is not found by discoverOrphans`).toBe(true)
    }
    const created = await step(`${o.phase}: createItem`, () => orExhausted(() => store.createItem({ name: 'after the attack' })))
    if (created) {
      expect(base.used.has(created.id), `${o.phase}: createItem reissued id ${created.id}`).toBe(false)
      expect(store.getItem(created.id)?.name).toBe('after the attack')
    } else o.log(`${o.phase}: the id space is exhausted (gap 9)`)
  } finally {
    await store.close()
  }
  const refused = (await readRawRows(dir)).filter((r) => r.sublevel === 'refused').length
  if (o.refusals !== undefined) expect(refused, `${o.phase}: refused updates kept as evidence`).toBe(o.refusals)
}

function describeError(err: unknown): string {
  if (isDocketError(err)) return `${err.code}: ${err.message.slice(0, 160)}`
  return `${(err as Error)?.name ?? typeof err}: ${String((err as Error)?.message ?? err).slice(0, 160)}`
}

// ───────────────────────────── (a) delivered with applyUpdate ─────────────────────────────

describe('hostile updates from a peer (generated)', () => {
  const direct = 'a replica that applies hostile updates still opens, reads, exports; nothing grow-only shrinks; refusals are audited'
  it(direct, async () => {
    await fc.assert(
      fc.asyncProperty(caseArb(4), fc.context(), async (c, ctx) => {
        const log = logger(ctx, c)
        const dir = await freshCopy()
        const effects = emptyEffects()
        const refused = new Set<string>()
        let store: Store | undefined = await openStore({ dir, durability: 'relaxed', logger: quiet() })
        try {
          const base = await snapshot(store)
          for (const [i, u] of c.updates.entries()) {
            const built = hostileUpdate(store.encodeStateAsUpdate(), store.encodeStateVector(), u, 900_000 + i)
            if (!built.bytes) {
              log(`update ${i + 1}: not sent (${built.error})`)
              continue
            }
            const bytes = built.bytes
            const refusedAs = (err: unknown): string => {
              if (!isDocketError(err)) throw new Error(`update ${i + 1}: applyUpdate threw ${describeError(err)}`, { cause: err })
              if (err.code === 'UPDATE_REFUSED') refused.add(createHash('sha256').update(bytes).digest('hex'))
              return describeError(err)
            }
            // Through a promise: a synchronous throw fails the case like a rejection.
            const outcome = await Promise.resolve()
              .then(() => store!.applyUpdate(bytes, 'hostile-peer'))
              .then(() => 'admitted', refusedAs)
            log(`update ${i + 1} (${built.bytes.length} bytes): ${outcome}${built.effects.mustRefuse.length ? ` — must be refused: ${built.effects.mustRefuse.join('; ')}` : ''}`)
            if (built.effects.mustRefuse.length > 0 && u.mangle.m === 'none') expect(outcome, `update ${i + 1} removes what only grows`).toMatch(/^UPDATE_REFUSED/)
            if (!outcome.startsWith('UPDATE_REFUSED')) mergeEffects(effects, built.effects)
            if (outcome !== 'admitted' && !/^(UPDATE_REFUSED|INVALID_INPUT)/.test(outcome)) throw new Error(`applyUpdate failed with ${outcome}`)
          }
          await step('flush', () => store!.flush())
          await checkReplica(store, base, effects, { phase: 'live', holder: true, refusals: refused.size, log })
          await store.close()
          store = undefined
          await reopenAndCheck(dir, base, effects, { phase: 'reopened', holder: true, refusals: refused.size, log })
        } finally {
          await store?.close()
          await rm(dir, { recursive: true, force: true })
        }
      }),
      propertyParameters(direct, { runs: 30 }),
    )
  }, 900_000)
})

// ───────────────────────────── (b) through a real sync server ─────────────────────────────

const TOKEN = 'hostile-test-token'

function varUint(n: number): number[] {
  const out: number[] = []
  while (n > 0x7f) {
    out.push(0x80 | (n & 0x7f))
    n = Math.floor(n / 128)
  }
  out.push(n)
  return out
}

/** Hocuspocus's framing of a Yjs update (document name, Sync, y-protocols' update message). */
function updateFrame(documentName: string, update: Uint8Array): Uint8Array {
  const name = Buffer.from(documentName, 'utf8')
  return Buffer.concat([Buffer.from(varUint(name.length)), name, Buffer.from([0, 2]), Buffer.from(varUint(update.length)), update])
}

/** An update that only marks meta/probe-n, from a client of its own: it arrives after what was sent before it. */
function sentinel(n: number): Uint8Array {
  const doc = new Y.Doc()
  doc.clientID = 800_000 + n
  doc.getMap('meta').set(`probe-${n}`, n)
  const update = Y.encodeStateAsUpdate(doc)
  doc.destroy()
  return update
}

function hasClient(store: Store, client: number): boolean {
  return (Y.decodeStateVector(store.encodeStateVector()).get(client) ?? 0) > 0
}

/**
 * A raw Hocuspocus client with the token: authenticates, then sends `update` as it is, and a
 * sentinel after it. Resolves with how the server took it.
 */
async function sendThroughServer(url: string, victim: Store, update: Uint8Array, n: number): Promise<string> {
  const doc = new Y.Doc()
  const socket = new HocuspocusProviderWebsocket({ url, WebSocketPolyfill: WebSocket })
  const provider = new HocuspocusProvider({ websocketProvider: socket, name: 'docket', document: doc, token: JSON.stringify({ schema: SCHEMA_VERSION, token: TOKEN }) })
  let closed: { code: number; reason: string } | undefined
  provider.on('close', ({ event }: { event: { code: number; reason: string } }) => (closed ??= { code: event.code, reason: String(event.reason) }))
  provider.attach()
  try {
    await new Promise<void>((resolveSynced, reject) => {
      const timer = setTimeout(() => reject(new Error('the attacker did not get synced')), 10_000)
      provider.on('synced', () => {
        clearTimeout(timer)
        resolveSynced()
      })
    })
    const refusedBefore = victim.syncState().refusedUpdates
    socket.send(updateFrame('docket', update))
    socket.send(updateFrame('docket', sentinel(n)))
    const deadline = Date.now() + 8_000
    for (;;) {
      if (closed) return `connection closed (${closed.code}${closed.reason ? `: ${closed.reason}` : ''})`
      if (hasClient(victim, 800_000 + n)) {
        await victim.flush()
        return victim.syncState().refusedUpdates > refusedBefore ? 'forwarded, refused by the replica' : 'forwarded'
      }
      if (Date.now() > deadline) return 'no answer within 8 s'
      await new Promise((r) => setTimeout(r, 20))
    }
  } finally {
    provider.destroy()
    socket.destroy()
    doc.destroy()
  }
}

describe('hostile updates through a real sync server (generated)', () => {
  const name = 'through docket serve: the server refuses what rewrites history, the replica and a fresh one stay whole'
  it(name, async () => {
    await fc.assert(
      fc.asyncProperty(caseArb(3), fc.context(), async (c, ctx) => {
        const log = logger(ctx, c)
        const dir = await freshCopy()
        const warnings: string[] = []
        const server: RunningServer = await startServer({
          dir: join(root, `server-${runs}`),
          port: 0,
          token: TOKEN,
          debounceMs: 50,
          maxDebounceMs: 200,
          admit: updateRefusal,
          logger: { info: () => {}, warn: (m) => warnings.push(m) },
        })
        const sync = { url: server.url, token: TOKEN, minReconnectDelayMs: 50, maxReconnectDelayMs: 300 }
        const effects = emptyEffects()
        let victim: Store | undefined
        let fresh: Store | undefined
        try {
          victim = await openStore({ dir, durability: 'relaxed', logger: quiet(), sync })
          await victim.whenSynced(10_000)
          const base = await snapshot(victim)
          let serverRefusals = 0
          for (const [i, u] of c.updates.entries()) {
            const built = hostileUpdate(victim.encodeStateAsUpdate(), victim.encodeStateVector(), u, 900_000 + i)
            if (!built.bytes) {
              log(`update ${i + 1}: not sent (${built.error})`)
              continue
            }
            const outcome = await sendThroughServer(server.url, victim, built.bytes, i)
            log(`update ${i + 1} (${built.bytes.length} bytes): ${outcome}${built.effects.mustRefuse.length ? ` — must be refused: ${built.effects.mustRefuse.join('; ')}` : ''}`)
            if (outcome.includes('update-refused')) serverRefusals++
            if (built.effects.mustRefuse.length > 0 && u.mangle.m === 'none') expect(outcome, `update ${i + 1} removes what only grows`).toMatch(/update-refused/)
            if (!outcome.includes('update-refused')) mergeEffects(effects, built.effects)
          }
          await victim.flush()
          // The server logged each refusal; the replica counted and audited each of its own.
          expect(warnings.filter((w) => w.includes('refused an update')).length, 'server refusals logged').toBe(serverRefusals)
          const bySync = (await collect(victim.audit({ kinds: ['update_refused'] }))).filter((e) => String(e.data.source).startsWith('sync:')).length
          expect(victim.syncState().refusedUpdates, 'refusedUpdates counts the refusals that came through sync').toBe(bySync)
          const refusals = bySync
          await checkReplica(victim, base, effects, { phase: 'victim, live', holder: true, refusals, log })
          await victim.close()
          victim = undefined
          await reopenAndCheck(dir, base, effects, { phase: 'victim, reopened', holder: true, refusals, log })
          // A replica that starts from what the server kept.
          fresh = await openStore({ dir: join(root, `fresh-${runs}`), replicaId: 'fresh', durability: 'relaxed', logger: quiet(), sync })
          await fresh.whenSynced(10_000).catch((err: unknown) => log(`fresh replica: ${describeError(err)}`))
          await fresh.flush()
          await checkReplica(fresh, base, effects, { phase: 'fresh replica', holder: false, log })
        } finally {
          await victim?.close()
          await fresh?.close()
          await server.close()
          await rm(dir, { recursive: true, force: true })
        }
      }),
      propertyParameters(name, { runs: 4, extensiveRuns: 40 }),
    )
  }, 300_000)
})

// ───────────────────────────── found by the hostile property ─────────────────────────────

/**
 * Product bugs the properties above found, each as the smallest case that shows it. They FAIL
 * until the product is fixed (do not skip them); the properties steer around them meanwhile
 * (see KNOWN GAPS at the top). Seeds: the properties' own (printed), FC_SEED to replay.
 */
describe('found by the hostile property (regression tests of the gaps it found)', () => {
  async function prepared(): Promise<{ dir: string; store: Store & { log: { lines: string[] } }; done: Item; deleted: Item }> {
    const dir = await tempDir()
    const store = await testStore({ dir })
    const done = await store.createItem({ name: 'done', body: 'body' })
    for (const event of ['start', 'qa_skipped', 'merge_succeeded'] as const) await store.apply(done.id, event)
    const deleted = await store.createItem({ name: 'deleted' })
    await store.deleteItem(deleted.id)
    return { dir, store, done: store.getItem(done.id)!, deleted }
  }

  const rejectsOnlyWith = async (promise: () => Promise<unknown>, ...codes: string[]): Promise<string> => {
    try {
      await promise()
      return 'admitted'
    } catch (err) {
      expect(isDocketError(err) && codes.includes(err.code), `applyUpdate failed with ${describeError(err)}`).toBe(true)
      return (err as { code: string }).code
    }
  }

  it('gap 1: a truncated update is refused whole — nothing of its first bytes lands (regression: HEAD applied its structs and the start of its delete set)', async () => {
    const { dir, done, deleted, store } = await prepared()
    const update = peerTx(store.encodeStateAsUpdate(), (doc) => {
      doc.getMap('tombstones').delete(deleted.id)
      doc.getMap('records').delete(done.uid)
    })
    await rejectsOnlyWith(() => store.applyUpdate(update.slice(0, update.length - 1), 'peer'), 'UPDATE_REFUSED', 'INVALID_INPUT')
    await store.close()
    const reopened = await testStore({ dir })
    expect(reopened.isTombstoned(deleted.id)).toBe(true)
    expect(reopened.getItem(done.id)).toMatchObject({ uid: done.uid, stage: 'done' })
  })

  it('gap 2: a stage-entry look-alike holding a BigInt leaves the replica working (it made every read STORE_CORRUPT until reopened)', async () => {
    const { store, done } = await prepared()
    const update = peerTx(store.encodeStateAsUpdate(), (doc) => {
      const stages = doc.getMap<Y.Map<unknown>>('records').get(done.uid)!.get('stages') as Y.Array<unknown>
      stages.push([{ id: HIGH_UID, epoch: 0, stage: 'done', event: 'bogus', basedOn: null, by: 'hostile', at: '', reason: 10n }])
    })
    await rejectsOnlyWith(() => store.applyUpdate(update, 'peer'), 'UPDATE_REFUSED')
    await store.flush()
    expect(store.getItem(done.id)).toMatchObject({ uid: done.uid, stage: 'done' })
    const lines: string[] = []
    await exportJsonl(store, (line) => {
      lines.push(line)
    })
  })

  it('gap 3: a malformed schema 1 entry (a map holding only a uid) claims no id — a live item keeps its id', async () => {
    const { store, done } = await prepared()
    const update = peerTx(store.encodeStateAsUpdate(), (doc) => {
      const displacing = new Y.Map<unknown>()
      displacing.set('uid', LOW_UID) // older than every item: its implied claim wins the id
      doc.getMap('items').set(done.id, displacing)
    })
    await rejectsOnlyWith(() => store.applyUpdate(update, 'peer'), 'UPDATE_REFUSED')
    await store.flush()
    expect(store.getItem(done.id)?.uid, 'the id went to a malformed entry').toBe(done.uid)
    expect(store.aliases()).toEqual([])
  })

  it('gap 3 (bis): a malformed schema 1 entry holding an item\'s uid does not renumber that item', async () => {
    const { store, done } = await prepared()
    const update = peerTx(store.encodeStateAsUpdate(), (doc) => {
      const renumbering = new Y.Map<unknown>()
      renumbering.set('uid', done.uid)
      doc.getMap('items').set('999', renumbering)
    })
    await rejectsOnlyWith(() => store.applyUpdate(update, 'peer'), 'UPDATE_REFUSED')
    await store.flush()
    expect(store.getItem(done.id)?.uid).toBe(done.uid)
    expect(store.getItem('999')).toBeUndefined()
  })

  it('gap 4: an update that writes a tombstone, or an item\'s record, and removes it again is refused (the write made the removal pass as an overwrite)', async () => {
    const { dir, store, done, deleted } = await prepared()
    const update = peerTx(store.encodeStateAsUpdate(), (doc) => {
      doc.getMap('tombstones').set(deleted.id, 'overwritten')
      doc.getMap('tombstones').delete(deleted.id)
      doc.getMap('records').set(done.uid, 'overwritten')
      doc.getMap('records').delete(done.uid)
    })
    expect(await rejectsOnlyWith(() => store.applyUpdate(update, 'peer'), 'UPDATE_REFUSED')).toBe('UPDATE_REFUSED')
    await store.close()
    const reopened = await testStore({ dir })
    expect(reopened.isTombstoned(deleted.id)).toBe(true)
    expect(reopened.getItem(done.id)).toMatchObject({ uid: done.uid, stage: 'done' })
  })

  it('gap 5: a tombstone or an alias that is no object — tombstone(), aliases(oldId) and the export stay whole and small', async () => {
    const { store, done } = await prepared()
    const update = peerTx(store.encodeStateAsUpdate(), (doc) => {
      doc.getMap('tombstones').set('100001', 'x'.repeat(MiB)) // spread: a million keys per read
      doc.getMap('tombstones').set('100002', new Y.Array()) // spread: Yjs internals, circular
      doc.getMap('aliases').set(`${done.id}/${HIGH_UID}`, null) // aliases(oldId) reads null.oldId
    })
    await rejectsOnlyWith(() => store.applyUpdate(update, 'peer'), 'UPDATE_REFUSED')
    await store.flush()
    expect(() => store.aliases(done.id)).not.toThrow()
    for (const id of store.tombstonedIds()) expect(JSON.stringify(store.tombstone(id) ?? null).length, `tombstone(${id})`).toBeLessThan(10_000)
    const lines: string[] = []
    await exportJsonl(store, (line) => {
      lines.push(line)
    })
    expect(lines[0]!.length).toBeLessThan(10_000)
  })

  it('gap 5 (bis): a tombstone whose value has an "id" key is still exported under its own id (the export lost it: the id could be issued again after an import)', async () => {
    const { store, deleted } = await prepared()
    const update = peerTx(store.encodeStateAsUpdate(), (doc) => doc.getMap('tombstones').set(deleted.id, { id: '424242', uid: deleted.uid }))
    await rejectsOnlyWith(() => store.applyUpdate(update, 'peer'), 'UPDATE_REFUSED')
    await store.flush()
    expect(store.isTombstoned(deleted.id)).toBe(true)
    const lines: string[] = []
    await exportJsonl(store, (line) => {
      lines.push(line)
    })
    expect((JSON.parse(lines[0]!) as { tombstones: Array<{ id: string }> }).tombstones.map((t) => t.id)).toContain(deleted.id)
  })

  it('gap 6: a JSON value whose own "__proto__" key holds bytes is refused or quarantined — applyUpdate never throws a TypeError', async () => {
    const { store, done } = await prepared()
    const update = peerTx(store.encodeStateAsUpdate(), (doc) => {
      const value: Record<string, unknown> = {}
      // lib0 decodes it by assignment: the object arrives with a Uint8Array as its prototype.
      Object.defineProperty(value, '__proto__', { value: new Uint8Array(3), enumerable: true, writable: true, configurable: true })
      ;(doc.getMap<Y.Map<unknown>>('records').get(done.uid)!.get('content') as Y.Map<unknown>).set('notes', value)
    })
    await rejectsOnlyWith(() => store.applyUpdate(update, 'peer'), 'UPDATE_REFUSED')
    await store.flush()
    expect(await store.readContent(done.id)).toBe('body')
    expect(() => store.encodeStateAsUpdate()).not.toThrow()
  })

  it('gap 7: an entry of records set to undefined is audited as malformed, like any other (verify() reports it, the audit log does not)', async () => {
    const { store } = await prepared()
    const update = peerTx(store.encodeStateAsUpdate(), (doc) => doc.getMap('records').set(HIGH_UID, undefined))
    const outcome = await rejectsOnlyWith(() => store.applyUpdate(update, 'peer'), 'UPDATE_REFUSED')
    if (outcome === 'UPDATE_REFUSED') return
    await store.flush()
    expect((await store.verify()).malformed.map((m) => m.key)).toContain(HIGH_UID)
    expect((await collect(store.audit({ kinds: ['malformed_entry'] }))).map((e) => e.data.key)).toContain(HIGH_UID)
  })

  it('gap 8: replacing an item\'s record with a fresh map of its own fields is refused — it reset the stage log, and a done item went back to backlog', async () => {
    const { store, done } = await prepared()
    const update = peerTx(store.encodeStateAsUpdate(), (doc) => {
      const old = doc.getMap<Y.Map<unknown>>('records').get(done.uid)!
      const copy = new Y.Map<unknown>()
      for (const [key, value] of old) if (!(value instanceof Y.AbstractType)) copy.set(key, value)
      copy.set('stages', new Y.Array())
      copy.set('content', new Y.Map())
      doc.getMap('records').set(done.uid, copy)
    })
    await rejectsOnlyWith(() => store.applyUpdate(update, 'peer'), 'UPDATE_REFUSED')
    await store.flush()
    expect(store.getItem(done.id)).toMatchObject({ uid: done.uid, stage: 'done' })
    expect(store.stageHistory(done.id).length).toBeGreaterThanOrEqual(4)
  })
  // Gap 9 is a documented limit, not fixed: an id at the very top of the range is a valid id, which
  // a token holder may claim like any other; after it no id can be allocated (none is ever issued
  // twice). The README's trust model says so. What must hold: nothing breaks but allocation, the
  // error says what happened and what to do, and explicit ids still work.
  it('gap 9: one allocator mark at 2^40 − 1 from a peer ends allocation with an error that says why and what to do; explicit ids still work', async () => {
    const { store } = await prepared()
    const update = peerTx(store.encodeStateAsUpdate(), (doc) => doc.getMap('alloc').set('100000', 2 ** 40 - 1))
    await rejectsOnlyWith(() => store.applyUpdate(update, 'peer'), 'UPDATE_REFUSED')
    await store.flush()
    await expect(store.createItem({ name: 'after the mark' })).rejects.toMatchObject({ code: 'INVALID_INPUT', message: expect.stringMatching(/exhausted.*top of the range.*explicit free id/) })
    await expect(store.createItem({ name: 'explicit', id: '777' })).resolves.toMatchObject({ id: '777' })
    expect((await store.verify()).ok).toBe(true)
  })

  it('gap 10 (schema 3): a slot that references a blob nobody has does not stop the export of the rest of the pipeline', async () => {
    const { store, done } = await prepared()
    const update = peerTx(store.encodeStateAsUpdate(), (doc) => {
      const content = doc.getMap<Y.Map<unknown>>('records').get(done.uid)!.get('content') as Y.Map<unknown>
      content.set('notes', buildVal({ t: 'content-ref', size: 5, text: true }))
    })
    await rejectsOnlyWith(() => store.applyUpdate(update, 'peer'), 'UPDATE_REFUSED')
    await store.flush()
    const lines: string[] = []
    await exportJsonl(store, (line) => {
      lines.push(line)
    })
    expect(lines).toHaveLength(2)
  })
})
