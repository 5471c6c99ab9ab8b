import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { freePort } from '@docket/core/testing'
import { docket, serve, SERVE_TOKEN, tempDir } from './support.js'

/** docket claim / renew / release / list --claimed: real `docket serve`, real CLI processes on separate replicas. */
describe('docket claim, renew, release', () => {
  it('8 replicas claim one item at once: exactly one exit 0, seven exit 4 naming the winner; --next dispatches distinct items', async () => {
    const root = await tempDir()
    const server = await serve(join(root, 'server'), await freePort())
    const env = { DOCKET_SYNC_URL: server.url, DOCKET_TOKEN: SERVE_TOKEN }
    const dirs = Array.from({ length: 8 }, (_, i) => join(root, `replica-${i}`))
    for (const dir of dirs) expect((await docket(['--dir', dir, 'init'])).code).toBe(0)
    for (let i = 0; i < 3; i++) expect((await docket(['--dir', dirs[0]!, 'create', '--name', `item ${i}`], { env })).code).toBe(0)
    const runs = await Promise.all(dirs.map((dir, i) => docket(['--dir', dir, '--json', 'claim', '1', '--agent', `agent-${i}`, '--ttl', '10m'], { env })))
    const won = runs.filter((r) => r.code === 0)
    expect(won, runs.map((r) => r.stderr).join('\n')).toHaveLength(1)
    const winner = won[0]!.json().claim.agent as string
    for (const r of runs.filter((x) => x.code !== 0)) {
      expect(r.code, r.stderr).toBe(4)
      expect(r.json()).toMatchObject({ granted: false, holder: { agent: winner } })
    }
    // Dispatch: two agents on two replicas at once get the two remaining items, then nothing is left (exit 3).
    const next = await Promise.all([0, 1].map((i) => docket(['--dir', dirs[i + 2]!, '--json', 'claim', '--next', '--agent', `worker-${i}`], { env })))
    expect(next.map((r) => r.code)).toEqual([0, 0])
    expect(next.map((r) => r.json().item.id).sort()).toEqual(['2', '3'])
    const none = await docket(['--dir', dirs[4]!, '--json', 'claim', '--next', '--agent', 'late'], { env })
    expect(none.code).toBe(3)
    expect(none.json()).toEqual({ granted: false, item: null, holder: null })
    // Every replica sees the claims.
    const claimed = await docket(['--dir', dirs[5]!, 'sync'], { env })
    expect(claimed.code, claimed.stderr).toBe(0)
    const list = await docket(['--dir', dirs[5]!, '--json', 'list', '--claimed'], { env })
    expect(list.json().map((i: { id: string; claim: { agent: string } }) => [i.id, i.claim.agent])).toEqual([['1', winner], ['2', expect.any(String)], ['3', expect.any(String)]])
    expect((await docket(['--dir', dirs[5]!, 'list', '--claimed'], { env })).stdout).toContain(`claimed:${winner}`)
    // renew and release only by the holder; the item is ready again after.
    const loserDir = dirs[runs.findIndex((r) => r.code !== 0)]!
    const renewWrong = await docket(['--dir', loserDir, '--json', 'renew', '1', '--agent', 'nobody'], { env })
    expect(renewWrong.code).toBe(4)
    expect(renewWrong.json().error).toMatchObject({ code: 'CLAIM_NOT_HELD', details: { holder: { agent: winner } } })
    expect((await docket(['--dir', loserDir, 'renew', '1', '--agent', winner, '--ttl', '1h'], { env })).code).toBe(0)
    const release = await docket(['--dir', loserDir, '--json', 'release', '1', '--agent', winner], { env })
    expect(release.code, release.stderr).toBe(0)
    expect((await docket(['--dir', loserDir, '--json', 'list', '--ready'], { env })).json().map((i: { id: string }) => i.id)).toEqual(['1'])
  }, 120_000)

  it('offline: exit 4 (BEHIND_REMOTE) unless --offline, which takes a provisional claim; usage errors are exit 2', async () => {
    const root = await tempDir()
    const dir = join(root, 'replica')
    expect((await docket(['--dir', dir, 'init'])).code).toBe(0)
    expect((await docket(['--dir', dir, 'create', '--name', 'x'])).code).toBe(0)
    const env = { DOCKET_SYNC_URL: `ws://127.0.0.1:${await freePort()}`, DOCKET_TOKEN: SERVE_TOKEN, DOCKET_SYNC_TIMEOUT_MS: '300' }
    const refused = await docket(['--dir', dir, '--json', 'claim', '1', '--agent', 'a'], { env })
    expect(refused.code).toBe(4)
    expect(refused.json().error.code).toBe('BEHIND_REMOTE')
    expect(refused.stderr).toContain('--offline')
    const provisional = await docket(['--dir', dir, '--json', 'claim', '1', '--agent', 'a', '--offline'], { env })
    expect(provisional.code, provisional.stderr).toBe(0)
    expect(provisional.json()).toMatchObject({ granted: true, claim: { agent: 'a', provisional: true } })
    expect((await docket(['--dir', dir, 'show', '1'])).stdout).toMatch(/claim a \(provisional\) since/)
    for (const args of [['claim', '--agent', 'a'], ['claim', '1', '--next', '--agent', 'a'], ['claim', '1', '--agent', 'a', '--ttl', 'soon'], ['claim', '1', '--agent', 'a', '--ttl', '100'], ['claim', '1', '--agent', 'a', '--stage', 'coding'], ['claim', '1']]) {
      const r = await docket(['--dir', dir, ...args], { env })
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(2)
    }
  }, 60_000)
})
