import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { docket, tempDir } from './support.js'

describe('priority, labels and parent from the command line', () => {
  it('create, update, list and show them; ready lists the most urgent first; bad values are usage errors', async () => {
    const dir = join(await tempDir(), 'store')
    expect((await docket(['--dir', dir, 'init'])).code).toBe(0)
    const d = (...args: string[]) => docket(['--dir', dir, '--json', ...args])
    expect((await d('create', '--name', 'Epic', '--type', 'epic')).json().id).toBe('1')
    expect((await d('create', '--name', 'Later', '--priority', '4', '--label', 'web,ui', '--parent', '1')).json()).toMatchObject({ id: '2', priority: 4, labels: ['ui', 'web'], parent: '1' })
    expect((await d('create', '--name', 'Now', '--priority', '0')).json().id).toBe('3')
    expect((await d('list', '--ready')).json().map((i: { id: string }) => i.id)).toEqual(['3', '1', '2'])
    expect((await d('update', '2', '--add-label', 'hot', '--remove-label', 'ui', '--clear-priority')).json()).toMatchObject({ labels: ['hot', 'web'] })
    expect((await d('list', '--label', 'hot')).json().map((i: { id: string }) => i.id)).toEqual(['2'])
    expect((await d('list', '--priority', '0,2')).json().map((i: { id: string }) => i.id)).toEqual(['1', '2', '3'])
    expect((await d('list', '--parent', '1')).json().map((i: { id: string }) => i.id)).toEqual(['2'])
    const shown = await docket(['--dir', dir, 'show', '2'])
    expect(shown.stdout).toMatch(/priority — \(2\)\s+labels hot, web\s+parent #1/)
    expect((await docket(['--dir', dir, 'list'])).stdout).toMatch(/#3 .*p0/)
    for (const args of [['create', '--name', 'x', '--priority', '5'], ['create', '--name', 'x', '--label', 'a,,b'], ['update', '2', '--parent', '3', '--clear-parent'], ['list', '--priority', 'high']]) {
      expect((await d(...args)).code, args.join(' ')).toBe(2)
    }
    expect((await d('update', '1', '--parent', '2')).code).toBe(2) // a loop: 2's parent is 1
    expect((await d('show', 'bd-nope')).json().error.code).toBe('NOT_FOUND')
  })
})
