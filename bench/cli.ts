import { spawnSync } from 'node:child_process'
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { openStore } from '@docket/core'
import { populate } from './core.js'
import { interleaved, median, row, scratch, time, type Row } from './support.js'

const BIN = join(import.meta.dirname, '..', 'packages', 'cli', 'dist', 'bin.js')
const quiet = { warn: () => {}, error: () => {} }

function run(args: string[]): number {
  const start = process.hrtime.bigint()
  const result = spawnSync(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 1 << 30 })
  if (result.status !== 0) throw new Error(`${args.join(' ')} failed: ${result.stderr}`)
  return Number(process.hrtime.bigint() - start) / 1e6
}

/** `docket list --json` on a 10k-item store, against starting node and doing nothing. */
async function listJson(items: number, rounds: number): Promise<Row> {
  const s = await scratch('cli-list')
  const store = await openStore({ dir: s.dir, durability: 'relaxed', logger: quiet })
  await populate(store, items, 1024)
  await store.compact()
  await store.close()
  const result = await interleaved(
    rounds,
    async () => run([BIN, '--dir', s.dir, '--json', 'list']),
    async () => run(['-e', '0']),
  )
  await s.cleanup()
  return row(`docket list --json, ${items} items (median of ${rounds})`, 'docket list --json', median(result.subject), 'node -e 0', median(result.baseline))
}

/** `docket import` of a legacy tree, per file, against reading the same files. */
async function importTree(files: number): Promise<Row> {
  const s = await scratch('cli-import')
  const root = join(s.dir, 'tree')
  const folders = ['1_backlog', '2_current', '3_qa', '4_merge', '5_done', '6_archived', '7_frozen']
  for (const f of folders) await mkdir(join(root, f), { recursive: true })
  for (let i = 1; i <= files; i++) {
    const body = `---\nname: "Legacy item ${i}"\ntype: story\ndepends_on: [${i > 1 ? i - 1 : ''}]\n---\n\n${'Some legacy markdown. '.repeat(40)}\n`
    await writeFile(join(root, folders[i % folders.length]!, `${i}_story_legacy-item-${i}.md`), body)
  }
  const store = join(s.dir, 'store')
  run([BIN, '--dir', store, 'init'])
  const [readMs] = await time(async () => {
    let bytes = 0
    for (const f of folders) for (const name of await readdir(join(root, f))) bytes += (await readFile(join(root, f, name))).byteLength
    return bytes
  })
  const importMs = run([BIN, '--dir', store, 'import', root])
  await s.cleanup()
  return row(`docket import, ${files} legacy files (per file, one run)`, 'docket import', importMs / files, 'reading the same files', readMs / files)
}

/**
 * Issue 12's CLI reads, each against node -e 0 in the same run: `show ID` and `list --ready`
 * opening the store themselves (the index rows), then through a live holder (`docket daemon`).
 * Targets: through a holder ≤ 2× at 10k items (≤ 3× at 100k); opening the store ≤ 4×.
 */
async function cliReads(items: number, rounds: number): Promise<Row[]> {
  const s = await scratch('cli-reads')
  const store = await openStore({ dir: s.dir, durability: 'relaxed', logger: quiet })
  await populate(store, items, 1024)
  await store.compact()
  await store.close()
  const id = String(Math.ceil(items / 2))
  const reads: Array<[string, string[]]> = [
    [`docket --json show ${id}`, ['--json', 'show', id]],
    ['docket --json list --ready', ['--json', 'list', '--ready']],
  ]
  const rows: Row[] = []
  const measure = async (how: string, target: string, limit: number) => {
    for (const [label, args] of reads) {
      const result = await interleaved(
        rounds,
        async () => run([BIN, '--dir', s.dir, ...args]),
        async () => run(['-e', '0']),
      )
      const r = row(`${label}, ${items} items, ${how} (median of ${rounds})`, label, median(result.subject), 'node -e 0', median(result.baseline))
      rows.push({ ...r, target: `${target} · ${r.ratio <= limit ? 'met' : 'NOT met'}`, met: r.ratio <= limit })
    }
  }
  await measure('opening the store itself (index rows)', '≤ 4×', 4)
  run([BIN, '--dir', s.dir, 'daemon', 'start'])
  try {
    await measure('through a live holder (docket daemon)', '≤ 2× (≤ 3× at 100k)', 2)
  } finally {
    run([BIN, '--dir', s.dir, 'daemon', 'stop'])
  }
  await s.cleanup()
  return rows
}

export async function cliBenchmarks(quick: boolean): Promise<Row[]> {
  const items = Number(process.env.DOCKET_CLI_ITEMS) || (quick ? 2_000 : 10_000)
  return [await listJson(quick ? 2_000 : 10_000, quick ? 3 : 9), ...(await cliReads(items, quick ? 3 : 9)), await importTree(quick ? 2_000 : 10_000)]
}
