import { describe, expect, it } from 'vitest'
import { openReader, openStore } from '../src/index.js'
import { snapshotRows, keysWithPrefix, runFixture, startFixture, tempDir } from './support.js'

const STEPS: Array<[string, 'absent' | 'whole']> = [
  ['create:validated', 'absent'],
  ['create:allocated', 'absent'],
  ['create:before-crdt-write', 'absent'],
  ['create:crdt-written', 'absent'],
  ['commit:before-write', 'absent'],
  ['commit:after-write', 'whole'],
  ['create:committed', 'whole'],
]

async function seed(dir: string): Promise<void> {
  const store = await openStore({ dir })
  await store.createItem({ name: 'one', body: 'b1' })
  await store.createItem({ name: 'two', body: 'b2' })
  await store.deleteItem('2')
  await store.close()
}

describe('createItem survives kill -9 at every step', () => {
  for (const [step, expected] of STEPS) {
    it(`killed at ${step}: the item is ${expected}, the journal empty, no orphan rows`, async () => {
      const dir = await tempDir()
      await seed(dir)
      const result = await runFixture('crash-create.ts', [dir, step])
      expect(result.signal, result.stderr).toBe('SIGKILL')

      // Before any writable open could rebuild it: the index rows went with the batch, or not at all.
      const reader = await openReader({ dir })
      try {
        expect(reader.source).toBe('index')
        expect((await reader.listItems()).map((i) => i.id)).toEqual(expected === 'whole' ? ['1', '3'] : ['1'])
        expect(await reader.tombstone('2')).toBeDefined()
        if (expected === 'whole') expect(await reader.readContent('3', 'gate_output')).toBe('gates')
      } finally {
        await reader.close()
      }

      const store = await openStore({ dir })
      try {
        const item = store.getItem('3')
        if (expected === 'whole') {
          expect(item).toMatchObject({ id: '3', name: 'crash victim', stage: 'backlog' })
          expect(await store.readContent('3')).toBe('---\nname: crash victim\n---\nbody')
          expect(await store.readContent('3', 'gate_output')).toBe('gates')
          expect(store.peekNextId()).toBe('4')
        } else {
          expect(item).toBeUndefined()
          expect(store.peekNextId()).toBe('3')
        }
        expect(store.maintenance.pendingIntents()).toEqual([])
        expect(store.getItem('2')).toBeUndefined()
        expect(store.isTombstoned('2')).toBe(true)
      } finally {
        await store.close()
      }
      const dump = await snapshotRows(dir)
      expect(keysWithPrefix(dump, '!journal!')).toEqual([])
      const live = expected === 'whole' ? ['1', '3'] : ['1']
      expect(keysWithPrefix(dump, '!shadow!')).toEqual(live.map((id) => `!shadow!${id.padStart(16, '0')}`))
      const contentIds = new Set(keysWithPrefix(dump, '!content!').map((k) => k.slice('!content!'.length, '!content!'.length + 16)))
      expect([...contentIds].sort()).toEqual(live.map((id) => id.padStart(16, '0')))
    })
  }
})

describe('one process per store', () => {
  it('a second process gets STORE_LOCKED naming the directory, without hanging', async () => {
    const dir = await tempDir()
    await seed(dir)
    const holder = await startFixture('hold-open.ts', [dir], 'open')
    try {
      const err = await openStore({ dir }).catch((e: unknown) => e)
      expect(err).toMatchObject({ code: 'STORE_LOCKED' })
      expect((err as Error).message).toContain(dir)
      expect((err as Error).message).toMatch(/close that process|another --dir/)
    } finally {
      holder.child.stdin!.end()
      await new Promise((resolve) => holder.child.on('close', resolve))
    }
    const store = await openStore({ dir })
    expect(store.getItem('1')?.name).toBe('one')
    await store.close()
  })
})
