import { resolve } from 'node:path'
import { openStore, type Store } from '@docket/core'
import type { Command } from 'commander'
import { Output, type Io } from './output.js'

export interface GlobalOptions {
  dir?: string
  json?: boolean
}

/** What every command gets: the I/O, the global options, and how to open the store. */
export class Context {
  exitCode = 0
  readonly io: Io
  #output: Output | undefined

  constructor(io: Io) {
    this.io = io
  }

  globals(command: Command): GlobalOptions {
    return command.optsWithGlobals<GlobalOptions>()
  }

  output(command: Command): Output {
    this.#output ??= new Output(this.io, this.globals(command).json === true)
    return this.#output
  }

  /** The store directory: --dir, then DOCKET_DIR, then .docket in the working directory. */
  dir(command: Command): string {
    const chosen = this.globals(command).dir ?? this.io.env.DOCKET_DIR ?? '.docket'
    return resolve(this.io.cwd, chosen)
  }

  /** Opens the store for one command and closes it afterwards, whatever happens. */
  async withStore<T>(command: Command, options: { readOnly?: boolean; create?: boolean }, fn: (store: Store) => Promise<T>): Promise<T> {
    const out = this.output(command)
    const store = await openStore({
      dir: this.dir(command),
      create: options.create === true,
      readOnly: options.readOnly === true,
      logger: { warn: (m) => out.warn(m), error: (m) => out.error(m), info: () => {} },
    })
    try {
      return await fn(store)
    } finally {
      await store.close()
    }
  }
}
