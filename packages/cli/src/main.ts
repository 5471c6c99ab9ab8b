import { Command, CommanderError } from 'commander'
import { DocketError } from '@docket/core/client'
import { Context } from './context.js'
import { EXIT, exitCodeFor, UsageError } from './exit.js'
import { Output, processIo, type Io } from './output.js'
import { registerItemCommands } from './commands/items.js'
import { registerRecover } from './commands/recover.js'
import { registerInit, registerStoreCommands } from './commands/store.js'
import { registerSync } from './commands/sync.js'
import { registerDaemon } from './commands/daemon.js'
import { registerMcp } from './commands/mcp.js'
import { registerClaimCommands } from './commands/claims.js'
import { registerBoard } from './commands/board.js'

export { VERSION } from './version.js'
import { VERSION } from './version.js'

/** Builds the `docket` program. Each command registers itself from commands/. */
export function buildProgram(ctx: Context): Command {
  const program = new Command('docket')
    .description('docket: the pipeline store of an agent orchestrator (items, stages, audit, recovery)')
    .version(VERSION, '-V, --version')
    .option('--dir <dir>', 'the store directory (default: $DOCKET_DIR, else ./.docket)')
    .option('--json', 'print one JSON document on stdout (for agents); diagnostics stay on stderr')
    .option('--sync <url>', 'sync with this docket server (default: $DOCKET_SYNC_URL), e.g. ws://127.0.0.1:1234')
    .option('--token <token>', 'the sync server\'s token (default: $DOCKET_TOKEN)')
    .showSuggestionAfterError(true)
    .showHelpAfterError('(run docket --help for the commands)')
    .exitOverride()
    .configureOutput({
      writeOut: (text) => ctx.io.stdout.write(text),
      writeErr: (text) => ctx.io.stderr.write(text),
    })
  registerInit(program, ctx)
  registerItemCommands(program, ctx)
  registerClaimCommands(program, ctx)
  registerStoreCommands(program, ctx)
  registerRecover(program, ctx)
  registerSync(program, ctx)
  registerDaemon(program, ctx)
  registerMcp(program, ctx)
  registerBoard(program, ctx)
  // Subcommands inherit exitOverride, suggestions and output from the program (commander copies them in .command()).
  return program
}

/** Runs `docket` with `argv` (without node and script) and returns the exit code. */
export async function main(argv: readonly string[], io: Io = processIo): Promise<number> {
  const ctx = new Context(io)
  const program = buildProgram(ctx)
  // Commander prints the version as text; with --json it is one JSON document like every other output.
  if (argv.includes('--json') && (argv.includes('--version') || argv.includes('-V'))) {
    new Output(io, true).result({ version: VERSION }, () => VERSION)
    return EXIT.ok
  }
  try {
    await program.parseAsync([...argv], { from: 'user' })
    return ctx.exitCode
  } catch (err) {
    const json = argv.includes('--json')
    if (err instanceof CommanderError) {
      // `docket --help` and `docket --version` are fine; `docket` alone is a usage error.
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return EXIT.ok
      if (json) new Output(io, true).result({ error: { name: 'UsageError', code: 'INVALID_INPUT', message: err.message.replace(/^error: /, '') } }, () => '')
      return EXIT.usage // commander has already printed the message and a suggestion
    }
    const out = new Output(io, json)
    report(out, err)
    return exitCodeFor(err)
  }
}

function report(out: Output, err: unknown): void {
  if (err instanceof DocketError) {
    out.error(`${err.code}: ${err.message}`)
    if (out.json) out.result({ error: err.toJSON() }, () => '')
    return
  }
  if (err instanceof UsageError) {
    out.error(`${err.message}\n(run docket <command> --help for its options and an example)`)
    if (out.json) out.result({ error: { name: 'UsageError', code: 'INVALID_INPUT', message: err.message } }, () => '')
    return
  }
  const message = err instanceof Error ? (err.stack ?? err.message) : String(err)
  out.error(`unexpected: ${message}\nThis is a bug in docket; please report it with the command you ran.`)
  if (out.json) out.result({ error: { name: 'Error', code: 'INTERNAL', message: String((err as Error)?.message ?? err) } }, () => '')
}
