import { describe, expect, it } from 'vitest'
import type { Store } from '../src/index.js'
import { testStore } from './support.js'

function rng(seed: number) { return () => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed / 0x7fffffff } }

async function pull(to: Store, from: Store) {
  await to.applyUpdate(from.encodeStateAsUpdate(to.encodeStateVector()), 'peer')
}

describe('fuzz', () => {
  for (let seed = 1; seed <= Number(process.env.SEEDS ?? 30); seed++) {
    it(`seed ${seed}`, async () => {
      const r = rng(seed)
      const n = Number(process.env.N ?? 3)
      const stores = [] as Store[]
      for (let i = 0; i < n; i++) stores.push(await testStore({ replicaId: `replica-${i}` }))
      const acked = new Map<string, string>() // uid -> creator
      const deletedUids = new Set<string>()
      const log: string[] = []
      for (let step = 0; step < 40; step++) {
        const i = Math.floor(r() * n)
        const s = stores[i]!
        const op = r()
        try {
          if (op < 0.35) {
            const it = await s.createItem({ name: `i${step}` })
            acked.set(it.uid, s.replicaId); log.push(`${i} create ${it.id} ${it.uid}`)
          } else if (op < 0.5) {
            const items = s.listItems(); if (items.length) { const t = items[Math.floor(r() * items.length)]!; const res = await s.deleteItem(t.id); deletedUids.add(res.uid); log.push(`${i} delete ${t.id} ${res.uid}`) }
          } else if (op < 0.65) {
            const items = s.listItems(); if (items.length) { const t = items[Math.floor(r() * items.length)]!; try { await s.apply(t.id, 'start'); log.push(`${i} start ${t.id}`) } catch {} }
          } else {
            const j = Math.floor(r() * n); if (j !== i) { await pull(s, stores[j]!); log.push(`${i} pull ${j}`) }
          }
        } catch (e) { log.push(`${i} ERR ${(e as Error).message}`) }
        if (r() < 0.3) await s.flush()
      }
      for (let round = 0; round < 6; round++) { for (const a of stores) for (const b of stores) if (a !== b) await pull(a, b); for (const s of stores) await s.flush() }
      const views = stores.map((s) => JSON.stringify(s.listItems().map((x) => [x.id, x.uid, x.stage])))
      try {
        for (const v of views) expect(v).toBe(views[0])
        const live = new Set(stores[0]!.listItems().map((x) => x.uid))
        for (const [uid] of acked) if (!deletedUids.has(uid) && !stores[0]!.isDeletedUid(uid)) expect(live.has(uid), `lost ${uid}`).toBe(true)
        for (const [uid] of acked) if (deletedUids.has(uid)) expect(live.has(uid)).toBe(false)
        for (const s of stores) { const rep = await s.verify(); if (!rep.ok) { for (const id of rep.untracked) console.log('STORE', s.replicaId, 'id', id, JSON.stringify(await s.readShadowRow(id)), 'tomb', JSON.stringify(s.tombstone(id)), 'aliases', JSON.stringify(s.aliases(id))) } expect(rep.ok, JSON.stringify(rep)).toBe(true) }
      } catch (e) { console.log(log.join('\n')); console.log(views.join('\n')); throw e }
    })
  }
})
