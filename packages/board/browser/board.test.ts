import { spawn, type ChildProcess } from 'node:child_process'
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { chromium, type Browser, type Page } from 'playwright-core'
import { docket } from '../../cli/test/support.js'

// Runs under `pnpm test:browser` (Debian's chromium: .ci/run installs it when it can), in a real
// browser: the board's columns against `docket --json list`, cards that move without a reload, an
// item's history. Screenshots are kept in browser/artifacts/.
const CHROMIUM = process.env.DOCKET_CHROMIUM ?? '/usr/bin/chromium'
const ARTIFACTS = join(import.meta.dirname, 'artifacts')
const BIN = join(import.meta.dirname, '..', '..', 'cli', 'dist', 'bin.js')
let browser: Browser
const children: ChildProcess[] = []
const dirs: string[] = []

beforeAll(async () => {
  await mkdir(ARTIFACTS, { recursive: true })
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] })
})
afterAll(async () => {
  await browser?.close()
  for (const child of children) child.kill('SIGKILL')
  for (const dir of dirs) await rm(dir, { recursive: true, force: true })
})

async function store(): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'docket-board-'))
  dirs.push(root)
  const dir = join(root, 'store')
  expect((await docket(['--dir', dir, 'init'])).code).toBe(0)
  return dir
}

/** `docket board --port 0` (or any command that serves), in a child process; resolves with its printed JSON. */
async function spawnJson(args: string[]): Promise<{ child: ChildProcess; value: Record<string, unknown> }> {
  const child = spawn(process.execPath, [BIN, '--json', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1' } })
  children.push(child)
  let out = ''
  let err = ''
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()))
  const value = await new Promise<Record<string, unknown>>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString()
      try {
        resolve(JSON.parse(out) as Record<string, unknown>)
      } catch {
        // not whole yet
      }
    })
    child.on('close', (code) => reject(new Error(`exited ${code}: ${err}`)))
  })
  return { child, value }
}

async function open(url: string): Promise<{ page: Page; errors: string[] }> {
  const page = await browser.newPage({ viewport: { width: 1500, height: 900 } })
  const errors: string[] = []
  page.on('pageerror', (e) => errors.push(String(e)))
  page.on('console', (m) => m.type() === 'error' && errors.push(m.text()))
  await page.goto(url)
  await page.waitForSelector('[data-testid=total]')
  return { page, errors }
}

// Code that runs in the page is typed loosely: the tests' type checking has no DOM (the packages run on Node).
/** The cards of each stage column as the page shows them. */
async function columns(page: Page): Promise<Record<string, string[]>> {
  return page.evaluate(() => {
    const out: Record<string, string[]> = {}
    const doc = (globalThis as { document?: any }).document
    for (const col of doc.querySelectorAll('section.column:not(.folded)')) out[col.dataset.stage] = [...col.querySelectorAll('[data-testid=card]')].map((c: any) => c.dataset.id)
    return out
  })
}

describe('docket board in a real browser', () => {
  it('shows every item in its stage as docket list does, follows changes made with the CLI without a reload, and opens an item with its history', async () => {
    const dir = await store()
    for (const [name, extra] of [['Plan', []], ['Build', ['--priority', '0', '--label', 'web']], ['Ship', ['--depends-on', '1']]] as Array<[string, string[]]>) {
      expect((await docket(['--dir', dir, 'create', '--name', name, ...extra])).code).toBe(0)
    }
    expect((await docket(['--dir', dir, 'apply', '2', 'start'])).code).toBe(0)
    const { value } = await spawnJson(['--dir', dir, 'board', '--port', '0'])
    expect(value.source).toBe('own')
    const { page, errors } = await open(value.url as string)
    const listed = (await docket(['--dir', dir, '--json', 'list'])).json() as Array<{ id: string; stage: string }>
    const expected: Record<string, string[]> = {}
    for (const item of listed) (expected[item.stage] ??= []).push(item.id)
    const shown = await columns(page)
    for (const [stage, ids] of Object.entries(expected)) expect(shown[stage]).toEqual(ids)
    await page.screenshot({ path: join(ARTIFACTS, 'board.png') })

    // Changes through the CLI (which goes through the board's holder): the cards move, no reload.
    const marker = await page.evaluate(() => ((globalThis as { marker?: number }).marker = Math.random()))
    expect((await docket(['--dir', dir, 'create', '--name', 'Late addition'])).code).toBe(0)
    expect((await docket(['--dir', dir, 'apply', '1', 'start'])).code).toBe(0)
    await page.waitForFunction(() => {
      const doc = (globalThis as { document?: any }).document
      return doc.querySelector('section[data-stage=coding] [data-id="1"]') && doc.querySelector('section[data-stage=backlog] [data-id="4"]')
    }, undefined, { timeout: 5000 })
    expect(await page.evaluate(() => (globalThis as { marker?: number }).marker)).toBe(marker)

    // Pointing at Ship (#3, which waits on #1) outlines #1.
    await page.hover('[data-id="3"]')
    await page.waitForSelector('[data-id="1"].waits-on')
    await page.mouse.move(0, 0)
    // An item: its history, with the entries that count.
    await page.click('[data-id="1"]')
    await page.waitForSelector('[data-testid=history]')
    expect(await page.textContent('[data-testid=detail-stage]')).toBe('coding')
    expect(await page.locator('[data-testid=history] tr').count()).toBe(3) // header, created, start
    expect(page.url()).toContain('item=1') // the view is in the URL
    await page.screenshot({ path: join(ARTIFACTS, 'board-item.png') })
    expect(errors).toEqual([])
    await page.close()
  }, 60_000)

  it('filters and search live in the URL, content is rendered as markdown and sanitised, and "what changed" lists the audit log', async () => {
    const dir = await store()
    const body = '# Heading\n\n**bold** <img src=x onerror="globalThis.owned=1"> <script>globalThis.owned=2</script>'
    for (const [name, extra] of [['Plan the web', ['--label', 'web', '--type', 'spike']], ['Fix the API', ['--label', 'api', '--type', 'bug']], ['Web polish', ['--label', 'web', '--body', body]]] as Array<[string, string[]]>) {
      expect((await docket(['--dir', dir, 'create', '--name', name, ...extra])).code).toBe(0)
    }
    const { value } = await spawnJson(['--dir', dir, 'board', '--port', '0'])
    const url = value.url as string
    const { page, errors } = await open(`${url}?label=web`)
    expect((await columns(page)).backlog).toEqual(['1', '3'])
    await page.fill('[data-testid=search]', 'polish')
    await page.waitForFunction(() => (globalThis as { document?: any }).document.querySelectorAll('[data-testid=card]').length === 1)
    expect(new URL(page.url()).searchParams.get('q')).toBe('polish')
    expect(new URL(page.url()).searchParams.get('label')).toBe('web')
    // A shared URL opens the same view.
    const shared = await open(page.url())
    expect((await columns(shared.page)).backlog).toEqual(['3'])
    await shared.page.close()
    await page.click('[data-id="3"]')
    await page.waitForSelector('.markdown h1')
    expect(await page.textContent('.markdown h1')).toBe('Heading')
    expect(await page.locator('.markdown strong').count()).toBe(1)
    expect(await page.locator('.markdown script').count()).toBe(0)
    expect(await page.evaluate(() => (globalThis as { owned?: number }).owned)).toBeUndefined()
    await page.screenshot({ path: join(ARTIFACTS, 'board-filtered-item.png') })
    await page.click('text=what changed')
    await page.waitForSelector('.changes li')
    expect(await page.locator('.changes li').count()).toBe(4) // the store's creation and three creates
    expect(new URL(page.url()).searchParams.get('view')).toBe('changes')
    expect(errors.filter((e) => !e.includes('404'))).toEqual([])
    await page.close()
  }, 60_000)
})
