import { describe, expect, it } from 'vitest'
import { openReader } from '../src/index.js'
import { collect, testStore } from './support.js'

describe('ready means ready', () => {
  it('ready excludes blocked and frozen items, from the document and from the index alike', async () => {
    const store = await testStore()
    const free = await store.createItem({ name: 'free' })
    const blocked = await store.createItem({ name: 'blocked' })
    const frozen = await store.createItem({ name: 'frozen' })
    const waiting = await store.createItem({ name: 'waits on free', dependsOn: [free.id] })
    await store.updateItem(blocked.id, { blocked: { reason: 'waiting for review' } })
    await store.updateItem(frozen.id, { frozen: true })
    const ready = store.listItems({ ready: true }).map((i) => i.name)
    const notReady = store.listItems({ ready: false }).map((i) => i.name)
    expect(ready).toEqual(['free'])
    expect(notReady).toEqual(['blocked', 'frozen', 'waits on free'])
    await store.close()
    const reader = await openReader({ dir: store.dir })
    try {
      expect(reader.source).toBe('index')
      expect((await reader.listItems({ ready: true })).map((i) => i.name)).toEqual(ready)
      expect((await reader.listItems({ ready: false })).map((i) => i.name)).toEqual(notReady)
    } finally {
      await reader.close()
    }
    const again = await testStore({ dir: store.dir })
    await again.updateItem(blocked.id, { blocked: null })
    await again.updateItem(frozen.id, { frozen: false })
    expect(again.listItems({ ready: true }).map((i) => i.name)).toEqual(['free', 'blocked', 'frozen'])
    expect(again.getItem(waiting.id)?.stage).toBe('backlog')
  })

  it('apply refuses a blocked or a frozen item, naming the flag and writing nothing; force moves it and is audited', async () => {
    const store = await testStore()
    const item = await store.createItem({ name: 'held' })
    await store.updateItem(item.id, { blocked: { reason: 'waiting for review' }, frozen: true })
    const before = (await collect(store.audit())).length
    await expect(store.apply(item.id, 'start')).rejects.toMatchObject({
      code: 'ITEM_BLOCKED',
      details: { id: item.id, flag: 'blocked', reason: 'waiting for review' },
      message: expect.stringMatching(/blocked \("waiting for review"\).*--unblock.*force/),
    })
    await store.updateItem(item.id, { blocked: null })
    await expect(store.apply(item.id, 'start')).rejects.toMatchObject({ code: 'ITEM_FROZEN', details: { id: item.id, flag: 'frozen' }, message: expect.stringContaining('--unfreeze') })
    expect(store.getItem(item.id)?.stage).toBe('backlog')
    expect(store.stageHistory(item.id)).toHaveLength(1)
    expect((await collect(store.audit())).length).toBe(before + 1) // the unblock only

    await store.updateItem(item.id, { blocked: { reason: 'still' } })
    const moved = await store.apply(item.id, 'start', { force: true })
    expect(moved.stage).toBe('coding')
    const [event] = await collect(store.audit({ kinds: ['transitioned'] }))
    expect(event?.data).toMatchObject({ event: 'start', from: 'backlog', to: 'coding', forced: ['blocked', 'frozen'] })
    // An item that is neither moves without a word about force.
    const plain = await store.createItem({ name: 'plain' })
    await store.apply(plain.id, 'start', { force: true })
    const events = await collect(store.audit({ kinds: ['transitioned'], itemId: plain.id }))
    expect(events[0]?.data).not.toHaveProperty('forced')
  })

  it('apply options are checked like every other input', async () => {
    const store = await testStore()
    const item = await store.createItem({ name: 'x' })
    await expect(store.apply(item.id, 'start', { forse: true } as never)).rejects.toMatchObject({ code: 'INVALID_INPUT', message: expect.stringContaining('force') })
    await expect(store.apply(item.id, 'start', { force: 'yes' } as never)).rejects.toMatchObject({ code: 'INVALID_INPUT' })
    expect(store.getItem(item.id)?.stage).toBe('backlog')
  })
})

describe('compare and set: apply(id, event, { ifStage })', () => {
  it('applies only from the expected stage; otherwise STAGE_CONFLICT names where the item is, and nothing is written', async () => {
    const store = await testStore()
    const item = await store.createItem({ name: 'x' })
    expect((await store.apply(item.id, 'start', { ifStage: 'backlog' })).stage).toBe('coding')
    const before = (await collect(store.audit())).length
    await expect(store.apply(item.id, 'start', { ifStage: 'backlog' })).rejects.toMatchObject({
      code: 'STAGE_CONFLICT',
      details: { id: item.id, stage: 'coding', expected: ['backlog'] },
      message: expect.stringContaining('moved since you read it'),
    })
    expect((await collect(store.audit())).length).toBe(before)
    expect(store.stageHistory(item.id)).toHaveLength(2)
    expect((await store.apply(item.id, 'gates_passed', { ifStage: ['backlog', 'coding'] })).stage).toBe('qa')
    await expect(store.apply(item.id, 'accepted', { ifStage: 'nowhere' as never })).rejects.toMatchObject({ code: 'INVALID_INPUT' })
    await expect(store.apply(item.id, 'accepted', { ifStage: [] })).rejects.toMatchObject({ code: 'INVALID_INPUT' })
    expect(store.getItem(item.id)?.stage).toBe('qa')
  })

  it('a move that another replica made meanwhile is what the check sees once it has arrived', async () => {
    const a = await testStore({ replicaId: 'replica-a' })
    const b = await testStore({ replicaId: 'replica-b' })
    const item = await a.createItem({ name: 'x' })
    await b.applyUpdate(a.encodeStateAsUpdate(b.encodeStateVector()), 'peer')
    await a.apply(item.id, 'start')
    await b.applyUpdate(a.encodeStateAsUpdate(b.encodeStateVector()), 'peer')
    await expect(b.apply(item.id, 'start', { ifStage: 'backlog' })).rejects.toMatchObject({ code: 'STAGE_CONFLICT', details: { stage: 'coding' } })
  })
})
