import { expect } from 'vitest'
import { openStore, type ItemId, type Stage, type Store, type Uid } from '@docket/core'
import { FaultyStorage } from '../../src/index.js'

/**
 * What must be true of the store, described simply: which items exist (by uid) with which
 * name, stage and content; which ids were ever issued and to whom; which ids are deleted;
 * which orphans were planted. It knows nothing of CRDTs, rows or batches.
 */
export interface ModelItem {
  uid: Uid
  id: ItemId
  name: string
  stage: Stage
  content: Record<string, string>
}

export interface PlantedOrphan {
  id: ItemId
  uid: Uid
  name: string
  onDeletedId: boolean
}

export class Model {
  readonly live = new Map<Uid, ModelItem>()
  /** Every id ever handed out, with the uid it went to. */
  readonly issued = new Map<ItemId, Uid>()
  readonly deleted = new Set<ItemId>()
  readonly orphans = new Map<ItemId, PlantedOrphan>()
  /** Names of creates that threw: nothing of them may exist. */
  readonly failedNames = new Set<string>()
  counter = 0

  liveItems(): ModelItem[] {
    return [...this.live.values()].sort((a, b) => Number(a.id) - Number(b.id))
  }

  pickLive(index: number): ModelItem | undefined {
    const items = this.liveItems()
    return items.length === 0 ? undefined : items[index % items.length]
  }

  uniqueName(base: string): string {
    return `${base} ·${++this.counter}`
  }
}

/** The system under test: a real store on a real LevelDB in a temp directory. */
export class Real {
  faulty = new FaultyStorage()
  store!: Store
  constructor(readonly dir: string) {}

  async open(options: { readOnly?: boolean } = {}): Promise<void> {
    this.faulty = new FaultyStorage()
    this.store = await openStore({ dir: this.dir, durability: 'relaxed', logger: { warn: () => {}, error: () => {} }, hooks: this.faulty.hooks, ...options })
  }

  /** Closes whatever state the store is in (even after a simulated crash) and opens it again. */
  async reopen(): Promise<void> {
    await this.store.close().catch(() => {})
    await this.open()
  }
}

/**
 * The invariants checked after every command: no loss (every returned create is there, with
 * what was written), no reissue, deletions stick, nothing of a failed create exists.
 */
export async function checkInvariants(model: Model, real: Real): Promise<void> {
  const store = real.store
  const items = store.listItems()
  const byUid = new Map(items.map((i) => [i.uid, i]))
  for (const expected of model.live.values()) {
    const item = byUid.get(expected.uid)
    expect(item, `item ${expected.uid} (#${expected.id}, "${expected.name}") is lost`).toBeDefined()
    expect({ id: item!.id, name: item!.name, stage: item!.stage }).toEqual({ id: expected.id, name: expected.name, stage: expected.stage })
    for (const [slot, text] of Object.entries(expected.content)) expect(await store.readContent(item!.id, slot)).toBe(text)
  }
  expect(items.length, 'items that the model does not know about').toBe(model.live.size)
  // ids are keys of one map, so they cannot repeat; an item copied to a second id would show as a repeated uid
  expect(new Set(items.map((i) => i.uid)).size, 'two live items share a uid').toBe(items.length)
  for (const id of model.deleted) {
    expect(store.getItem(id)).toBeUndefined()
    expect(store.isTombstoned(id)).toBe(true)
  }
  const next = Number(store.peekNextId())
  for (const id of model.issued.keys()) expect(next).toBeGreaterThan(Number(id))
  for (const id of model.orphans.keys()) expect(next).toBeGreaterThan(Number(id))
  for (const name of model.failedNames) expect(items.some((i) => i.name === name), `a failed create of "${name}" left an item`).toBe(false)
}

/** After an open: each item whole (CRDT entry, shadow row, content), the journal empty, only planted orphans. */
export async function checkWhole(model: Model, real: Real): Promise<void> {
  const report = await real.store.verify()
  expect(report.crdtOnly).toEqual([])
  expect(report.staleShadow).toEqual([])
  expect(report.missingContent).toEqual([])
  expect(report.strayContent).toEqual([])
  expect(report.pendingIntents).toEqual([])
  expect(report.pendingReanchors).toEqual([])
  expect(report.indexComplete).toBe(true)
  expect(report.staleIndex).toEqual([])
  expect([...report.untracked].sort()).toEqual([...model.orphans.keys()].sort())
}
