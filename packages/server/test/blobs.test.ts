import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { startServer, type RunningServer } from '../src/index.js'
import { BlobFiles, decodeFrames, encodeFrames, MAX_BLOB_BYTES } from '../src/blobs.js'

// `GET|HEAD|PUT /docket/blobs/<sha256>` on the sync server's port (packages/server/src/blobs.ts).

const TOKEN = 'the-token-of-the-blob-tests'
const READ_TOKEN = 'a-token-that-may-only-read'

const dirs: string[] = []
const servers: RunningServer[] = []
afterEach(async () => {
  await Promise.allSettled(servers.splice(0).map((s) => s.close()))
  await Promise.allSettled(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })))
})

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'docket-blobs-'))
  dirs.push(dir)
  return dir
}

async function blobServer(): Promise<{ base: string; blobDir: string; warnings: string[] }> {
  const root = await tempDir()
  const warnings: string[] = []
  const running = await startServer({ dir: join(root, 'server'), port: 0, token: TOKEN, readToken: READ_TOKEN, logger: { info: () => {}, warn: (m) => warnings.push(m) } })
  servers.push(running)
  return { base: `http://127.0.0.1:${running.port}`, blobDir: join(root, 'server-blobs'), warnings }
}

function sha(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex')
}

const auth = (token: string) => ({ authorization: `Bearer ${token}` })

async function put(base: string, name: string, body: Uint8Array, token = TOKEN): Promise<Response> {
  return fetch(`${base}/docket/blobs/${name}`, { method: 'PUT', headers: { ...auth(token), 'content-type': 'application/octet-stream' }, body })
}

/** Every file under `dir` (relative), or [] if it does not exist. */
async function filesUnder(dir: string): Promise<string[]> {
  try {
    const entries = await readdir(dir, { recursive: true, withFileTypes: true })
    return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name).slice(dir.length + 1)).sort()
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return []
    throw err
  }
}

function sameBytes(actual: Uint8Array, expected: Uint8Array): boolean {
  return actual.byteLength === expected.byteLength && Buffer.from(actual.buffer, actual.byteOffset, actual.byteLength).equals(expected)
}

describe('the blob endpoint', () => {
  it('stores a blob (201), serves it back with GET and HEAD, and a second PUT of the same bytes changes nothing', async () => {
    const { base, blobDir } = await blobServer()
    const bytes = new Uint8Array(randomBytes(200 * 1024))
    const name = sha(bytes)
    const first = await put(base, name, bytes)
    expect(first.status).toBe(201)
    await first.arrayBuffer()

    const got = await fetch(`${base}/docket/blobs/${name}`, { headers: auth(TOKEN) })
    expect(got.status).toBe(200)
    expect(got.headers.get('content-type')).toBe('application/octet-stream')
    expect(got.headers.get('content-length')).toBe(String(bytes.byteLength))
    expect(sameBytes(new Uint8Array(await got.arrayBuffer()), bytes)).toBe(true)

    const head = await fetch(`${base}/docket/blobs/${name}`, { method: 'HEAD', headers: auth(TOKEN) })
    expect(head.status).toBe(200)
    expect(head.headers.get('content-length')).toBe(String(bytes.byteLength))
    expect((await head.arrayBuffer()).byteLength).toBe(0)

    // One file, named by the hash, under its first two hex digits.
    expect(await filesUnder(blobDir)).toEqual([join(name.slice(0, 2), name)])
    const file = join(blobDir, name.slice(0, 2), name)
    const before = await stat(file)
    const again = await put(base, name, bytes)
    expect(again.status).toBe(201)
    await again.arrayBuffer()
    expect(await filesUnder(blobDir)).toEqual([join(name.slice(0, 2), name)])
    const after = await stat(file)
    expect({ ino: after.ino, mtimeMs: after.mtimeMs }).toEqual({ ino: before.ino, mtimeMs: before.mtimeMs })
    expect(sameBytes(await readFile(join(blobDir, name.slice(0, 2), name)), bytes)).toBe(true)
  })

  it('an empty blob is a blob too', async () => {
    const { base } = await blobServer()
    const empty = new Uint8Array(0)
    expect((await put(base, sha(empty), empty)).status).toBe(201)
    const got = await fetch(`${base}/docket/blobs/${sha(empty)}`, { headers: auth(TOKEN) })
    expect(got.status).toBe(200)
    expect((await got.arrayBuffer()).byteLength).toBe(0)
  })

  it('answers 404 for a blob it does not have (GET and HEAD)', async () => {
    const { base } = await blobServer()
    const unknown = sha(new Uint8Array(Buffer.from('never uploaded')))
    const got = await fetch(`${base}/docket/blobs/${unknown}`, { headers: auth(TOKEN) })
    expect(got.status).toBe(404)
    expect(await got.text()).toMatch(/no such blob/)
    expect((await fetch(`${base}/docket/blobs/${unknown}`, { method: 'HEAD', headers: auth(TOKEN) })).status).toBe(404)
    expect((await fetch(`${base}/docket/blobs/${unknown}`, { headers: auth(READ_TOKEN) })).status).toBe(404)
  })

  it('answers 401 without a token or with a wrong one, for every method, and stores nothing', async () => {
    const { base, blobDir } = await blobServer()
    const bytes = new Uint8Array(Buffer.from('a blob nobody may write without the token'))
    const name = sha(bytes)
    const url = `${base}/docket/blobs/${name}`
    const attempts: Array<[string, RequestInit]> = [
      ['GET without a token', {}],
      ['HEAD without a token', { method: 'HEAD' }],
      ['PUT without a token', { method: 'PUT', body: bytes }],
      ['GET with a wrong token', { headers: auth('wrong') }],
      ['PUT with a wrong token', { method: 'PUT', body: bytes, headers: auth('wrong') }],
      ['PUT with the token but no Bearer', { method: 'PUT', body: bytes, headers: { authorization: TOKEN } }],
      ['PUT with an empty bearer', { method: 'PUT', body: bytes, headers: { authorization: 'Bearer ' } }],
    ]
    for (const [what, init] of attempts) {
      const response = await fetch(url, init)
      expect({ what, status: response.status }).toEqual({ what, status: 401 })
      if (init.method !== 'HEAD') expect(await response.text()).toMatch(/token is required/)
    }
    expect(await filesUnder(blobDir)).toEqual([])
    // …while a blob that is there is not revealed without a token either.
    expect((await put(base, name, bytes)).status).toBe(201)
    expect((await fetch(url)).status).toBe(401)
    expect((await fetch(url, { headers: auth('wrong') })).status).toBe(401)
  })

  it('the read-only token may GET and HEAD, and a PUT with it is refused with 403 and stores nothing', async () => {
    const { base, blobDir } = await blobServer()
    const stored = new Uint8Array(Buffer.from('stored with the token'))
    expect((await put(base, sha(stored), stored)).status).toBe(201)
    const got = await fetch(`${base}/docket/blobs/${sha(stored)}`, { headers: auth(READ_TOKEN) })
    expect(got.status).toBe(200)
    expect(sameBytes(new Uint8Array(await got.arrayBuffer()), stored)).toBe(true)
    expect((await fetch(`${base}/docket/blobs/${sha(stored)}`, { method: 'HEAD', headers: auth(READ_TOKEN) })).status).toBe(200)

    const refused = new Uint8Array(Buffer.from('sent with the read-only token'))
    const response = await put(base, sha(refused), refused, READ_TOKEN)
    expect(response.status).toBe(403)
    expect(await response.text()).toMatch(/may only read/)
    expect((await fetch(`${base}/docket/blobs/${sha(refused)}`, { headers: auth(TOKEN) })).status).toBe(404)
    expect(await filesUnder(blobDir)).toEqual([join(sha(stored).slice(0, 2), sha(stored))])
  })

  it('answers 400 to bytes that do not hash to the name, and keeps nothing', async () => {
    const { base, blobDir, warnings } = await blobServer()
    const claimed = sha(new Uint8Array(Buffer.from('what the name says')))
    const response = await put(base, claimed, new Uint8Array(Buffer.from('something else')))
    expect(response.status).toBe(400)
    expect(await response.text()).toMatch(/do not have this SHA-256/)
    expect((await fetch(`${base}/docket/blobs/${claimed}`, { headers: auth(TOKEN) })).status).toBe(404)
    expect(await filesUnder(blobDir)).toEqual([])
    expect(warnings.some((w) => w.includes(claimed))).toBe(true)
  })

  it('answers 413 to a body over 16 MiB (declared by Content-Length, or streamed without one), and keeps nothing', async () => {
    const { base, blobDir } = await blobServer()
    const over = new Uint8Array(MAX_BLOB_BYTES + 1)
    over[0] = 1
    // fetch sends a Content-Length for a byte array.
    const declared = await put(base, sha(over), over)
    expect(declared.status).toBe(413)
    expect(await declared.text()).toMatch(/at most 16777216 bytes/)
    // A chunked body (no Content-Length) is cut off as it passes the limit.
    const chunk = new Uint8Array(1024 * 1024)
    let sent = 0
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent >= MAX_BLOB_BYTES + chunk.byteLength) return controller.close()
        sent += chunk.byteLength
        controller.enqueue(chunk)
      },
    })
    const streamed = await fetch(`${base}/docket/blobs/${sha(new Uint8Array(MAX_BLOB_BYTES + chunk.byteLength))}`, {
      method: 'PUT',
      headers: auth(TOKEN),
      body: stream,
      duplex: 'half',
    } as RequestInit & { duplex: 'half' })
    expect(streamed.status).toBe(413)
    await streamed.arrayBuffer()
    expect(await filesUnder(blobDir)).toEqual([])
    // The server is still there, and a blob of exactly 16 MiB is accepted.
    const limit = new Uint8Array(MAX_BLOB_BYTES)
    limit[limit.length - 1] = 7
    expect((await put(base, sha(limit), limit)).status).toBe(201)
  })

  it('answers 405 to other methods on a blob path', async () => {
    const { base } = await blobServer()
    const response = await fetch(`${base}/docket/blobs/${'0'.repeat(64)}`, { method: 'DELETE', headers: auth(TOKEN) })
    expect(response.status).toBe(405)
  })

  it('a path that is not a blob (not hex, wrong length, upper case, elsewhere) is answered as before: not by the blob endpoint', async () => {
    const { base } = await blobServer()
    const root = await fetch(`${base}/`)
    const before = { status: root.status, text: await root.text() }
    expect(before.status).toBe(200) // Hocuspocus's own answer to plain HTTP
    const hex = 'ab'.repeat(32)
    for (const path of [
      `/docket/blobs/${'z'.repeat(64)}`,
      `/docket/blobs/${hex.slice(1)}`,
      `/docket/blobs/${hex}0`,
      `/docket/blobs/${hex.toUpperCase()}`,
      `/docket/blobs/${hex}/more`,
      '/docket/blobs/',
      `/docket/blob/${hex}`,
      `/other/blobs/${hex}`,
    ]) {
      for (const init of [{ headers: auth(TOKEN) }, {}] as RequestInit[]) {
        const response = await fetch(`${base}${path}`, init)
        expect({ path, status: response.status, text: await response.text() }).toEqual({ path, ...before })
      }
    }
  })
})

describe('BlobFiles', () => {
  it('writes atomically: the final file only, no temporary file left behind; refuses bytes that are not the name', async () => {
    const dir = join(await tempDir(), 'blobs')
    const files = new BlobFiles(dir)
    const bytes = new Uint8Array(randomBytes(64 * 1024))
    const name = sha(bytes)
    expect(await files.has(name)).toBe(false)
    expect(await files.read(name)).toBeUndefined()
    expect(await files.write(name, bytes)).toBe(true)
    expect(await files.has(name)).toBe(true)
    expect(sameBytes((await files.read(name))!, bytes)).toBe(true)
    // readdir lists dot files too: a temporary `.sha.uuid.tmp` left over would show here.
    expect(await filesUnder(dir)).toEqual([join(name.slice(0, 2), name)])

    expect(await files.write(sha(new Uint8Array([1])), new Uint8Array([2]))).toBe(false)
    expect(await filesUnder(dir)).toEqual([join(name.slice(0, 2), name)])
  })

  it('concurrent writes of the same and of different blobs leave one whole file each and no temporary file', async () => {
    const dir = join(await tempDir(), 'blobs')
    const files = new BlobFiles(dir)
    const blobs = Array.from({ length: 5 }, () => new Uint8Array(randomBytes(256 * 1024)))
    const results = await Promise.all(blobs.flatMap((b) => [files.write(sha(b), b), files.write(sha(b), b), files.write(sha(b), b)]))
    expect(results.every(Boolean)).toBe(true)
    expect(await filesUnder(dir)).toEqual(blobs.map((b) => join(sha(b).slice(0, 2), sha(b))).sort())
    for (const b of blobs) expect(sameBytes((await files.read(sha(b)))!, b)).toBe(true)
  })
})

describe('batches: POST /docket/blobs/store and /docket/blobs/fetch', () => {
  const post = (base: string, path: 'store' | 'fetch', body: Uint8Array, token = TOKEN) =>
    fetch(`${base}/docket/blobs/${path}`, { method: 'POST', headers: { ...auth(token), 'content-type': 'application/octet-stream' }, body })
  const names = (...shas: string[]) => new Uint8Array(Buffer.concat(shas.map((s) => Buffer.from(s, 'hex'))))

  it('stores many blobs in one request and fetches those it has, leaving out the others', async () => {
    const { base } = await blobServer()
    const blobs = Array.from({ length: 20 }, (_, i) => new Uint8Array(randomBytes(100 + i * 1000)))
    const stored = await post(base, 'store', encodeFrames(blobs.map((bytes) => ({ sha256: sha(bytes), bytes }))))
    expect(stored.status).toBe(200)
    const unknown = sha(new Uint8Array([9, 9, 9]))
    const answer = await post(base, 'fetch', names(sha(blobs[3]!), unknown, sha(blobs[17]!)), READ_TOKEN)
    expect(answer.status).toBe(200)
    const frames = decodeFrames(new Uint8Array(await answer.arrayBuffer()))!
    expect(frames.map((f) => f.sha256)).toEqual([sha(blobs[3]!), sha(blobs[17]!)])
    expect(sameBytes(frames[1]!.bytes, blobs[17]!)).toBe(true)
    // Each one is there on its own too.
    expect((await fetch(`${base}/docket/blobs/${sha(blobs[0]!)}`, { headers: auth(TOKEN) })).status).toBe(200)
  })

  it('refuses a batch from the read-only token, a frame whose bytes are not its name, a body that is no frames, and a token-less request', async () => {
    const { base, warnings } = await blobServer()
    const bytes = new Uint8Array(randomBytes(64))
    expect((await post(base, 'store', encodeFrames([{ sha256: sha(bytes), bytes }]), READ_TOKEN)).status).toBe(403)
    const forged = await post(base, 'store', encodeFrames([{ sha256: sha(new Uint8Array([1])), bytes }]))
    expect(forged.status).toBe(400)
    expect(await forged.text()).toContain('do not have that SHA-256')
    expect(warnings.some((w) => w.includes('refused a blob upload'))).toBe(true)
    expect((await post(base, 'store', new Uint8Array([1, 2, 3]))).status).toBe(400)
    expect((await post(base, 'fetch', new Uint8Array(31))).status).toBe(400)
    expect((await fetch(`${base}/docket/blobs/fetch`, { method: 'POST', body: names(sha(bytes)) })).status).toBe(401)
    expect((await fetch(`${base}/docket/blobs/${sha(bytes)}`, { headers: auth(TOKEN) })).status).toBe(404)
  })
})
