import type { Maintenance } from '../store/maintenance.js'
import type { Store } from '../store/store.js'

/** A method's twin on a handle: the same arguments, the result always a promise (async generators stay generators). */
type Async<F> = F extends (...args: infer A) => AsyncGenerator<infer T> ? (...args: A) => AsyncGenerator<T> : F extends (...args: infer A) => infer R ? (...args: A) => Promise<Awaited<R>> : never

type Methods<T> = { [K in keyof T as T[K] extends (...args: never[]) => unknown ? K : never]: Async<T[K]> }

/**
 * A store as the CLI and tools use it, wherever it is: opened by this process (`handleOf`) or
 * held by another one and reached through its socket (`connectHolder`). Every operation of
 * `Store` and of `store.maintenance`, as a promise; `close()` closes a store this process
 * opened, and only disconnects from one another process holds.
 */
export type StoreHandle = Omit<Methods<Store>, 'close' | 'subscribe' | 'onUpdate' | 'applyUpdate' | 'encodeStateAsUpdate' | 'encodeStateVector' | 'importBlob' | 'readBlob'> & {
  readonly dir: string
  readonly replicaId: Store['replicaId']
  readonly readOnly: boolean
  /** The process id of the process that holds the store (this one for `handleOf`). */
  readonly holderPid: number
  readonly maintenance: Methods<Maintenance>
  /** `store.schema`. */
  schemaInfo(): Promise<Store['schema']>
  close(): Promise<void>
}

/** What marks a handle (both kinds), so that `toHandle` never wraps one twice. */
export const HANDLE_MARK = Symbol.for('docket.storeHandle')

/** A store or a handle, as a handle: what functions that serve both (recovery, import, export) work on. */
export function toHandle(store: Store | StoreHandle): StoreHandle {
  return (store as unknown as Record<symbol, unknown>)[HANDLE_MARK] === true ? (store as StoreHandle) : handleOf(store as Store)
}

/** A handle on a store this process opened: the same calls, as promises. */
export function handleOf(store: Store): StoreHandle {
  return promised(store, {
    [HANDLE_MARK]: true,
    holderPid: process.pid,
    schemaInfo: async () => store.schema,
    close: () => store.close(),
    maintenance: promised(store.maintenance),
  }) as unknown as StoreHandle
}

/** `object` with every method lifted to a promise; `extra` members answer first. */
function promised<T extends object>(object: T, extra: Record<string | symbol, unknown> = {}): Methods<T> {
  return new Proxy(object as unknown as Record<string | symbol, unknown>, {
    get: (target, key) => {
      if (key in extra) return extra[key]
      const value = Reflect.get(target, key, target)
      return typeof value === 'function' ? lift(value as (...args: unknown[]) => unknown, target) : value
    },
  }) as unknown as Methods<T>
}

/** Calls on the object itself (private fields need the real `this`); sync results and throws become promises. */
function lift(fn: (...args: unknown[]) => unknown, self: object): (...args: unknown[]) => unknown {
  return (...args: unknown[]) => {
    let result: unknown
    try {
      result = fn.apply(self, args)
    } catch (err) {
      return Promise.reject(err)
    }
    if (typeof result === 'object' && result !== null && Symbol.asyncIterator in result && !(result instanceof Promise)) return result
    return Promise.resolve(result)
  }
}
