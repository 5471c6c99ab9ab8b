import type { Redis as RedisClient } from 'ioredis'
import { exhausted, KEEP_EXPIRED_MS, isClaimRecord, type ArbiterBackend, type ClaimAsk, type NextDecision } from './backend.js'
import { MAX_ID } from './floor.js'
import type { ClaimDecision, ClaimRecord } from './decide.js'

/*
 * The arbiter's rules (decide.ts) as Redis scripts: a script runs atomically in Redis, so
 * servers that share one Redis decide as one. Time comes from the server that asks (ARGV), so
 * the rules are the same as on one server and a test can drive the clock. Keys of a document
 * share a hash tag, so the scripts also run on a Redis cluster.
 */

// KEYS[1] counter; ARGV floor, size, top of the id range. Nothing is handed out past the top.
const LEASE = `
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local floor = tonumber(ARGV[1])
if floor > cur then cur = floor end
local to = cur + tonumber(ARGV[2])
if to > tonumber(ARGV[3]) then return {string.format('%d', cur + 1), '0'} end
redis.call('SET', KEYS[1], string.format('%d', to))
return {string.format('%d', cur + 1), string.format('%d', to)}
`

// The time the scripts decide by: the asking server's clock when it passes one (tests drive it),
// else Redis's own, which every server sharing it agrees on.
const NOW = `
local function clock(arg)
  local n = tonumber(arg)
  if n then return n end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
`

// KEYS[1] claim, KEYS[2] grant counter; ARGV agent, replica, now, ttl, keep.
const CLAIM = NOW + `
local now = clock(ARGV[3])
local ttl = tonumber(ARGV[4])
local raw = redis.call('GET', KEYS[1])
local prev = ''
if raw then
  local rec = cjson.decode(raw)
  if rec.untilMs > now then
    if rec.agent ~= ARGV[1] then return {0, raw} end
    if now + ttl > rec.untilMs then rec.untilMs = now + ttl end
    local out = cjson.encode(rec)
    redis.call('SET', KEYS[1], out, 'PX', rec.untilMs - now + tonumber(ARGV[5]))
    return {1, out, '', 0}
  end
  prev = raw
end
local grant = redis.call('INCR', KEYS[2])
local out = cjson.encode({agent = ARGV[1], replica = ARGV[2], grant = grant, sinceMs = now, untilMs = now + ttl})
redis.call('SET', KEYS[1], out, 'PX', ttl + tonumber(ARGV[5]))
return {1, out, prev, 1}
`

// KEYS[1] claim; ARGV agent, now, ttl, keep.
const RENEW = NOW + `
local raw = redis.call('GET', KEYS[1])
if not raw then return {0, ''} end
local rec = cjson.decode(raw)
if rec.agent ~= ARGV[1] then return {0, raw} end
rec.untilMs = clock(ARGV[2]) + tonumber(ARGV[3])
local out = cjson.encode(rec)
redis.call('SET', KEYS[1], out, 'PX', tonumber(ARGV[3]) + tonumber(ARGV[4]))
return {1, out}
`

// KEYS[1] claim; ARGV agent.
const RELEASE = `
local raw = redis.call('GET', KEYS[1])
if not raw then return {0, ''} end
local rec = cjson.decode(raw)
if rec.agent ~= ARGV[1] then return {0, raw} end
redis.call('DEL', KEYS[1])
return {1, raw}
`

// KEYS[1] grant counter, KEYS[2..] claims; ARGV agent, replica, now, ttl, keep.
const NEXT = NOW + `
local now = clock(ARGV[3])
local ttl = tonumber(ARGV[4])
local taken = {0}
for i = 2, #KEYS do
  local raw = redis.call('GET', KEYS[i])
  local free = true
  if raw then
    local rec = cjson.decode(raw)
    if rec.untilMs > now then
      free = false
      table.insert(taken, i - 1)
      table.insert(taken, raw)
    end
  end
  if free then
    local grant = redis.call('INCR', KEYS[1])
    local out = cjson.encode({agent = ARGV[1], replica = ARGV[2], grant = grant, sinceMs = now, untilMs = now + ttl})
    redis.call('SET', KEYS[i], out, 'PX', ttl + tonumber(ARGV[5]))
    return {1, i - 1, out, raw or ''}
  end
end
return taken
`

type Reply = Array<string | number>

/** The clock argument of a script: the injected time, or '' for Redis's own. */
function at(nowMs: number | undefined): string {
  return nowMs === undefined ? '' : String(nowMs)
}

function record(raw: unknown): ClaimRecord | undefined {
  if (typeof raw !== 'string' || raw === '') return undefined
  try {
    const value = JSON.parse(raw) as unknown
    return isClaimRecord(value) ? value : undefined
  } catch {
    return undefined
  }
}

function must(raw: unknown): ClaimRecord {
  const r = record(raw)
  if (!r) throw new Error(`Redis holds a claim that is no docket claim (${String(raw).slice(0, 80)}): remove the arbiter's keys of this document, or check what else writes to this Redis prefix.`)
  return r
}

/** The arbiter shared through Redis by every server started with the same --redis and prefix. */
export class RedisArbiter implements ArbiterBackend {
  readonly #client: RedisClient
  readonly #prefix: string

  private constructor(client: RedisClient, prefix: string) {
    this.#client = client
    this.#prefix = prefix
  }

  static async open(options: { host: string; port: number; prefix?: string }): Promise<RedisArbiter> {
    const { Redis } = await import('ioredis')
    const client = new Redis({ host: options.host, port: options.port, maxRetriesPerRequest: 2, lazyConnect: true })
    await client.connect()
    return new RedisArbiter(client, options.prefix ?? 'docket')
  }

  #key(doc: string, what: string): string {
    return `${this.#prefix}:arbiter:{${doc}}:${what}`
  }

  async lease(doc: string, floor: number, size: number): Promise<{ from: number; to: number }> {
    const [from, to] = (await this.#client.eval(LEASE, 1, this.#key(doc, 'lease'), String(floor), String(size), String(MAX_ID))) as [string, string]
    if (to === '0') throw exhausted(Number(from))
    return { from: Number(from), to: Number(to) }
  }

  async claim(doc: string, uid: string, ask: ClaimAsk, nowMs: number | undefined): Promise<ClaimDecision> {
    const reply = (await this.#client.eval(CLAIM, 2, this.#key(doc, `claim:${uid}`), this.#key(doc, 'grant'), ask.agent, ask.replica, at(nowMs), String(ask.ttlMs), String(KEEP_EXPIRED_MS))) as Reply
    if (reply[0] === 0) return { granted: false, holder: must(reply[1]) }
    const previous = record(reply[2])
    return previous ? { granted: true, record: must(reply[1]), previous, fresh: true } : { granted: true, record: must(reply[1]), fresh: reply[3] === 1 }
  }

  async renew(doc: string, uid: string, ask: { agent: string; ttlMs: number }, nowMs: number | undefined) {
    const reply = (await this.#client.eval(RENEW, 1, this.#key(doc, `claim:${uid}`), ask.agent, at(nowMs), String(ask.ttlMs), String(KEEP_EXPIRED_MS))) as Reply
    if (reply[0] === 1) return { renewed: true as const, record: must(reply[1]) }
    const holder = record(reply[1])
    return { renewed: false as const, holder: holder && holder.untilMs > (nowMs ?? Date.now()) ? holder : undefined }
  }

  async release(doc: string, uid: string, ask: { agent: string }, nowMs: number | undefined) {
    const reply = (await this.#client.eval(RELEASE, 1, this.#key(doc, `claim:${uid}`), ask.agent)) as Reply
    if (reply[0] === 1) return { released: true as const, record: must(reply[1]) }
    const holder = record(reply[1])
    return { released: false as const, holder: holder && holder.untilMs > (nowMs ?? Date.now()) ? holder : undefined }
  }

  async next(doc: string, uids: readonly string[], ask: ClaimAsk, nowMs: number | undefined): Promise<NextDecision> {
    if (uids.length === 0) return { granted: false, taken: [] }
    const keys = [this.#key(doc, 'grant'), ...uids.map((uid) => this.#key(doc, `claim:${uid}`))]
    const reply = (await this.#client.eval(NEXT, keys.length, ...keys, ask.agent, ask.replica, at(nowMs), String(ask.ttlMs), String(KEEP_EXPIRED_MS))) as Reply
    if (reply[0] === 1) {
      const uid = uids[Number(reply[1]) - 1]!
      const previous = record(reply[3])
      return previous ? { granted: true, uid, record: must(reply[2]), previous } : { granted: true, uid, record: must(reply[2]) }
    }
    const taken: Array<{ uid: string; holder: ClaimRecord }> = []
    for (let i = 1; i + 1 < reply.length; i += 2) taken.push({ uid: uids[Number(reply[i]) - 1]!, holder: must(reply[i + 1]) })
    return { granted: false, taken }
  }

  async holder(doc: string, uid: string): Promise<ClaimRecord | undefined> {
    return record(await this.#client.get(this.#key(doc, `claim:${uid}`)))
  }

  async close(): Promise<void> {
    await this.#client.quit().catch(() => this.#client.disconnect())
  }
}
