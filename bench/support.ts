import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { ItemId, Store } from '@docket/core'

export async function scratch(prefix: string): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), `docket-bench-${prefix}-`))
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) }
}

/** Polls every `everyMs` (10 by default: a tighter loop would steal the CPU the replicas need). */
export async function until(predicate: () => boolean, timeoutMs = 300_000, everyMs = 10): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error('timed out')
    await new Promise((r) => setTimeout(r, everyMs))
  }
}

/** Milliseconds from an update of `id` on `a` (its retries set to `retries`) until `b` has told its listeners of it. */
export async function propagation(a: Store, b: Store, id: ItemId, retries: number): Promise<number> {
  const seen = new Promise<void>((resolve) => {
    const off = b.subscribe((event) => {
      if (event.type === 'changed' && event.ids.includes(id) && b.getItem(id)?.retries === retries) {
        off()
        resolve()
      }
    })
  })
  const start = process.hrtime.bigint()
  await a.updateItem(id, { retries })
  await seen
  return Number(process.hrtime.bigint() - start) / 1e6
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

export function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!
}

export async function time<T>(fn: () => Promise<T> | T): Promise<[number, T]> {
  const start = process.hrtime.bigint()
  const value = await fn()
  return [Number(process.hrtime.bigint() - start) / 1e6, value]
}

/** Alternates subject and baseline runs so that machine noise hits both alike. */
export async function interleaved(rounds: number, subject: () => Promise<number>, baseline: () => Promise<number>): Promise<{ subject: number[]; baseline: number[] }> {
  const out = { subject: [] as number[], baseline: [] as number[] }
  for (let i = 0; i < rounds; i++) {
    out.baseline.push(await baseline())
    out.subject.push(await subject())
  }
  return out
}

export interface Row {
  bench: string
  subject: string
  subjectMs: number
  baseline: string
  baselineMs: number
  ratio: number
  target?: string
  /** The unit of subjectMs and baselineMs when they are not milliseconds (e.g. 'MB'); absent: ms. */
  unit?: string
  /** Whether the target is met, for suites that judge it (the target text says so too). */
  met?: boolean
}

export function row(bench: string, subject: string, subjectMs: number, baseline: string, baselineMs: number, target?: string): Row {
  const r: Row = { bench, subject, subjectMs: round(subjectMs), baseline, baselineMs: round(baselineMs), ratio: Math.round((subjectMs / baselineMs) * 100) / 100 }
  if (target) r.target = target
  return r
}

function round(n: number): number {
  return n < 0.01 ? n : Math.round(n * 1000) / 1000
}

export function body(id: number, size = 1024): string {
  const head = `---\nname: Item ${id}\ntype: story\ndepends_on: []\n---\n`
  return head + 'x'.repeat(Math.max(0, size - head.length))
}
