import { execFileSync, spawn } from 'node:child_process'
import { closeSync, constants, openSync, writeSync } from 'node:fs'
import { readdir, readFile, stat, symlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { openStore, type Item } from '@docket/core'
import { snapshotRows } from '@docket/harness'
import { BIN, docket, legacyFile, legacyTree, newStore, tempDir, writeTree } from './support.js'

/** Items, stages and bodies of a store, keyed by id: what import ∘ export must preserve. */
async function contents(dir: string): Promise<Record<string, { item: Partial<Item>; content: Record<string, string> }>> {
  const store = await openStore({ dir, readOnly: true, logger: { warn: () => {} } })
  try {
    const out: Record<string, { item: Partial<Item>; content: Record<string, string> }> = {}
    for (const item of store.listItems()) {
      const { uid: _uid, createdAt: _c, updatedAt: _u, createdBy: _b, ...rest } = item
      const content: Record<string, string> = {}
      for (const slot of store.contentSlots(item.id)) content[slot] = Buffer.from((await store.readContentBytes(item.id, slot))!).toString('base64')
      out[item.id] = { item: rest, content }
    }
    return out
  } finally {
    await store.close()
  }
}

/** A legacy tree of a few hundred files across all stages, with the bad files a real one has. */
async function realisticTree(): Promise<{ root: string; files: number }> {
  const root = join(await tempDir('docket-legacy-'), 'pipeline')
  const good = legacyTree(300)
  const outside = join(await tempDir('docket-outside-'), 'secret.md')
  await writeFile(outside, legacyFile({ name: 'outside the tree' }))
  await writeTree(root, {
    ...good,
    '1_backlog/301_bug_no-front-matter.md': '# Just a heading\n\nNo front matter here.\n',
    '1_backlog/302_story_bad-yaml.md': '---\nname: [unclosed\n---\nbody\n',
    '2_current/303_chore_unknown-type.md': legacyFile({ name: 'Unknown type' }),
    '3_qa/304_spike_not-utf8.md': new Uint8Array([0x2d, 0x2d, 0x2d, 0x0a, 0xff, 0xfe, 0x0a, 0x2d, 0x2d, 0x2d, 0x0a]),
    '4_merge/305_story_empty.md': '',
    '5_done/10_story_duplicate-of-ten.md': legacyFile({ name: 'A second item 10' }),
    '6_archived/306_epic_unclosed.md': '---\nname: Unclosed\n',
    '7_frozen/307_refactor_frozen-in-qa.md': legacyFile({ name: 'Frozen', stage: 'qa' }),
    '1_backlog/308_story_huge.md': legacyFile({ name: 'Huge body' }, 'x'.repeat(10 * 1024 * 1024)),
    '1_backlog/notes.txt': 'not an item',
    '1_backlog/no-id-here.md': legacyFile({ name: 'No id in the file name' }),
    '2_current/309_bug_with-gates.md': legacyFile({ name: 'Has gate output' }),
    '2_current/309_bug_with-gates.md.gate_output': 'lint ok\n',
    '1_backlog/012_story_leading-zero.md': legacyFile({ name: 'Twelve, written 012' }),
    '7_frozen/310_story_bad-stage.md': legacyFile({ name: 'Bad stage', stage: 'Limbo' }),
    '1_backlog/311_story_odd-fields.md': legacyFile({ name: 'Odd fields', agent: '"two\\nlines"', blocked: JSON.stringify('x'.repeat(3000)) }),
  })
  await symlink(outside, join(root, '1_backlog', '999_story_escape.md'))
  await symlink(join(root, '1_backlog', '1_story_item-1.md'), join(root, '2_current', '1_story_link-to-one.md'))
  return { root, files: Object.keys(good).length + 11 }
}

describe('docket import', () => {
  it('imports a realistic legacy tree: ids kept, stages from folders, bad files imported with defaults and reported', async () => {
    const { root } = await realisticTree()
    const dir = await newStore()
    const before = await snapshotRows(dir)
    const dry = await docket(['--dir', dir, '--json', 'import', root, '--dry-run'])
    expect(dry.code, dry.stderr).toBe(3)
    const plan = dry.json()
    expect(plan.dryRun).toBe(true)
    expect(await snapshotRows(dir)).toEqual(before)

    const run = await docket(['--dir', dir, '--json', 'import', root])
    // Not every file came over as itself (two renumbered, one .md behind a symlink that leaves the tree): exit 3, said on stderr.
    expect(run.code, run.stderr).toBe(3)
    expect(run.stderr).toMatch(/2 renumbered .*1_backlog\/012_story_leading-zero\.md 12→\d+/)
    const result = run.json()
    expect(result.imported.map((i: { id: string }) => i.id)).toEqual(plan.imported.map((i: { id: string }) => i.id))
    expect(result.imported).toHaveLength(314) // 300 good + 11 odd ones + the id-less one + two duplicates under fresh ids
    expect(result.skipped).toEqual([])
    // a duplicate id stays with the most advanced stage, so nothing moves back; the other file gets a fresh id and keeps its number as an alias
    expect(result.renumbered).toEqual([
      { file: '1_backlog/012_story_leading-zero.md', from: '12', to: expect.any(String), reason: expect.stringContaining('5_done/12_bug_item-12.md (done') },
      { file: '3_qa/10_epic_item-10.md', from: '10', to: expect.any(String), reason: expect.stringContaining('5_done/10_story_duplicate-of-ten.md (done') },
    ])
    expect(result.ignored).toEqual(
      expect.arrayContaining([
        { file: '1_backlog/999_story_escape.md', reason: expect.stringContaining('leaves the tree'), items: 1 },
        { file: '1_backlog/notes.txt', reason: expect.stringContaining('not a .md file') },
        { file: '2_current/1_story_link-to-one.md', reason: expect.stringContaining('another path to 1_backlog/1_story_item-1.md') },
      ]),
    )
    const warned = new Map<string, string>(result.warnings.map((w: { file: string; warnings: string[] }) => [w.file, w.warnings.join(' | ')]))
    expect(warned.get('1_backlog/301_bug_no-front-matter.md')).toMatch(/no front matter/)
    expect(warned.get('1_backlog/302_story_bad-yaml.md')).toMatch(/not valid YAML/)
    expect(warned.get('2_current/303_chore_unknown-type.md')).toMatch(/no known item type/)
    expect(warned.get('3_qa/304_spike_not-utf8.md')).toMatch(/not UTF-8/)
    expect(warned.get('4_merge/305_story_empty.md')).toMatch(/empty file/)
    expect(warned.get('6_archived/306_epic_unclosed.md')).toMatch(/never closes/)
    expect(warned.get('1_backlog/no-id-here.md')).toMatch(/does not start with an item id/)
    expect(warned.get('1_backlog/012_story_leading-zero.md')).toMatch(/leading zeros; read as 12/)
    expect(warned.get('7_frozen/310_story_bad-stage.md')).toMatch(/"Limbo" in the front matter is not a stage/)
    expect(warned.get('1_backlog/311_story_odd-fields.md')).toMatch(/agent .* not a single line.*blocked reason longer than 2000/)

    const store = await openStore({ dir, readOnly: true, logger: { warn: () => {} } })
    try {
      expect(store.getItem('1')).toMatchObject({ stage: 'backlog', type: 'story', name: 'Item 1: story work', agent: 'agent-0', retries: 0, blocked: { reason: 'waiting on review' } })
      expect(store.getItem('2')).toMatchObject({ stage: 'coding', type: 'bug' })
      expect(store.getItem('3')).toMatchObject({ stage: 'qa', type: 'spike' })
      expect(store.getItem('4')).toMatchObject({ stage: 'merge', dependsOn: ['3'] })
      expect(store.getItem('7')).toMatchObject({ frozen: true, stage: 'backlog' })
      expect(store.getItem('301')).toMatchObject({ name: 'No front matter', type: 'bug' })
      expect(store.getItem('303')).toMatchObject({ name: 'Unknown type', type: 'story', stage: 'coding' })
      expect(await store.readContentBytes('304')).toEqual(new Uint8Array([0x2d, 0x2d, 0x2d, 0x0a, 0xff, 0xfe, 0x0a, 0x2d, 0x2d, 0x2d, 0x0a]))
      expect(store.getItem('305')).toMatchObject({ name: 'Empty', stage: 'merge' })
      expect(store.getItem('307')).toMatchObject({ frozen: true, stage: 'qa' })
      expect((await store.readContent('308'))!.length).toBeGreaterThan(10 * 1024 * 1024)
      expect(await store.readContent('309', 'gate_output')).toBe('lint ok\n')
      expect(store.getItem('10')).toMatchObject({ name: 'A second item 10', stage: 'done' })
      expect(store.getItem('310')).toMatchObject({ name: 'Bad stage', stage: 'backlog', frozen: true })
      expect(store.getItem('311')).toMatchObject({ name: 'Odd fields', blocked: { reason: 'x'.repeat(2000) } })
      expect(store.getItem('311')!.agent).toBeUndefined()
      const byName = (name: string) => store.listItems().find((i) => i.name === name)
      expect(Number(byName('No id in the file name')?.id)).toBeGreaterThan(311) // a fresh id past every id of the tree
      for (const r of result.renumbered as Array<{ file: string; from: string; to: string }>) {
        expect(Number(r.to)).toBeGreaterThan(311)
        expect(store.aliases()).toContainEqual(expect.objectContaining({ oldId: r.from, newId: r.to, reason: 'import' }))
      }
      expect(byName('Twelve, written 012')?.id).toBe(result.renumbered[0].to)
      expect(store.getItem('999')).toBeUndefined()
      expect(store.peekNextId()).toBe('315')
    } finally {
      await store.close()
    }

    const rerun = await docket(['--dir', dir, '--json', 'import', root])
    const again = rerun.json()
    expect(again.imported).toEqual([])
    expect(again.skipped.length).toBe(314)
    expect(again.skipped.every((x: { already?: boolean }) => x.already === true)).toBe(true)
    expect(rerun.code).toBe(3) // still the .md behind the symlink that leaves the tree
  })

  it('a long blocked reason is cut between characters, never inside a surrogate pair', async () => {
    const root = await tempDir()
    await writeTree(root, { '1_backlog/5_story_emoji.md': legacyFile({ name: 'Emoji at the cut', blocked: JSON.stringify(`${'x'.repeat(1999)}😀 and more`) }) })
    const dir = await newStore()
    const run = await docket(['--dir', dir, '--json', 'import', root])
    expect(run.code, run.stderr).toBe(0)
    expect(run.json().failed).toEqual([])
    const store = await openStore({ dir, readOnly: true, logger: { warn: () => {} } })
    try {
      const reason = store.getItem('5')?.blocked?.reason ?? ''
      expect(reason).toBe('x'.repeat(1999))
      expect(reason.isWellFormed()).toBe(true)
    } finally {
      await store.close()
    }
  })

  it('export names content whose bytes never reached this replica, exports the rest, and exits 3', async () => {
    const a = await openStore({ dir: await tempDir(), durability: 'relaxed' })
    const dir = await newStore()
    const b = await openStore({ dir, durability: 'relaxed' })
    try {
      await a.createItem({ name: 'written elsewhere', body: 'only on a' })
      await b.createItem({ name: 'local', body: 'here' })
      await b.applyUpdate(a.encodeStateAsUpdate(), 'a') // the document, not the blob
    } finally {
      await Promise.all([a.close(), b.close()])
    }
    const run = await docket(['--dir', dir, 'export'])
    expect(run.code, run.stderr).toBe(3)
    expect(run.stderr).toMatch(/1 content slot\(s\) were not exported.*#\d+ body.*--sync/)
    const lines = run.stdout.trim().split('\n').map((l) => JSON.parse(l) as { item?: { name: string }; content?: Record<string, string>; unavailable?: string[] })
    // Both items were created as id 1 on their replicas: one moved, so order by name.
    expect(lines.slice(1).map((l) => [l.item!.name, l.content, l.unavailable ?? []]).sort((x, y) => String(x[0]).localeCompare(String(y[0])))).toEqual([
      ['local', { body: 'here' }, []],
      ['written elsewhere', {}, ['body']],
    ])
  })

  it('export --format folders and jsonl round-trip through import: items, stages and bodies', async () => {
    const { root } = await realisticTree()
    const dir = await newStore()
    expect((await docket(['--dir', dir, 'import', root])).code).toBe(3)
    // stages without a folder of their own, a deleted item and a binary slot must survive too
    for (const args of [['apply', '11', 'merge_failed'], ['apply', '9', 'abandon'], ['delete', '12', '--reason', 'gone'], ['update', '4', '--freeze']]) {
      const r = await docket(['--dir', dir, ...args])
      expect(r.code, `${args.join(' ')} ${r.stderr}`).toBe(0)
    }
    const original = await contents(dir)

    const tree = join(await tempDir(), 'tree')
    const exported = await docket(['--dir', dir, '--json', 'export', '--format', 'folders', '--out', tree])
    expect(exported.code, exported.stderr).toBe(0)
    expect((await readdir(tree)).sort()).toEqual(['1_backlog', '2_current', '3_qa', '4_merge', '5_done', '6_archived', '7_frozen', 'docket-export.json'])
    const copy = await newStore()
    const imported = await docket(['--dir', copy, '--json', 'import', tree])
    expect(imported.code, imported.stderr).toBe(0)
    expect(imported.json().warnings).toEqual([])
    expect(await contents(copy)).toEqual(original)

    const jsonl = join(await tempDir(), 'export.jsonl')
    expect((await docket(['--dir', dir, 'export', '--out', jsonl])).code).toBe(0)
    const fromJsonl = await newStore()
    expect((await docket(['--dir', fromJsonl, 'import', jsonl])).code).toBe(0)
    expect(await contents(fromJsonl)).toEqual(original)

    for (const target of [copy, fromJsonl]) {
      const show = await docket(['--dir', target, '--json', 'show', '12'])
      expect(show.json().error.code).toBe('TOMBSTONED')
      expect((await docket(['--dir', target, '--json', 'create', '--name', 'new'])).json().id).toBe('315')
    }
    // stdout export is JSONL: a header, then one line per item
    const lines = (await docket(['--dir', dir, 'export'])).stdout.trim().split('\n')
    expect(JSON.parse(lines[0]!)).toMatchObject({ docket: 'export', version: 1, tombstones: [{ id: '12' }] })
    expect(lines).toHaveLength(1 + Object.keys(original).length)
    expect((await docket(['--dir', dir, 'export', '--out', jsonl])).code).toBe(2) // never overwrites
  })

  it('kill -9 during import, then doctor reports it, then a second import completes without duplicates', async () => {
    const root = join(await tempDir('docket-legacy-'), 'big')
    await writeTree(root, { ...legacyTree(3000), '1_backlog/no-id.md': legacyFile({ name: 'id-less' }) })
    const dir = await newStore()
    const child = spawn(process.execPath, [BIN, '--dir', dir, 'import', root], { stdio: 'ignore' })
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('close', (_code, signal) => resolve(signal)))
    // kill once the first batches have reached the LevelDB log
    const deadline = Date.now() + 60_000
    let killed = false
    while (Date.now() < deadline && !killed) {
      const logs = (await readdir(join(dir, 'db')).catch(() => [] as string[])).filter((f) => f.endsWith('.log'))
      const size = (await Promise.all(logs.map((f) => stat(join(dir, 'db', f)).then((s) => s.size, () => 0)))).reduce((a, b) => a + b, 0)
      if (size > 300_000) {
        child.kill('SIGKILL')
        killed = true
      } else await new Promise((r) => setTimeout(r, 5))
    }
    expect(await exited).toBe('SIGKILL')

    const doctor = await docket(['--dir', dir, '--json', 'doctor'])
    expect(doctor.code).toBe(1)
    expect(doctor.json().report.pendingIntents).toMatchObject([{ kind: 'import', data: { source: root } }])
    const partial = (await docket(['--dir', dir, '--json', 'list'])).json().length
    expect(partial).toBeGreaterThan(0)
    expect(partial).toBeLessThan(3001)

    // doctor --fix settles the interrupted import; the next run still knows what it assigned
    expect((await docket(['--dir', dir, 'doctor', '--fix'])).code).toBe(0)
    const second = await docket(['--dir', dir, '--json', 'import', root])
    expect(second.code, second.stderr).toBe(0)
    expect(second.json().imported.length + partial).toBe(3001)
    const items = (await docket(['--dir', dir, '--json', 'list'])).json() as Item[]
    expect(items).toHaveLength(3001)
    expect(new Set(items.map((i) => i.id)).size).toBe(3001)
    expect(items.filter((i) => i.name === 'id-less')).toHaveLength(1)
    const after = await docket(['--dir', dir, '--json', 'doctor'])
    expect(after.json().report.pendingIntents).toEqual([])
    expect(after.code).toBe(0)
    const third = (await docket(['--dir', dir, '--json', 'import', root])).json()
    expect(third.imported).toEqual([])
  })

  it('two CLI processes at once: the second gets STORE_LOCKED (exit 4)', async () => {
    const dir = await newStore()
    const fifo = join(await tempDir(), 'slow.jsonl')
    execFileSync('mkfifo', [fifo])
    // `import` opens the store, then blocks reading the FIFO: the store stays held
    const first = spawn(process.execPath, [BIN, '--dir', dir, 'import', fifo], { stdio: 'ignore' })
    const firstDone = new Promise<number | null>((resolve) => first.on('close', (code) => resolve(code)))
    // A non-blocking open for writing succeeds only once a reader waits on the FIFO, i.e. once
    // the first process has the store open and is reading its input.
    let writer: number | undefined
    for (let i = 0; i < 3000 && writer === undefined; i++) {
      try {
        writer = openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK)
      } catch {
        await new Promise((r) => setTimeout(r, 20))
      }
    }
    expect(writer, 'the first process never started reading').toBeDefined()
    const second = await docket(['--dir', dir, 'list'])
    expect(second.code).toBe(4)
    expect(second.stderr).toContain('STORE_LOCKED')
    expect(second.stderr).toContain(dir)
    writeSync(writer!, `${JSON.stringify({ item: { id: '5', name: 'through the pipe', type: 'bug', stage: 'qa' }, content: { body: 'hi' } })}\n`)
    closeSync(writer!)
    expect(await firstDone).toBe(0)
    expect((await docket(['--dir', dir, '--json', 'list'])).json()).toMatchObject([{ id: '5', stage: 'qa' }])
  })

  it('refuses a source that is missing or a file that is not a docket export', async () => {
    const dir = await newStore()
    const missing = await docket(['--dir', dir, 'import', '/nonexistent/tree'])
    expect(missing.code).toBe(2)
    const junk = join(await tempDir(), 'notes.md')
    await writeFile(junk, '# just notes\n')
    const run = await docket(['--dir', dir, '--json', 'import', junk])
    expect(run.code).toBe(2)
    expect(run.json().error).toMatchObject({ code: 'INVALID_INPUT', message: expect.stringContaining('not a docket export') })
    expect(await readFile(junk, 'utf8')).toBe('# just notes\n')
  })
})
