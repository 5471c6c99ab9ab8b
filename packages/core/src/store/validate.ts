import { DocketError } from '../errors.js'
import { parseItemId, type ItemId } from '../ids.js'
import { parseSlot } from '../storage/keys.js'
import { isStage, STAGES, type Stage } from '../stage/stages.js'
import { ITEM_TYPES, type Blocked, type ContentValue, type CreateItemInput, type ItemType, type UpdateItemInput } from '../types.js'

export const MAX_NAME_LENGTH = 300
export const MAX_AGENT_LENGTH = 200
export const MAX_REASON_LENGTH = 2000
export const MAX_DEPENDENCIES = 1000
/** A slot is a document, not a blob store; larger values belong elsewhere. */
export const MAX_CONTENT_BYTES = 16 * 1024 * 1024

// Control characters break tables, front matter and file names; tabs/newlines included.
const CONTROL = /[\u0000-\u001f\u007f]/

export function invalid(message: string, details: Record<string, unknown> = {}): DocketError {
  return new DocketError('INVALID_INPUT', message, { details })
}

export function requireObject(value: unknown, what: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw invalid(`${what} must be an object, got ${value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value}.`)
  }
  return value as Record<string, unknown>
}

export function checkName(value: unknown): string {
  if (typeof value !== 'string') throw invalid('name must be a string: give the item a short title.')
  const name = value.trim()
  if (name.length === 0) throw invalid('name is empty: give the item a short title.')
  if (name.length > MAX_NAME_LENGTH) {
    throw invalid(`name is ${name.length} characters long; the limit is ${MAX_NAME_LENGTH}: put the detail in the body instead.`)
  }
  if (CONTROL.test(name)) throw invalid('name contains control characters (newlines, tabs…): use a single line of text.')
  return name
}

export function checkType(value: unknown): ItemType {
  if (ITEM_TYPES.includes(value as ItemType)) return value as ItemType
  throw invalid(`Unknown item type ${JSON.stringify(value)}: use one of ${ITEM_TYPES.join(', ')}.`, { value })
}

export function checkStage(value: unknown): Stage {
  if (isStage(value)) return value
  throw invalid(`Unknown stage ${JSON.stringify(value)}: use one of ${STAGES.join(', ')}.`, { value })
}

export function checkAgent(value: unknown): string | null {
  if (value === null) return null
  if (typeof value !== 'string' || value.trim().length === 0 || value.length > MAX_AGENT_LENGTH || CONTROL.test(value)) {
    throw invalid(`agent must be a non-empty single-line string of at most ${MAX_AGENT_LENGTH} characters, or null to clear it.`)
  }
  return value.trim()
}

export function checkRetries(value: unknown): number {
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) return value
  throw invalid(`retries must be a non-negative integer, got ${JSON.stringify(value)}.`)
}

export function checkReason(value: unknown, what = 'reason'): string {
  if (typeof value !== 'string' || value.trim().length === 0) throw invalid(`${what} must be a non-empty string.`)
  if (value.length > MAX_REASON_LENGTH) throw invalid(`${what} is longer than ${MAX_REASON_LENGTH} characters: shorten it.`)
  return value.trim()
}

export function checkBlocked(value: unknown): Blocked | null {
  if (value === null || value === false) return null
  if (typeof value === 'object' && value !== null) {
    return { reason: checkReason((value as Blocked).reason, 'blocked.reason') }
  }
  throw invalid('blocked must be { reason: "…" } to block the item or null to unblock it.')
}

export function checkFrozen(value: unknown): boolean {
  if (typeof value === 'boolean') return value
  throw invalid(`frozen must be true or false, got ${JSON.stringify(value)}.`)
}

/** Parses and de-duplicates a dependency list; existence is checked by the store. */
export function checkDependsOn(value: unknown): ItemId[] {
  if (!Array.isArray(value)) throw invalid('dependsOn must be an array of item ids, for example ["3", "7"].')
  if (value.length > MAX_DEPENDENCIES) throw invalid(`dependsOn lists ${value.length} ids; the limit is ${MAX_DEPENDENCIES}.`)
  const ids = value.map((entry) => parseItemId(entry, 'dependency id'))
  return [...new Set(ids)]
}

export function checkContentValue(value: unknown, slot: string): ContentValue {
  if (typeof value === 'string') {
    if (Buffer.byteLength(value, 'utf8') > MAX_CONTENT_BYTES) throw tooLarge(slot)
    return value
  }
  if (value instanceof Uint8Array) {
    if (value.byteLength > MAX_CONTENT_BYTES) throw tooLarge(slot)
    return new Uint8Array(value)
  }
  throw invalid(`Content for slot "${slot}" must be a string (or a Uint8Array for raw bytes), got ${value === null ? 'null' : typeof value}.`)
}

function tooLarge(slot: string): DocketError {
  return invalid(`Content for slot "${slot}" is larger than ${MAX_CONTENT_BYTES / 1024 / 1024} MiB: store large artefacts elsewhere and keep a reference in the slot.`)
}

export interface CheckedCreate {
  name: string
  type: ItemType
  stage: Stage
  dependsOn: ItemId[]
  content: Map<string, ContentValue>
  agent: string | null
  retries: number
  blocked: Blocked | null
  frozen: boolean
  id: ItemId | undefined
}

const CREATE_KEYS = new Set(['name', 'type', 'dependsOn', 'body', 'content', 'stage', 'agent', 'retries', 'blocked', 'frozen', 'id'])
const UPDATE_KEYS = new Set(['name', 'dependsOn', 'agent', 'retries', 'blocked', 'frozen'])

function rejectUnknownKeys(input: Record<string, unknown>, allowed: Set<string>, what: string): void {
  for (const key of Object.keys(input)) {
    if (!allowed.has(key)) throw invalid(`${what} has an unknown field "${key}": allowed fields are ${[...allowed].join(', ')}.`, { field: key })
  }
}

/** Shape checks of createItem's input; checks against the store's state come after. */
export function checkCreateInput(value: unknown): CheckedCreate {
  const input = requireObject(value, 'createItem input')
  rejectUnknownKeys(input, CREATE_KEYS, 'createItem input')
  const content = new Map<string, ContentValue>()
  if (input.content !== undefined) {
    const slots = requireObject(input.content, 'content')
    for (const [slot, text] of Object.entries(slots)) content.set(parseSlot(slot), checkContentValue(text, slot))
  }
  if (input.body !== undefined) {
    if (content.has('body')) throw invalid('body is given twice (as body and as content.body): give it once.')
    content.set('body', checkContentValue(input.body, 'body'))
  }
  const checked: CheckedCreate = {
    name: checkName(input.name),
    type: input.type === undefined ? 'story' : checkType(input.type),
    stage: input.stage === undefined ? 'backlog' : checkStage(input.stage),
    dependsOn: input.dependsOn === undefined ? [] : checkDependsOn(input.dependsOn),
    content,
    agent: input.agent === undefined ? null : checkAgent(input.agent),
    retries: input.retries === undefined ? 0 : checkRetries(input.retries),
    blocked: input.blocked === undefined ? null : checkBlocked(input.blocked),
    frozen: input.frozen === undefined ? false : checkFrozen(input.frozen),
    id: input.id === undefined ? undefined : parseItemId(input.id),
  }
  return checked
}

export type CheckedUpdate = Partial<{
  name: string
  dependsOn: ItemId[]
  agent: string | null
  retries: number
  blocked: Blocked | null
  frozen: boolean
}>

export function checkUpdateInput(value: unknown): CheckedUpdate {
  const input = requireObject(value, 'updateItem input')
  rejectUnknownKeys(input, UPDATE_KEYS, 'updateItem input')
  const out: CheckedUpdate = {}
  if (input.name !== undefined) out.name = checkName(input.name)
  if (input.dependsOn !== undefined) out.dependsOn = checkDependsOn(input.dependsOn)
  if (input.agent !== undefined) out.agent = checkAgent(input.agent)
  if (input.retries !== undefined) out.retries = checkRetries(input.retries)
  if (input.blocked !== undefined) out.blocked = checkBlocked(input.blocked)
  if (input.frozen !== undefined) out.frozen = checkFrozen(input.frozen)
  if (Object.keys(out).length === 0) throw invalid(`updateItem needs at least one field to change: ${[...UPDATE_KEYS].join(', ')}.`)
  return out
}

export type { CreateItemInput, UpdateItemInput }
