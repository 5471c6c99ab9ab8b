import { readFile } from 'node:fs/promises'
import { resolve } from 'node:path'
import type { Command } from 'commander'
import { decodeContent, DocketError, isClaimLive, isEventType, isItemId, ITEM_TYPES, STAGES, validEvents, type Stage, type StoreReader } from '@docket/core/client'
import type { Alias, Item, ItemType, StageHistoryEntry } from '@docket/core'
import { parseId, parseIdList, parseNonNegative } from '../args.js'
import type { Context } from '../context.js'
import { UsageError } from '../exit.js'
import { table, type Colors } from '../output.js'

/** create, list, show, apply, update, delete: the everyday commands. */
export function registerItemCommands(program: Command, ctx: Context): void {
  program
    .command('create')
    .description('create an item (verified: it is in the CRDT and on disk when this returns); prints its id')
    .requiredOption('--name <name>', 'a short title')
    .option('--type <type>', `one of ${ITEM_TYPES.join(', ')}`, 'story')
    .option('--depends-on <ids>', 'ids it depends on, comma-separated (e.g. 3,7)')
    .option('--body-file <file>', 'read the body (markdown with front matter) from a file')
    .option('--body <text>', 'the body as text; - reads it from stdin')
    .option('--priority <n>', 'priority, 0 (most urgent) to 4 (default: none, which counts as 2)')
    .option('--label <labels>', 'labels, comma-separated')
    .option('--parent <id>', 'the item it belongs to (an epic)')
    .addHelpText('after', '\nExamples:\n  docket create --name "Fix login" --type bug --depends-on 3,7 --priority 1 --label auth,web\n  cat story.md | docket --json create --name "Story" --body - --parent 12')
    .action(async (flags: { name: string; type: string; dependsOn?: string; bodyFile?: string; body?: string; priority?: string; label?: string; parent?: string }, command: Command) => {
      if (flags.bodyFile !== undefined && flags.body !== undefined) throw new UsageError('give the body once: --body-file F or --body TEXT (or --body - for stdin)')
      const type = checkType(flags.type)
      const dependsOn = flags.dependsOn === undefined ? [] : parseIdList(flags.dependsOn, '--depends-on')
      const body = flags.bodyFile !== undefined ? await readBodyFile(ctx, flags.bodyFile) : flags.body === '-' ? await readStdin(ctx) : flags.body
      const extra = {
        ...(flags.priority !== undefined ? { priority: parsePriority(flags.priority) } : {}),
        ...(flags.label !== undefined ? { labels: parseLabels(flags.label, '--label') } : {}),
        ...(flags.parent !== undefined ? { parent: parseId(flags.parent, '--parent') } : {}),
      }
      const out = ctx.output(command)
      const item = await ctx.withStore(command, {}, (store) => store.createItem({ name: flags.name, type, dependsOn, ...(body !== undefined ? { body } : {}), ...extra }))
      out.result(item, () => item.id)
    })

  program
    .command('list')
    .description('list items, as a table or (--json) an array of items')
    .option('--stage <stages>', `only these stages, comma-separated (${STAGES.join(', ')})`)
    .option('--type <types>', 'only these types, comma-separated')
    .option('--ready', 'only items an agent may pick up now: neither blocked, frozen nor claimed, every dependency done or archived')
    .option('--claimed', 'only items an agent holds a live claim on (who and until when: FLAGS, or claim in --json)')
    .option('--label <labels>', 'only items with one of these labels, comma-separated')
    .option('--priority <ns>', 'only items of these priorities, comma-separated (no priority counts as 2)')
    .option('--parent <id>', 'only the children of this item')
    .addHelpText('after', '\nExamples:\n  docket list --stage backlog --ready      # most urgent first\n  docket list --claimed\n  docket --json list --type bug,spike --label web --priority 0,1\n  docket list --parent 12')
    .action(async (flags: { stage?: string; type?: string; ready?: boolean; claimed?: boolean; label?: string; priority?: string; parent?: string }, command: Command) => {
      const stage = flags.stage === undefined ? undefined : flags.stage.split(',').map(checkStage)
      const type = flags.type === undefined ? undefined : flags.type.split(',').map(checkType)
      const label = flags.label === undefined ? undefined : parseLabels(flags.label, '--label')
      const priority = flags.priority === undefined ? undefined : flags.priority.split(',').map(parsePriority)
      const parent = flags.parent === undefined ? undefined : parseId(flags.parent, '--parent')
      const out = ctx.output(command)
      const items = await ctx.withReader(command, (reader) =>
        reader.listItems({
          ...(stage ? { stage } : {}),
          ...(type ? { type } : {}),
          ...(flags.ready ? { ready: true } : {}),
          ...(flags.claimed ? { claimed: true } : {}),
          ...(label ? { label } : {}),
          ...(priority ? { priority } : {}),
          ...(parent ? { parent } : {}),
        }),
      )
      out.result(items, () => (items.length === 0 ? out.color.dim('no items') : itemTable(out.color, items)))
    })

  program
    .command('show')
    .argument('<id>', 'the item id')
    .description('an item with its stage history and content')
    .option('--content <slot>', 'print only this content slot (e.g. body, gate_output)')
    .addHelpText('after', '\nExamples:\n  docket show 12\n  docket show bd-a1b2          # an id from another tracker (imported)\n  docket show 12 --content body > story.md')
    .action(async (idText: string, flags: { content?: string }, command: Command) => {
      // Another tracker's id (`bd-a1b2`, `my_proj-x1`, `2048-game-x1`): word characters with a separator somewhere.
      const external = !isItemId(idText) && !/^[0-9]+$/.test(idText) && /^[\w][\w.:-]{0,198}$/.test(idText) && /[-_.:]/.test(idText) ? idText : undefined
      const out = ctx.output(command)
      await ctx.withReader(command, async (store) => {
        let id = external === undefined ? parseId(idText) : undefined
        if (external !== undefined) {
          const found = (await store.listItems()).filter((i) => i.externalIds?.includes(external))
          if (found.length === 0) throw new DocketError('NOT_FOUND', `No item has the external id ${external}: check it (\`docket list --json\` shows externalIds), or give a docket id.`, { details: { externalId: external } })
          id = found[0]!.id
        }
        const item = await store.getItem(id!)
        if (!item) {
          await store.stageHistory(id!) // throws NOT_FOUND or TOMBSTONED with the right message
          return
        }
        if (flags.content !== undefined) {
          const bytes = await store.readContentBytes(item.id, flags.content)
          if (bytes === undefined) throw new UsageError(`item ${item.id} has no slot ${JSON.stringify(flags.content)}; it has: ${(await store.contentSlots(item.id)).join(', ') || 'none'}`)
          if (out.json) out.result({ id: item.id, slot: flags.content, content: decodeContent(bytes) }, () => '')
          else out.write(bytes)
          return
        }
        const { history, content, aliases } = await itemDetails(store, item)
        out.result({ item, history, validEvents: validEvents(item.stage), content, aliases }, () => {
          const c = out.color
          const lines = [
            `${c.bold(`#${item.id}`)} ${item.name}`,
            `  stage ${c.cyan(item.stage)}   type ${item.type}   uid ${item.uid}`,
            `  depends on ${item.dependsOn.map((d) => `#${d}`).join(', ') || '—'}   agent ${item.agent ?? '—'}   retries ${item.retries}`,
            `  priority ${item.priority ?? '— (2)'}   labels ${item.labels?.join(', ') ?? '—'}   parent ${item.parent ? `#${item.parent}` : '—'}${item.externalIds ? `   external ${item.externalIds.join(', ')}` : ''}`,
            `  claim ${item.claim ? `${item.claim.agent}${item.claim.provisional ? ' (provisional)' : ''} since ${item.claim.since} until ${item.claim.until}${isClaimLive(item.claim, Date.now()) ? '' : ' (expired)'}` : '—'}`,
            `  ${item.blocked ? c.red(`blocked: ${item.blocked.reason}`) : 'not blocked'}   ${item.frozen ? c.yellow('frozen') : 'not frozen'}`,
            `  created ${item.createdAt} by ${item.createdBy}, updated ${item.updatedAt}`,
            `  next events: ${validEvents(item.stage).join(', ') || '— (terminal)'}`,
          ]
          for (const a of aliases) lines.push(`  was #${a.oldId} (re-anchored: ${a.reason})`)
          lines.push('', c.dim('stage history'))
          lines.push(
            table(
              c,
              ['AT', 'EVENT', 'STAGE', 'EPOCH', 'BY', 'COUNTS'],
              history.map((h) => [h.at, h.event, h.stage, String(h.epoch), h.by, h.current ? c.green('current') : h.valid ? 'yes' : c.yellow(`no (${h.invalidReason})`)]),
            ),
          )
          for (const [slot, value] of Object.entries(content)) {
            lines.push('', c.dim(`── ${slot} ──`), typeof value === 'string' ? value.trimEnd() : `(${value.byteLength} bytes, not text)`)
          }
          return lines.join('\n')
        })
      })
    })

  program
    .command('apply')
    .argument('<id>', 'the item id')
    .argument('<event>', 'the stage event (start, gates_passed, accepted, merge_succeeded, …)')
    .description('send a stage event: the only way to change a stage')
    .option('--reason <reason>', 'why (kept in the stage history and the audit log)')
    .option('--force', 'move a blocked or frozen item anyway (the audit log records it)')
    .option('--if-stage <stages>', 'only if the item is in this stage (or one of these, comma-separated); else exit 4 (STAGE_CONFLICT) and nothing is written')
    .addHelpText('after', '\nExamples:\n  docket apply 12 start\n  docket apply 12 demote --reason "needs a design first"\n  docket apply 12 start --force   # although 12 is blocked or frozen\n  docket apply 12 gates_passed --if-stage coding\n\nExit codes: 0 moved, 1 not found or invalid transition, 2 unknown event, 4 the item is blocked or frozen (ITEM_BLOCKED, ITEM_FROZEN) and --force was not given, or not in the --if-stage stage (STAGE_CONFLICT).')
    .action(async (idText: string, event: string, flags: { reason?: string; force?: boolean; ifStage?: string }, command: Command) => {
      const ifStage = flags.ifStage === undefined ? undefined : flags.ifStage.split(',').map(checkStage)
      const id = parseId(idText)
      const out = ctx.output(command)
      const item = await ctx.withStore(command, {}, async (store) => {
        if (!isEventType(event)) {
          const current = await store.getItem(id)
          const valid = current ? validEvents(current.stage) : []
          throw new UsageError(`unknown event ${JSON.stringify(event)}${current ? `; valid events from ${current.stage}: ${valid.join(', ') || 'none (terminal)'}` : ''}`)
        }
        return store.apply(id, flags.reason === undefined ? { type: event } : { type: event, reason: flags.reason }, { ...(flags.force ? { force: true } : {}), ...(ifStage ? { ifStage } : {}) })
      })
      out.result(item, () => `#${item.id} is now ${item.stage}`)
    })

  program
    .command('update')
    .argument('<id>', 'the item id')
    .description('edit fields (not the stage: use apply)')
    .option('--name <name>', 'a new title')
    .option('--depends-on <ids>', 'the new dependency list, comma-separated; an empty string clears it')
    .option('--agent <agent>', 'the agent working on it')
    .option('--clear-agent', 'unset the agent')
    .option('--retries <n>', 'the retry count')
    .option('--block <reason>', 'block it, with a reason')
    .option('--unblock', 'unblock it')
    .option('--freeze', 'freeze it')
    .option('--unfreeze', 'unfreeze it')
    .option('--priority <n>', 'priority, 0 (most urgent) to 4')
    .option('--clear-priority', 'unset the priority (it counts as 2)')
    .option('--add-label <labels>', 'add labels, comma-separated')
    .option('--remove-label <labels>', 'remove labels, comma-separated')
    .option('--parent <id>', 'the item it belongs to (an epic)')
    .option('--clear-parent', 'unset the parent')
    .addHelpText('after', '\nExamples:\n  docket update 12 --agent agent-7 --block "waiting for review"\n  docket update 12 --depends-on 3,4 --unfreeze\n  docket update 12 --priority 0 --add-label hotfix --parent 3')
    .action(async (idText: string, flags: Record<string, string | boolean | undefined>, command: Command) => {
      const id = parseId(idText)
      const patch: Parameters<import('@docket/core').Store['updateItem']>[1] = {}
      exclusive(flags, 'block', 'unblock')
      exclusive(flags, 'freeze', 'unfreeze')
      exclusive(flags, 'agent', 'clearAgent')
      exclusive(flags, 'priority', 'clearPriority')
      exclusive(flags, 'parent', 'clearParent')
      if (typeof flags.priority === 'string') patch.priority = parsePriority(flags.priority)
      if (flags.clearPriority) patch.priority = null
      if (typeof flags.addLabel === 'string') patch.addLabels = parseLabels(flags.addLabel, '--add-label')
      if (typeof flags.removeLabel === 'string') patch.removeLabels = parseLabels(flags.removeLabel, '--remove-label')
      if (typeof flags.parent === 'string') patch.parent = parseId(flags.parent, '--parent')
      if (flags.clearParent) patch.parent = null
      if (typeof flags.name === 'string') patch.name = flags.name
      if (typeof flags.dependsOn === 'string') patch.dependsOn = flags.dependsOn === '' ? [] : parseIdList(flags.dependsOn, '--depends-on')
      if (typeof flags.agent === 'string') patch.agent = flags.agent
      if (flags.clearAgent) patch.agent = null
      if (typeof flags.retries === 'string') patch.retries = parseNonNegative(flags.retries, '--retries')
      if (typeof flags.block === 'string') patch.blocked = { reason: flags.block }
      if (flags.unblock) patch.blocked = null
      if (flags.freeze) patch.frozen = true
      if (flags.unfreeze) patch.frozen = false
      if (Object.keys(patch).length === 0) throw new UsageError('nothing to update: give at least one of --name, --depends-on, --agent, --clear-agent, --retries, --block, --unblock, --freeze, --unfreeze, --priority, --clear-priority, --add-label, --remove-label, --parent, --clear-parent')
      const out = ctx.output(command)
      const item = await ctx.withStore(command, {}, (store) => store.updateItem(id, patch))
      out.result(item, () => `#${item.id} updated`)
    })

  program
    .command('delete')
    .argument('<id>', 'the item id')
    .description('delete an item: its id is tombstoned (never written or issued again) and its content cleared')
    .option('--reason <reason>', 'why (kept in the tombstone and the audit log)')
    .addHelpText('after', '\nExample:\n  docket delete 12 --reason "duplicate of #9"')
    .action(async (idText: string, flags: { reason?: string }, command: Command) => {
      const id = parseId(idText)
      const out = ctx.output(command)
      const result = await ctx.withStore(command, {}, (store) => store.deleteItem(id, flags.reason === undefined ? {} : { reason: flags.reason }))
      out.result(result, () => (result.alreadyDeleted ? `#${id} was already deleted` : `#${id} deleted; its id will never be reused`))
    })
}

function exclusive(flags: Record<string, unknown>, a: string, b: string): void {
  if (flags[a] !== undefined && flags[b] !== undefined) {
    const dash = (s: string) => `--${s.replace(/[A-Z]/g, (m) => `-${m.toLowerCase()}`)}`
    throw new UsageError(`${dash(a)} and ${dash(b)} contradict each other: give one`)
  }
}

function parsePriority(text: string): number {
  if (/^[0-4]$/.test(text)) return Number(text)
  throw new UsageError(`priority ${JSON.stringify(text)} is not 0, 1, 2, 3 or 4 (0 is the most urgent)`)
}

function parseLabels(text: string, flag: string): string[] {
  const labels = text.split(',').map((l) => l.trim())
  if (labels.some((l) => l.length === 0)) throw new UsageError(`${flag} ${JSON.stringify(text)} has an empty label: separate labels with commas, e.g. ${flag} web,auth`)
  return labels
}

function checkType(text: string): ItemType {
  if (ITEM_TYPES.includes(text as ItemType)) return text as ItemType
  throw new UsageError(`unknown type ${JSON.stringify(text)}: use one of ${ITEM_TYPES.join(', ')}`)
}

function checkStage(text: string): Stage {
  if ((STAGES as string[]).includes(text)) return text as Stage
  throw new UsageError(`unknown stage ${JSON.stringify(text)}: use one of ${STAGES.join(', ')}`)
}

async function readBodyFile(ctx: Context, file: string): Promise<string | Uint8Array> {
  try {
    return decodeContent(new Uint8Array(await readFile(resolve(ctx.io.cwd, file))))
  } catch (err) {
    throw new UsageError(`cannot read --body-file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  }
}

async function readStdin(ctx: Context): Promise<string | Uint8Array> {
  const chunks: Buffer[] = []
  for await (const chunk of ctx.io.stdin) chunks.push(Buffer.from(chunk as Buffer))
  return decodeContent(new Uint8Array(Buffer.concat(chunks)))
}

function itemTable(c: Colors, items: Item[]): string {
  return table(
    c,
    ['ID', 'STAGE', 'TYPE', 'NAME', 'DEPENDS', 'FLAGS'],
    items.map((i) => [
      `#${i.id}`,
      c.cyan(i.stage),
      i.type,
      i.name,
      i.dependsOn.map((d) => `#${d}`).join(',') || '',
      [
        i.priority !== undefined ? `p${i.priority}` : '',
        i.blocked ? c.red('blocked') : '',
        i.frozen ? c.yellow('frozen') : '',
        i.agent ? `@${i.agent}` : '',
        i.claim && isClaimLive(i.claim, Date.now()) ? c.cyan(`claimed:${i.claim.agent}`) : '',
        i.labels ? `[${i.labels.join(',')}]` : '',
      ]
        .filter(Boolean)
        .join(' '),
    ]),
  )
}

type ItemSource = Pick<StoreReader, 'stageHistory' | 'contentSlots' | 'readContentBytes' | 'aliases'>

/** What `show` prints about an item beside the item itself (the MCP tool show_item gives the same). */
export async function itemDetails(store: ItemSource, item: Item): Promise<{ history: StageHistoryEntry[]; content: Record<string, string | Uint8Array>; aliases: Alias[] }> {
  const history = await store.stageHistory(item.id)
  const content: Record<string, string | Uint8Array> = {}
  for (const slot of await store.contentSlots(item.id)) content[slot] = decodeContent((await store.readContentBytes(item.id, slot))!)
  const aliases = (await store.aliases()).filter((a) => a.uid === item.uid)
  return { history, content, aliases }
}
