import { spawn } from 'node:child_process'
import { open, readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Command } from 'commander'
import { connectHolder, DocketError, type StoreHandle } from '@docket/core/client'
import type { Context } from '../context.js'

const BIN = fileURLToPath(new URL('../bin.js', import.meta.url))
const PID_FILE = 'daemon.pid'
const LOG_FILE = 'daemon.log'
/** How long `start` waits for the daemon to open the store and listen. */
const START_TIMEOUT_MS = 10 * 60_000

/**
 * `docket daemon start|stop|status|run`: a background process that holds the store, so that
 * repeated commands go through it instead of each opening the store. Never started implicitly.
 */
export function registerDaemon(program: Command, ctx: Context): void {
  const daemon = program
    .command('daemon')
    .description('keep the store open in a background process, so that repeated commands are fast (never started implicitly)')
    .addHelpText('after', '\nExamples:\n  docket daemon start\n  docket daemon status\n  docket daemon stop\n\nThe daemon logs to <dir>/daemon.log. Commands reach it through <dir>/holder.sock (this user only).')

  daemon
    .command('start')
    .description('start the daemon for this store (exit 0 if it already runs; exit 4 if another process holds the store)')
    .action(async (_flags: unknown, command: Command) => {
      const out = ctx.output(command)
      const dir = ctx.dir(command)
      const running = await holderOf(dir)
      if (running) {
        if (!running.daemon) throw notOurs(dir, running.pid)
        out.result({ dir, pid: running.pid, started: false }, () => `the daemon of ${dir} already runs (pid ${running.pid})`)
        return
      }
      const log = await open(join(dir, LOG_FILE), 'a').catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') throw new DocketError('STORE_NOT_FOUND', `There is no docket store at ${dir}: create one with \`docket init\` first.`, { details: { dir } })
        throw err
      })
      // The sync settings travel in the environment: a token on a command line is visible to every user's `ps`.
      const child = spawn(process.execPath, [BIN, '--dir', dir, 'daemon', 'run'], { detached: true, stdio: ['ignore', log.fd, log.fd], env: { ...process.env, ...syncEnv(ctx, command) } })
      child.unref()
      await log.close()
      const pid = child.pid!
      let exited: number | null | undefined
      child.once('exit', (code) => (exited = code))
      // Opening a large store takes a while (its document is decoded): wait as long as the daemon lives, within reason.
      const since = Date.now()
      let told = false
      for (;;) {
        const holder = await holderOf(dir)
        if (holder?.pid === pid) break
        if (exited !== undefined || Date.now() - since > START_TIMEOUT_MS) {
          const tail = (await readFile(join(dir, LOG_FILE), 'utf8').catch(() => '')).split('\n').slice(-6).join('\n').trim()
          if (exited === undefined) process.kill(pid, 'SIGTERM')
          throw new DocketError('HOLDER_UNAVAILABLE', `The daemon for ${dir} did not come up${exited !== undefined ? ` (it exited with ${exited})` : ` within ${START_TIMEOUT_MS / 1000} s (it was stopped)`}. Its log (${join(dir, LOG_FILE)}) ends with:\n${tail}`, { details: { dir, pid } })
        }
        if (!told && Date.now() - since > 3000) {
          told = true
          out.note(`note: the daemon (pid ${pid}) is still opening ${dir}; a large store takes a while`)
        }
        await new Promise((r) => setTimeout(r, 50))
      }
      out.result({ dir, pid, started: true, log: join(dir, LOG_FILE) }, () => `the daemon of ${dir} runs (pid ${pid}); commands now go through it. Stop it with \`docket daemon stop\`.`)
    })

  daemon
    .command('status')
    .description('whether a daemon (or another process) holds the store')
    .action(async (_flags: unknown, command: Command) => {
      const out = ctx.output(command)
      const dir = ctx.dir(command)
      const holder = await holderOf(dir)
      const result = { dir, running: holder?.daemon === true, heldBy: holder ? { pid: holder.pid, daemon: holder.daemon } : null }
      out.result(result, () => (holder ? (holder.daemon ? `the daemon of ${dir} runs (pid ${holder.pid})` : `no daemon; the store is held by process ${holder.pid}`) : `no daemon runs for ${dir}`))
    })

  daemon
    .command('stop')
    .description('stop the daemon: it finishes the calls under way and closes the store')
    .action(async (_flags: unknown, command: Command) => {
      const out = ctx.output(command)
      const dir = ctx.dir(command)
      const holder = await holderOf(dir)
      if (!holder) {
        out.result({ dir, stopped: false }, () => `no daemon runs for ${dir}`)
        return
      }
      if (!holder.daemon) throw notOurs(dir, holder.pid)
      process.kill(holder.pid, 'SIGTERM')
      const until = Date.now() + 15_000
      while (alive(holder.pid)) {
        if (Date.now() > until) throw new DocketError('HOLDER_UNAVAILABLE', `The daemon (pid ${holder.pid}) did not stop within 15 s: see ${join(dir, LOG_FILE)}; \`kill -9 ${holder.pid}\` loses nothing acknowledged.`, { details: { dir, pid: holder.pid } })
        await new Promise((r) => setTimeout(r, 50))
      }
      out.result({ dir, pid: holder.pid, stopped: true }, () => `stopped the daemon of ${dir} (pid ${holder.pid})`)
    })

  daemon
    .command('run')
    .description('run the daemon in the foreground (what `start` runs in the background); SIGINT/SIGTERM close the store and exit')
    .action(async (_flags: unknown, command: Command) => {
      const dir = ctx.dir(command)
      const out = ctx.output(command)
      const sync = ctx.sync(command)
      const { openStore } = await import('@docket/core')
      const store = await openStore({ dir, create: false, serve: true, ...(sync ? { sync } : {}), logger: { warn: (m) => out.warn(m), error: (m) => out.error(m), info: () => {} } })
      const stopped = new Promise<void>((resolve) => {
        process.once('SIGTERM', () => resolve())
        process.once('SIGINT', () => resolve())
      })
      await writeFile(join(dir, PID_FILE), `${process.pid}\n`)
      out.warn(`${new Date().toISOString()} daemon ${process.pid} holds ${dir}`)
      await stopped
      await store.close()
      await rm(join(dir, PID_FILE), { force: true })
      out.warn(`${new Date().toISOString()} daemon ${process.pid} stopped`)
    })
}

/** Who holds the store, and whether it is this store's daemon (its pid file names it). */
async function holderOf(dir: string): Promise<{ pid: number; daemon: boolean } | undefined> {
  let held: StoreHandle | undefined
  try {
    held = await connectHolder(dir)
  } catch {
    return undefined
  }
  if (!held) return undefined
  const pid = held.holderPid
  await held.close()
  const recorded = Number((await readFile(join(dir, PID_FILE), 'utf8').catch(() => '')).trim())
  return { pid, daemon: recorded === pid }
}

function notOurs(dir: string, pid: number): DocketError {
  return new DocketError('STORE_LOCKED', `The store at ${dir} is held by process ${pid}, which is not its docket daemon: commands already go through it; stop that process yourself if you must.`, { details: { dir, pid } })
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

function syncEnv(ctx: Context, command: Command): Record<string, string> {
  const sync = ctx.sync(command)
  return sync ? { DOCKET_SYNC_URL: sync.url, ...(sync.token ? { DOCKET_TOKEN: sync.token } : {}) } : {}
}
