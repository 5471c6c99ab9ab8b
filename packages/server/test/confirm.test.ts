import { EventEmitter } from 'node:events'
import { describe, expect, it } from 'vitest'
import type { Connection, Document } from '@hocuspocus/server'
import { Confirmations, parseMark, storedMessage } from '../src/confirm.js'

/** The parts of a Hocuspocus document and connection that confirmations touch. */
function fakeDocument(): Document & { change: (origin?: object) => void } {
  const emitter = new EventEmitter()
  return Object.assign(emitter, { name: 'docket', change: (origin?: object) => emitter.emit('update', new Uint8Array(), origin) }) as unknown as Document & { change: (origin?: object) => void }
}
function fakeConnection(): Connection & { sent: string[] } {
  const sent: string[] = []
  return { sent, sendStateless: (p: string) => sent.push(p), onClose: () => {} } as unknown as Connection & { sent: string[] }
}

function confirmations(storeNow: (d: Document) => Promise<void> = async () => {}, fallbackMs = 20) {
  const warnings: string[] = []
  return { c: new Confirmations({ storeNow, fallbackMs, warn: (m) => warnings.push(m) }), warnings }
}

describe('store confirmations (the server side)', () => {
  it('parses only docket marks', () => {
    expect(parseMark('{"docket":"mark","n":3}')).toBe(3)
    for (const bad of ['{"docket":"mark","n":0}', '{"docket":"mark","n":1.5}', '{"docket":"stored","n":3}', 'not json', '{"docket":"mark"}']) expect(parseMark(bad)).toBeUndefined()
  })

  it('answers at once when nothing that connection sent waits to be stored, whatever others sent', () => {
    const { c } = confirmations()
    const doc = fakeDocument()
    const conn = fakeConnection()
    const other = fakeConnection()
    c.track(doc)
    c.mark(doc, conn, 1)
    expect(conn.sent).toEqual([storedMessage(1)])
    doc.change(other) // another replica's update, not stored yet
    c.mark(doc, conn, 2)
    expect(conn.sent).toEqual([storedMessage(1), storedMessage(2)])
    c.mark(doc, other, 1)
    expect(other.sent).toEqual([])
  })

  it('answers a mark only after a store that began after that connection\'s last update', () => {
    const { c } = confirmations()
    const doc = fakeDocument()
    const conn = fakeConnection()
    c.track(doc)
    doc.change(conn)
    const early = c.storing(doc) // a store that began before the next update
    doc.change(conn)
    c.mark(doc, conn, 7)
    c.stored(doc, early)
    expect(conn.sent).toEqual([])
    const covering = c.storing(doc)
    c.stored(doc, covering)
    expect(conn.sent).toEqual([storedMessage(7)])
    c.forget(doc)
  })

  it('stores by itself when no store follows (skipped by a Redis lock, or failed), and retries after a failure', async () => {
    let attempts = 0
    const { c } = confirmations(async (d) => {
      attempts++
      const covered = c.storing(d)
      if (attempts === 1) {
        c.failed(d)
        throw new Error('disk full')
      }
      c.stored(d, covered)
    }, 10)
    const doc = fakeDocument()
    const conn = fakeConnection()
    c.track(doc)
    doc.change(conn)
    c.mark(doc, conn, 1)
    await new Promise((r) => setTimeout(r, 200))
    expect(attempts).toBe(2)
    expect(conn.sent).toEqual([storedMessage(1)])
    c.forget(doc)
  })

  it('forgets a connection that left and a document that was unloaded', async () => {
    let stores = 0
    const { c } = confirmations(async () => void stores++, 10)
    const doc = fakeDocument()
    const conn = fakeConnection()
    c.track(doc)
    doc.change(conn)
    c.mark(doc, conn, 1)
    c.dropConnection(conn)
    c.forget(doc)
    await new Promise((r) => setTimeout(r, 50))
    expect(stores).toBe(0)
    expect(conn.sent).toEqual([])
  })
})
