import { join } from 'node:path'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js'
import { describe, expect, it } from 'vitest'
import { startFixture } from '@docket/core/testing'
import { BIN, docket, tempDir } from './support.js'

const HOLD = join(import.meta.dirname, '..', '..', 'core', 'test', 'fixtures', 'hold-open.ts')

async function storeDir(): Promise<string> {
  const dir = join(await tempDir(), 'store')
  expect((await docket(['--dir', dir, 'init'])).code).toBe(0)
  return dir
}

async function connect(dir: string, ...flags: string[]): Promise<Client> {
  const client = new Client({ name: 'docket-test', version: '1.0.0' })
  await client.connect(new StdioClientTransport({ command: process.execPath, args: [BIN, '--dir', dir, 'mcp', ...flags], stderr: 'pipe' }))
  return client
}

type Result = Awaited<ReturnType<Client['callTool']>>

function json(result: Result): any {
  expect(result.isError ?? false, JSON.stringify(result.content)).toBe(false)
  return JSON.parse((result.content as Array<{ text: string }>)[0]!.text)
}

function failure(result: Result): { code: string; message: string } {
  expect(result.isError).toBe(true)
  const text = (result.content as Array<{ text: string }>)[0]!.text
  const error = (result.structuredContent as { error: { code: string; message: string } }).error
  expect(text.startsWith(`${error.code}: `)).toBe(true)
  return error
}

describe('docket mcp, driven by the SDK\'s own client over stdio', () => {
  it('lists its tools (destructive ones only when allowed) and every call answers as `docket --json` does', async () => {
    const dir = await storeDir()
    const client = await connect(dir)
    try {
      const tools = (await client.listTools()).tools.map((t) => t.name).sort()
      expect(tools).toEqual(['apply_event', 'audit_log', 'claim_item', 'claim_next', 'create_item', 'list_items', 'read_content', 'recover_dry_run', 'release_claim', 'renew_claim', 'show_item', 'update_item', 'write_content'])
      const created = json(await client.callTool({ name: 'create_item', arguments: { name: 'Parser', type: 'bug', body: '# parse it' } }))
      expect(created).toMatchObject({ id: '1', name: 'Parser', type: 'bug', stage: 'backlog' })
      json(await client.callTool({ name: 'create_item', arguments: { name: 'Waits', dependsOn: ['1'] } }))
      expect(json(await client.callTool({ name: 'apply_event', arguments: { id: '1', event: 'start', reason: 'go' } }))).toMatchObject({ stage: 'coding' })
      expect(json(await client.callTool({ name: 'update_item', arguments: { id: '1', agent: 'agent-7' } }))).toMatchObject({ agent: 'agent-7' })
      expect(json(await client.callTool({ name: 'write_content', arguments: { id: '1', slot: 'gate_output', text: 'lint: ok' } }))).toEqual({ id: '1', slot: 'gate_output', bytes: 8 })
      expect(json(await client.callTool({ name: 'read_content', arguments: { id: '1', slot: 'gate_output' } }))).toEqual({ id: '1', slot: 'gate_output', content: 'lint: ok' })
      expect(json(await client.callTool({ name: 'read_content', arguments: { id: '1' } })).content).toBe('# parse it')
      const listed = json(await client.callTool({ name: 'list_items', arguments: {} }))
      expect(listed).toEqual((await docket(['--dir', dir, '--json', 'list'])).json())
      expect(json(await client.callTool({ name: 'list_items', arguments: { stage: 'coding' } })).map((i: { id: string }) => i.id)).toEqual(['1'])
      expect(json(await client.callTool({ name: 'list_items', arguments: { ready: true } })).map((i: { id: string }) => i.id)).toEqual(['1'])
      const shown = json(await client.callTool({ name: 'show_item', arguments: { id: '1' } }))
      expect(shown).toEqual((await docket(['--dir', dir, '--json', 'show', '1'])).json())
      const last = json(await client.callTool({ name: 'audit_log', arguments: { last: 2 } }))
      expect(last.map((e: { kind: string }) => e.kind)).toEqual(['content_written', 'updated'])
      expect(json(await client.callTool({ name: 'recover_dry_run', arguments: {} }))).toMatchObject({ dryRun: true, recovered: [] })
    } finally {
      await client.close()
    }
  }, 60_000)

  it('claims: claim_item, claim_next, renew_claim and release_claim answer as the CLI does; a refusal names the holder', async () => {
    const dir = await storeDir()
    const client = await connect(dir)
    try {
      json(await client.callTool({ name: 'create_item', arguments: { name: 'first' } }))
      json(await client.callTool({ name: 'create_item', arguments: { name: 'second' } }))
      expect(json(await client.callTool({ name: 'claim_item', arguments: { id: '2', agent: 'coder-1', ttlMs: 60_000 } }))).toMatchObject({ granted: true, item: { id: '2' }, claim: { agent: 'coder-1' } })
      expect(json(await client.callTool({ name: 'claim_item', arguments: { id: '2', agent: 'coder-2' } }))).toMatchObject({ granted: false, holder: { agent: 'coder-1' } })
      expect(json(await client.callTool({ name: 'claim_next', arguments: { agent: 'coder-2' } }))).toMatchObject({ granted: true, item: { id: '1' } })
      expect(json(await client.callTool({ name: 'claim_next', arguments: { agent: 'coder-3' } }))).toBeNull()
      expect(json(await client.callTool({ name: 'list_items', arguments: { claimed: true } })).map((i: { id: string }) => i.id)).toEqual(['1', '2'])
      expect(json(await client.callTool({ name: 'list_items', arguments: { claimed: true } }))).toEqual((await docket(['--dir', dir, '--json', 'list', '--claimed'])).json())
      expect(failure(await client.callTool({ name: 'renew_claim', arguments: { id: '2', agent: 'coder-2' } })).code).toBe('CLAIM_NOT_HELD')
      expect(json(await client.callTool({ name: 'renew_claim', arguments: { id: '2', agent: 'coder-1', ttlMs: 120_000 } }))).toMatchObject({ granted: true })
      expect(json(await client.callTool({ name: 'release_claim', arguments: { id: '2', agent: 'coder-1' } }))).toMatchObject({ id: '2' })
      expect(json(await client.callTool({ name: 'list_items', arguments: { ready: true } })).map((i: { id: string }) => i.id)).toEqual(['2'])
      expect(failure(await client.callTool({ name: 'claim_item', arguments: { id: '2', agent: '' } })).code).toBe('INVALID_INPUT')
    } finally {
      await client.close()
    }
  }, 60_000)

  it('failures are tool errors carrying the DocketError code; destructive tools need --allow-destructive', async () => {
    const dir = await storeDir()
    const client = await connect(dir)
    try {
      json(await client.callTool({ name: 'create_item', arguments: { name: 'x' } }))
      expect(failure(await client.callTool({ name: 'show_item', arguments: { id: '99' } }))).toMatchObject({ code: 'NOT_FOUND' })
      expect(failure(await client.callTool({ name: 'apply_event', arguments: { id: '1', event: 'merge_succeeded' } }))).toMatchObject({ code: 'INVALID_TRANSITION' })
      expect(failure(await client.callTool({ name: 'show_item', arguments: { id: 'abc' } }))).toMatchObject({ code: 'INVALID_ID' })
      json(await client.callTool({ name: 'update_item', arguments: { id: '1', blocked: { reason: 'review' } } }))
      expect(failure(await client.callTool({ name: 'apply_event', arguments: { id: '1', event: 'start' } }))).toMatchObject({ code: 'ITEM_BLOCKED' })
      expect(json(await client.callTool({ name: 'apply_event', arguments: { id: '1', event: 'start', force: true } }))).toMatchObject({ stage: 'coding' })
      expect(failure(await client.callTool({ name: 'apply_event', arguments: { id: '1', event: 'gates_passed', ifStage: ['backlog'], force: true } }))).toMatchObject({ code: 'STAGE_CONFLICT' })
      const unknown = await client.callTool({ name: 'delete_item', arguments: { id: '1' } })
      expect(unknown.isError).toBe(true)
    } finally {
      await client.close()
    }
    const destructive = await connect(dir, '--allow-destructive')
    try {
      const tools = (await destructive.listTools()).tools
      expect(tools.map((t) => t.name)).toEqual(expect.arrayContaining(['delete_item', 'recover_apply']))
      expect(tools.find((t) => t.name === 'delete_item')?.annotations).toMatchObject({ destructiveHint: true })
      expect(json(await destructive.callTool({ name: 'delete_item', arguments: { id: '1', reason: 'done with it' } }))).toMatchObject({ id: '1', alreadyDeleted: false })
      expect(failure(await destructive.callTool({ name: 'show_item', arguments: { id: '1' } }))).toMatchObject({ code: 'TOMBSTONED' })
    } finally {
      await destructive.close()
    }
  }, 60_000)

  it('calls that arrive together (the SDK runs them concurrently) all succeed without a holder', async () => {
    const dir = await storeDir()
    const client = await connect(dir)
    try {
      const results = await Promise.all([
        ...Array.from({ length: 6 }, (_, i) => client.callTool({ name: 'create_item', arguments: { name: `together ${i}` } })),
        client.callTool({ name: 'list_items', arguments: {} }),
        client.callTool({ name: 'audit_log', arguments: {} }),
      ])
      for (const result of results) json(result)
      expect(new Set(results.slice(0, 6).map((r) => json(r).id)).size).toBe(6)
      const tools = (await client.listTools()).tools
      expect(tools.find((t) => t.name === 'list_items')?.annotations).toMatchObject({ readOnlyHint: true, destructiveHint: false })
      expect(tools.find((t) => t.name === 'create_item')?.annotations).toMatchObject({ readOnlyHint: false, destructiveHint: false })
    } finally {
      await client.close()
    }
  }, 60_000)

  it('goes through the process that holds the store: its listeners see the agent\'s change', async () => {
    const dir = await storeDir()
    const holder = await startFixture(HOLD, [dir], 'open')
    const client = await connect(dir)
    try {
      const created = json(await client.callTool({ name: 'create_item', arguments: { name: 'from an agent' } }))
      expect(holder.output()).toContain(`"ids":["${created.id}"]`)
    } finally {
      await client.close()
      holder.child.stdin!.end()
      await new Promise((r) => holder.child.on('close', r))
    }
  }, 60_000)
})
