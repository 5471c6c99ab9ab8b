import fc from 'fast-check'

/**
 * Parameters for one property: a fixed seed derived from its name (so every run of the suite
 * is the same run), scaled by DOCKET_EXTENSIVE, and overridden by FC_SEED / FC_PATH /
 * FC_NUM_RUNS to replay or to scale. The seed is printed before the property runs and the
 * replay command after a failure.
 */
export interface PropertyOptions {
  /** Runs under `pnpm test`. */
  runs: number
  /** Runs under `pnpm test:extensive` (default: 20 × runs). */
  extensiveRuns?: number
}

export function isExtensive(): boolean {
  return process.env.DOCKET_EXTENSIVE === '1'
}

export function seedFor(name: string): number {
  let hash = 2166136261
  for (let i = 0; i < name.length; i++) hash = Math.imul(hash ^ name.charCodeAt(i), 16777619)
  return hash | 0
}

export function propertyParameters<T>(name: string, options: PropertyOptions): fc.Parameters<T> {
  const seed = process.env.FC_SEED !== undefined ? Number(process.env.FC_SEED) : seedFor(name)
  const numRuns = process.env.FC_NUM_RUNS !== undefined ? Number(process.env.FC_NUM_RUNS) : isExtensive() ? (options.extensiveRuns ?? options.runs * 20) : options.runs
  const path = process.env.FC_PATH
  console.info(`[property] ${name}: seed=${seed} numRuns=${numRuns}${path ? ` path=${path}` : ''}`)
  const explain = (details: fc.RunDetails<T>): void => {
    if (!details.failed) return
    const replay = `FC_SEED=${details.seed} FC_PATH=${details.counterexamplePath ?? ''} npx pnpm@10 vitest run -t ${JSON.stringify(name)}`
    const cause = details.errorInstance instanceof Error ? `\n\nFailure: ${details.errorInstance.message}` : ''
    throw new Error(`${fc.defaultReportMessage(details) ?? 'property failed'}${cause}\n\nReplay with: ${replay}`)
  }
  const params: fc.Parameters<T> = { seed, numRuns, reporter: explain, endOnFailure: false }
  if (path) params.path = path
  return params
}
