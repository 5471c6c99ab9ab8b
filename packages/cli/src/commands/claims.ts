import type { Command } from 'commander'
import ms from 'ms'
import { ITEM_TYPES, MAX_CLAIM_TTL_MS, MIN_CLAIM_TTL_MS, STAGES, type Stage } from '@docket/core/client'
import type { ClaimResult, ItemType, WorkClaim } from '@docket/core'
import { parseId } from '../args.js'
import type { Context } from '../context.js'
import { EXIT, UsageError } from '../exit.js'

/** `--ttl 15m`, `90s`, `2h`, `1d` or milliseconds: a claim's duration, within the store's bounds. */
export function parseTtl(text: string): number {
  const value = /^[0-9]+$/.test(text) ? Number(text) : (ms(text as ms.StringValue) as number | undefined)
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < MIN_CLAIM_TTL_MS || value > MAX_CLAIM_TTL_MS) {
    throw new UsageError(`--ttl ${JSON.stringify(text)} is not a duration from 1s to 7d: write it as 90s, 15m, 2h, 1d or a number of milliseconds`)
  }
  return value
}

function holderText(claim: WorkClaim): string {
  return `${claim.agent}${claim.provisional ? ' (provisional)' : ''} until ${claim.until} (replica ${claim.replica})`
}

/** claim, renew, release: who works on what (README "Claims"). */
export function registerClaimCommands(program: Command, ctx: Context): void {
  program
    .command('claim')
    .argument('[id]', 'the item to claim (or --next)')
    .description('claim an item for an agent: exactly one claimant wins, with the sync server deciding; a refusal names who holds it (exit 4)')
    .requiredOption('--agent <agent>', 'who works on it')
    .option('--ttl <duration>', 'how long the claim lasts unless renewed (90s, 15m, 2h, 1d)', '15m')
    .option('--next', 'claim the first ready, unclaimed item (lowest id) instead of a given one')
    .option('--stage <stages>', `with --next: only items in these stages, comma-separated (${STAGES.join(', ')})`)
    .option('--type <types>', `with --next: only items of these types, comma-separated (${ITEM_TYPES.join(', ')})`)
    .option('--offline', 'not connected to the sync server: take a provisional claim, checked with the server on reconnect')
    .addHelpText(
      'after',
      '\nExamples:\n  docket claim 12 --agent coder-1 --ttl 30m\n  docket --json claim --next --agent coder-2 --stage backlog\n\nExit codes: 0 granted; 4 refused (another agent holds it: the message and --json say who), or not connected to the sync server without --offline (BEHIND_REMOTE); 3 with --next when no ready item is left.',
    )
    .action(async (idText: string | undefined, flags: { agent: string; ttl: string; next?: boolean; stage?: string; type?: string; offline?: boolean }, command: Command) => {
      if (flags.next && idText !== undefined) throw new UsageError('give an item id or --next, not both')
      if (!flags.next && idText === undefined) throw new UsageError('give the item to claim (docket claim 12 --agent A), or --next for the first ready one')
      if (!flags.next && (flags.stage !== undefined || flags.type !== undefined)) throw new UsageError('--stage and --type choose among items for --next; a given id needs neither')
      const ttlMs = parseTtl(flags.ttl)
      const ask = { agent: flags.agent, ttlMs, ...(flags.offline ? { offline: true } : {}) }
      const out = ctx.output(command)
      const result: ClaimResult | null = await ctx.withStore(command, {}, (store) => {
        if (!flags.next) return store.claim(parseId(idText!), ask)
        const stage = flags.stage === undefined ? undefined : (flags.stage.split(',').map((s) => checkOne(s, STAGES, 'stage')) as Stage[])
        const type = flags.type === undefined ? undefined : (flags.type.split(',').map((t) => checkOne(t, ITEM_TYPES, 'type')) as ItemType[])
        return store.claimNext({ ...ask, ...(stage ? { stage } : {}), ...(type ? { type } : {}) })
      })
      if (result === null) {
        ctx.exitCode = EXIT.partial
        out.result({ granted: false, item: null, holder: null }, () => 'no ready, unclaimed item to claim')
        return
      }
      if (!result.granted) ctx.exitCode = EXIT.refused
      out.result(result, () =>
        result.granted
          ? `#${result.item.id} claimed by ${holderText(result.claim)}${result.previous ? `; took over the expired claim of ${result.previous.agent}` : ''}`
          : `#${result.item.id} is claimed by ${holderText(result.holder)}: not granted to ${flags.agent}`,
      )
    })

  program
    .command('renew')
    .argument('<id>', 'the item')
    .description("extend the agent's claim on an item; exit 4 (CLAIM_NOT_HELD) if the agent does not hold it")
    .requiredOption('--agent <agent>', 'the agent that holds the claim')
    .option('--ttl <duration>', 'the claim lasts this long from now (90s, 15m, 2h, 1d)', '15m')
    .option('--offline', 'renew a provisional claim while not connected to the sync server')
    .addHelpText('after', '\nExample:\n  docket renew 12 --agent coder-1 --ttl 30m')
    .action(async (idText: string, flags: { agent: string; ttl: string; offline?: boolean }, command: Command) => {
      const id = parseId(idText)
      const ttlMs = parseTtl(flags.ttl)
      const out = ctx.output(command)
      const result = await ctx.withStore(command, {}, (store) => store.renewClaim(id, { agent: flags.agent, ttlMs, ...(flags.offline ? { offline: true } : {}) }))
      out.result(result, () => (result.granted ? `#${id} claimed by ${holderText(result.claim)}` : ''))
    })

  program
    .command('release')
    .argument('<id>', 'the item')
    .description("end the agent's claim on an item; exit 4 (CLAIM_NOT_HELD) if the agent does not hold it")
    .requiredOption('--agent <agent>', 'the agent that holds the claim')
    .option('--offline', 'release a provisional claim while not connected to the sync server')
    .addHelpText('after', '\nExample:\n  docket release 12 --agent coder-1')
    .action(async (idText: string, flags: { agent: string; offline?: boolean }, command: Command) => {
      const id = parseId(idText)
      const out = ctx.output(command)
      const item = await ctx.withStore(command, {}, (store) => store.releaseClaim(id, { agent: flags.agent, ...(flags.offline ? { offline: true } : {}) }))
      out.result(item, () => `#${item.id} released by ${flags.agent}`)
    })
}

function checkOne(text: string, allowed: readonly string[], what: string): string {
  if (allowed.includes(text)) return text
  throw new UsageError(`unknown ${what} ${JSON.stringify(text)}: use one of ${allowed.join(', ')}`)
}
