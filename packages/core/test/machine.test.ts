import { describe, expect, it } from 'vitest'
import { DocketError, EVENT_TYPES, STAGES, transition, validEvents, type EventType, type Stage } from '../src/index.js'

// DESIGN.md's table, written out independently of the implementation's rule table.
const TABLE: Array<[EventType, Stage[], Stage]> = [
  ['start', ['backlog'], 'coding'],
  ['gates_passed', ['coding'], 'qa'],
  ['qa_skipped', ['coding'], 'merge'],
  ['accepted', ['qa'], 'merge'],
  ['merge_succeeded', ['merge'], 'done'],
  ['merge_failed', ['merge'], 'merge_failure'],
  ['merge_failed_final', ['merge_failure'], 'merge_failure_final'],
  ['fixup_requested', ['merge_failure', 'merge_failure_final'], 'coding'],
  ['requeued_for_qa', ['merge_failure'], 'qa'],
  ['demote', ['coding', 'qa', 'merge'], 'backlog'],
  ['reopen', ['done'], 'coding'],
  ['archive', ['done'], 'archived'],
]
const NON_TERMINAL: Stage[] = ['backlog', 'coding', 'qa', 'merge', 'merge_failure', 'merge_failure_final', 'done']
for (const [event, to] of [['abandon', 'abandoned'], ['supersede', 'superseded'], ['reject', 'rejected']] as const) {
  TABLE.push([event, NON_TERMINAL, to])
}

describe('transition', () => {
  it('covers every event of the table', () => {
    expect(new Set(TABLE.map(([e]) => e))).toEqual(new Set(EVENT_TYPES))
  })

  for (const stage of STAGES) {
    for (const event of EVENT_TYPES) {
      const row = TABLE.find(([e, from]) => e === event && from.includes(stage))
      if (row) {
        it(`${stage} --${event}--> ${row[2]}`, () => {
          expect(transition(stage, event)).toBe(row[2])
          expect(transition(stage, { type: event })).toBe(row[2])
        })
      } else {
        it(`${stage} --${event}--> INVALID_TRANSITION`, () => {
          let error: unknown
          try {
            transition(stage, event)
          } catch (err) {
            error = err
          }
          expect(error).toBeInstanceOf(DocketError)
          expect((error as DocketError).code).toBe('INVALID_TRANSITION')
          expect((error as DocketError).message).toContain(stage)
          expect((error as DocketError).details.validEvents).toEqual(validEvents(stage))
        })
      }
    }
  }

  it('rejects unknown events and stages with typed errors', () => {
    expect(() => transition('backlog', 'fly' as EventType)).toThrow(expect.objectContaining({ code: 'INVALID_TRANSITION' }))
    expect(() => transition('nowhere' as Stage, 'start')).toThrow(expect.objectContaining({ code: 'INVALID_INPUT' }))
  })

  it('lists the valid events of each stage, none for terminal stages', () => {
    expect(validEvents('backlog')).toEqual(['start', 'abandon', 'supersede', 'reject'])
    expect(validEvents('done')).toEqual(['reopen', 'archive', 'abandon', 'supersede', 'reject'])
    for (const terminal of ['archived', 'abandoned', 'superseded', 'rejected'] as const) expect(validEvents(terminal)).toEqual([])
  })
})
