import { openStore, type Store } from '@docket/core'
import { startServer } from '@docket/server'
import { interleaved, median, percentile, propagation, row, scratch, until, type Row } from './support.js'

const quiet = { warn: () => {}, error: () => {} }
const TOKEN = 'bench'

/**
 * Issue 13: a claim's round trip (the server decides and keeps it, the replica records it)
 * against one plain update's propagation A → B in the same run; and a create that takes a leased
 * id against one on a replica that has no lease (today's allocation), on the same server.
 */
async function claims(samples: number): Promise<Row[]> {
  const s = await scratch('arbiter')
  const server = await startServer({ dir: `${s.dir}/server`, port: 0, token: TOKEN, logger: { info: () => {}, warn: () => {} } })
  const open = (name: string, hooks?: { arbiter: () => undefined }) =>
    openStore({ dir: `${s.dir}/${name}`, durability: 'relaxed', logger: quiet, sync: { url: server.url, token: TOKEN }, ...(hooks ? { hooks } : {}) })
  const [a, b]: Store[] = await Promise.all([open('a'), open('b')])
  await Promise.all([a!.whenSynced(10_000), b!.whenSynced(10_000)])
  const item = await a!.createItem({ name: 'ping' })
  await until(() => b!.getItem(item.id) !== undefined, 60_000, 5)

  const claim: number[] = []
  const propagated: number[] = []
  for (let i = 0; i < samples; i++) {
    const start = process.hrtime.bigint()
    const granted = await a!.claim(item.id, { agent: `agent-${i % 2}`, ttlMs: 60_000 })
    claim.push(Number(process.hrtime.bigint() - start) / 1e6)
    if (!granted.granted) throw new Error('the benchmark expected every claim to be granted')
    await a!.releaseClaim(item.id, { agent: `agent-${i % 2}` })
    propagated.push(await propagation(a!, b!, item.id, i + 1))
  }

  // Creates: a leased id (blocks fetched ahead) against a replica whose arbiter never answers.
  const plain = await open('plain', { arbiter: () => undefined })
  await plain.whenSynced(10_000)
  const creates = await interleaved(
    samples,
    async () => {
      const start = process.hrtime.bigint()
      await a!.createItem({ name: 'leased' })
      return Number(process.hrtime.bigint() - start) / 1e6
    },
    async () => {
      const start = process.hrtime.bigint()
      await plain.createItem({ name: 'unleased' })
      return Number(process.hrtime.bigint() - start) / 1e6
    },
  )
  await Promise.all([a!.close(), b!.close(), plain.close()])
  await server.close()
  await s.cleanup()
  return [
    row(`claim round trip, p50 of ${samples}`, 'claim (server decides, replica records)', median(claim), 'one update A → B', median(propagated)),
    row(`claim round trip, p99 of ${samples}`, 'claim (server decides, replica records)', percentile(claim, 99), 'one update A → B', percentile(propagated, 99)),
    row(`create on a synced replica, median of ${samples}`, 'with a leased id', median(creates.subject), "without a lease (today's allocation)", median(creates.baseline), '≤ 1×'),
  ]
}

export async function arbiterBenchmarks(quick: boolean): Promise<Row[]> {
  return claims(quick ? 100 : 500)
}
