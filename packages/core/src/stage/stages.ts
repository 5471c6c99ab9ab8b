/** Stages in pipeline order. The rank is what the no-regress rule compares. */
export const STAGE_RANKS = {
  backlog: 0,
  coding: 1,
  qa: 2,
  merge: 3,
  merge_failure: 4,
  merge_failure_final: 5,
  done: 6,
  archived: 7,
  abandoned: 7,
  superseded: 7,
  rejected: 7,
} as const

export type Stage = keyof typeof STAGE_RANKS
export const STAGES = Object.keys(STAGE_RANKS) as Stage[]

/** Stages with no way out: nothing but a new item follows them. */
export const TERMINAL_STAGES: ReadonlySet<Stage> = new Set<Stage>(['archived', 'abandoned', 'superseded', 'rejected'])

export function isStage(value: unknown): value is Stage {
  return typeof value === 'string' && Object.hasOwn(STAGE_RANKS, value)
}

export function rankOf(stage: Stage): number {
  return STAGE_RANKS[stage]
}

export function isTerminal(stage: Stage): boolean {
  return TERMINAL_STAGES.has(stage)
}
