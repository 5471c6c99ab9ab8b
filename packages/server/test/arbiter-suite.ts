import { describe, expect, it } from 'vitest'
import type { ArbiterBackend } from '../src/arbiter/backend.js'

/**
 * The arbiter's rules, run against every backend (the server's own LevelDB, and Redis in the
 * redis project): one table of cases, so that servers sharing a Redis decide as one server does.
 * `make` gives a fresh backend for a fresh document name.
 */
export function arbiterSuite(name: string, make: () => Promise<{ backend: ArbiterBackend; doc: string }>): void {
  const U = (n: number) => `01J${String(n).padStart(23, '0')}`
  const T0 = 1_800_000_000_000
  const ask = (agent: string, ttlMs = 60_000) => ({ agent, replica: `replica-of-${agent}`, ttlMs })

  describe(`the arbiter (${name})`, () => {
    it('hands out each id range once, above the floor and above everything handed out before', async () => {
      const { backend, doc } = await make()
      expect(await backend.lease(doc, 0, 32)).toEqual({ from: 1, to: 32 })
      expect(await backend.lease(doc, 10, 8)).toEqual({ from: 33, to: 40 })
      expect(await backend.lease(doc, 500, 4)).toEqual({ from: 501, to: 504 })
      const many = await Promise.all(Array.from({ length: 40 }, (_, i) => backend.lease(doc, 0, 1 + (i % 7))))
      const ids = many.flatMap(({ from, to }) => Array.from({ length: to - from + 1 }, (_, k) => from + k))
      expect(new Set(ids).size).toBe(ids.length)
      expect(Math.min(...ids)).toBe(505)
    })

    it('never hands out an id past the top of the range (2^40 − 1): nothing is handed out, and the counter does not move', async () => {
      const { backend, doc } = await make()
      const top = 2 ** 40 - 1
      await expect(backend.lease(doc, top - 10, 32)).rejects.toMatchObject({ code: 'ID_SPACE_EXHAUSTED' })
      expect(await backend.lease(doc, top - 10, 10)).toEqual({ from: top - 9, to: top })
      await expect(backend.lease(doc, 0, 1)).rejects.toMatchObject({ code: 'ID_SPACE_EXHAUSTED' })
    })

    it('grants a claim to one agent, refuses others with who holds it, and lets the holder extend it', async () => {
      const { backend, doc } = await make()
      const first = await backend.claim(doc, U(1), ask('a'), T0)
      expect(first).toMatchObject({ granted: true, record: { agent: 'a', replica: 'replica-of-a', sinceMs: T0, untilMs: T0 + 60_000 } })
      const grant = (first as { record: { grant: number } }).record.grant
      expect(await backend.claim(doc, U(1), ask('b'), T0 + 1000)).toMatchObject({ granted: false, holder: { agent: 'a', grant } })
      const again = await backend.claim(doc, U(1), ask('a', 120_000), T0 + 2000)
      expect(again).toMatchObject({ granted: true, record: { agent: 'a', grant, sinceMs: T0, untilMs: T0 + 122_000 } })
      expect(again).not.toHaveProperty('previous')
      // Asked again with a shorter time (a retry with the default), the claim is not shortened.
      expect(await backend.claim(doc, U(1), ask('a', 1000), T0 + 3000)).toMatchObject({ granted: true, record: { grant, untilMs: T0 + 122_000 } })
    })

    it('an expired claim is taken over with a higher grant, and the claim it took over is reported', async () => {
      const { backend, doc } = await make()
      const a = await backend.claim(doc, U(2), ask('a', 10_000), T0)
      const b = await backend.claim(doc, U(2), ask('b'), T0 + 10_000)
      expect(b).toMatchObject({ granted: true, record: { agent: 'b' }, previous: { agent: 'a' } })
      expect((b as { record: { grant: number } }).record.grant).toBeGreaterThan((a as { record: { grant: number } }).record.grant)
      // The old holder can neither renew nor release it now, and is told who holds it.
      expect(await backend.renew(doc, U(2), { agent: 'a', ttlMs: 10_000 }, T0 + 11_000)).toMatchObject({ renewed: false, holder: { agent: 'b' } })
      expect(await backend.release(doc, U(2), { agent: 'a' }, T0 + 11_000)).toMatchObject({ released: false, holder: { agent: 'b' } })
    })

    it('renewal: the holder extends (also once expired, while nobody took it); nobody else can', async () => {
      const { backend, doc } = await make()
      await backend.claim(doc, U(3), ask('a', 10_000), T0)
      expect(await backend.renew(doc, U(3), { agent: 'a', ttlMs: 10_000 }, T0 + 5000)).toMatchObject({ renewed: true, record: { untilMs: T0 + 15_000 } })
      expect(await backend.renew(doc, U(3), { agent: 'b', ttlMs: 10_000 }, T0 + 6000)).toMatchObject({ renewed: false, holder: { agent: 'a' } })
      expect(await backend.renew(doc, U(3), { agent: 'a', ttlMs: 10_000 }, T0 + 20_000)).toMatchObject({ renewed: true, record: { untilMs: T0 + 30_000 } })
      expect(await backend.renew(doc, U(4), { agent: 'a', ttlMs: 10_000 }, T0)).toEqual({ renewed: false, holder: undefined })
    })

    it('release: only the holder; afterwards anyone claims afresh, with nothing taken over', async () => {
      const { backend, doc } = await make()
      await backend.claim(doc, U(5), ask('a'), T0)
      expect(await backend.release(doc, U(5), { agent: 'b' }, T0)).toMatchObject({ released: false, holder: { agent: 'a' } })
      expect(await backend.release(doc, U(5), { agent: 'a' }, T0)).toMatchObject({ released: true, record: { agent: 'a' } })
      expect(await backend.holder(doc, U(5))).toBeUndefined()
      const b = await backend.claim(doc, U(5), ask('b'), T0 + 1)
      expect(b).toMatchObject({ granted: true, record: { agent: 'b' } })
      expect(b).not.toHaveProperty('previous')
      expect(await backend.release(doc, U(6), { agent: 'a' }, T0)).toEqual({ released: false, holder: undefined })
    })

    it('next: the first candidate nobody holds, in the order given; when all are held, who holds each', async () => {
      const { backend, doc } = await make()
      await backend.claim(doc, U(10), ask('x'), T0)
      await backend.claim(doc, U(12), ask('y', 1000), T0)
      expect(await backend.next(doc, [U(10), U(11), U(12)], ask('a'), T0)).toMatchObject({ granted: true, uid: U(11), record: { agent: 'a' } })
      // U(12) expired: taken over.
      expect(await backend.next(doc, [U(10), U(11), U(12)], ask('b'), T0 + 1000)).toMatchObject({ granted: true, uid: U(12), previous: { agent: 'y' } })
      expect(await backend.next(doc, [U(10), U(11), U(12)], ask('c'), T0 + 1000)).toEqual({
        granted: false,
        taken: [
          { uid: U(10), holder: expect.objectContaining({ agent: 'x' }) },
          { uid: U(11), holder: expect.objectContaining({ agent: 'a' }) },
          { uid: U(12), holder: expect.objectContaining({ agent: 'b' }) },
        ],
      })
    })

    it('among concurrent claimants exactly one wins, and every loser is told who', async () => {
      const { backend, doc } = await make()
      const results = await Promise.all(Array.from({ length: 30 }, (_, i) => backend.claim(doc, U(20), ask(`agent-${i}`), T0)))
      const winners = results.filter((r) => r.granted)
      expect(winners).toHaveLength(1)
      const winner = (winners[0] as { record: { agent: string } }).record.agent
      for (const r of results) if (!r.granted) expect(r.holder.agent).toBe(winner)
      // Concurrent `next` over 10 items: 10 winners on 10 distinct items, 10 told all are held.
      const pool = Array.from({ length: 10 }, (_, i) => U(100 + i))
      const nexts = await Promise.all(Array.from({ length: 20 }, (_, i) => backend.next(doc, pool, ask(`n-${i}`), T0)))
      const got = nexts.flatMap((r) => (r.granted ? [r.uid] : []))
      expect(got.sort()).toEqual([...pool].sort())
      for (const r of nexts) if (!r.granted) expect(r.taken).toHaveLength(10)
    })
  })
}
