// Mutation check: put known bugs back into docket, one at a time, and show which tests catch
// them and how fast. Each mutation edits one source file in place and is always undone.
// `npx pnpm@10.34.8 test:mutations` (not part of `pnpm test`: it runs suites many times).
import { spawnSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

interface Mutation {
  name: string
  file: string
  /** Edits to that file, each of a text that must occur exactly once. */
  edits: Array<{ find: string; replace: string }>
  /** Test files that should catch it. */
  tests: string[]
}

const ROOT = join(import.meta.dirname, '..', '..')

const MUTATIONS: Mutation[] = [
  {
    // Schema 2 keeps every claim (grow-only), so forgetting tombstones alone no longer loses a
    // deleted id; the original bug in today's terms: allocation from ids that are live now.
    name: 'the original bug: the allocator counts only live ids (not deleted ones, nor synced high-water marks)',
    file: 'packages/core/src/store/state.ts',
    edits: [
      {
        find: "  state.explicit.add(key)\n  state.allocator.observe('items', idToNumber(claim.id))\n",
        replace: "  state.explicit.add(key)\n  if (!state.parts.tombstones.has(claim.id)) state.allocator.observe('items', idToNumber(claim.id))\n",
      },
      { find: "  state.allocator.observe('tombstones', idToNumber(key))\n", replace: '' },
      { find: "    if (isIdNumber(value)) state.allocator.observe('high-water', value)\n", replace: '' },
    ],
    tests: ['test/properties/store.model.test.ts', 'test/properties/network.property.test.ts'],
  },
  {
    name: 'a stale backward decision wins (no staleness rule in resolveStage)',
    file: 'packages/core/src/stage/resolve.ts',
    edits: [{ find: "        else if (shape.backward && rankOf(shape.basis.stage) < maxRank(shape.basis.epoch)) verdicts.set(top.id, 'stale')\n", replace: '' }],
    tests: ['test/properties/stage.property.test.ts'],
  },
  {
    name: 'recovery ignores its ids filter when repairing',
    file: 'packages/recover/src/recover.ts',
    edits: [{ find: "      selected.push(orphan)\n", replace: "      selected.push(orphan)\n    }\n    for (const extra of (await discoverOrphans(store)).orphans) {\n      if (!selected.some((o) => o.id === extra.id) && extra.kind !== 'tombstoned') selected.push(extra)\n" }],
    tests: ['test/properties/store.model.test.ts'],
  },
  {
    name: 'tombstoned orphans are recovered without being named',
    file: 'packages/recover/src/recover.ts',
    edits: [{ find: "    if (orphan.kind === 'tombstoned' && !includeTombstoned && !named.has(orphan.id)) {", replace: '    if (false) {' }],
    tests: ['test/properties/store.model.test.ts'],
  },
  {
    name: 'the writer acknowledges a write before the batch is on disk',
    file: 'packages/core/src/store/writer.ts',
    edits: [{ find: '      const ops = await this.#buildOps(state, jobs, seqs, snapshot)', replace: '      for (const job of jobs) job.resolve()\n      const ops = await this.#buildOps(state, jobs, seqs, snapshot)' }],
    tests: ['test/properties/faults.property.test.ts'],
  },
  {
    // (Schema 1 deferred such deletes; schema 2 re-anchors only readable items, and a deletion
    // follows the uid.) What still depends on noticing parked parts: keeping them across a restart.
    name: 'parts of a remote update that wait for missing updates are not kept (lost at a restart)',
    file: 'packages/core/src/store/capture.ts',
    edits: [{ find: '  return store.pendingStructs !== null || store.pendingDs !== null', replace: '  return false && store !== null' }],
    tests: ['packages/core/test/replication.test.ts', 'test/properties/deletes.property.test.ts'],
  },
  {
    name: 'deletions are recorded by id only (an orphan of the deleted item comes back under its old uid)',
    file: 'packages/core/src/store/store.ts',
    edits: [{ find: '        state.parts.deleted.set(item.uid, { id: itemId, at: tombstone.at, by: this.replicaId })\n', replace: '' }],
    // Schema 2 deletes the item's data with it, so a re-anchoring finds nothing to move; the
    // deleted uid still matters where the same uid comes back from rows (an orphan adopted).
    tests: ['test/properties/deletes.property.test.ts', 'packages/core/test/orphans.test.ts'],
  },
  {
    name: 'apply checks the item, then awaits, then writes (check-then-act race)',
    file: 'packages/core/src/store/store.ts',
    edits: [{ find: "    if (found === 'tombstoned') return this.#e.rejectWrite(itemId, 'apply', 'tombstoned')\n    const { state, map, item } = found", replace: "    if (found === 'tombstoned') return this.#e.rejectWrite(itemId, 'apply', 'tombstoned')\n    await Promise.resolve()\n    const { state, map, item } = found" }],
    tests: ['test/properties/races.property.test.ts'],
  },
  {
    name: 'createItem neither honours the tombstone guard nor reads the entry back',
    file: 'packages/core/src/store/store.ts',
    edits: [
      { find: '    if (refused) {\n      this.#e.logger.warn(', replace: '    if (false) {\n      this.#e.logger.warn(' },
      { find: "    throw new DocketError('CREATE_NOT_MATERIALIZED', `Item ${id} (${uid}) is not in the document", replace: "    return itemFromRecord(id, record, stage)\n    throw new DocketError('CREATE_NOT_MATERIALIZED', `Item ${id} (${uid}) is not in the document" },
    ],
    tests: ['test/properties/store.model.test.ts', 'test/properties/network.property.test.ts', 'packages/core/test/create.test.ts'],
  },
  {
    // The schema 1 behaviour: an item could only be re-anchored from the shadow row of the id
    // it lost. Schema 2 moves that row to the winner in the very transaction that displaces
    // the item, so this skips (and gives up on) every displaced item — as the old code did once
    // the winner's rows had replaced the loser's.
    name: 're-anchor from disk only: an item is moved only if the shadow index still holds it',
    file: 'packages/core/src/store/engine.ts',
    edits: [
      {
        find: '      if (!record) continue\n      const loss = state.claims.lossOf(uid)\n',
        replace: '      if (!record || state.byUid.get(uid) === undefined) {\n        state.unanchored.delete(uid)\n        continue\n      }\n      const loss = state.claims.lossOf(uid)\n',
      },
    ],
    tests: ['test/properties/burst.property.test.ts'],
  },
]

/** Runs test files; a mutation counts as caught only by a failing test, never by vitest crashing. */
function runTests(tests: string[]): { failed: boolean; seconds: number; detail: string } {
  const start = Date.now()
  const result = spawnSync(process.execPath, [join(ROOT, 'node_modules', 'vitest', 'vitest.mjs'), 'run', ...tests], {
    cwd: ROOT,
    encoding: 'utf8',
    env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0' },
  })
  const output = `${result.stdout}\n${result.stderr}`
  if (result.error || result.status === null) throw new Error(`vitest did not run to the end (${result.error?.message ?? `signal ${result.signal}`}):\n${output.slice(-2000)}`)
  // `FAIL … x.test.ts > suite > test` is a failing test; `FAIL … x.test.ts [ … ]` alone is a file that did not load.
  const caught = [...output.matchAll(/(FAIL .*?\.test\.ts > .*?)$|Property failed after (\d+) tests?/gm)].map((m) => m[0].trim())
  if (result.status !== 0 && caught.length === 0) throw new Error(`vitest exited with ${result.status} but no test failed (a crash or a config error):\n${output.slice(-2000)}`)
  return { failed: result.status !== 0, seconds: (Date.now() - start) / 1000, detail: [...new Set(caught)].slice(0, 4).join(' | ') }
}

const only = process.argv[2]
const selected = MUTATIONS.filter((m) => !only || m.name.includes(only))
// Unmutated, every listed test must pass: otherwise a failure would be counted as a catch.
const baseline = runTests([...new Set(selected.flatMap((m) => m.tests))])
if (baseline.failed) throw new Error(`the tests fail without any mutation (${baseline.detail}): fix them first`)
console.log(`baseline: the listed tests pass unmutated — ${baseline.seconds.toFixed(1)} s`)
const results: string[] = []
for (const m of selected) {
  const path = join(ROOT, m.file)
  const original = readFileSync(path, 'utf8')
  let mutated = original
  for (const edit of m.edits) {
    const count = mutated.split(edit.find).length - 1
    if (count !== 1) throw new Error(`mutation "${m.name}": expected its text once in ${m.file}, found ${count}: the source changed, update the mutation`)
    mutated = mutated.replace(edit.find, edit.replace)
  }
  writeFileSync(path, mutated)
  try {
    const r = runTests(m.tests)
    const line = `${r.failed ? 'CAUGHT ' : 'MISSED '} ${m.name} — ${r.seconds.toFixed(1)} s${r.detail ? ` — ${r.detail}` : ''}`
    console.log(line)
    results.push(line)
  } finally {
    writeFileSync(path, original)
  }
}
const missed = results.filter((r) => r.startsWith('MISSED')).length
console.log(`\n${results.length - missed} of ${results.length} mutations caught`)
if (missed > 0) process.exitCode = 1
