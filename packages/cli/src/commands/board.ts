import type { Command } from 'commander'
import type { Context } from '../context.js'
import { UsageError } from '../exit.js'

/** docket board: the pipeline in the browser, read-only and live (packages/board). */
export function registerBoard(program: Command, ctx: Context): void {
  program
    .command('board')
    .description('serve a live, read-only board of the pipeline in the browser (until Ctrl-C)')
    .option('--port <port>', 'the port (0 picks a free one)', '4321')
    .option('--host <host>', 'the address to listen on; anything but loopback gets a token', '127.0.0.1')
    .option('--token <token>', 'require this token to open the page (default: none on loopback, a random one elsewhere; also $DOCKET_BOARD_TOKEN)')
    .addHelpText('after', '\nExamples:\n  docket board                       # http://127.0.0.1:4321/\n  docket board --host 0.0.0.0 --port 8080\n\nIt reads through the process that holds the store (an orchestrator, docket daemon); when none does, it opens the store itself — syncing with --sync / $DOCKET_SYNC_URL (a read-only token will do), so that changes of other replicas show — and serves docket commands meanwhile. It never writes.')
    .action(async (flags: { port: string; host: string; token?: string }, command: Command) => {
      if (!/^[0-9]{1,5}$/.test(flags.port) || Number(flags.port) > 65535) throw new UsageError(`--port ${JSON.stringify(flags.port)} is not a port (0 to 65535)`)
      const out = ctx.output(command)
      const { startBoard } = await import('@docket/board')
      const token = flags.token ?? ctx.io.env.DOCKET_BOARD_TOKEN
      const sync = ctx.sync(command)
      const board = await startBoard({ dir: ctx.dir(command), host: flags.host, port: Number(flags.port), ...(token ? { token } : {}), ...(sync ? { sync } : {}), logger: { warn: (m) => out.warn(m) } })
      out.result({ url: board.url, port: board.port, source: board.source }, () => `docket board on ${board.url} (${board.source === 'held' ? 'reading through the process that holds the store' : 'holding the store; docket commands go through it'}); Ctrl-C stops it`)
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve)
        process.once('SIGTERM', resolve)
      })
      await board.close()
    })
}
