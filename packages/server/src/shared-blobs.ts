import type { SharedBlobs } from './blobs.js'

/**
 * Blobs shared through the Redis that servers started with `--redis` already share: a blob
 * uploaded to one server is found by the others (each then keeps a file of it). Redis holds
 * every blob once, so its memory grows with the pipeline's content; a shared --blob-dir on one
 * disk is the alternative for large pipelines.
 */
export async function redisBlobs(options: { host: string; port: number; prefix?: string }): Promise<SharedBlobs> {
  // Loaded only when asked for, as the Redis extension is.
  const { Redis } = await import('ioredis')
  const client = new Redis({ host: options.host, port: options.port, maxRetriesPerRequest: 2, lazyConnect: true })
  await client.connect()
  const key = (sha256: string) => `${options.prefix ?? 'docket'}:blob:${sha256}`
  return {
    async get(sha256) {
      const bytes = await client.getBuffer(key(sha256))
      return bytes === null ? undefined : new Uint8Array(bytes)
    },
    async set(sha256, bytes) {
      await client.set(key(sha256), Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength))
    },
    async close() {
      await client.quit().catch(() => client.disconnect())
    },
  }
}
