import { openStore, type Store } from '@docket/core'
import { startServer } from '@docket/server'
import { populate } from './core.js'
import { median, percentile, propagation, row, scratch, time, until, type Row } from './support.js'

const quiet = { warn: () => {}, error: () => {} }
const TOKEN = 'bench'

/** Three replicas converging on `items` items through a server, against applying the same state locally. */
async function convergence(items: number): Promise<Row> {
  const s = await scratch('sync')
  const source = await openStore({ dir: `${s.dir}/a`, durability: 'relaxed', logger: quiet })
  await populate(source, items, 512)
  await source.compact()
  const state = source.encodeStateAsUpdate()
  await source.close()

  // Baseline: the same state applied (and persisted) by two fresh replicas in this process.
  const [localMs] = await time(async () => {
    const stores = await Promise.all([1, 2].map((i) => openStore({ dir: `${s.dir}/local-${i}`, durability: 'relaxed', logger: quiet })))
    await Promise.all(stores.map((st) => st.applyUpdate(state, 'bench')))
    await Promise.all(stores.map((st) => st.close()))
  })

  const server = await startServer({ dir: `${s.dir}/server`, port: 0, token: TOKEN, logger: { info: () => {}, warn: () => {} } })
  const [syncMs] = await time(async () => {
    const replicas: Store[] = await Promise.all(
      ['a', 'b', 'c'].map((r) => openStore({ dir: `${s.dir}/${r}`, durability: 'relaxed', logger: quiet, sync: { url: server.url, token: TOKEN } })),
    )
    await until(() => replicas.every((r) => r.syncState().synced) && replicas.every((r) => r.stats().items === items))
    await Promise.all(replicas.map((r) => r.close()))
  })
  await server.close()
  await s.cleanup()
  return row(`3 replicas converge on ${items} items`, 'through the server', syncMs, 'same state applied locally by 2 replicas', localMs)
}

/** Propagation latency of one change between two replicas on loopback. */
async function latency(samples: number): Promise<Row[]> {
  const s = await scratch('latency')
  const server = await startServer({ dir: `${s.dir}/server`, port: 0, token: TOKEN, logger: { info: () => {}, warn: () => {} } })
  const [a, b] = await Promise.all(['a', 'b'].map((r) => openStore({ dir: `${s.dir}/${r}`, durability: 'relaxed', logger: quiet, sync: { url: server.url, token: TOKEN } })))
  await Promise.all([a!.whenSynced(10_000), b!.whenSynced(10_000)])
  const item = await a!.createItem({ name: 'ping' })
  await until(() => b!.getItem(item.id) !== undefined)
  const times: number[] = []
  for (let i = 0; i < samples; i++) times.push(await propagation(a!, b!, item.id, i + 1))
  // Baseline: the same local write without anyone to tell.
  const local: number[] = []
  for (let i = 0; i < samples; i++) local.push((await time(() => a!.updateItem(item.id, { retries: samples + i + 1 })))[0])
  await Promise.all([a!.close(), b!.close()])
  await server.close()
  await s.cleanup()
  return [
    row(`propagation A → B, p50 of ${samples}`, 'update on A seen on B', median(times), 'the update on A alone', median(local)),
    row(`propagation A → B, p99 of ${samples}`, 'update on A seen on B', percentile(times, 99), 'the update on A alone', percentile(local, 99)),
  ]
}

export async function syncBenchmarks(quick: boolean): Promise<Row[]> {
  return [await convergence(quick ? 2_000 : 10_000), ...(await latency(quick ? 100 : 500))]
}
