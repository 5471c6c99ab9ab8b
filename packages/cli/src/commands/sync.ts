import { resolve } from 'node:path'
import type { Command } from 'commander'
import { DocketError } from '@docket/core/client'
import { DEFAULT_PORT } from '@docket/server/defaults'
import { parseNonNegative } from '../args.js'
import type { Context } from '../context.js'
import { EXIT, UsageError } from '../exit.js'

/** serve (a sync server) and sync (catch up with one, or show the state). */
export function registerSync(program: Command, ctx: Context): void {
  program
    .command('serve')
    .description('run a sync server (Hocuspocus) that replicas join with --sync; stores documents in <dir>/server')
    .option('--host <host>', 'the address to bind (default 127.0.0.1: this machine only)', '127.0.0.1')
    .option('--port <port>', `the port (default ${DEFAULT_PORT}; 0 picks a free one)`, String(DEFAULT_PORT))
    .option('--redis <host:port>', 'share documents with other docket servers through this Redis')
    .option('--max-payload <bytes>', 'the largest message accepted (default 104857600: a whole document travels in one at first sync)')
    .option('--auth-timeout <ms>', 'close a connection that has not authenticated within this time (default 10000)')
    .option('--max-unauthenticated <bytes>', 'close a connection that sends more than this before authenticating (default 1048576)')
    .option('--max-connections-per-address <n>', 'close connections beyond this many from one address (default 100; behind a reverse proxy all clients share its address)')
    .option('--read-token <token>', 'a second token that may only read: its connections receive updates and every update they send is refused (or DOCKET_READ_TOKEN)')
    .addHelpText(
      'after',
      `
Examples:
  DOCKET_TOKEN=s3cret docket serve                       # ws://127.0.0.1:${DEFAULT_PORT}
  docket --dir /srv/docket serve --port 4000 --token s3cret
  docket --sync ws://127.0.0.1:${DEFAULT_PORT} --token s3cret list   # a replica that syncs
  DOCKET_TOKEN=s3cret DOCKET_READ_TOKEN=look docket serve   # dashboards join with --token look

The token (--token or DOCKET_TOKEN) is required. SIGINT/SIGTERM store every document, then exit.`,
    )
    .action(async (flags: { host: string; port: string; redis?: string; maxPayload?: string; authTimeout?: string; maxUnauthenticated?: string; maxConnectionsPerAddress?: string; readToken?: string }, command: Command) => {
      const limits = {
        ...(flags.maxPayload !== undefined ? { maxPayloadBytes: positive(flags.maxPayload, '--max-payload') } : {}),
        ...(flags.authTimeout !== undefined ? { authTimeoutMs: positive(flags.authTimeout, '--auth-timeout') } : {}),
        ...(flags.maxUnauthenticated !== undefined ? { maxUnauthenticatedBytes: positive(flags.maxUnauthenticated, '--max-unauthenticated') } : {}),
        ...(flags.maxConnectionsPerAddress !== undefined ? { maxConnectionsPerAddress: positive(flags.maxConnectionsPerAddress, '--max-connections-per-address') } : {}),
      }
      const token = ctx.token(command)
      if (!token) throw new UsageError('docket serve needs a token: --token T or DOCKET_TOKEN=T (clients must present it)')
      const readToken = flags.readToken ?? (process.env.DOCKET_READ_TOKEN || undefined)
      if (readToken !== undefined && (readToken.length === 0 || readToken === token)) {
        throw new UsageError('--read-token must be non-empty and differ from the token (a read-only token that equals the read-write one would grant writes)')
      }
      const port = parseNonNegative(flags.port, '--port')
      if (port > 65535) throw new UsageError(`--port ${port} is not a port (0–65535)`)
      const redis = flags.redis === undefined ? undefined : parseRedis(flags.redis)
      const out = ctx.output(command)
      if (flags.host !== '127.0.0.1' && flags.host !== 'localhost' && flags.host !== '::1') {
        out.warn(`serving on ${flags.host}: reachable from other machines; only the token keeps them out (use TLS in front of it on untrusted networks)`)
      }
      const dir = resolve(ctx.dir(command), 'server')
      // Loaded here, not at start-up: every other command would pay for Hocuspocus.
      const { startServer } = await import('@docket/server')
      // The server refuses what every replica would refuse: updates that rewrite history.
      const { updateRefusal } = await import('@docket/core')
      let server
      try {
        server = await startServer({
          dir,
          host: flags.host,
          port,
          token,
          ...(redis ? { redis } : {}),
          ...limits,
          ...(readToken !== undefined ? { readToken } : {}),
          admit: updateRefusal,
          logger: { info: (m) => out.note(`docket serve: ${m}`), warn: (m) => out.warn(m) },
        })
      } catch (err) {
        throw new DocketError('SYNC_FAILED', `docket serve could not start: ${(err as Error).message}`, { cause: err })
      }
      out.result({ url: server.url, host: server.host, port: server.port, dir }, () => `serving ${server.url} (documents in ${dir}); Ctrl-C to stop`)
      await new Promise<void>((done) => {
        const stop = (signal: string) => {
          out.note(`docket serve: ${signal}, storing documents…`)
          void server.close().then(done)
        }
        process.once('SIGINT', () => stop('SIGINT'))
        process.once('SIGTERM', () => stop('SIGTERM'))
      })
    })

  program
    .command('sync')
    .argument('[action]', '"now" (default): catch up with the server and report; "status": report without connecting')
    .description('catch up with the sync server (--sync / DOCKET_SYNC_URL) and print the sync state')
    .addHelpText('after', '\nExamples:\n  docket --sync ws://127.0.0.1:1234 --token s3cret sync\n  docket --json sync status\n\nExit codes: 0 synced, 2 no sync server configured, 4 not synced within the timeout or the token was refused.')
    .action(async (action: string | undefined, _flags: unknown, command: Command) => {
      if (action !== undefined && action !== 'now' && action !== 'status') throw new UsageError(`unknown sync action ${JSON.stringify(action)}: use "now" or "status"`)
      const out = ctx.output(command)
      const status = action === 'status'
      const result = await ctx.withStore(command, { readOnly: status, sync: 'repair' }, async (store) => {
        const { items, pendingReanchors } = await store.stats()
        return { ...(await store.syncState()), replicaId: store.replicaId, items, pendingReanchors }
      })
      if (!result.configured) throw new UsageError('no sync server is configured: give --sync URL (and --token) or set DOCKET_SYNC_URL (and DOCKET_TOKEN); without one this replica works offline')
      out.result(result, () =>
        result.configured
          ? `${result.synced ? 'synced' : status ? 'not connected (status only)' : 'not synced'} with ${result.url}${result.readOnly ? ' (read-only token: this replica receives, and cannot change the pipeline)' : ''}; last synced ${result.lastSyncedAt ?? 'never'}; ${result.items} items`
          : 'no sync server configured (give --sync URL or set DOCKET_SYNC_URL); this replica works offline',
      )
      if (!status && result.configured && !result.synced) ctx.exitCode = EXIT.refused
    })
}

function parseRedis(text: string): { host: string; port: number } {
  const match = /^([^:]+):(\d{1,5})$/.exec(text)
  if (!match) throw new UsageError(`--redis ${JSON.stringify(text)} must be host:port, e.g. 127.0.0.1:6379`)
  return { host: match[1]!, port: Number(match[2]) }
}

function positive(text: string, flag: string): number {
  const n = parseNonNegative(text, flag)
  if (n === 0) throw new UsageError(`${flag} must be at least 1`)
  return n
}
