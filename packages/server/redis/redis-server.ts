import { spawn, type ChildProcess } from 'node:child_process'
import { freePort } from '@docket/core/testing'

/** A throwaway redis-server on 127.0.0.1 (Debian's; `pnpm test:redis` only), without persistence. */
export async function startRedis(): Promise<{ port: number; stop: () => void }> {
  const port = await freePort()
  const redis: ChildProcess = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'pipe'] })
  await new Promise<void>((resolve, reject) => {
    let out = ''
    redis.stdout!.on('data', (d: Buffer) => {
      out += d.toString()
      if (out.includes('Ready to accept connections')) resolve()
    })
    redis.on('error', reject)
    redis.on('close', (code) => reject(new Error(`redis-server exited ${code}: ${out}`)))
  })
  return { port, stop: () => redis.kill('SIGTERM') }
}
