import type { Command } from 'commander'
import type { Context } from '../context.js'

/** `docket mcp`: the store as Model Context Protocol tools over stdio (src/mcp.ts). */
export function registerMcp(program: Command, ctx: Context): void {
  program
    .command('mcp')
    .description('serve the store to coding agents as Model Context Protocol tools over stdio (through the holder of the store when there is one)')
    .option('--allow-destructive', 'also offer delete_item and recover_apply')
    .addHelpText(
      'after',
      `
Examples:
  docket --dir /srv/pipeline/.docket mcp
  claude mcp add docket -- docket --dir "$PWD/.docket" mcp

Tools: list_items, show_item, create_item, apply_event, update_item, write_content, read_content,
audit_log, recover_dry_run; with --allow-destructive also delete_item and recover_apply. Results
are the JSON of \`docket --json\`; a failure is a tool error that starts with the DocketError code.`,
    )
    .action(async (flags: { allowDestructive?: boolean }, command: Command) => {
      // Loaded only here: the SDK is not a cost every command pays.
      const { runMcp } = await import('../mcp.js')
      const sync = ctx.sync(command)
      await runMcp({ dir: ctx.dir(command), sync, allowDestructive: flags.allowDestructive === true, holderTimeoutMs: ctx.holderTimeoutMs() })
    })
}
