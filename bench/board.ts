import { openStore, STAGES } from '@docket/core'
import { startBoard } from '@docket/board'
import { chromium } from 'playwright-core'
import { median, row, scratch, type Row } from './support.js'

const quiet = { warn: () => {}, error: () => {} }

/**
 * Issue 15: the board's first view of 10,000 items in headless Chromium (Debian's; set
 * DOCKET_CHROMIUM), from navigation to the first cards on screen, against fetching the same items
 * and rendering them as plain list rows in the same browser. Target: first view within 1 s.
 */
async function firstView(items: number, rounds: number): Promise<Row[]> {
  const s = await scratch('board')
  const store = await openStore({ dir: s.dir, durability: 'relaxed', logger: quiet })
  for (let i = 0; i < items; i += 500) {
    await Promise.all(Array.from({ length: Math.min(500, items - i) }, (_, k) => store.createItem({ name: `Item ${i + k + 1}`, stage: STAGES[(i + k) % 5]!, labels: (i + k) % 3 === 0 ? ['web'] : [], priority: (i + k) % 5 })))
  }
  await store.close()
  const board = await startBoard({ dir: s.dir, port: 0, logger: quiet })
  const browser = await chromium.launch({ executablePath: process.env.DOCKET_CHROMIUM ?? '/usr/bin/chromium', args: ['--no-sandbox'] })
  const boardMs: number[] = []
  const plainMs: number[] = []
  let cards = 0
  try {
    for (let round = 0; round < rounds; round++) {
      const page = await browser.newPage({ viewport: { width: 1500, height: 900 } })
      let start = performance.now()
      await page.goto(board.url)
      await page.waitForSelector('[data-testid=card]')
      await page.evaluate(() => new Promise((r) => (globalThis as { requestAnimationFrame?: any }).requestAnimationFrame(() => r(null))))
      boardMs.push(performance.now() - start)
      cards = await page.locator('[data-testid=card]').count()
      // Baseline: the same items from the same server, as plain rows, in the same browser.
      await page.goto(new URL('/board.css', board.url).href) // same origin, nothing of the board running
      start = performance.now()
      await page.evaluate(async () => {
        const doc = (globalThis as { document?: any }).document
        const { items } = (await (await fetch('/api/items')).json()) as { items: Array<{ id: string; name: string; stage: string }> }
        const list = doc.createElement('ul')
        for (const item of items) {
          const li = doc.createElement('li')
          li.textContent = `#${item.id} ${item.name} ${item.stage}`
          list.append(li)
        }
        doc.body.append(list)
        await new Promise((r) => (globalThis as { requestAnimationFrame?: any }).requestAnimationFrame(() => r(null)))
      })
      plainMs.push(performance.now() - start)
      await page.close()
    }
  } finally {
    await browser.close()
    await board.close()
    await s.cleanup()
  }
  const b = median(boardMs)
  return [
    row(`board first view, ${items} items (median of ${rounds}; ${cards} cards in the page, the rest virtualised)`, 'docket board', b, `${items} plain list rows`, median(plainMs), `≤ 1 s: ${b <= 1000 ? 'met' : 'not met'}`),
  ]
}

export async function boardBenchmarks(quick: boolean): Promise<Row[]> {
  return firstView(quick ? 2_000 : 10_000, quick ? 3 : 7)
}
