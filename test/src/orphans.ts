import { ulid } from 'ulid'
import { writeRawRows, rawKeys, type RawWrite } from '@docket/core/testing'

/**
 * An orphan to plant in a closed store: rows in the shadow content store that the CRDT does
 * not own — what a half-written create, an older id scheme or a bug leaves behind.
 */
export interface OrphanSpec {
  id: string
  /** The uid of its shadow row; `null` plants content rows only (no shadow row). Default: a new ULID. */
  uid?: string | null
  name?: string
  type?: string
  stage?: string
  dependsOn?: string[]
  createdBy?: string
  /** The body slot; `null` for none. Default: markdown with front matter naming the item. */
  body?: string | Uint8Array | null
  /** Further content slots. */
  slots?: Record<string, string | Uint8Array>
  /** Replaces the shadow row's JSON with this text (to plant a corrupt row). */
  shadowText?: string
}

export function frontMatterBody(name: string, extra: Record<string, string> = {}): string {
  const lines = [`name: ${JSON.stringify(name)}`, ...Object.entries(extra).map(([k, v]) => `${k}: ${v}`)]
  return `---\n${lines.join('\n')}\n---\n\nRecovered from an older scheme.\n`
}

/** The raw writes that plant `spec` (shadow row JSON shaped like docket's own, uid first). */
export function orphanWrites(spec: OrphanSpec): RawWrite[] {
  const name = spec.name ?? `Orphan ${spec.id}`
  const uid = spec.uid === undefined ? ulid() : spec.uid
  const writes: RawWrite[] = []
  if (uid !== null || spec.shadowText !== undefined) {
    const at = '2025-01-01T00:00:00.000Z'
    const row = {
      v: 1,
      id: spec.id,
      uid,
      name,
      type: spec.type ?? 'story',
      stage: spec.stage ?? 'backlog',
      dependsOn: spec.dependsOn ?? [],
      blocked: null,
      frozen: false,
      agent: null,
      retries: 0,
      createdAt: at,
      updatedAt: at,
      createdBy: spec.createdBy ?? 'legacy-replica',
      stages: [],
      slots: [...(spec.body === null ? [] : ['body']), ...Object.keys(spec.slots ?? {})],
    }
    writes.push({ type: 'put', sublevel: 'shadow', key: rawKeys.shadow(spec.id), value: spec.shadowText ?? JSON.stringify(row) })
  }
  const body = spec.body === undefined ? frontMatterBody(name, spec.dependsOn ? { depends_on: `[${spec.dependsOn.join(', ')}]` } : {}) : spec.body
  if (body !== null) writes.push({ type: 'put', sublevel: 'content', key: rawKeys.content(spec.id, 'body'), value: body })
  for (const [slot, value] of Object.entries(spec.slots ?? {})) writes.push({ type: 'put', sublevel: 'content', key: rawKeys.content(spec.id, slot), value })
  return writes
}

/** Plants orphans into a closed store in one batch. */
export async function plantOrphans(dir: string, specs: readonly OrphanSpec[]): Promise<void> {
  await writeRawRows(dir, specs.flatMap(orphanWrites))
}
