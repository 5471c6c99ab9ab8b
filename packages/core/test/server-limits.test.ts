import { join } from 'node:path'
import WebSocket from 'ws'
import { describe, expect, it } from 'vitest'
import { startServer, type RunningServer } from '@docket/server'
import { tempDir } from './support.js'
import { eventually, synced, TOKEN } from './sync-support.js'

/** Issue 10: a socket that holds the server's address but not its token cannot pile up memory. */
async function limitedServer(limits: { maxPayloadBytes?: number; authTimeoutMs?: number; maxUnauthenticatedBytes?: number }): Promise<RunningServer & { warnings: string[] }> {
  const warnings: string[] = []
  const server = await startServer({ dir: join(await tempDir('docket-server-'), 'server'), port: 0, token: TOKEN, logger: { info: () => {}, warn: (m) => warnings.push(m) }, ...limits })
  return Object.assign(server, { warnings })
}

function closed(ws: WebSocket): Promise<number> {
  return new Promise((resolve) => ws.once('close', (code) => resolve(code)))
}

describe('server limits', () => {
  it('closes a socket that never authenticates, and one that floods before it does', async () => {
    const server = await limitedServer({ authTimeoutMs: 300, maxUnauthenticatedBytes: 64 * 1024 })
    try {
      const idle = new WebSocket(server.url)
      await new Promise((r) => idle.once('open', r))
      const started = Date.now()
      await closed(idle)
      expect(Date.now() - started).toBeGreaterThanOrEqual(250)
      expect(server.warnings.some((w) => w.includes('did not authenticate within 300 ms'))).toBe(true)

      const flood = new WebSocket(server.url)
      await new Promise((r) => flood.once('open', r))
      const done = closed(flood)
      for (let i = 0; i < 40 && flood.readyState === WebSocket.OPEN; i++) flood.send(Buffer.alloc(8 * 1024, 1))
      await done
      expect(server.warnings.some((w) => w.includes('before authenticating'))).toBe(true)
    } finally {
      await server.close()
    }
  })

  it('refuses a message larger than maxPayloadBytes (close code 1009)', async () => {
    const server = await limitedServer({ maxPayloadBytes: 256 * 1024 })
    try {
      const big = new WebSocket(server.url)
      await new Promise((r) => big.once('open', r))
      const code = closed(big)
      big.send(Buffer.alloc(512 * 1024, 2))
      expect(await code).toBe(1009)
    } finally {
      await server.close()
    }
  })

  it('a replica that authenticates keeps its connection past the deadline and syncs', async () => {
    const server = await limitedServer({ authTimeoutMs: 300 })
    try {
      const a = await synced(server.url)
      const b = await synced(server.url)
      await a.whenSynced(10_000)
      await new Promise((r) => setTimeout(r, 600))
      const item = await a.createItem({ name: 'after the deadline' })
      await eventually('b sees it', () => b.getItem(item.id)?.name === 'after the deadline')
      expect(a.syncState().connected).toBe(true)
    } finally {
      await server.close()
    }
  })
})
