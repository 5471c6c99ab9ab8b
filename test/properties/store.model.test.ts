import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import fc from 'fast-check'
import { describe, it } from 'vitest'
import { propertyParameters } from '../src/index.js'
import { commands } from './model/commands.js'
import { Model, Real } from './model/model.js'

describe('model-based: a store under random operations, crashes, reopens and recoveries', () => {
  const name = 'keeps every invariant under random commands (no loss, no reissue, no half-writes, safe recovery)'
  it(name, async () => {
    await fc.assert(
      fc.asyncProperty(fc.commands(commands, { maxCommands: 50, size: 'large' }), async (cmds) => {
        const dir = await mkdtemp(join(tmpdir(), 'docket-model-'))
        const real = new Real(dir)
        await real.open()
        try {
          await fc.asyncModelRun(() => ({ model: new Model(), real }), cmds)
          if (process.env.DOCKET_DEBUG) console.error(String(cmds))
        } finally {
          await real.store.close().catch(() => {})
          await rm(dir, { recursive: true, force: true })
        }
      }),
      propertyParameters(name, { runs: 25 }),
    )
  })
})
