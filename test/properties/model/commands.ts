import fc from 'fast-check'
import { expect } from 'vitest'
import { isDocketError, transition, validEvents, type EventType, type Uid } from '@docket/core'
import { discoverOrphans, recoverOrphans } from '@docket/recover'
import { body as bodyArb, itemName, pick, plantOrphans, slot as slotArb, snapshotRows, type FaultMode } from '../../src/index.js'
import { checkInvariants, checkWhole, type Model, type Real } from './model.js'

type Command = fc.AsyncCommand<Model, Real>

class Create implements Command {
  constructor(readonly name: string, readonly body: string) {}
  check = () => true
  async run(model: Model, real: Real): Promise<void> {
    const name = model.uniqueName(this.name)
    const expectedId = real.store.peekNextId()
    const item = await real.store.createItem({ name, body: this.body })
    expect(item.id).toBe(expectedId)
    expect(model.issued.has(item.id), `id ${item.id} issued twice`).toBe(false)
    expect(model.deleted.has(item.id)).toBe(false)
    model.issued.set(item.id, item.uid)
    model.live.set(item.uid, { uid: item.uid, id: item.id, name, stage: 'backlog', content: { body: this.body } })
    await checkInvariants(model, real)
  }
  toString = () => `create(${JSON.stringify(this.name)})`
}

class Apply implements Command {
  constructor(readonly item: number, readonly event: number) {}
  check = (model: Readonly<Model>) => model.live.size > 0
  async run(model: Model, real: Real): Promise<void> {
    const target = model.pickLive(this.item)!
    const events = validEvents(target.stage)
    if (events.length === 0) {
      await expect(real.store.apply(target.id, 'start')).rejects.toMatchObject({ code: 'INVALID_TRANSITION' })
      return
    }
    const event = events[this.event % events.length] as EventType
    const item = await real.store.apply(target.id, event)
    target.stage = transition(target.stage, event)
    expect(item.stage).toBe(target.stage)
    await checkInvariants(model, real)
  }
  toString = () => `apply(item#${this.item}, event#${this.event})`
}

class Rename implements Command {
  constructor(readonly item: number, readonly name: string) {}
  check = (model: Readonly<Model>) => model.live.size > 0
  async run(model: Model, real: Real): Promise<void> {
    const target = model.pickLive(this.item)!
    target.name = model.uniqueName(this.name)
    await real.store.updateItem(target.id, { name: target.name })
    await checkInvariants(model, real)
  }
  toString = () => `rename(item#${this.item}, ${JSON.stringify(this.name)})`
}

class WriteContent implements Command {
  constructor(readonly item: number, readonly slot: string, readonly text: string) {}
  check = (model: Readonly<Model>) => model.live.size > 0
  async run(model: Model, real: Real): Promise<void> {
    const target = model.pickLive(this.item)!
    await real.store.writeContent(target.id, this.slot, this.text)
    target.content[this.slot] = this.text
    await checkInvariants(model, real)
  }
  toString = () => `writeContent(item#${this.item}, ${this.slot})`
}

class Delete implements Command {
  constructor(readonly item: number) {}
  check = (model: Readonly<Model>) => model.live.size > 0
  async run(model: Model, real: Real): Promise<void> {
    const target = model.pickLive(this.item)!
    const result = await real.store.deleteItem(target.id, { reason: 'model' })
    expect(result.alreadyDeleted).toBe(false)
    model.live.delete(target.uid)
    model.deleted.add(target.id)
    await checkInvariants(model, real)
  }
  toString = () => `delete(item#${this.item})`
}

class Reopen implements Command {
  check = () => true
  async run(model: Model, real: Real): Promise<void> {
    await real.reopen()
    await checkInvariants(model, real)
    await checkWhole(model, real)
  }
  toString = () => 'reopen()'
}

/** A create during which the k-th write fails (or the process "dies"), then a reopen from disk. */
class CrashDuringCreate implements Command {
  constructor(readonly k: number, readonly mode: FaultMode, readonly name: string) {}
  check = () => true
  async run(model: Model, real: Real): Promise<void> {
    const name = model.uniqueName(this.name)
    real.faulty.arm(this.k, this.mode)
    let created: Awaited<ReturnType<typeof real.store.createItem>> | undefined
    try {
      created = await real.store.createItem({ name, body: `body of ${name}` })
    } catch (err) {
      expect(isDocketError(err, 'PERSIST_FAILED'), String(err)).toBe(true)
    }
    real.faulty.disarm()
    if (created) {
      model.issued.set(created.id, created.uid)
      model.live.set(created.uid, { uid: created.uid, id: created.id, name, stage: 'backlog', content: { body: `body of ${name}` } })
    } else {
      model.failedNames.add(name)
    }
    await real.reopen()
    await checkInvariants(model, real)
    await checkWhole(model, real)
  }
  toString = () => `crashDuringCreate(k=${this.k}, ${this.mode})`
}

/** Half-written rows appear (an older scheme, a bug): on a fresh id, or on a deleted one. */
class PlantOrphan implements Command {
  constructor(readonly onDeletedId: boolean, readonly pickDeleted: number) {}
  check = () => true
  async run(model: Model, real: Real): Promise<void> {
    const deleted = [...model.deleted].filter((id) => !model.orphans.has(id))
    const onDeleted = this.onDeletedId && deleted.length > 0
    const id = onDeleted ? deleted[this.pickDeleted % deleted.length]! : String(Number(real.store.peekNextId()) + 3)
    const name = model.uniqueName('orphan')
    const uid = `01JQ${String(model.counter).padStart(22, '0')}` as Uid
    await real.store.close()
    await plantOrphans(real.dir, [{ id, uid, name }])
    await real.open()
    model.orphans.set(id as never, { id: id as never, uid, name, onDeletedId: onDeleted })
    await checkInvariants(model, real)
  }
  toString = () => `plantOrphan(${this.onDeletedId ? 'on a deleted id' : 'fresh id'})`
}

/** Discovery finds exactly the planted orphans; discovery and a dry run change no byte. */
class Discover implements Command {
  check = () => true
  async run(model: Model, real: Real): Promise<void> {
    await real.store.close()
    const before = await snapshotRows(real.dir)
    await real.open({ readOnly: true })
    const found = await discoverOrphans(real.store)
    expect(found.orphans.map((o) => [o.id, o.kind]).sort()).toEqual([...model.orphans.values()].map((o) => [o.id, o.onDeletedId ? 'tombstoned' : 'missing']).sort())
    const dry = await recoverOrphans(real.store)
    expect(dry.recovered.map((r) => r.newId)).toEqual(dry.recovered.map(() => null))
    await real.store.close()
    expect(await snapshotRows(real.dir)).toEqual(before)
    await real.open()
  }
  toString = () => 'discover()'
}

/** Recovers a named subset: exactly those come back, to fresh ids; a deleted one only when named. */
class Recover implements Command {
  constructor(readonly picks: number[], readonly includeTombstoned: boolean) {}
  check = (model: Readonly<Model>) => model.orphans.size > 0
  async run(model: Model, real: Real): Promise<void> {
    const all = [...model.orphans.values()]
    const named = [...new Set(this.picks.map((p) => all[p % all.length]!))]
    const result = await recoverOrphans(real.store, { ids: named.map((o) => o.id), dryRun: false, includeTombstoned: this.includeTombstoned })
    expect(result.failed).toEqual([])
    expect(result.recovered.map((r) => r.oldId).sort()).toEqual(named.map((o) => o.id).sort())
    for (const r of result.recovered) {
      const orphan = model.orphans.get(r.oldId)!
      expect(model.issued.has(r.newId!) || model.deleted.has(r.newId!), `recovery reused id ${r.newId}`).toBe(false)
      model.issued.set(r.newId!, orphan.uid)
      model.live.set(orphan.uid, { uid: orphan.uid, id: r.newId!, name: orphan.name, stage: 'backlog', content: {} })
      model.orphans.delete(r.oldId)
    }
    const again = await recoverOrphans(real.store, { ids: named.map((o) => o.id), dryRun: false })
    expect(again.recovered).toEqual([])
    await checkInvariants(model, real)
  }
  toString = () => `recover(${this.picks.join(',')}${this.includeTombstoned ? ', includeTombstoned' : ''})`
}

/** Recovers without a filter: every missing orphan comes back; deleted ids only when included. */
class RecoverAll implements Command {
  constructor(readonly includeTombstoned: boolean) {}
  check = (model: Readonly<Model>) => model.orphans.size > 0
  async run(model: Model, real: Real): Promise<void> {
    const result = await recoverOrphans(real.store, { dryRun: false, all: true, includeTombstoned: this.includeTombstoned })
    expect(result.failed).toEqual([])
    const expected = [...model.orphans.values()].filter((o) => this.includeTombstoned || !o.onDeletedId)
    expect(result.recovered.map((r) => r.oldId).sort()).toEqual(expected.map((o) => o.id).sort())
    expect(result.skipped.filter((s) => s.reason.startsWith('tombstoned')).map((s) => s.id).sort()).toEqual(
      [...model.orphans.values()].filter((o) => !this.includeTombstoned && o.onDeletedId).map((o) => o.id).sort(),
    )
    for (const r of result.recovered) {
      const orphan = model.orphans.get(r.oldId)!
      model.issued.set(r.newId!, orphan.uid)
      model.live.set(orphan.uid, { uid: orphan.uid, id: r.newId!, name: orphan.name, stage: 'backlog', content: {} })
      model.orphans.delete(r.oldId)
    }
    await checkInvariants(model, real)
  }
  toString = () => `recoverAll(${this.includeTombstoned ? 'includeTombstoned' : ''})`
}

export const commands: Array<fc.Arbitrary<Command>> = [
  fc.tuple(itemName, bodyArb).map(([n, b]) => new Create(n, b)),
  fc.tuple(pick, pick).map(([i, e]) => new Apply(i, e)),
  fc.tuple(pick, itemName).map(([i, n]) => new Rename(i, n)),
  fc.tuple(pick, slotArb, fc.lorem({ maxCount: 2 })).map(([i, s, t]) => new WriteContent(i, s, t)),
  pick.map((i) => new Delete(i)),
  fc.constant(new Reopen()),
  fc.tuple(fc.integer({ min: 1, max: 3 }), fc.constantFrom<FaultMode>('fail', 'crash'), itemName).map(([k, m, n]) => new CrashDuringCreate(k, m, n)),
  fc.tuple(fc.boolean(), pick).map(([d, p]) => new PlantOrphan(d, p)),
  fc.constant(new Discover()),
  fc.tuple(fc.array(pick, { minLength: 1, maxLength: 3 }), fc.boolean()).map(([p, t]) => new Recover(p, t)),
  fc.boolean().map((t) => new RecoverAll(t)),
]
