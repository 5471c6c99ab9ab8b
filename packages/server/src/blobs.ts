import { createHash, randomUUID } from 'node:crypto'
import { mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { join } from 'node:path'

/** The largest blob accepted: docket's limit on one content value (core's MAX_CONTENT_BYTES). */
export const MAX_BLOB_BYTES = 16 * 1024 * 1024

const SHA256 = /^[0-9a-f]{64}$/
const PATH = /^\/docket\/blobs\/([0-9a-f]{64})$/

/**
 * Content blobs on the server: one file per blob, named by its SHA-256 (`ab/abcdef…`), written
 * to a temporary file, synced and renamed — a blob is there whole or not at all, and the same
 * bytes are one file however often they are sent.
 */
export class BlobFiles {
  constructor(readonly dir: string) {}

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
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw err
    }
  }

  /** Keeps `bytes` if they are the blob `sha256` names; false if they are not. */
  async write(sha256: string, bytes: Uint8Array): Promise<boolean> {
    if (createHash('sha256').update(bytes).digest('hex') !== sha256) return false
    if (await this.has(sha256)) return true
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
  const match = PATH.exec(new URL(request.url ?? '/', 'http://x').pathname)
  if (!match) return false
  const sha256 = match[1]!
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
