import { describe, expect, it } from 'vitest'
import { nextEntry, resolveStage, type ReplicaId, type StageEntry, type StageResolution } from '../src/index.js'

const A = 'replica-a' as ReplicaId
const B = 'replica-b' as ReplicaId
let counter = 0
const nextId = () => `E${String(++counter).padStart(4, '0')}`

function created(stage: StageEntry['stage'] = 'backlog'): StageEntry {
  return { id: nextId(), epoch: 0, stage, event: 'created', basedOn: null, by: A, at: '2026-01-01T00:00:00Z' }
}

/** Decides `events` one after another on top of `log` as the replica sees it. */
function decide(log: StageEntry[], by: ReplicaId, ...events: StageEntry['event'][]): StageEntry[] {
  const out = [...log]
  for (const type of events) {
    const resolution = resolveStage(out) as StageResolution
    out.push(nextEntry(resolution, { type: type as never }, by, '2026-01-01T00:00:00Z', nextId()))
  }
  return out
}

function union(...logs: StageEntry[][]): StageEntry[] {
  const byId = new Map<string, StageEntry>()
  for (const log of logs) for (const e of log) byId.set(e.id, e)
  return [...byId.values()]
}

function shuffled<T>(items: T[], seed: number): T[] {
  const out = [...items]
  let s = seed
  for (let i = out.length - 1; i > 0; i--) {
    s = (s * 1103515245 + 12345) & 0x7fffffff
    const j = s % (i + 1)
    ;[out[i], out[j]] = [out[j]!, out[i]!]
  }
  return out
}

describe('resolveStage', () => {
  it('returns undefined for an empty log', () => {
    expect(resolveStage([])).toBeUndefined()
  })

  it('follows a linear forward path', () => {
    const log = decide([created()], A, 'start', 'gates_passed', 'accepted', 'merge_succeeded')
    const r = resolveStage(log)!
    expect(r.stage).toBe('done')
    expect(r.epoch).toBe(0)
    expect(r.invalid).toEqual([])
  })

  it('does not let a replica that never saw done drag the item back (stale demote)', () => {
    const base = decide([created()], A, 'start')
    const a = decide(base, A, 'gates_passed', 'accepted', 'merge_succeeded')
    const b = decide(base, B, 'demote') // B still sees coding
    const merged = union(a, b)
    const r = resolveStage(merged)!
    expect(r.stage).toBe('done')
    expect(r.invalid).toHaveLength(1)
    expect(r.invalid[0]!.entry.event).toBe('demote')
    expect(r.invalid[0]!.reason).toBe('stale')
  })

  it('also discards what a stale replica built on its stale decision', () => {
    const base = decide([created()], A, 'start')
    const a = decide(base, A, 'gates_passed', 'accepted', 'merge_succeeded')
    const b = decide(base, B, 'demote', 'start', 'gates_passed')
    const r = resolveStage(union(a, b))!
    expect(r.stage).toBe('done')
    expect(r.invalid.map((i) => [i.entry.event, i.reason])).toEqual([
      ['demote', 'stale'],
      ['start', 'superseded-basis'],
      ['gates_passed', 'superseded-basis'],
    ])
  })

  it('lets a deliberate reopen made with full knowledge win', () => {
    const done = decide([created()], A, 'start', 'gates_passed', 'accepted', 'merge_succeeded')
    const reopened = decide(done, B, 'reopen')
    const r = resolveStage(union(done, reopened))!
    expect(r.stage).toBe('coding')
    expect(r.epoch).toBe(1)
    expect(r.invalid).toEqual([])
  })

  it('lets a stale forward step lose to the stage that is ahead', () => {
    const base = decide([created()], A, 'start')
    const a = decide(base, A, 'qa_skipped', 'merge_succeeded')
    const b = decide(base, B, 'gates_passed')
    expect(resolveStage(union(a, b))!.stage).toBe('done')
  })

  it('breaks ties between concurrent equal-rank entries by entry id', () => {
    const base = decide([created()], A, 'start')
    const a = decide(base, A, 'gates_passed')
    const b = decide(base, B, 'gates_passed')
    const r = resolveStage(union(a, b))!
    expect(r.stage).toBe('qa')
    expect(r.current.id).toBe(b[b.length - 1]!.id) // created later, so the greater ULID-like id
  })

  it('a reopen concurrent with an archive loses: archive ranked higher in the epoch both saw', () => {
    const done = decide([created()], A, 'start', 'qa_skipped', 'merge_succeeded')
    const archived = decide(done, A, 'archive')
    const reopened = decide(done, B, 'reopen')
    const r = resolveStage(union(archived, reopened))!
    expect(r.stage).toBe('archived')
    expect(r.invalid.map((i) => i.reason)).toEqual(['stale'])
  })

  it('a later epoch wins over any rank of an earlier one', () => {
    const done = decide([created()], A, 'start', 'qa_skipped', 'merge_succeeded')
    const reopened = decide(done, A, 'reopen', 'demote')
    expect(resolveStage(reopened)!.stage).toBe('backlog')
    expect(resolveStage(reopened)!.epoch).toBe(2)
  })

  it('flags entries that are not legal steps as malformed and ignores them', () => {
    const log = [created()]
    const jump: StageEntry = { id: nextId(), epoch: 0, stage: 'done', event: 'merge_succeeded', basedOn: log[0]!.id, by: B, at: '' }
    const orphan: StageEntry = { id: nextId(), epoch: 0, stage: 'coding', event: 'start', basedOn: 'missing', by: B, at: '' }
    const wrongEpoch: StageEntry = { id: nextId(), epoch: 3, stage: 'coding', event: 'start', basedOn: log[0]!.id, by: B, at: '' }
    const badStage = { id: nextId(), epoch: 0, stage: 'flying', event: 'created', basedOn: null, by: B, at: '' } as unknown as StageEntry
    const r = resolveStage([...log, jump, orphan, wrongEpoch, badStage])!
    expect(r.stage).toBe('backlog')
    expect(r.invalid.map((i) => i.reason)).toEqual(['malformed', 'malformed', 'malformed', 'malformed'])
  })

  it('gives the same result for every order of the same entries', () => {
    const base = decide([created()], A, 'start')
    const a = decide(base, A, 'gates_passed', 'accepted', 'merge_failed')
    const b = decide(base, B, 'demote', 'start')
    const c = decide(a, B, 'fixup_requested', 'qa_skipped')
    const all = union(a, b, c)
    const expected = resolveStage(all)!
    for (let seed = 1; seed < 50; seed++) {
      const r = resolveStage(shuffled(all, seed))!
      expect(r.current.id).toBe(expected.current.id)
      expect(r.invalid.map((i) => i.entry.id)).toEqual(expected.invalid.map((i) => i.entry.id))
    }
  })
})
