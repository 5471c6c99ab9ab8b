import { createHash, randomUUID } from 'node:crypto'
import { mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { join } from 'node:path'
import { encodeFrames, readFrames, type Frame } from '@docket/core'

/** The largest blob accepted: docket's limit on one content value (core's MAX_CONTENT_BYTES). */
export const MAX_BLOB_BYTES = 16 * 1024 * 1024

const SHA256 = /^[0-9a-f]{64}$/
const PATH = /^\/docket\/blobs\/([0-9a-f]{64})$/
/** Many blobs in one request (a replica joining a large pipeline fetches thousands). */
const BATCH_FETCH = '/docket/blobs/fetch'
const BATCH_STORE = '/docket/blobs/store'
/** What one batch request may carry: 1,000 names to fetch, or 64 MiB of blobs to store. */
export const MAX_BATCH_NAMES = 1000
export const MAX_BATCH_BYTES = 64 * 1024 * 1024

/** The frames of a batch (core's sync/frames.ts, the one definition), or undefined unless it is exactly whole frames of blobs docket accepts. */
export function decodeFrames(body: Uint8Array): Frame[] | undefined {
  const { frames, complete } = readFrames(body, MAX_BLOB_BYTES)
  return complete ? frames : undefined
}

export { encodeFrames }

/**
 * Content blobs on the server: one file per blob, named by its SHA-256 (`ab/abcdef…`), written
 * to a temporary file, synced and renamed — a blob is there whole or not at all, and the same
 * bytes are one file however often they are sent.
 */
/** Where servers that share Redis (`--redis`) share their blobs too: each keeps files of its own. */
export interface SharedBlobs {
  get(sha256: string): Promise<Uint8Array | undefined>
  set(sha256: string, bytes: Uint8Array): Promise<void>
  close(): Promise<void>
}

export class BlobFiles {
  constructor(
    readonly dir: string,
    readonly shared?: SharedBlobs,
  ) {}

  #path(sha256: string): string {
    return join(this.dir, sha256.slice(0, 2), sha256)
  }

  async has(sha256: string): Promise<boolean> {
    try {
      await stat(this.#path(sha256))
      return true
    } catch {
      return false
    }
  }

  async read(sha256: string): Promise<Uint8Array | undefined> {
    try {
      return new Uint8Array(await readFile(this.#path(sha256)))
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    }
    // Uploaded to another server: kept here from now on.
    const bytes = await this.shared?.get(sha256)
    if (bytes === undefined || !(await this.#keep(sha256, bytes))) return undefined
    return bytes
  }

  /** Keeps `bytes` if they are the blob `sha256` names; false if they are not. */
  async write(sha256: string, bytes: Uint8Array): Promise<boolean> {
    if (await this.has(sha256)) return createHash('sha256').update(bytes).digest('hex') === sha256
    if (!(await this.#keep(sha256, bytes))) return false
    await this.shared?.set(sha256, bytes)
    return true
  }

  async #keep(sha256: string, bytes: Uint8Array): Promise<boolean> {
    if (createHash('sha256').update(bytes).digest('hex') !== sha256) return false
    const folder = join(this.dir, sha256.slice(0, 2))
    await mkdir(folder, { recursive: true })
    const temp = join(folder, `.${sha256}.${randomUUID()}.tmp`)
    try {
      const file = await open(temp, 'w')
      try {
        await file.writeFile(bytes)
        await file.sync()
      } finally {
        await file.close()
      }
      await rename(temp, this.#path(sha256))
    } catch (err) {
      await rm(temp, { force: true })
      throw err
    }
    return true
  }
}

export interface BlobAccess {
  /** 'write' for the token, 'read' for the read-only token, undefined for anything else. */
  access(authorization: string | undefined): 'read' | 'write' | undefined
  warn(message: string): void
}

/**
 * `GET|HEAD|PUT /docket/blobs/<sha256>`, with `Authorization: Bearer <token>`: a read-only
 * token may read; only the token may write. Answers true if the request was one of these.
 */
export async function handleBlobRequest(request: IncomingMessage, response: ServerResponse, blobs: BlobFiles, access: BlobAccess): Promise<boolean> {
  const path = new URL(request.url ?? '/', 'http://x').pathname
  const match = PATH.exec(path)
  if (!match && path !== BATCH_FETCH && path !== BATCH_STORE) return false
  const reply = (status: number, text: string) => {
    response.writeHead(status, { 'content-type': 'text/plain; charset=utf-8' })
    response.end(`${text}\n`)
  }
  const scope = access.access(request.headers.authorization)
  if (scope === undefined) {
    request.resume()
    reply(401, 'a docket token is required (Authorization: Bearer <token>)')
    return true
  }
  if (!match) {
    await handleBatch(path === BATCH_STORE, request, response, blobs, access, scope, reply)
    return true
  }
  const sha256 = match[1]!
  try {
    if (request.method === 'GET' || request.method === 'HEAD') {
      const bytes = await blobs.read(sha256)
      if (!bytes) {
        reply(404, 'no such blob here yet')
        return true
      }
      response.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(bytes.byteLength) })
      response.end(request.method === 'HEAD' ? undefined : bytes)
      return true
    }
    if (request.method !== 'PUT') {
      request.resume()
      reply(405, 'use GET, HEAD or PUT')
      return true
    }
    if (scope !== 'write') {
      request.resume()
      reply(403, 'this token may only read')
      return true
    }
    const bytes = await readBody(request, MAX_BLOB_BYTES)
    if (bytes === undefined) {
      reply(413, `a blob may hold at most ${MAX_BLOB_BYTES} bytes`)
      return true
    }
    if (!(await blobs.write(sha256, bytes))) {
      access.warn(`refused a blob upload whose bytes are not blob ${sha256}`)
      reply(400, 'the bytes do not have this SHA-256')
      return true
    }
    reply(201, 'stored')
  } catch (err) {
    access.warn(`a blob request for ${sha256} failed: ${(err as Error).message}`)
    if (!response.headersSent) reply(500, 'the server could not store or read the blob')
  }
  return true
}

/**
 * `POST /docket/blobs/fetch` (body: SHA-256s, 32 raw bytes each) answers the frames of those the
 * server has; `POST /docket/blobs/store` (body: frames; the token, not the read-only one) keeps
 * every blob whose bytes match its name and answers 400 naming the first that does not.
 */
async function handleBatch(store: boolean, request: IncomingMessage, response: ServerResponse, blobs: BlobFiles, access: BlobAccess, scope: 'read' | 'write', reply: (status: number, text: string) => void): Promise<void> {
  if (request.method !== 'POST') {
    request.resume()
    reply(405, 'use POST')
    return
  }
  if (store && scope !== 'write') {
    request.resume()
    reply(403, 'this token may only read')
    return
  }
  try {
    const body = await readBody(request, store ? MAX_BATCH_BYTES : MAX_BATCH_NAMES * 32)
    if (body === undefined) {
      reply(413, store ? `a batch may carry at most ${MAX_BATCH_BYTES} bytes` : `a batch may name at most ${MAX_BATCH_NAMES} blobs`)
      return
    }
    if (store) {
      const frames = decodeFrames(body)
      if (!frames) {
        reply(400, 'the body is not a sequence of blob frames')
        return
      }
      for (const frame of frames) {
        if (!(await blobs.write(frame.sha256, frame.bytes))) {
          access.warn(`refused a blob upload whose bytes are not blob ${frame.sha256}`)
          reply(400, `the bytes sent for ${frame.sha256} do not have that SHA-256`)
          return
        }
      }
      reply(200, `stored ${frames.length}`)
      return
    }
    if (body.byteLength % 32 !== 0) {
      reply(400, 'the body must be SHA-256s of 32 bytes each')
      return
    }
    const found: Array<{ sha256: string; bytes: Uint8Array }> = []
    for (let at = 0; at < body.byteLength; at += 32) {
      const sha256 = Buffer.from(body.subarray(at, at + 32)).toString('hex')
      const bytes = await blobs.read(sha256)
      if (bytes) found.push({ sha256, bytes })
    }
    const frames = encodeFrames(found)
    response.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(frames.byteLength) })
    response.end(frames)
  } catch (err) {
    access.warn(`a blob batch request failed: ${(err as Error).message}`)
    if (!response.headersSent) reply(500, 'the server could not store or read the blobs')
  }
}

/** The request body, or undefined once it passes `limit` bytes (the rest is drained, not kept). */
function readBody(request: IncomingMessage, limit: number): Promise<Uint8Array | undefined> {
  return new Promise((resolve, reject) => {
    const declared = Number(request.headers['content-length'])
    if (Number.isFinite(declared) && declared > limit) {
      request.resume()
      resolve(undefined)
      return
    }
    const chunks: Buffer[] = []
    let size = 0
    let over = false
    request.on('data', (chunk: Buffer) => {
      size += chunk.byteLength
      if (size > limit) over = true
      else chunks.push(chunk)
    })
    request.on('end', () => resolve(over ? undefined : new Uint8Array(Buffer.concat(chunks))))
    request.on('error', reject)
  })
}

export function isSha256(text: string): boolean {
  return SHA256.test(text)
}
