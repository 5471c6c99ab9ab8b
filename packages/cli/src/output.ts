import type { Writable } from 'node:stream'
import { createRequire } from 'node:module'
import pc from 'picocolors'

// cli-progress is CommonJS and only needed on a terminal; load it when a bar is drawn.
const require = createRequire(import.meta.url)

export interface Io {
  stdout: Writable & { isTTY?: boolean; columns?: number }
  stderr: Writable & { isTTY?: boolean }
  stdin: NodeJS.ReadableStream
  env: NodeJS.ProcessEnv
  cwd: string
}

export const processIo: Io = { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin, env: process.env, cwd: process.cwd() }

export type Colors = ReturnType<typeof pc.createColors>

/**
 * Where a command's output goes: with --json one JSON document on stdout and nothing else
 * there; human text otherwise. Diagnostics always go to stderr. Colours only on a terminal
 * and never with NO_COLOR; progress bars only when stderr is a terminal.
 */
export class Output {
  readonly json: boolean
  readonly color: Colors
  readonly errColor: Colors
  readonly #io: Io

  constructor(io: Io, json: boolean) {
    this.#io = io
    this.json = json
    const allowed = io.env.NO_COLOR === undefined || io.env.NO_COLOR === ''
    this.color = pc.createColors(allowed && io.stdout.isTTY === true && !json)
    this.errColor = pc.createColors(allowed && io.stderr.isTTY === true)
  }

  /** The command's result: JSON, or the human rendering. */
  result(value: unknown, human: () => string): void {
    if (this.json) this.#io.stdout.write(`${JSON.stringify(value, jsonBytes, 2)}\n`)
    else {
      const text = human()
      if (text.length > 0) this.#io.stdout.write(text.endsWith('\n') ? text : `${text}\n`)
    }
  }

  /** Raw stdout (export streams JSONL through it). */
  /** Raw output on stdout: text, or bytes exactly as they are. */
  write(data: string | Uint8Array): void {
    this.#io.stdout.write(data)
  }

  note(line: string): void {
    this.#io.stderr.write(`${line}\n`)
  }

  warn(line: string): void {
    this.#io.stderr.write(`${this.errColor.yellow('warning')} ${line}\n`)
  }

  error(line: string): void {
    this.#io.stderr.write(`${this.errColor.red('error')} ${line}\n`)
  }

  /** A progress bar on stderr when it is a terminal; otherwise nothing. */
  progress(label: string, total: number): Progress {
    if (this.#io.stderr.isTTY !== true || this.#io.env.DOCKET_NO_PROGRESS) return { update: () => {}, setTotal: () => {}, stop: () => {} }
    const cliProgress = require('cli-progress') as typeof import('cli-progress')
    const bar = new cliProgress.SingleBar(
      { format: `${label} [{bar}] {value}/{total} {percentage}%`, stream: this.#io.stderr as NodeJS.WritableStream, hideCursor: true, clearOnComplete: true },
      cliProgress.Presets.shades_classic,
    )
    bar.start(total, 0)
    return { update: (n) => bar.update(n), setTotal: (n) => bar.setTotal(n), stop: () => bar.stop() }
  }
}

export interface Progress {
  update(done: number): void
  setTotal(total: number): void
  stop(): void
}

/** A JSON.stringify replacer: bytes become `{ base64 }`. */
export function jsonBytes(_key: string, value: unknown): unknown {
  return value instanceof Uint8Array ? { base64: Buffer.from(value).toString('base64') } : value
}

/** A plain text table: columns padded to their widest cell, header dimmed. */
export function table(color: Colors, headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => visible(r[i] ?? '').length)))
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c + ' '.repeat(widths[i]! - visible(c).length))).join('  ').trimEnd()
  return [color.dim(line(headers)), ...rows.map(line)].join('\n')
}

function visible(text: string): string {
  return text.replace(/\u001b\[[0-9;]*m/g, '')
}
