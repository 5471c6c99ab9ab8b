import type { ServeOptions } from './server.js'

const SERVE_KEYS = [
  'dir',
  'blobDir',
  'host',
  'port',
  'token',
  'readToken',
  'logger',
  'redis',
  'debounceMs',
  'maxDebounceMs',
  'maxPayloadBytes',
  'authTimeoutMs',
  'maxUnauthenticatedBytes',
  'maxConnectionsPerAddress',
  'admit',
  'now',
] as const satisfies ReadonlyArray<keyof ServeOptions>
const REDIS_KEYS = ['host', 'port', 'prefix'] as const satisfies ReadonlyArray<keyof NonNullable<ServeOptions['redis']>>

/**
 * A misspelt option (`maxPayload` for `maxPayloadBytes`) must not silently leave a limit at its
 * default: unknown keys are refused, with the accepted ones (core's `requireKnownKeys` does the
 * same for the store; the server does not depend on core).
 */
export function checkServeOptions(options: ServeOptions): void {
  if (typeof options !== 'object' || options === null) throw new Error('startServer() needs an options object with at least dir and token.')
  refuseUnknown(options, SERVE_KEYS, 'startServer()')
  if (typeof options.redis === 'object' && options.redis !== null) refuseUnknown(options.redis, REDIS_KEYS, 'startServer() redis')
}

function refuseUnknown(value: object, allowed: readonly string[], where: string): void {
  for (const key of Object.keys(value)) {
    if (allowed.includes(key)) continue
    const hint = closest(key, allowed)
    const shown = /^[A-Za-z_$][\w$-]{0,63}$/.test(key) ? key : JSON.stringify(key.slice(0, 40))
    throw new Error(`unknown option ${shown} for ${where}: ${hint ? `did you mean ${hint}? ` : ''}accepted: ${allowed.join(', ')}.`)
  }
}

/** The one accepted key that `key` is plainly a variant of (same letters, or a prefix of it), if exactly one. */
function closest(key: string, allowed: readonly string[]): string | undefined {
  const norm = (k: string) => k.toLowerCase().replace(/[-_]/g, '')
  const wanted = norm(key)
  if (wanted.length < 2) return undefined
  const matches = allowed.filter((a) => {
    const have = norm(a)
    return have === wanted || have.startsWith(wanted) || wanted.startsWith(have)
  })
  return matches.length === 1 ? matches[0] : undefined
}
