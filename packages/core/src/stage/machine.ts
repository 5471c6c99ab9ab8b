import { DocketError } from '../errors.js'
import { isTerminal, STAGES, type Stage } from './stages.js'

export const EVENT_TYPES = [
  'start',
  'gates_passed',
  'qa_skipped',
  'accepted',
  'merge_succeeded',
  'merge_failed',
  'merge_failed_final',
  'fixup_requested',
  'requeued_for_qa',
  'demote',
  'reopen',
  'archive',
  'abandon',
  'supersede',
  'reject',
] as const

export type EventType = (typeof EVENT_TYPES)[number]
export type Direction = 'forward' | 'backward'

/** What an event may be sent with: a type and, for the audit trail, an optional reason. */
export interface StageEvent {
  type: EventType
  reason?: string
}

interface Rule {
  from: readonly Stage[] | 'non-terminal'
  to: Stage
  direction: Direction
}

/** DESIGN.md's transition table, row for row. */
const RULES: Record<EventType, Rule> = {
  start: { from: ['backlog'], to: 'coding', direction: 'forward' },
  gates_passed: { from: ['coding'], to: 'qa', direction: 'forward' },
  qa_skipped: { from: ['coding'], to: 'merge', direction: 'forward' },
  accepted: { from: ['qa'], to: 'merge', direction: 'forward' },
  merge_succeeded: { from: ['merge'], to: 'done', direction: 'forward' },
  merge_failed: { from: ['merge'], to: 'merge_failure', direction: 'forward' },
  merge_failed_final: { from: ['merge_failure'], to: 'merge_failure_final', direction: 'forward' },
  fixup_requested: { from: ['merge_failure', 'merge_failure_final'], to: 'coding', direction: 'backward' },
  requeued_for_qa: { from: ['merge_failure'], to: 'qa', direction: 'backward' },
  demote: { from: ['coding', 'qa', 'merge'], to: 'backlog', direction: 'backward' },
  reopen: { from: ['done'], to: 'coding', direction: 'backward' },
  archive: { from: ['done'], to: 'archived', direction: 'forward' },
  abandon: { from: 'non-terminal', to: 'abandoned', direction: 'forward' },
  supersede: { from: 'non-terminal', to: 'superseded', direction: 'forward' },
  reject: { from: 'non-terminal', to: 'rejected', direction: 'forward' },
}

export function isEventType(value: unknown): value is EventType {
  return typeof value === 'string' && Object.hasOwn(RULES, value)
}

function allows(rule: Rule, stage: Stage): boolean {
  return rule.from === 'non-terminal' ? !isTerminal(stage) : rule.from.includes(stage)
}

export function directionOf(event: EventType): Direction {
  return RULES[event].direction
}

/** The events that are valid from `stage`, in table order. */
export function validEvents(stage: Stage): EventType[] {
  return EVENT_TYPES.filter((event) => allows(RULES[event], stage))
}

/**
 * The stage machine: the next stage for `event` from `stage`, or INVALID_TRANSITION.
 * Pure; the store calls it and nothing else decides a stage.
 */
export function transition(stage: Stage, event: EventType | StageEvent): Stage {
  const type = typeof event === 'string' ? event : event?.type
  if (!STAGES.includes(stage)) {
    throw new DocketError('INVALID_INPUT', `Unknown stage ${JSON.stringify(stage)}: use one of ${STAGES.join(', ')}.`)
  }
  if (!isEventType(type)) {
    throw new DocketError(
      'INVALID_TRANSITION',
      `Unknown event ${JSON.stringify(type)}: valid events from ${stage} are ${listOrNone(validEvents(stage))}.`,
      { details: { stage, event: type, validEvents: validEvents(stage) } },
    )
  }
  const rule = RULES[type]
  if (!allows(rule, stage)) {
    throw new DocketError(
      'INVALID_TRANSITION',
      `Event "${type}" is not allowed from stage ${stage}: valid events from ${stage} are ${listOrNone(validEvents(stage))}.`,
      { details: { stage, event: type, validEvents: validEvents(stage) } },
    )
  }
  return rule.to
}

function listOrNone(events: EventType[]): string {
  return events.length === 0 ? 'none (the stage is terminal)' : events.join(', ')
}
