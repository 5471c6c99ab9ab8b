import { execFileSync } from 'node:child_process'
import { existsSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { openStore, type Item, type Store } from '../src/index.js'
import { capturingLogger, collect, tempDir, testStore } from './support.js'

/**
 * Storage faults of issue 9: a full disk, a torn or damaged LevelDB log, damaged table files.
 * Nothing acknowledged may be lost silently; what is lost is said out loud.
 */

const mounts: string[] = []
afterEach(() => {
  for (const dir of mounts.splice(0)) {
    try {
      execFileSync('umount', [dir])
    } catch {
      // already gone
    }
  }
})

/** A real filesystem of `size` (a tmpfs) when this process may mount one; undefined otherwise. */
async function smallFilesystem(size: string): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return undefined
  const dir = await tempDir('docket-tmpfs-')
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir], { stdio: 'ignore' })
  } catch {
    return undefined
  }
  mounts.push(dir)
  return dir
}

async function fill(store: Store, acked: Item[], body: string): Promise<unknown> {
  for (let i = 0; i < 10_000; i++) {
    try {
      acked.push(await store.createItem({ name: `item ${acked.length}`, body }))
    } catch (err) {
      return err
    }
  }
  throw new Error('the filesystem never filled up')
}

async function filledStore(items = 60): Promise<{ dir: string; uids: string[] }> {
  const dir = await tempDir()
  const store = await openStore({ dir, logger: capturingLogger() })
  const uids: string[] = []
  for (let i = 0; i < items; i++) uids.push((await store.createItem({ name: `n${i}`, body: `body ${i} `.repeat(50) })).uid)
  await store.close()
  return { dir, uids }
}

function logFile(dir: string): string {
  const db = join(dir, 'db')
  const log = readdirSync(db).find((f) => f.endsWith('.log') && statSync(join(db, f)).size > 0)
  if (!log) throw new Error(`no LevelDB log with data in ${db}`)
  return join(db, log)
}

describe('a full disk', () => {
  it('acknowledges nothing while full, resumes when space returns, and loses nothing acknowledged', async () => {
    const mount = await smallFilesystem('1m')
    // Without root (no tmpfs) the same contract is checked with an injected ENOSPC.
    let full = false
    const hooks = mount
      ? undefined
      : {
          beforeWrite: () => {
            if (full) throw Object.assign(new Error('IO error: No space left on device'), { code: 'LEVEL_IO_ERROR' })
          },
        }
    const dir = join(mount ?? (await tempDir()), 'store')
    const store = await openStore({ dir, logger: capturingLogger(), ...(hooks ? { hooks } : {}) })
    const acked: Item[] = []
    if (mount) {
      const err = await fill(store, acked, 'x'.repeat(2000))
      expect(err).toMatchObject({ code: 'PERSIST_FAILED' })
    } else {
      for (let i = 0; i < 20; i++) acked.push(await store.createItem({ name: `item ${i}`, body: 'x' }))
      full = true
      await expect(store.createItem({ name: 'refused' })).rejects.toMatchObject({ code: 'PERSIST_FAILED' })
    }
    // Still full: refused again, and nothing of it is visible.
    await expect(store.createItem({ name: 'still refused', body: 'y'.repeat(4000) })).rejects.toMatchObject({ code: 'PERSIST_FAILED', message: expect.stringContaining('disk space') })
    expect(store.listItems().map((i) => i.uid)).toEqual(acked.map((i) => i.uid))
    // Space comes back: the same open store writes again.
    if (mount) execFileSync('mount', ['-o', 'remount,size=64m', mount])
    full = false
    for (let i = 0; i < 30; i++) acked.push(await store.createItem({ name: `after ${i}`, body: 'z'.repeat(100) }))
    await store.close()

    const again = await openStore({ dir, logger: capturingLogger() })
    try {
      const live = new Map(again.listItems().map((i) => [i.uid, i]))
      for (const item of acked) expect(live.get(item.uid)?.id, `acknowledged item ${item.id} (${item.name})`).toBe(item.id)
      expect(live.size).toBe(acked.length)
      expect(Number(again.peekNextId())).toBeGreaterThan(Math.max(...acked.map((i) => Number(i.id))))
      expect((await again.verify()).ok).toBe(true)
    } finally {
      await again.close()
    }
  })
})

describe('a torn or damaged LevelDB log', () => {
  it('a truncated log tail is reported at open (STORE_CORRUPT), kept on record, and opened only when the loss is accepted', async () => {
    const { dir, uids } = await filledStore()
    const log = logFile(dir)
    truncateSync(log, statSync(log).size - 2500)
    const err = await openStore({ dir, logger: capturingLogger() }).catch((e: unknown) => e)
    expect(err).toMatchObject({ code: 'STORE_CORRUPT', message: expect.stringContaining('acknowledged batches lost'), details: { expectedCommit: expect.any(Number) } })
    expect((err as Error).message).toContain('docket doctor')
    expect(existsSync(join(dir, 'DAMAGE.json'))).toBe(true)
    // LevelDB has folded its log by now; the loss is still remembered.
    await expect(openStore({ dir, logger: capturingLogger() })).rejects.toMatchObject({ code: 'STORE_CORRUPT' })
    // Reports still work.
    const report = await openStore({ dir, readOnly: true, logger: capturingLogger() })
    const survived = report.listItems().length
    expect(survived).toBeLessThan(uids.length)
    const verify = await report.verify()
    expect(verify.ok).toBe(false)
    expect(verify.damage?.findings.join(' ')).toContain('lost')
    await report.close()
    // Accepting the loss records it and goes on.
    const accepted = await openStore({ dir, acceptDamage: true, logger: capturingLogger() })
    const events = await collect(accepted.audit({ kinds: ['storage_loss_acknowledged'] }))
    expect(events).toHaveLength(1)
    expect(accepted.listItems()).toHaveLength(survived)
    await accepted.createItem({ name: 'goes on' })
    await accepted.close()
    expect(existsSync(join(dir, 'DAMAGE.json'))).toBe(false)
    expect(readdirSync(dir).some((f) => f.startsWith('DAMAGE.acknowledged-'))).toBe(true)
    const later = await openStore({ dir, logger: capturingLogger() })
    expect(later.listItems()).toHaveLength(survived + 1)
    await later.close()
  })

  it('a damaged record in the middle of the log is reported; the rows it left behind show up as orphans, and doctor --fix does not erase them', async () => {
    const { dir } = await filledStore()
    const log = logFile(dir)
    const bytes = readFileSync(log)
    for (let i = 0; i < 64; i++) bytes[Math.floor(bytes.length / 2) + i]! ^= 0xff
    writeFileSync(log, bytes)
    await expect(openStore({ dir, logger: capturingLogger() })).rejects.toMatchObject({ code: 'STORE_CORRUPT', message: expect.stringMatching(/missing between|dropped damaged records/) })
    const report = await openStore({ dir, readOnly: true, logger: capturingLogger() })
    const verify = await report.verify()
    expect(verify.damage?.logCorruption?.length ?? 0).toBeGreaterThan(0)
    expect(verify.untracked.length).toBeGreaterThan(0) // shadow rows whose document entries were lost
    await report.close()
    const accepted = await openStore({ dir, acceptDamage: true, logger: capturingLogger() })
    await accepted.maintenance.repairShadow()
    for (const id of verify.untracked) expect(await accepted.maintenance.readShadowRow(id), `evidence of #${id}`).toBeDefined()
    await accepted.close()
  })

  it('damaged table files, a missing MANIFEST or a garbled CURRENT give STORE_CORRUPT with what to do', async () => {
    for (const damage of ['manifest', 'current', 'table'] as const) {
      const { dir } = await filledStore(120)
      const s = await openStore({ dir, logger: capturingLogger() }) // folds the log into a table file
      await s.close()
      const db = join(dir, 'db')
      if (damage === 'manifest') for (const f of readdirSync(db)) if (f.startsWith('MANIFEST')) rmSync(join(db, f))
      if (damage === 'current') writeFileSync(join(db, 'CURRENT'), 'garbage\n')
      if (damage === 'table') {
        for (const f of readdirSync(db).filter((name) => name.endsWith('.ldb'))) {
          const b = readFileSync(join(db, f))
          for (let i = 0; i < b.length; i += 50) b[i]! ^= 0x55
          writeFileSync(join(db, f), b)
        }
      }
      const err = await openStore({ dir, logger: capturingLogger() }).catch((e: unknown) => e)
      expect(err, damage).toMatchObject({ code: 'STORE_CORRUPT', message: expect.stringContaining('backup') })
    }
  })
})

describe('closing under a reader', () => {
  it('close() under a running scan or verify() rejects the reader with STORE_CLOSED, not a LevelDB error', async () => {
    const store = await testStore()
    for (let i = 0; i < 300; i++) await store.createItem({ name: `n${i}`, body: 'b'.repeat(200) })
    // verify() flushes first and may finish before the close lands: either it finishes, or it says STORE_CLOSED.
    const verifying = store.verify().then(
      () => 'finished',
      (err: { code?: string }) => err.code,
    )
    await store.close()
    expect(['finished', 'STORE_CLOSED']).toContain(await verifying)
    const scanning = (async () => {
      const again = await openStore({ dir: store.dir, logger: capturingLogger() })
      const it = again.maintenance.scanStoredRows()
      await it.next()
      const closing = again.close()
      try {
        for await (const _ of it) {
          // drain
        }
        return 'finished'
      } catch (err) {
        return (err as { code?: string }).code
      } finally {
        await closing
      }
    })()
    // (a scan that had buffered its last rows may finish; what must never come out is LEVEL_ITERATOR_NOT_OPEN)
    expect(['finished', 'STORE_CLOSED']).toContain(await scanning)
  })
})

describe('repairing the shadow never erases the last evidence', () => {
  it('a shadow row that holds a transition the document lost puts it back into the stage log instead of being overwritten', async () => {
    const dir = await tempDir()
    let store = await openStore({ dir, logger: capturingLogger() })
    const item = await store.createItem({ name: 'evidence' })
    const [created] = store.stageHistory(item.id)
    await store.close()
    // The document lost a `start` that the shadow row still records (as a damaged log leaves it).
    const { readRawRows, writeRawRows } = await import('../src/testing.js')
    const row = (await readRawRows(dir)).find((r) => r.sublevel === 'shadow')!
    const shadow = JSON.parse(Buffer.from(row.value).toString('utf8')) as Record<string, unknown>
    const lost = { id: '01JZZZZZZZZZZZZZZZZZZZZZZZ', epoch: 0, stage: 'coding', event: 'start', basedOn: created!.id, by: store.replicaId, at: new Date().toISOString() }
    shadow.stage = 'coding'
    shadow.stages = [...(shadow.stages as unknown[]), lost]
    await writeRawRows(dir, [{ type: 'put', sublevel: 'shadow', key: row.key, value: JSON.stringify(shadow) }])
    store = await openStore({ dir, logger: capturingLogger() })
    expect(store.getItem(item.id)?.stage).toBe('backlog')
    expect((await store.verify()).staleShadow).toMatchObject([{ id: item.id, shadowStage: 'coding', crdtStage: 'backlog' }])
    await store.maintenance.repairShadow()
    expect(store.getItem(item.id)?.stage).toBe('coding')
    expect((await store.maintenance.readShadowRow(item.id)) as { row: { stage: string } }).toMatchObject({ row: { stage: 'coding' } })
    expect(await collect(store.audit({ kinds: ['doctor_fix'] }))).toMatchObject([{ data: { restoredEntries: { [item.id]: [lost.id] } } }])
    expect((await store.verify()).ok).toBe(true)
    await store.close()
  })
})
