import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { docket, legacyFile, newStore, tempDir, writeTree } from './support.js'

/**
 * Trees as story-kit laid them out over time (issue 14): every item comes over, and whatever
 * does not come over as itself is impossible to miss — on stderr and in the exit code.
 */

/** An older story-kit project: `.story_kit/work/{1_upcoming,2_current,3_qa,4_merge,5_archived}`. */
async function olderProject(): Promise<string> {
  const project = join(await tempDir(), 'project')
  const work = '.story_kit/work'
  await writeTree(project, {
    'src/main.rs': 'fn main() {}\n',
    'README.md': '# the project\n',
    [`${work}/1_upcoming/1_story_plan-it.md`]: legacyFile({ name: '"Plan it"' }),
    [`${work}/1_upcoming/2_bug_crash.md`]: legacyFile({ name: '"Crash on start"' }),
    [`${work}/2_current/3_story_build-it.md`]: legacyFile({ name: '"Build it"', depends_on: '[1]' }),
    [`${work}/3_qa/4_spike_try-it.md`]: legacyFile({ name: '"Try it"' }),
    [`${work}/4_merge/5_story_merge-it.md`]: legacyFile({ name: '"Merge it"' }),
    [`${work}/5_archived/6_story_old.md`]: legacyFile({ name: '"Old work"' }),
    [`${work}/5_archived/90_story_fix-task-list-scrolling.md`]: legacyFile({ name: '"Fix task list scrolling"' }),
  })
  return project
}

describe('story-kit layouts, old and new', () => {
  it('an older layout (1_upcoming … 5_archived) imports whole, from its work/ folder, from .story_kit/ or from the project', async () => {
    const project = await olderProject()
    for (const source of ['.story_kit/work', '.story_kit', '.']) {
      const dir = await newStore()
      const run = await docket(['--dir', dir, '--json', 'import', join(project, source)])
      expect(run.code, `${source}: ${run.stderr}`).toBe(0)
      const result = run.json()
      expect(result.root).toBe(join(project, '.story_kit/work'))
      expect(result.imported).toHaveLength(7)
      expect(result.ignored).toEqual([])
      const items = (await docket(['--dir', dir, '--json', 'list'])).json() as Array<{ id: string; stage: string; dependsOn: string[] }>
      expect(items.map((i) => [i.id, i.stage])).toEqual([
        ['1', 'backlog'],
        ['2', 'backlog'],
        ['3', 'coding'],
        ['4', 'qa'],
        ['5', 'merge'],
        ['6', 'archived'],
        ['90', 'archived'],
      ])
      expect(items.find((i) => i.id === '3')?.dependsOn).toEqual(['1'])
      expect(run.stderr).toContain('import summary: 7 imported from')
    }
  })

  it('later layouts (.storkit/work, .huskies/work with 6_archived and 7_frozen) keep working', async () => {
    for (const tool of ['.storkit', '.huskies']) {
      const project = join(await tempDir(), 'project')
      await writeTree(project, {
        [`${tool}/work/1_backlog/1_story_a.md`]: legacyFile({ name: 'A' }),
        [`${tool}/work/5_done/2_story_b.md`]: legacyFile({ name: 'B' }),
        [`${tool}/work/6_archived/3_story_c.md`]: legacyFile({ name: 'C' }),
        [`${tool}/work/7_frozen/4_story_d.md`]: legacyFile({ name: 'D', stage: 'qa' }),
      })
      const dir = await newStore()
      const run = await docket(['--dir', dir, '--json', 'import', project])
      expect(run.code, run.stderr).toBe(0)
      const items = (await docket(['--dir', dir, '--json', 'list'])).json() as Array<{ stage: string; frozen: boolean }>
      expect(items.map((i) => [i.stage, i.frozen])).toEqual([['backlog', false], ['done', false], ['archived', false], ['qa', true]])
    }
  })

  it('a folder without stage folders is refused (exit 2), and so is one with two pipelines below it — never "imported nothing", exit 0', async () => {
    const empty = join(await tempDir(), 'nothing-here')
    await writeTree(empty, { 'notes/todo.md': '# todo\n' })
    const dir = await newStore()
    const none = await docket(['--dir', dir, '--json', 'import', empty])
    expect(none.code).toBe(2)
    expect(none.json().error.message).toMatch(/no stage folders .* give the folder that holds them/)
    const two = join(await tempDir(), 'two')
    await writeTree(two, { '.story_kit/work/1_upcoming/1_story_a.md': legacyFile({ name: 'A' }), '.huskies/work/1_backlog/1_story_b.md': legacyFile({ name: 'B' }) })
    const both = await docket(['--dir', dir, '--json', 'import', two])
    expect(both.code).toBe(2)
    expect(both.json().error.message).toMatch(/more than one pipeline \(\.huskies\/work, \.story_kit\/work\)/)
    expect((await docket(['--dir', dir, '--json', 'list'])).json()).toEqual([])
  })
})

describe('what is and is not an item', () => {
  it('two files with one id are both imported: the most advanced keeps it, the other gets a fresh id with an alias; exit 3 and a summary on stderr', async () => {
    const project = await olderProject()
    await writeTree(project, { '.story_kit/work/4_merge/90_story_test-full-flag.md': legacyFile({ name: '"test full flag"' }) })
    const dir = await newStore()
    const run = await docket(['--dir', dir, '--json', 'import', project])
    expect(run.code, run.stderr).toBe(3)
    const result = run.json()
    expect(result.imported).toHaveLength(8)
    expect(result.renumbered).toEqual([{ file: '4_merge/90_story_test-full-flag.md', from: '90', to: '91', reason: expect.stringContaining('5_archived/90_story_fix-task-list-scrolling.md (archived') }])
    expect(run.stderr).toMatch(/1 renumbered \(another file had their id; each keeps it as an alias\): 4_merge\/90_story_test-full-flag\.md 90→91/)
    const shown = await docket(['--dir', dir, 'show', '91'])
    expect(shown.stdout).toContain('test full flag')
    expect(shown.stdout).toContain('was #90 (re-anchored: import)')
    expect((await docket(['--dir', dir, '--json', 'show', '90'])).json().item.name).toBe('Fix task list scrolling')
    // Run again: everything was imported before; nothing is renumbered twice.
    const again = await docket(['--dir', dir, '--json', 'import', project])
    expect(again.code, again.stderr).toBe(0)
    expect(again.json()).toMatchObject({ imported: [], renumbered: [] })
    expect(again.stderr).toContain('8 already imported by an earlier run')
  })

  it('a README in a stage folder and editor leftovers (.md.orig, .md.bak) are reported as ignored, not turned into items or slots', async () => {
    const root = join(await tempDir(), 'work')
    await writeTree(root, {
      '1_backlog/README.md': '# What goes in this folder\n',
      '1_backlog/1_story_a.md': legacyFile({ name: 'A' }),
      '1_backlog/1_story_a.md.orig': 'the version before the merge\n',
      '1_backlog/1_story_a.md.bak': 'an editor backup\n',
      '1_backlog/1_story_a.md.gate_output': 'lint ok\n',
      '2_current/scratch.md': 'no id, no front matter: a scratch note\n',
      '2_current/story_without_id.md': legacyFile({ name: 'No id but front matter' }),
    })
    const dir = await newStore()
    const run = await docket(['--dir', dir, '--json', 'import', root])
    expect(run.code, run.stderr).toBe(0)
    const result = run.json()
    expect(result.imported.map((i: { name: string }) => i.name).sort()).toEqual(['A', 'No id but front matter'])
    expect(result.ignored).toEqual([
      { file: '1_backlog/1_story_a.md.bak', reason: expect.stringContaining('editor or merge leftover') },
      { file: '1_backlog/1_story_a.md.orig', reason: expect.stringContaining('editor or merge leftover') },
      { file: '1_backlog/README.md', reason: expect.stringContaining('documentation of the tree') },
      { file: '2_current/scratch.md', reason: expect.stringContaining('no id in its name') },
    ])
    expect((await docket(['--dir', dir, '--json', 'show', '1'])).json().content).toEqual({ body: expect.any(String), gate_output: 'lint ok\n' })
    expect(run.stderr).toMatch(/4 ignored, not items: /)
  })

  it('a folder that is no stage folder but holds markdown files: exit 3, and the summary says they were NOT imported', async () => {
    const root = join(await tempDir(), 'work')
    await writeTree(root, { '1_backlog/1_story_a.md': legacyFile({ name: 'A' }), '8_review/2_story_b.md': legacyFile({ name: 'B' }) })
    const dir = await newStore()
    const run = await docket(['--dir', dir, '--json', 'import', root])
    expect(run.code).toBe(3)
    expect(run.json().ignored).toEqual([{ file: '8_review', reason: expect.stringContaining('its 1 .md file(s) were NOT imported'), items: 1 }])
    expect(run.stderr).toMatch(/1 ignored that hold markdown files that were NOT imported: 8_review/)
  })
})

describe('found in review', () => {
  it('one tree imported through different paths (its work/ folder, the tool folder, the project) is imported once', async () => {
    const project = join(await tempDir(), 'proj')
    await writeTree(project, {
      '.storkit/work/1_backlog/1_story_a.md': legacyFile({ name: 'A' }),
      '.storkit/work/1_backlog/plan-it.md': legacyFile({ name: 'No id' }),
      '.storkit/work/1_backlog/5_story_first.md': legacyFile({ name: 'First five' }),
      '.storkit/work/3_qa/5_story_second.md': legacyFile({ name: 'Second five' }),
    })
    const dir = await newStore()
    expect((await docket(['--dir', dir, 'import', join(project, '.storkit/work')])).code).toBe(3) // one renumbered
    for (const path of [join(project, '.storkit'), project]) {
      const again = await docket(['--dir', dir, '--json', 'import', path])
      expect(again.code, again.stderr).toBe(0)
      expect(again.json()).toMatchObject({ imported: [], renumbered: [] })
    }
    expect((await docket(['--dir', dir, '--json', 'list'])).json()).toHaveLength(4)
  })

  it('markdown in a folder inside a stage folder, deep in an ignored folder, or beside the stage folders: exit 3, each named', async () => {
    const root = join(await tempDir(), 'work')
    await writeTree(root, {
      '1_backlog/1_story_a.md': legacyFile({ name: 'A' }),
      '1_backlog/old/2_story_b.md': legacyFile({ name: 'B' }),
      'notes/sub/7_story_hidden.md': legacyFile({ name: 'Hidden' }),
      '3_story_c.md': legacyFile({ name: 'C' }),
      'README.md': '# the pipeline\n',
    })
    const dir = await newStore()
    const run = await docket(['--dir', dir, '--json', 'import', root])
    expect(run.code).toBe(3)
    expect(run.json().ignored).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ file: '1_backlog/old', items: 1 }),
        expect.objectContaining({ file: 'notes', items: 1 }),
        expect.objectContaining({ file: '3_story_c.md', items: 1 }),
        { file: 'README.md', reason: expect.stringContaining('not a stage folder') },
      ]),
    )
  })

  it('an export keeps slots whose names read like leftovers (old, new, tmp): the round trip is whole', async () => {
    const dir = await newStore()
    expect((await docket(['--dir', dir, 'create', '--name', 'Slots'])).code).toBe(0)
    const { openStore } = await import('@docket/core')
    const store = await openStore({ dir, logger: { warn: () => {} } })
    for (const slot of ['old', 'new', 'tmp', 'notes']) await store.writeContent('1', slot, `${slot} text\n`)
    await store.close()
    const tree = join(await tempDir(), 'tree')
    expect((await docket(['--dir', dir, 'export', '--format', 'folders', '--out', tree])).code).toBe(0)
    const copy = await newStore()
    const run = await docket(['--dir', copy, '--json', 'import', tree])
    expect(run.code, run.stderr).toBe(0)
    expect(Object.keys((await docket(['--dir', copy, '--json', 'show', '1'])).json().content).sort()).toEqual(['new', 'notes', 'old', 'tmp'])
  })

  it('a parent that does not exist or closes a loop is not set: the items come over, the links are reported, exit 3', async () => {
    const root = join(await tempDir(), 'work')
    await writeTree(root, {
      '1_backlog/1_story_a.md': legacyFile({ name: 'A', parent: '2' }),
      '1_backlog/2_story_b.md': legacyFile({ name: 'B', parent: '1' }),
      '1_backlog/3_story_c.md': legacyFile({ name: 'C', parent: '99' }),
      '1_backlog/4_story_d.md': legacyFile({ name: 'D', parent: '1' }),
    })
    const dir = await newStore()
    const run = await docket(['--dir', dir, '--json', 'import', root])
    expect(run.code).toBe(3)
    const result = run.json()
    expect(result.imported).toHaveLength(4)
    expect(result.unlinked.map((u: { file: string }) => u.file).sort()).toEqual(['1_backlog/2_story_b.md', '1_backlog/3_story_c.md'])
    const items = (await docket(['--dir', dir, '--json', 'list'])).json() as Array<{ id: string; parent?: string }>
    expect(items.map((i) => [i.id, i.parent ?? null])).toEqual([['1', '2'], ['2', null], ['3', null], ['4', '1']])
    expect(run.stderr).toMatch(/2 imported without their parent/)
  })
})
