import type { DocumentStore } from '../persistence.js'
import { exhausted, KEEP_EXPIRED_MS, isClaimRecord, type ArbiterBackend, type ClaimAsk, type NextDecision } from './backend.js'
import { MAX_ID } from './floor.js'
import { decideClaim, decideRelease, decideRenew, isLiveRecord, leaseStart, type ClaimRecord } from './decide.js'

interface DocTable {
  handedOut: number
  grant: number
  claims: Map<string, ClaimRecord>
}

const LEASE_KEY = 'arbiter:lease'
const GRANT_KEY = 'arbiter:grant'
const CLAIM_PREFIX = 'arbiter:claim:'

/**
 * The arbiter on one server: its decisions live in the server's own LevelDB (y-leveldb's
 * per-document metadata), written before the reply goes out, so a restarted server neither
 * hands out a range twice nor forgets a claim. Operations on one document run one at a time.
 */
export class LocalArbiter implements ArbiterBackend {
  readonly #store: DocumentStore
  readonly #tables = new Map<string, Promise<DocTable>>()
  readonly #queues = new Map<string, Promise<unknown>>()

  constructor(store: DocumentStore) {
    this.#store = store
  }

  #table(doc: string): Promise<DocTable> {
    let table = this.#tables.get(doc)
    if (!table) {
      table = this.#load(doc)
      table.catch(() => this.#tables.delete(doc))
      this.#tables.set(doc, table)
    }
    return table
  }

  async #load(doc: string): Promise<DocTable> {
    const metas = await this.#store.metas(doc)
    const table: DocTable = { handedOut: 0, grant: 0, claims: new Map() }
    const lease = metas.get(LEASE_KEY)
    const grant = metas.get(GRANT_KEY)
    if (Number.isSafeInteger(lease)) table.handedOut = lease as number
    if (Number.isSafeInteger(grant)) table.grant = grant as number
    for (const [key, value] of metas) {
      if (key.startsWith(CLAIM_PREFIX) && isClaimRecord(value)) table.claims.set(key.slice(CLAIM_PREFIX.length), value)
    }
    return table
  }

  /** Runs `step` after every earlier operation on `doc` (one read-decide-write at a time). */
  #serial<T>(doc: string, step: (table: DocTable) => Promise<T>): Promise<T> {
    const before = this.#queues.get(doc) ?? Promise.resolve()
    const run = before.then(async () => step(await this.#table(doc)))
    const settled = run.catch(() => undefined)
    this.#queues.set(doc, settled)
    void settled.then(() => {
      if (this.#queues.get(doc) === settled) this.#queues.delete(doc)
    })
    return run
  }

  lease(doc: string, floor: number, size: number): Promise<{ from: number; to: number }> {
    return this.#serial(doc, async (table) => {
      const from = leaseStart(table.handedOut, floor, 0)
      const to = from + size - 1
      if (to > MAX_ID) throw exhausted(from)
      await this.#store.putMeta(doc, LEASE_KEY, to)
      table.handedOut = to
      return { from, to }
    })
  }

  claim(doc: string, uid: string, ask: ClaimAsk, at: number | undefined) {
    return this.#serial(doc, async (table) => {
      const nowMs = at ?? Date.now()
      const decision = decideClaim(table.claims.get(uid), ask, nowMs, () => table.grant + 1)
      if (decision.granted) await this.#keep(doc, table, uid, decision.record)
      return decision
    })
  }

  renew(doc: string, uid: string, ask: { agent: string; ttlMs: number }, at: number | undefined) {
    return this.#serial(doc, async (table) => {
      const nowMs = at ?? Date.now()
      const decision = decideRenew(table.claims.get(uid), ask, nowMs)
      if (decision.renewed) await this.#keep(doc, table, uid, decision.record)
      return decision
    })
  }

  release(doc: string, uid: string, ask: { agent: string }, at: number | undefined) {
    return this.#serial(doc, async (table) => {
      const nowMs = at ?? Date.now()
      const decision = decideRelease(table.claims.get(uid), ask, nowMs)
      if (decision.released) {
        await this.#store.deleteMeta(doc, CLAIM_PREFIX + uid)
        table.claims.delete(uid)
      }
      return decision
    })
  }

  next(doc: string, uids: readonly string[], ask: ClaimAsk, at: number | undefined): Promise<NextDecision> {
    return this.#serial(doc, async (table) => {
      const nowMs = at ?? Date.now()
      const taken: Array<{ uid: string; holder: ClaimRecord }> = []
      for (const uid of uids) {
        const current = table.claims.get(uid)
        if (isLiveRecord(current, nowMs)) {
          // The holder asking again gets nothing new: it already holds this one.
          taken.push({ uid, holder: current })
          continue
        }
        const decision = decideClaim(current, ask, nowMs, () => table.grant + 1)
        if (!decision.granted) continue
        await this.#keep(doc, table, uid, decision.record)
        return decision.previous ? { granted: true, uid, record: decision.record, previous: decision.previous } : { granted: true, uid, record: decision.record }
      }
      return { granted: false, taken }
    })
  }

  holder(doc: string, uid: string): Promise<ClaimRecord | undefined> {
    return this.#serial(doc, async (table) => table.claims.get(uid))
  }

  /** Persists a claim (and the grant counter with it) before the in-memory table shows it. */
  async #keep(doc: string, table: DocTable, uid: string, record: ClaimRecord): Promise<void> {
    if (record.grant > table.grant) await this.#store.putMeta(doc, GRANT_KEY, record.grant)
    await this.#store.putMeta(doc, CLAIM_PREFIX + uid, record)
    table.grant = Math.max(table.grant, record.grant)
    table.claims.set(uid, record)
    this.#forgetOld(doc, table, record.sinceMs)
  }

  /** Claims expired for a day are forgotten, so the table stays the size of the work in flight. */
  #forgetOld(doc: string, table: DocTable, nowMs: number): void {
    if (table.claims.size < 256) return
    for (const [uid, record] of table.claims) {
      if (record.untilMs + KEEP_EXPIRED_MS >= nowMs) continue
      table.claims.delete(uid)
      void this.#store.deleteMeta(doc, CLAIM_PREFIX + uid).catch(() => {})
    }
  }

  async close(): Promise<void> {
    await Promise.all([...this.#queues.values()])
  }
}
