// docket's main job on the embedded default, end to end: a store on LevelDB in a temporary
// directory (or DOCKET_DIR), items through stages, a delete whose id is never reissued,
// and the audit trail. `pnpm demo`.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { openStore, isDocketError } from '@docket/core'

const keep = process.env.DOCKET_DIR !== undefined
const dir = process.env.DOCKET_DIR ?? (await mkdtemp(join(tmpdir(), 'docket-demo-')))
const say = (line: string) => console.log(line)

say(`docket demo — store at ${dir}`)
const store = await openStore({ dir })
try {
  const api = await store.createItem({ name: 'Design the API', type: 'spike', body: '---\nname: Design the API\ntype: spike\n---\nSketch openStore and friends.\n' })
  const impl = await store.createItem({ name: 'Implement the store', dependsOn: [api.id], body: '---\nname: Implement the store\ndepends_on: [1]\n---\n' })
  const typo = await store.createItem({ name: 'Fix typo in README', type: 'bug' })
  say(`created #${api.id} ${api.name}, #${impl.id} ${impl.name} (depends on #${api.id}), #${typo.id} ${typo.name}`)
  say(`ready to start: ${store.listItems({ ready: true, stage: 'backlog' }).map((i) => `#${i.id}`).join(', ')}`)

  for (const event of ['start', 'gates_passed', 'accepted', 'merge_succeeded'] as const) {
    const item = await store.apply(api.id, event)
    say(`#${api.id} --${event}--> ${item.stage}`)
  }
  say(`ready to start now that #${api.id} is done: ${store.listItems({ ready: true, stage: 'backlog' }).map((i) => `#${i.id}`).join(', ')}`)

  try {
    await store.apply(impl.id, 'archive')
  } catch (err) {
    if (isDocketError(err)) say(`refused: ${err.code} — ${err.message}`)
  }

  await store.deleteItem(typo.id, { reason: 'duplicate of an older bug' })
  const next = await store.createItem({ name: 'Write the docs' })
  say(`deleted #${typo.id}; the next item got #${next.id} — tombstoned ids: ${store.tombstonedIds().join(', ')}`)
  try {
    await store.updateItem(typo.id, { name: 'resurrected?' })
  } catch (err) {
    if (isDocketError(err)) say(`write to #${typo.id} refused: ${err.code}`)
  }
  say(`next id would be #${store.peekNextId()}`)

  say('audit trail:')
  for await (const event of store.audit()) {
    const detail = event.kind === 'transitioned' ? `${event.data.from} → ${event.data.to}` : event.kind === 'write_rejected' ? String(event.data.op) : String(event.data.name ?? '')
    say(`  ${event.id}  ${event.kind.padEnd(15)} ${event.itemId ? `#${event.itemId}`.padEnd(4) : '    '} ${detail}`)
  }
} finally {
  await store.close()
  if (!keep) await rm(dir, { recursive: true, force: true })
}
