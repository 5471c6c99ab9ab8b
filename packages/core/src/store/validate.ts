import { DocketError } from '../errors.js'
import { parseItemId, type ItemId } from '../ids.js'
import { parseSlot } from '../storage/keys.js'
import { isStage, STAGES, type Stage } from '../stage/stages.js'
import type { StageEvent } from '../stage/machine.js'
import {
  type ApplyOptions,
  ITEM_TYPES,
  type AuditQuery,
  type Blocked,
  type ContentValue,
  type CreateItemInput,
  type CreateItemOptions,
  type ItemType,
  type ListItemsOptions,
  type UpdateItemInput,
  type ClaimOptions,
  type ClaimNextOptions,
  type RenewClaimOptions,
  type ReleaseClaimOptions,
} from '../types.js'
import { DEFAULT_CLAIM_TTL_MS, MAX_CLAIM_TTL_MS, MIN_CLAIM_TTL_MS } from '../work/claims.js'
import type { DeleteItemOptions, Store } from './store.js'

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

/**
 * Refuses keys an options or input object does not have: a misspelt option (`audit({ id })`
 * for `itemId`) must fail, not be silently ignored. The message names the key, suggests the
 * closest accepted one when there is an obvious match, and lists the accepted keys.
 */
export function requireKnownKeys<T extends object>(value: T, allowed: readonly string[], where: string, noun = 'option'): T {
  for (const key of Object.keys(value)) {
    if (allowed.includes(key)) continue
    const hint = closestKey(key, allowed)
    throw invalid(`unknown ${noun} ${showKey(key)} for ${where}: ${hint === undefined ? '' : `did you mean ${hint}? `}accepted: ${allowed.join(', ')}.`, {
      key: key.slice(0, 100),
      accepted: [...allowed],
      ...(hint === undefined ? {} : { suggestion: hint }),
    })
  }
  return value
}

/**
 * The keys of an options type for requireKnownKeys, checked at compile time: a key the type
 * has and the list lacks is a type error (so the list cannot fall behind the interface).
 * Usage: `keysOf<AuditQuery>()(['itemId', 'kinds', 'since', 'limit'])`.
 */
export function keysOf<T extends object>() {
  return <const K extends readonly (keyof T & string)[]>(keys: K, ..._complete: [Exclude<keyof T, K[number]>] extends [never] ? [] : [missing: Exclude<keyof T, K[number]>]): K => keys
}

function showKey(key: string): string {
  if (/^[A-Za-z_$][\w$-]{0,63}$/.test(key)) return key
  return JSON.stringify(key.length > 40 ? `${key.slice(0, 40)}…` : key)
}

/** The accepted key a mistyped one most plausibly meant, or undefined when none is an obvious match. */
function closestKey(key: string, allowed: readonly string[]): string | undefined {
  const norm = (k: string) => k.toLowerCase().replace(/[-_]/g, '')
  const wanted = norm(key)
  if (wanted.length === 0) return undefined
  let best: string | undefined
  let bestScore = Infinity
  let tie = false
  for (const candidate of allowed) {
    const have = norm(candidate)
    const distance = editDistance(wanted, have)
    const shorter = Math.min(wanted.length, have.length)
    let common = 0
    while (common < shorter && wanted[common] === have[common]) common++
    // Close spelling, one names a part of the other (`id` for `itemId`, `timeout` for
    // `timeoutMs`), or an abbreviation of it (`allowUnknownDeps`).
    const close =
      distance <= Math.max(1, Math.floor(shorter / 3)) ||
      (shorter >= 2 && (have.startsWith(wanted) || have.endsWith(wanted) || wanted.startsWith(have) || wanted.endsWith(have))) ||
      common >= Math.max(5, Math.ceil(shorter * 0.75))
    if (!close) continue
    if (distance < bestScore) {
      best = candidate
      bestScore = distance
      tie = false
    } else if (distance === bestScore) {
      tie = true
    }
  }
  return tie ? undefined : best
}

/** Optimal string alignment distance: insertions, deletions, substitutions and adjacent transpositions. */
function editDistance(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 64) return Infinity
  const rows: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)))
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      let d = Math.min(rows[i - 1]![j]! + 1, rows[i]![j - 1]! + 1, rows[i - 1]![j - 1]! + cost)
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d = Math.min(d, rows[i - 2]![j - 2]! + 1)
      rows[i]![j] = d
    }
  }
  return rows[a.length]![b.length]!
}

/**
 * Refuses a string that is not well-formed UTF-16 (a lone surrogate): Yjs stores strings as
 * UTF-8, where a lone surrogate cannot be encoded, so it would come back as U+FFFD after a
 * reopen and leave the shadow row stale.
 */
export function requireWellFormed(value: string, what: string): string {
  if (value.isWellFormed()) return value
  const index = loneSurrogateIndex(value)
  const unit = value.charCodeAt(index).toString(16).toUpperCase()
  throw invalid(
    `${what} holds a lone surrogate (\\u${unit}) at index ${index}, which is not well-formed UTF-16 and cannot be stored. Send well-formed UTF-16 / UTF-8 text: complete the surrogate pair or drop it (String.prototype.toWellFormed() replaces it with U+FFFD).`,
    { index, codeUnit: `\\u${unit}` },
  )
}

function loneSurrogateIndex(value: string): number {
  for (let i = 0; i < value.length; i++) {
    const unit = value.charCodeAt(i)
    if (unit >= 0xd800 && unit <= 0xdbff) {
      const next = value.charCodeAt(i + 1)
      if (next >= 0xdc00 && next <= 0xdfff) i++
      else return i
    } else if (unit >= 0xdc00 && unit <= 0xdfff) {
      return i
    }
  }
  return -1
}

export function checkName(value: unknown): string {
  if (typeof value !== 'string') throw invalid('name must be a string: give the item a short title.')
  requireWellFormed(value, 'name')
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
  return requireWellFormed(value, 'agent').trim()
}

export function checkRetries(value: unknown): number {
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) return value
  throw invalid(`retries must be a non-negative integer, got ${JSON.stringify(value)}.`)
}

export function checkReason(value: unknown, what = 'reason'): string {
  if (typeof value !== 'string' || value.trim().length === 0) throw invalid(`${what} must be a non-empty string.`)
  if (value.length > MAX_REASON_LENGTH) throw invalid(`${what} is longer than ${MAX_REASON_LENGTH} characters: shorten it.`)
  return requireWellFormed(value, what).trim()
}

export function checkBlocked(value: unknown): Blocked | null {
  if (value === null || value === false) return null
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
    requireKnownKeys(value, keysOf<Blocked>()(['reason']), 'blocked', 'field')
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
    return requireWellFormed(value, `Content for slot "${slot}"`)
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

/** The keys each public method's options object accepts (requireKnownKeys refuses any other). */
export const OPTION_KEYS = {
  createItem: keysOf<CreateItemOptions>()(['allowUnknownDependencies']),
  listItems: keysOf<ListItemsOptions>()(['stage', 'type', 'ready', 'claimed', 'label', 'priority', 'parent']),
  claim: keysOf<ClaimOptions>()(['agent', 'ttlMs', 'offline']),
  claimNext: keysOf<ClaimNextOptions>()(['agent', 'ttlMs', 'offline', 'stage', 'type']),
  renewClaim: keysOf<RenewClaimOptions>()(['agent', 'ttlMs', 'offline']),
  releaseClaim: keysOf<ReleaseClaimOptions>()(['agent', 'offline']),
  event: keysOf<StageEvent>()(['type', 'reason']),
  apply: keysOf<ApplyOptions>()(['force', 'ifStage']),
  deleteItem: keysOf<DeleteItemOptions>()(['reason']),
  audit: keysOf<AuditQuery>()(['itemId', 'kinds', 'since', 'limit', 'newestFirst']),
  assertSynced: keysOf<NonNullable<Parameters<Store['assertSynced']>[0]>>()(['timeoutMs', 'offline']),
} as const

/** A wait in milliseconds that setTimeout can honour (it fires at once beyond 2³¹−1 ms). */
export function checkTimeout(value: unknown, what: string): number {
  if (typeof value === 'number' && Number.isFinite(value) && value >= 0 && value <= 2 ** 31 - 1) return value
  throw invalid(`${what} must be a number of milliseconds from 0 to ${2 ** 31 - 1}, got ${showValue(value)}.`)
}

function showValue(value: unknown): string {
  if (typeof value === 'number') return String(value)
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)
  if (value === null) return 'null'
  if (value === undefined) return 'undefined'
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`
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
  priority: number | undefined
  labels: string[]
  parent: ItemId | undefined
  externalIds: string[] | undefined
  formerId: ItemId | undefined
  createdAt: string | undefined
  updatedAt: string | undefined
}

const CREATE_KEYS = keysOf<CreateItemInput>()(['name', 'type', 'dependsOn', 'body', 'content', 'stage', 'agent', 'retries', 'blocked', 'frozen', 'id', 'priority', 'labels', 'parent', 'externalIds', 'formerId', 'createdAt', 'updatedAt'])
const UPDATE_KEYS = keysOf<UpdateItemInput>()(['name', 'dependsOn', 'agent', 'retries', 'blocked', 'frozen', 'priority', 'labels', 'addLabels', 'removeLabels', 'parent', 'externalIds'])

export const MAX_LABELS = 50
export const MAX_LABEL_LENGTH = 64
export const MAX_EXTERNAL_IDS = 20

export function checkPriority(value: unknown): number {
  if (typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= 4) return value
  throw invalid(`priority must be a whole number from 0 (most urgent) to 4, got ${JSON.stringify(value)}.`)
}

/** A label's shape: 1 to 64 characters, no spaces at either end, no commas or control characters (importers filter with it; checkLabels refuses). */
export function isLabelName(value: unknown): value is string {
  return typeof value === 'string' && value.length > 0 && value.length <= MAX_LABEL_LENGTH && value === value.trim() && !value.includes(',') && !CONTROL.test(value)
}

/** An external id's shape: 1 to 200 characters, no whitespace or control characters. */
export function isExternalId(value: unknown): value is string {
  return typeof value === 'string' && value.length > 0 && value.length <= 200 && !/[\s\u0000-\u001f\u007f]/.test(value)
}

/** Labels: distinct names of 1 to 64 characters, without spaces at either end, commas or control characters. */
export function checkLabels(value: unknown, what = 'labels'): string[] {
  if (!Array.isArray(value)) throw invalid(`${what} must be an array of label names, e.g. ['frontend', 'p1'].`)
  if (value.length > MAX_LABELS) throw invalid(`${what} has ${value.length} labels; an item holds at most ${MAX_LABELS}.`)
  const out = new Set<string>()
  for (const label of value) {
    if (!isLabelName(label)) {
      throw invalid(`${what}: ${JSON.stringify(label)} is not a label: 1 to ${MAX_LABEL_LENGTH} characters, no spaces at either end, no commas or control characters.`)
    }
    out.add(requireWellFormed(label, 'label'))
  }
  return [...out].sort()
}

/** Ids an item has in other trackers: 1 to 200 characters without whitespace. */
export function checkExternalIds(value: unknown): string[] {
  if (!Array.isArray(value) || value.length > MAX_EXTERNAL_IDS) throw invalid(`externalIds must be an array of at most ${MAX_EXTERNAL_IDS} ids from other trackers, e.g. ['bd-a1b2'].`)
  const out = new Set<string>()
  for (const id of value) {
    if (!isExternalId(id)) throw invalid(`externalIds: ${JSON.stringify(id)} is not an external id (1 to 200 characters, no whitespace).`)
    out.add(requireWellFormed(id, 'external id'))
  }
  return [...out].sort()
}

function checkTime(value: unknown, what: string): string {
  if (typeof value === 'string' && value.length <= 64 && !Number.isNaN(Date.parse(value))) return new Date(Date.parse(value)).toISOString()
  throw invalid(`${what} must be a time in ISO 8601 (2026-01-31T12:00:00Z), got ${JSON.stringify(value)}.`)
}

/** Shape checks of createItem's input; checks against the store's state come after. */
export function checkCreateInput(value: unknown): CheckedCreate {
  const input = requireObject(value, 'createItem input')
  requireKnownKeys(input, CREATE_KEYS, 'createItem() input', 'field')
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
    priority: input.priority === undefined ? undefined : checkPriority(input.priority),
    labels: input.labels === undefined ? [] : checkLabels(input.labels),
    parent: input.parent === undefined ? undefined : parseItemId(input.parent, 'parent'),
    externalIds: input.externalIds === undefined ? undefined : checkExternalIds(input.externalIds),
    formerId: input.formerId === undefined ? undefined : parseItemId(input.formerId, 'formerId'),
    createdAt: input.createdAt === undefined ? undefined : checkTime(input.createdAt, 'createdAt'),
    updatedAt: input.updatedAt === undefined ? undefined : checkTime(input.updatedAt, 'updatedAt'),
  }
  if (checked.id !== undefined && checked.parent === checked.id) throw invalid(`item ${checked.id} cannot be its own parent.`)
  return checked
}

export type CheckedUpdate = Partial<{
  name: string
  dependsOn: ItemId[]
  agent: string | null
  retries: number
  blocked: Blocked | null
  frozen: boolean
  priority: number | null
  labels: string[]
  addLabels: string[]
  removeLabels: string[]
  parent: ItemId | null
  externalIds: string[]
}>

export function checkUpdateInput(value: unknown): CheckedUpdate {
  const input = requireObject(value, 'updateItem input')
  requireKnownKeys(input, UPDATE_KEYS, 'updateItem() input', 'field')
  const out: CheckedUpdate = {}
  if (input.name !== undefined) out.name = checkName(input.name)
  if (input.dependsOn !== undefined) out.dependsOn = checkDependsOn(input.dependsOn)
  if (input.agent !== undefined) out.agent = checkAgent(input.agent)
  if (input.retries !== undefined) out.retries = checkRetries(input.retries)
  if (input.blocked !== undefined) out.blocked = checkBlocked(input.blocked)
  if (input.frozen !== undefined) out.frozen = checkFrozen(input.frozen)
  if (input.priority !== undefined) out.priority = input.priority === null ? null : checkPriority(input.priority)
  if (input.labels !== undefined) out.labels = checkLabels(input.labels)
  if (input.addLabels !== undefined) out.addLabels = checkLabels(input.addLabels, 'addLabels')
  if (input.removeLabels !== undefined) out.removeLabels = checkLabels(input.removeLabels, 'removeLabels')
  if (out.labels && (out.addLabels || out.removeLabels)) throw invalid('labels (the whole set) and addLabels/removeLabels contradict each other: give one or the other.')
  if (input.parent !== undefined) out.parent = input.parent === null ? null : parseItemId(input.parent, 'parent')
  if (input.externalIds !== undefined) out.externalIds = checkExternalIds(input.externalIds)
  if (Object.keys(out).length === 0) throw invalid(`updateItem needs at least one field to change: ${UPDATE_KEYS.join(', ')}.`)
  return out
}

export type { CreateItemInput, UpdateItemInput }

/** The list filters, checked: a stage or type filter becomes an array. */
export function checkListOptions(options: ListItemsOptions): ListItemsOptions {
  const out: ListItemsOptions = {}
  if (options.stage !== undefined) {
    const stages = typeof options.stage === 'string' ? [options.stage] : options.stage
    if (!Array.isArray(stages)) throw invalid('stage must be a stage or an array of stages.')
    for (const stage of stages) checkStage(stage)
    out.stage = stages
  }
  if (options.type !== undefined) {
    const types = typeof options.type === 'string' ? [options.type] : options.type
    if (!Array.isArray(types)) throw invalid('type must be an item type or an array of them.')
    for (const type of types) checkType(type)
    out.type = types
  }
  if (options.ready !== undefined) {
    if (typeof options.ready !== 'boolean') throw invalid('ready must be true or false.')
    out.ready = options.ready
  }
  if (options.claimed !== undefined) {
    if (typeof options.claimed !== 'boolean') throw invalid('claimed must be true or false.')
    out.claimed = options.claimed
  }
  if (options.label !== undefined) out.label = checkLabels(typeof options.label === 'string' ? [options.label] : options.label, 'label')
  if (options.priority !== undefined) {
    const list = typeof options.priority === 'number' ? [options.priority] : options.priority
    if (!Array.isArray(list)) throw invalid('priority must be a priority (0 to 4) or an array of them.')
    out.priority = list.map(checkPriority)
  }
  if (options.parent !== undefined) out.parent = parseItemId(options.parent, 'parent')
  return out
}

/** A claim's agent and duration, checked (work/claims.ts has the bounds). */
export function checkClaimAsk(options: { agent?: unknown; ttlMs?: unknown; offline?: unknown }, what: string): { agent: string; ttlMs: number; offline: boolean } {
  const agent = options.agent
  if (typeof agent !== 'string' || agent.trim().length === 0 || agent.length > MAX_AGENT_LENGTH || agent !== agent.trim() || /[\u0000-\u001f\u007f]/.test(agent)) {
    throw invalid(`${what} needs agent: the name of who works on the item, 1 to ${MAX_AGENT_LENGTH} characters without surrounding spaces or control characters (e.g. { agent: 'coder-1' }, --agent coder-1).`)
  }
  const ttlMs = options.ttlMs ?? DEFAULT_CLAIM_TTL_MS
  if (!Number.isSafeInteger(ttlMs) || (ttlMs as number) < MIN_CLAIM_TTL_MS || (ttlMs as number) > MAX_CLAIM_TTL_MS) {
    throw invalid(`${what}: ttlMs must be a whole number of milliseconds from ${MIN_CLAIM_TTL_MS} (1 s) to ${MAX_CLAIM_TTL_MS} (7 days); the default is 15 minutes.`)
  }
  if (options.offline !== undefined && typeof options.offline !== 'boolean') throw invalid(`${what}: offline must be true or false.`)
  return { agent, ttlMs: ttlMs as number, offline: options.offline === true }
}

/** The error for an id that shows no live item: TOMBSTONED if it was deleted, else NOT_FOUND (the Store and the reader alike). */
export function missingItem(id: ItemId, deleted: boolean): DocketError {
  if (deleted) return new DocketError('TOMBSTONED', `Item ${id} was deleted; deleted ids are never reused. Create a new item instead.`, { details: { id } })
  return new DocketError('NOT_FOUND', `There is no item ${id}: check the id with \`docket list\`.`, { details: { id } })
}
