import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { gunzipSync } from 'node:zlib'
import { describe, expect, it } from 'vitest'
import { docket, newStore, tempDir } from './support.js'

/**
 * Migrating from beads, on beads' own issues (372 of them, from its repository: fixtures/beads/SOURCE.md):
 * every issue an item, every dependency and parent link kept (counted), the beads id found by
 * `docket show`, a second run creating nothing.
 */

interface BeadsIssue {
  id: string
  title: string
  status: string
  priority?: number
  issue_type: string
  labels?: string[]
  assignee?: string
  created_at: string
  dependencies?: Array<{ issue_id: string; depends_on_id: string; type: string }>
}
interface Item {
  id: string
  name: string
  stage: string
  type: string
  frozen: boolean
  priority?: number
  labels?: string[]
  parent?: string
  dependsOn: string[]
  externalIds?: string[]
  createdAt: string
  agent?: string
}

async function fixture(): Promise<{ file: string; issues: BeadsIssue[] }> {
  const text = gunzipSync(await readFile(join(import.meta.dirname, 'fixtures', 'beads', 'issues.jsonl.gz'))).toString('utf8')
  const file = join(await tempDir(), 'issues.jsonl')
  await writeFile(file, text)
  return { file, issues: text.trim().split('\n').map((l) => JSON.parse(l) as BeadsIssue) }
}

describe('docket import --from beads', () => {
  it('beads\' own 372 issues: every live issue an item, every dependency and parent link kept, idempotent, found by its beads id', async () => {
    const { file, issues } = await fixture()
    const live = issues.filter((i) => i.status !== 'tombstone')
    const liveIds = new Set(live.map((i) => i.id))
    const links = (type: string) => live.flatMap((i) => (i.dependencies ?? []).filter((d) => d.type === type && liveIds.has(d.depends_on_id)).map((d) => [i.id, d.depends_on_id] as const))
    const blocks = links('blocks')
    const parents = links('parent-child')
    expect(live.length).toBeGreaterThan(300)
    expect(blocks.length).toBeGreaterThan(100)
    expect(parents.length).toBeGreaterThan(90)

    const dir = await newStore()
    const dry = await docket(['--dir', dir, '--json', 'import', '--from', 'beads', file, '--dry-run'])
    expect(dry.code, dry.stderr).toBe(0)
    expect(dry.json()).toMatchObject({ dryRun: true, links: { dependencies: blocks.length, parents: parents.length } })
    expect((await docket(['--dir', dir, '--json', 'list'])).json()).toEqual([])

    const run = await docket(['--dir', dir, '--json', 'import', '--from', 'beads', file])
    expect(run.code, run.stderr).toBe(0)
    const result = run.json()
    expect(result.imported).toHaveLength(live.length)
    expect(result.failed).toEqual([])
    expect(result.ignored).toHaveLength(issues.length - live.length) // the tombstones, each named
    expect(result.links).toMatchObject({ dependencies: blocks.length, parents: parents.length, dropped: expect.any(Array) })
    expect(run.stderr).toMatch(new RegExp(`links: ${blocks.length} dependencies and ${parents.length} parents kept`))

    const items = (await docket(['--dir', dir, '--json', 'list'])).json() as Item[]
    expect(items).toHaveLength(live.length)
    const byExternal = new Map(items.map((i) => [i.externalIds![0]!, i]))
    // Count them: every blocks link is a dependency, every parent-child link a parent.
    let deps = 0
    let kids = 0
    for (const [from, to] of blocks) {
      expect(byExternal.get(from)!.dependsOn, `${from} blocked by ${to}`).toContain(byExternal.get(to)!.id)
      deps++
    }
    for (const [child, parent] of parents) {
      expect(byExternal.get(child)!.parent, `${child} child of ${parent}`).toBe(byExternal.get(parent)!.id)
      kids++
    }
    expect([deps, kids]).toEqual([blocks.length, parents.length])
    expect(items.reduce((n, i) => n + i.dependsOn.length, 0)).toBe(blocks.length)
    expect(items.filter((i) => i.parent !== undefined)).toHaveLength(parents.length)
    // Fields: stage by status, type, priority, labels, assignee, timestamps.
    for (const issue of live) {
      const item = byExternal.get(issue.id)!
      expect(item.stage).toBe({ open: 'backlog', in_progress: 'coding', deferred: 'backlog', closed: 'done' }[issue.status])
      expect(item.frozen).toBe(issue.status === 'deferred')
      expect(item.type).toBe({ bug: 'bug', feature: 'story', task: 'story', epic: 'epic', chore: 'refactor' }[issue.issue_type] ?? 'story')
      if (issue.priority !== undefined) expect(item.priority).toBe(issue.priority)
      for (const label of issue.labels ?? []) expect(item.labels).toContain(label)
      if (!['bug', 'feature', 'task', 'epic', 'chore'].includes(issue.issue_type)) expect(item.labels).toContain(`beads:${issue.issue_type}`)
      if (issue.assignee) expect(item.agent).toBe(issue.assignee)
      expect(Date.parse(item.createdAt)).toBe(Date.parse(issue.created_at))
    }
    // `docket show bd-…` finds it; the issue as beads wrote it is kept whole.
    const sample = live.find((i) => (i.dependencies ?? []).length > 0)!
    const shown = await docket(['--dir', dir, '--json', 'show', sample.id])
    expect(shown.code, shown.stderr).toBe(0)
    expect(shown.json().item.externalIds).toEqual([sample.id])
    expect(JSON.parse(shown.json().content.beads)).toEqual(sample)
    expect(shown.json().content.body).toContain(((sample as unknown as { description?: string }).description ?? '').slice(0, 40))

    // Again: nothing twice, exit 0.
    const again = await docket(['--dir', dir, '--json', 'import', '--from', 'beads', file])
    expect(again.code, again.stderr).toBe(0)
    expect(again.json().imported).toEqual([])
    expect(again.json().skipped).toHaveLength(live.length)
    expect((await docket(['--dir', dir, '--json', 'list'])).json()).toHaveLength(live.length)

    // Export round trip: the copy keeps the beads ids, priorities, labels, parents and dependencies.
    const jsonl = join(await tempDir(), 'export.jsonl')
    expect((await docket(['--dir', dir, 'export', '--out', jsonl])).code).toBe(0)
    const copy = await newStore()
    const imported = await docket(['--dir', copy, '--json', 'import', jsonl])
    expect(imported.code, imported.stderr).toBe(0)
    const strip = (list: Item[]) => list.map(({ createdAt: _c, ...rest }) => ({ ...rest, uid: undefined, updatedAt: undefined, createdBy: undefined }))
    expect(strip((await docket(['--dir', copy, '--json', 'list'])).json())).toEqual(strip(items))
  }, 180_000)

  it('without --from beads, a beads file is refused with the command that imports it; a broken line fails alone', async () => {
    const { file } = await fixture()
    const dir = await newStore()
    const plain = await docket(['--dir', dir, '--json', 'import', file])
    expect(plain.code).toBe(2)
    expect(plain.json().error.message).toContain(`docket import --from beads ${file}`)
    const small = join(await tempDir(), 'small.jsonl')
    await writeFile(small, ['{"id":"bd-1","title":"One","status":"open","priority":1,"issue_type":"task","created_at":"2025-12-01T10:00:00Z","updated_at":"2025-12-01T10:00:00Z"}', '{not json', '{"title":"no id"}', '{"id":"bd-2","title":"Two","status":"weird","issue_type":"task","dependencies":[{"issue_id":"bd-2","depends_on_id":"bd-1","type":"blocks"},{"issue_id":"bd-2","depends_on_id":"bd-gone","type":"blocks"}]}'].join('\n'))
    const run = await docket(['--dir', dir, '--json', 'import', '--from', 'beads', small])
    expect(run.code).toBe(3)
    const result = run.json()
    expect(result.imported).toHaveLength(2)
    expect(result.failed.map((f: { file: string }) => f.file)).toEqual(['line 2', 'line 3'])
    expect(result.warnings).toEqual([{ file: 'bd-2', warnings: [expect.stringContaining('status "weird"')] }])
    expect(result.links).toMatchObject({ dependencies: 1, dropped: [{ from: 'bd-2', to: 'bd-gone', type: 'blocks' }] })
    expect((await docket(['--dir', dir, 'import', '--from', 'jira', small])).code).toBe(2)
  })
})

describe('docket import --from beads, found in review', () => {
  it('links the store refuses are dropped one by one (the good ones stay), odd titles are cleaned, deleted items stay deleted, any id shape is found', async () => {
    const file = join(await tempDir(), 'odd.jsonl')
    const line = (issue: Record<string, unknown>) => JSON.stringify({ status: 'open', issue_type: 'task', created_at: '2025-12-01T10:00:00Z', updated_at: '2025-12-01T10:00:00Z', ...issue })
    const dep = (from: string, to: string, type: string) => ({ issue_id: from, depends_on_id: to, type })
    await writeFile(
      file,
      [
        line({ id: 'bd-a', title: 'A', dependencies: [dep('bd-a', 'bd-b', 'blocks')] }),
        line({ id: 'bd-b', title: 'B', dependencies: [dep('bd-b', 'bd-a', 'blocks')] }),
        line({ id: 'bd-p', title: 'P', issue_type: 'epic' }),
        line({ id: 'bd-s', title: 'S', dependencies: [dep('bd-s', 'bd-s', 'blocks'), dep('bd-s', 'bd-p', 'parent-child')] }),
        line({ id: 'my_proj-x1', title: `${'x'.repeat(299)}😀y` }),
        line({ id: '2048-game-x1', title: 'two\nlines\tand a tab' }),
      ].join('\n'),
    )
    const dir = await newStore()
    const run = await docket(['--dir', dir, '--json', 'import', '--from', 'beads', file])
    expect(run.code).toBe(3) // refused links are not imported as themselves
    const result = run.json()
    expect(result.imported).toHaveLength(6)
    expect(result.links.dropped).toEqual([
      expect.objectContaining({ from: 'bd-s', to: 'bd-s', type: 'blocks', refused: true }),
      expect.objectContaining({ from: 'bd-b', to: 'bd-a', type: 'blocks', refused: true, reason: expect.stringContaining('cycle') }),
    ])
    expect(result.links).toMatchObject({ dependencies: 1, parents: 1 })
    expect(run.stderr).toMatch(/2 links refused by the store/)
    const byName = async (id: string) => (await docket(['--dir', dir, '--json', 'show', id])).json().item
    expect((await byName('bd-s')).parent).toBe((await byName('bd-p')).id) // the self link took nothing with it
    expect((await byName('my_proj-x1')).name).toHaveLength(299) // cut before the emoji, not inside it
    expect((await byName('2048-game-x1')).name).toBe('two lines and a tab')
    // Deleted here: not created again by the next run.
    const a = await byName('bd-a')
    expect((await docket(['--dir', dir, 'delete', a.id])).code).toBe(0)
    const again = await docket(['--dir', dir, '--json', 'import', '--from', 'beads', file])
    expect(again.json().imported).toEqual([])
    expect(again.json().skipped).toContainEqual(expect.objectContaining({ file: 'bd-a', reason: expect.stringContaining('deleted in this store') }))
  })
})
