import { mkdir, writeFile } from 'node:fs/promises'
import { coreBenchmarks } from './core.js'
import { recoverBenchmarks } from './recover.js'
import { cliBenchmarks } from './cli.js'
import { syncBenchmarks } from './sync.js'
import { scaleBenchmarks } from './scale.js'
import { arbiterBenchmarks } from './arbiter.js'
import { boardBenchmarks } from './board.js'
import type { Row } from './support.js'

// `pnpm bench [suite…] [--quick]`: every figure is a ratio against a baseline measured in the
// same run, because these machines are shared and noisy.
const args = process.argv.slice(2)
const quick = args.includes('--quick')
const wanted = args.filter((a) => !a.startsWith('--'))
const suites: Record<string, (quick: boolean) => Promise<Row[]>> = { core: coreBenchmarks, recover: recoverBenchmarks, cli: cliBenchmarks, sync: syncBenchmarks, scale: scaleBenchmarks, arbiter: arbiterBenchmarks, board: boardBenchmarks }

const rows: Row[] = []
for (const [name, suite] of Object.entries(suites)) {
  if (wanted.length > 0 && !wanted.includes(name)) continue
  process.stderr.write(`running ${name} benchmarks${quick ? ' (quick)' : ''}…\n`)
  rows.push(...(await suite(quick)))
}
const ms = (v: number) => (v < 0.01 ? `${(v * 1e6).toFixed(1)} ns` : `${v} ms`)
console.table(rows.map((r) => ({ bench: r.bench, subject: `${r.subject}: ${ms(r.subjectMs)}`, baseline: `${r.baseline}: ${ms(r.baselineMs)}`, ratio: `${r.ratio}×`, target: r.target ?? '' })))
await mkdir('bench/results', { recursive: true })
await writeFile('bench/results/latest.json', JSON.stringify({ at: new Date().toISOString(), node: process.version, rows }, null, 2))
