import { afterAll, beforeAll } from 'vitest'
import { RedisArbiter } from '../src/arbiter/redis.js'
import { arbiterSuite } from '../test/arbiter-suite.js'
import { startRedis } from './redis-server.js'

// The same cases as on one server's LevelDB (test/arbiter.test.ts), decided by Redis scripts.
let redis: { port: number; stop: () => void }
const open: RedisArbiter[] = []
beforeAll(async () => {
  redis = await startRedis()
})
afterAll(async () => {
  for (const arbiter of open) await arbiter.close()
  redis.stop()
})

let n = 0
arbiterSuite('in Redis', async () => {
  const backend = await RedisArbiter.open({ host: '127.0.0.1', port: redis.port, prefix: `suite-${n}` })
  open.push(backend)
  return { backend, doc: `doc-${n++}` }
})
