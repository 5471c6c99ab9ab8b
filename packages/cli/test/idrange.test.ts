import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { docket, legacyFile, tempDir, writeTree } from './support.js'

/** Issue 10: one file must not be able to exhaust the id space of every replica. */
describe('import: ids above the id range are refused per file', () => {
  it('a legacy file named 9007199254740991_story_x.md fails with the reason; the rest is imported and ids go on from 1', async () => {
    const tree = join(await tempDir(), 'pipeline')
    await writeTree(tree, {
      '1_backlog/3_story_fine.md': legacyFile({ name: 'fine' }),
      '1_backlog/9007199254740991_story_x.md': legacyFile({ name: 'too high' }),
      '2_current/1099511627776_bug_y.md': legacyFile({ name: 'just above' }),
    })
    const dir = join(await tempDir(), 'store')
    expect((await docket(['--dir', dir, 'init'])).code).toBe(0)
    const run = await docket(['--dir', dir, '--json', 'import', tree])
    expect(run.code).toBe(3)
    const result = JSON.parse(run.stdout) as { imported: unknown[]; failed: Array<{ file: string; error: { message: string } }> }
    expect(result.imported).toHaveLength(1)
    expect(result.failed.map((f) => f.file).sort()).toEqual(['1_backlog/9007199254740991_story_x.md', '2_current/1099511627776_bug_y.md'])
    expect(result.failed[0]!.error.message).toContain('above 1099511627775')
    const created = await docket(['--dir', dir, '--json', 'create', '--name', 'next'])
    expect(JSON.parse(created.stdout)).toMatchObject({ id: '4' })
  })

  it('a JSONL tombstone above the range is reported as failed, not applied', async () => {
    const dir = join(await tempDir(), 'store')
    expect((await docket(['--dir', dir, 'init'])).code).toBe(0)
    expect((await docket(['--dir', dir, 'create', '--name', 'one'])).code).toBe(0)
    const file = join(await tempDir(), 'export.jsonl')
    expect((await docket(['--dir', dir, 'export', '--out', file])).code).toBe(0)
    const lines = (await readFile(file, 'utf8')).trimEnd().split('\n')
    const head = JSON.parse(lines[0]!) as { tombstones: unknown[] }
    head.tombstones = [{ id: '9007199254740991', uid: '01ARZ3NDEKTSV4RRFFQ69G5FAV', at: '', by: 'x', reason: null }]
    await writeFile(file, [JSON.stringify(head), ...lines.slice(1)].join('\n') + '\n')
    const target = join(await tempDir(), 'target')
    expect((await docket(['--dir', target, 'init'])).code).toBe(0)
    const run = await docket(['--dir', target, '--json', 'import', file])
    expect(run.code).toBe(3)
    expect(JSON.parse(run.stdout)).toMatchObject({ failed: [{ file: 'tombstones', error: { code: 'INVALID_ID' } }] })
    const created = await docket(['--dir', target, '--json', 'create', '--name', 'next'])
    expect(JSON.parse(created.stdout)).toMatchObject({ id: '2' })
  })
})
