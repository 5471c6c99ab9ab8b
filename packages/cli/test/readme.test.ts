import { spawnSync } from 'node:child_process'
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { tempDir } from './support.js'

const README = join(import.meta.dirname, '..', '..', '..', 'README.md')

/** The fenced blocks of a language under a heading of the README. */
async function blocks(heading: string, lang: string): Promise<string[]> {
  const text = await readFile(README, 'utf8')
  const start = text.indexOf(`\n## ${heading}\n`)
  expect(start, `the README has a "## ${heading}" section`).toBeGreaterThanOrEqual(0)
  const end = text.indexOf('\n## ', start + 1)
  const section = text.slice(start, end < 0 ? undefined : end)
  return [...section.matchAll(new RegExp('```' + lang + '\\n([\\s\\S]*?)```', 'g'))].map((m) => m[1]!)
}

describe('the README, as written', () => {
  it('the library example runs on this Node (20) as it stands, and leaves a store with its items', async () => {
    const [example] = await blocks('Using the library', 'ts')
    expect(example).toBeDefined()
    // Beside this package, so that `@docket/core` resolves as it would in a project that depends on it.
    const scratch = await mkdtemp(join(import.meta.dirname, '..', '.readme-'))
    try {
      const file = join(scratch, 'example.mjs')
      await writeFile(file, example!)
      const cwd = await tempDir()
      const run = spawnSync(process.execPath, [file], { cwd, encoding: 'utf8', timeout: 60_000 })
      expect(run.status, `${run.stderr}\n${run.stdout}`).toBe(0)
      expect(run.stdout).toContain("kind: 'transitioned'")
      expect(run.stdout).toMatch(/\[ 'accepted', 'demote'|\['accepted', 'demote'/)
      expect((await stat(join(cwd, '.docket', 'db'))).isDirectory()).toBe(true)
    } finally {
      await rm(scratch, { recursive: true, force: true })
    }
  })

  it('the set-up commands never stop to ask: every npx is npx --yes', async () => {
    const text = await readFile(README, 'utf8')
    const setup = text.slice(0, text.indexOf('\n## '))
    const commands = [...setup.matchAll(/```sh\n([\s\S]*?)```/g)].flatMap((m) => m[1]!.split('\n')).filter((line) => /\bnpx\b/.test(line))
    expect(commands.length).toBeGreaterThanOrEqual(2)
    for (const line of commands) for (const use of line.matchAll(/\bnpx\b(\s+\S+)/g)) expect(use[1]!.trim(), line).toBe('--yes')
  })
})
