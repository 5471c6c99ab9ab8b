import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it, vi } from 'vitest'
import * as Y from 'yjs'
import { Arbiter } from '../src/arbiter/arbiter.js'
import { LocalArbiter } from '../src/arbiter/local.js'
import { decideClaim, leaseStart, MAX_ABOVE_FLOOR } from '../src/arbiter/decide.js'
import { parseRequest } from '../src/arbiter/protocol.js'
import { DocumentStore } from '../src/persistence.js'
import { arbiterSuite } from './arbiter-suite.js'

const opened: DocumentStore[] = []
afterAll(async () => {
  for (const store of opened) await store.close().catch(() => {})
})

async function documents(dir?: string): Promise<{ store: DocumentStore; dir: string }> {
  const where = dir ?? (await mkdtemp(join(tmpdir(), 'docket-arbiter-')))
  const store = await DocumentStore.open(where)
  opened.push(store)
  return { store, dir: where }
}

let n = 0
arbiterSuite('on the server\'s LevelDB', async () => ({ backend: new LocalArbiter((await documents()).store), doc: `doc-${n++}` }))

describe('the local arbiter keeps what it decided across a restart', () => {
  it('neither a range nor a claim is handed out twice after the server reopens its store', async () => {
    const { store, dir } = await documents()
    const first = new LocalArbiter(store)
    expect(await first.lease('docket', 0, 32)).toEqual({ from: 1, to: 32 })
    const granted = await first.claim('docket', '01J00000000000000000000001', { agent: 'a', replica: 'r', ttlMs: 60_000 }, 1000)
    await first.close()
    await store.close()
    const again = new LocalArbiter((await documents(dir)).store)
    // Nobody used 1–32 (the document's floor is 0): the counter alone keeps them from being handed out again.
    expect(await again.lease('docket', 0, 8)).toEqual({ from: 33, to: 40 })
    expect(await again.claim('docket', '01J00000000000000000000001', { agent: 'b', replica: 'r2', ttlMs: 60_000 }, 2000)).toMatchObject({ granted: false, holder: { agent: 'a' } })
    const next = await again.claim('docket', '01J00000000000000000000002', { agent: 'b', replica: 'r2', ttlMs: 60_000 }, 2000)
    expect((next as { record: { grant: number } }).record.grant).toBeGreaterThan((granted as { record: { grant: number } }).record.grant)
  })
})

describe('the arbiter answering replicas', () => {
  it('believes a replica\'s `above` only so far beyond what the document shows: one request cannot push the counter to the top', async () => {
    const { store } = await documents()
    const arbiter = new Arbiter({ backend: new LocalArbiter(store), now: () => 1000, warn: () => {} })
    const doc = Object.assign(new Y.Doc(), { name: 'docket' })
    doc.getMap('alloc').set('some-replica', 500)
    arbiter.track(doc as never)
    const replies: Array<Record<string, unknown>> = []
    const connection = { readOnly: false, sendStateless: (m: string) => replies.push(JSON.parse(m) as Record<string, unknown>) }
    const ask = (body: object) => arbiter.handle(doc as never, connection as never, JSON.stringify({ docket: 'arbiter', ...body }))
    ask({ req: 1, op: 'lease', size: 1, above: 2 ** 40 - 2 })
    await vi.waitFor(() => expect(replies).toHaveLength(1))
    expect(replies[0]).toMatchObject({ req: 1, ok: true, result: { from: 500 + MAX_ABOVE_FLOOR + 1 } })
    ask({ req: 2, op: 'lease', size: 32, above: 10 })
    await vi.waitFor(() => expect(replies).toHaveLength(2))
    expect(replies[1]).toMatchObject({ req: 2, ok: true, result: { from: 500 + MAX_ABOVE_FLOOR + 2 } })
    // A read-only connection and a malformed request are answered with why.
    arbiter.handle(doc as never, { ...connection, readOnly: true } as never, JSON.stringify({ docket: 'arbiter', req: 3, op: 'lease', size: 1, above: 0 }))
    ask({ req: 4, op: 'lease', size: 0, above: 0 })
    await vi.waitFor(() => expect(replies).toHaveLength(4))
    expect(replies.slice(2)).toMatchObject([{ req: 3, ok: false, code: 'READ_ONLY' }, { req: 4, ok: false, code: 'INVALID_INPUT' }])
    expect(ask({ req: 5, op: 'nothing' }) && ask({ req: 5 })).toBe(true)
    expect(arbiter.handle(doc as never, connection as never, '{"docket":"mark","n":1}')).toBe(false)
    arbiter.close()
  })
})

describe('the arbiter\'s rules and messages, alone', () => {
  it('a lease starts above the largest of what was handed out, the floor and what the replica saw', () => {
    expect(leaseStart(0, 0, 0)).toBe(1)
    expect(leaseStart(40, 10, 20)).toBe(41)
    expect(leaseStart(40, 90, 20)).toBe(91)
    expect(leaseStart(40, 10, 700)).toBe(701)
  })

  it('a claim decision never calls for a grant number it does not use', () => {
    let asked = 0
    const grant = () => ++asked
    const live = { agent: 'a', replica: 'r', grant: 7, sinceMs: 0, untilMs: 100 }
    expect(decideClaim(live, { agent: 'b', replica: 'r', ttlMs: 10 }, 50, grant)).toEqual({ granted: false, holder: live })
    expect(decideClaim(live, { agent: 'a', replica: 'r', ttlMs: 10 }, 50, grant)).toMatchObject({ granted: true, record: { grant: 7, untilMs: 100 } })
    expect(decideClaim(live, { agent: 'a', replica: 'r', ttlMs: 80 }, 50, grant)).toMatchObject({ granted: true, record: { grant: 7, untilMs: 130 } })
    expect(asked).toBe(0)
    expect(decideClaim(live, { agent: 'b', replica: 'r', ttlMs: 10 }, 100, grant)).toMatchObject({ granted: true, record: { grant: 1 }, previous: live })
  })

  it('refuses malformed requests with why, and ignores what is not the arbiter\'s', () => {
    expect(parseRequest('{"docket":"mark","n":1}')).toBeUndefined()
    expect(parseRequest('not json')).toBeUndefined()
    const U = '01J00000000000000000000001'
    const bad: Array<[unknown, RegExp]> = [
      [{ req: 'x', op: 'lease' }, /req must be/],
      [{ req: 1, op: 'lease', size: 0, above: 0 }, /size must be/],
      [{ req: 1, op: 'lease', size: 5000, above: 0 }, /size must be/],
      [{ req: 1, op: 'lease', size: 5, above: 2 ** 40 }, /above must be/],
      [{ req: 1, op: 'claim', uid: U, agent: '', replica: 'r', ttlMs: 1000 }, /agent must be/],
      [{ req: 1, op: 'claim', uid: U, agent: 'a', replica: 'r', ttlMs: 10 }, /ttlMs must be/],
      [{ req: 1, op: 'claim', uid: 'nope', agent: 'a', replica: 'r', ttlMs: 1000 }, /uid must be/],
      [{ req: 1, op: 'next', uids: [], agent: 'a', replica: 'r', ttlMs: 1000 }, /uids must be/],
      [{ req: 1, op: 'next', uids: Array(300).fill(U), agent: 'a', replica: 'r', ttlMs: 1000 }, /uids must be/],
      [{ req: 1, op: 'steal' }, /op must be/],
    ]
    for (const [body, why] of bad) {
      const parsed = parseRequest(JSON.stringify({ docket: 'arbiter', ...(body as object) }))
      expect(parsed, JSON.stringify(body)).toHaveProperty('malformed')
      expect((parsed as { malformed: string }).malformed).toMatch(why)
    }
    expect(parseRequest(JSON.stringify({ docket: 'arbiter', req: 3, op: 'renew', uid: U, agent: 'a', ttlMs: 1000 }))).toEqual({ req: 3, op: 'renew', uid: U, agent: 'a', ttlMs: 1000 })
  })
})
