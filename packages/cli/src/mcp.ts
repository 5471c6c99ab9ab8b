import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js'
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js'
import { z } from 'zod'
import { AUDIT_KINDS, connectHolder, decodeContent, DocketError, handleOf, isDocketError, ITEM_TYPES, MAX_CLAIM_TTL_MS, MIN_CLAIM_TTL_MS, openStore, STAGES, validEvents, type StoreHandle, type SyncOptions } from '@docket/core'
import { itemDetails } from './commands/items.js'
import { jsonBytes } from './output.js'
import { VERSION } from './version.js'

export interface McpOptions {
  dir: string
  sync: SyncOptions | undefined
  /** Offer delete_item and recover_apply. */
  allowDestructive: boolean
  holderTimeoutMs: number
}

/**
 * `docket mcp`: the store as Model Context Protocol tools over stdio. Each call goes through
 * the process that holds the store when there is one, else opens the store for that call only
 * (so the MCP server never keeps others out). Results are the JSON of `docket --json`; a
 * failure is a tool error whose text starts with the DocketError's code, and whose structured
 * content is `{ error: { code, message, details } }`.
 */
export async function runMcp(options: McpOptions, streams: { stdin: NodeJS.ReadableStream; stdout: NodeJS.WritableStream } = { stdin: process.stdin, stdout: process.stdout }): Promise<void> {
  const server = new McpServer({ name: 'docket', version: VERSION }, { instructions: 'docket: the pipeline store of an agent orchestrator. Items move through stages only by events (apply_event); a blocked or frozen item moves only with force.' })
  // The SDK runs tool calls concurrently; without a holder each opens the store, which one process can hold once at a time.
  let turn: Promise<unknown> = Promise.resolve()
  const serially = <T>(fn: () => Promise<T>): Promise<T> => {
    const next = turn.then(fn, fn)
    turn = next.catch(() => {})
    return next
  }
  const tool = <S extends z.ZodRawShape>(name: string, description: string, schema: S, run: (args: z.objectOutputType<S, z.ZodTypeAny>, store: StoreHandle) => Promise<unknown>, write: false | 'write' | 'destructive' = false) =>
    server.registerTool(name, { description, inputSchema: schema, annotations: { readOnlyHint: write === false, destructiveHint: write === 'destructive' } }, (async (args: z.objectOutputType<S, z.ZodTypeAny>) =>
      answer(() => serially(() => withStore(options, write !== false, (store) => run(args, store))))) as never)

  const id = z.string().describe('an item id, such as "12"')
  const stageList = z.union([z.enum(STAGES as unknown as [string, ...string[]]), z.array(z.enum(STAGES as unknown as [string, ...string[]]))])
  const typeList = z.union([z.enum(ITEM_TYPES as unknown as [string, ...string[]]), z.array(z.enum(ITEM_TYPES as unknown as [string, ...string[]]))])

  tool('list_items', 'List items (as `docket --json list`): filter by stage(s), type(s), ready (neither blocked, frozen nor claimed, every dependency done or archived) and claimed (an agent holds a live claim).', { stage: stageList.optional(), type: typeList.optional(), ready: z.boolean().optional(), claimed: z.boolean().optional(), label: z.array(z.string()).optional(), priority: z.array(z.number().int().min(0).max(4)).optional(), parent: z.string().optional() }, (args, store) =>
    store.listItems(args as never),
  )
  tool('show_item', 'One item with its stage history (which entries count and why not), the events valid from its stage, its content and its aliases (as `docket --json show`).', { id }, async ({ id: itemId }, store) => {
    const item = await store.getItem(itemId)
    if (!item) {
      await store.stageHistory(itemId) // NOT_FOUND or TOMBSTONED, with what to do
      return null
    }
    return { item, validEvents: validEvents(item.stage), ...(await itemDetails(store, item)) }
  })
  tool(
    'create_item',
    'Create an item; returns it with its id.',
    {
      name: z.string(),
      type: z.enum(ITEM_TYPES as unknown as [string, ...string[]]).optional(),
      dependsOn: z.array(z.string()).optional(),
      body: z.string().optional().describe('the body: markdown, usually with YAML front matter'),
      priority: z.number().int().min(0).max(4).optional().describe('0 (most urgent) to 4'),
      labels: z.array(z.string()).optional(),
      parent: z.string().optional().describe('the item it belongs to (an epic)'),
    },
    (args, store) => store.createItem(args as never),
    'write',
  )
  tool(
    'apply_event',
    'Send a stage event (start, gates_passed, accepted, merge_succeeded, demote, …): the only way to change a stage. A blocked or frozen item is refused (ITEM_BLOCKED, ITEM_FROZEN) unless force is true; with ifStage, an item that moved meanwhile is refused (STAGE_CONFLICT).',
    { id, event: z.string(), reason: z.string().optional(), force: z.boolean().optional(), ifStage: z.array(z.enum(STAGES as unknown as [string, ...string[]])).optional().describe('apply only if the item is in one of these stages (else STAGE_CONFLICT)') },
    ({ id: itemId, event, reason, force, ifStage }, store) =>
      store.apply(itemId, reason === undefined ? { type: event as never } : { type: event as never, reason }, { ...(force ? { force: true } : {}), ...(ifStage ? { ifStage: ifStage as never } : {}) }),
    'write',
  )
  tool(
    'update_item',
    'Edit fields (not the stage): name, dependsOn, agent (null clears), retries, blocked ({ reason } or null), frozen, priority (null clears), addLabels, removeLabels, parent (null clears).',
    {
      id,
      name: z.string().optional(),
      dependsOn: z.array(z.string()).optional(),
      agent: z.string().nullable().optional(),
      retries: z.number().int().min(0).optional(),
      blocked: z.object({ reason: z.string() }).nullable().optional(),
      frozen: z.boolean().optional(),
      priority: z.number().int().min(0).max(4).nullable().optional(),
      addLabels: z.array(z.string()).optional(),
      removeLabels: z.array(z.string()).optional(),
      parent: z.string().nullable().optional(),
    },
    ({ id: itemId, ...patch }, store) => store.updateItem(itemId, patch as never),
    'write',
  )
  tool(
    'write_content',
    'Write a content slot of an item (text; `body` is the markdown body, `gate_output` a gate log, …).',
    { id, slot: z.string(), text: z.string() },
    async ({ id: itemId, slot, text }, store) => {
      await store.writeContent(itemId, slot, text)
      return { id: itemId, slot, bytes: Buffer.byteLength(text) }
    },
    'write',
  )
  const agent = z.string().describe('who works on the item, e.g. "coder-1"')
  const ttlMs = z.number().int().min(MIN_CLAIM_TTL_MS).max(MAX_CLAIM_TTL_MS).optional().describe('how long the claim lasts unless renewed, in ms (default 15 minutes)')
  const offline = z.boolean().optional().describe('not connected to the sync server: a provisional claim, checked on reconnect')
  tool(
    'claim_item',
    'Claim an item for an agent: exactly one of any number of concurrent claimants wins (the sync server decides). Returns { granted: true, claim } or { granted: false, holder } naming who holds it.',
    { id, agent, ttlMs, offline },
    ({ id: itemId, ...ask }, store) => store.claim(itemId, ask as never),
    'write',
  )
  tool(
    'claim_next',
    "The orchestrator's dispatch: claim the first ready, unclaimed item (lowest id; optionally of these stages or types) for the agent. Returns the claim, or null when no item is ready.",
    { agent, ttlMs, offline, stage: stageList.optional(), type: typeList.optional() },
    (args, store) => store.claimNext(args as never),
    'write',
  )
  tool('renew_claim', "Extend the agent's claim (CLAIM_NOT_HELD if another agent holds it now).", { id, agent, ttlMs, offline }, ({ id: itemId, ...ask }, store) => store.renewClaim(itemId, ask as never), 'write')
  tool('release_claim', "End the agent's claim (CLAIM_NOT_HELD if the agent does not hold it).", { id, agent, offline }, ({ id: itemId, ...ask }, store) => store.releaseClaim(itemId, ask as never), 'write')
  tool('read_content', 'Read a content slot of an item (default `body`).', { id, slot: z.string().optional() }, async ({ id: itemId, slot }, store) => {
    const name = slot ?? 'body'
    const bytes = await store.readContentBytes(itemId, name)
    if (bytes === undefined) throw new DocketError('INVALID_INPUT', `Item ${itemId} has no slot "${name}"; it has: ${(await store.contentSlots(itemId)).join(', ') || 'none'}.`, { details: { id: itemId, slot: name } })
    return { id: itemId, slot: name, content: decodeContent(bytes) }
  })
  tool(
    'audit_log',
    'The audit log, oldest first; `last` gives the newest n, newest first.',
    { kinds: z.array(z.enum(AUDIT_KINDS as unknown as [string, ...string[]])).optional(), id: z.string().optional(), since: z.string().optional(), limit: z.number().int().min(0).optional(), last: z.number().int().min(0).optional() },
    async ({ kinds, id: itemId, since, limit, last }, store) => {
      if (limit !== undefined && last !== undefined) throw new DocketError('INVALID_INPUT', 'limit (the oldest n) and last (the newest n) contradict each other: give one.')
      const events = []
      const query = { ...(kinds ? { kinds } : {}), ...(itemId !== undefined ? { itemId } : {}), ...(since !== undefined ? { since } : {}), ...(limit !== undefined ? { limit } : {}), ...(last !== undefined ? { limit: last, newestFirst: true } : {}) }
      for await (const event of store.audit(query as never)) events.push(event)
      return events
    },
  )
  tool('recover_dry_run', 'Find orphans (rows no live item owns) and say what a recovery would do; writes nothing.', { ids: z.array(z.string()).optional() }, async ({ ids }, store) => {
    const { recoverOrphans } = await import('@docket/recover')
    return recoverOrphans(store, { ...(ids ? { ids } : {}), dryRun: true })
  })
  if (options.allowDestructive) {
    tool('delete_item', 'Delete an item: its id is tombstoned and never reused, its content cleared.', { id, reason: z.string().optional() }, ({ id: itemId, reason }, store) => store.deleteItem(itemId, reason === undefined ? {} : { reason }), 'destructive')
    tool(
      'recover_apply',
      'Re-anchor the named orphans (ids) to fresh ids; audited. Run recover_dry_run first.',
      { ids: z.array(z.string()).min(1) },
      async ({ ids }, store) => {
        const { recoverOrphans } = await import('@docket/recover')
        return recoverOrphans(store, { ids, dryRun: false })
      },
      'destructive',
    )
  }
  const transport = new StdioServerTransport(streams.stdin as never, streams.stdout as never)
  const closed = new Promise<void>((resolve) => (transport.onclose = resolve))
  await server.connect(transport)
  await closed
}

/**
 * Through the holder when there is one; else the store opened for this call only — for a write,
 * caught up with its sync server first (claims and leased ids need the connection), or offline
 * after a while, as `docket` commands do.
 */
async function withStore<T>(options: McpOptions, write: boolean, fn: (store: StoreHandle) => Promise<T>): Promise<T> {
  const held = await connectHolder(options.dir, { timeoutMs: options.holderTimeoutMs })
  const store =
    held ??
    handleOf(await openStore({ dir: options.dir, create: false, serve: false, ...(options.sync ? { sync: options.sync } : {}), logger: { warn: (m) => process.stderr.write(`WARN ${m}\n`), error: (m) => process.stderr.write(`ERROR ${m}\n`) } }))
  try {
    if (!held && write && options.sync) {
      await store.whenSynced(10_000).catch((err: unknown) => {
        if (isDocketError(err, 'SYNC_UNAUTHORIZED')) throw err
        process.stderr.write(`WARN working offline (${(err as Error).message})\n`)
      })
    }
    return await fn(store)
  } finally {
    await store.close()
  }
}

async function answer(run: () => Promise<unknown>): Promise<CallToolResult> {
  try {
    const value = await run()
    const json = JSON.parse(JSON.stringify(value ?? null, jsonBytes)) as unknown
    return { content: [{ type: 'text', text: JSON.stringify(json, null, 2) }], ...(isRecord(json) ? { structuredContent: json } : {}) }
  } catch (err) {
    const error = isDocketError(err) ? err.toJSON() : { name: 'Error', code: 'INTERNAL', message: err instanceof Error ? err.message : String(err), details: {} }
    return { isError: true, content: [{ type: 'text', text: `${error.code}: ${error.message}` }], structuredContent: { error } }
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}
