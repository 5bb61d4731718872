import { HookmqError } from '../../../core/errors.js'

// No exit door: what a hook may not do to the process it shares. Hook code sees
// `process` through a guard (its own variable, and `require('process')`) whose
// forbidden members throw a coded error; in the broker's own thread the real
// members also throw while a hook's synchronous code runs (`globalThis.process.exit()`),
// and in a hook's worker they always do. The call that tried it then fails
// like any throw: closed for decisions, open for transforms. This catches
// mistakes, not a hostile hook: a hook file is trusted code (it can still
// require('child_process'), for one).

const FORBIDDEN = ['exit', 'reallyExit', 'abort', 'kill', '_kill', 'chdir', 'setuid', 'setgid', 'seteuid', 'setegid', 'setgroups', 'initgroups'] as const
const forbidden = new Set<PropertyKey>(FORBIDDEN)

export function forbiddenCall(name: string): HookmqError {
  return new HookmqError('HOOK_FORBIDDEN', `process.${name.includes('(') ? name : name + '()'} is not available to hooks`)
}

const denials = new Map<PropertyKey, () => never>(
  FORBIDDEN.map((name) => [
    name,
    () => {
      throw forbiddenCall(name)
    },
  ]),
)

/** Events of the process a hook may not raise (a signal's shutdown, say) nor strip of the broker's listeners. */
const PROCESS_EVENTS = /^(SIG[A-Z0-9]+|exit|beforeExit|uncaughtException|unhandledRejection)$/

function eventGuard(name: 'emit' | 'removeAllListeners' | 'removeListener' | 'off'): (event?: unknown, ...rest: unknown[]) => unknown {
  return function guardedEvent(this: unknown, event?: unknown, ...rest: unknown[]): unknown {
    if ((typeof event === 'string' && PROCESS_EVENTS.test(event)) || (event === undefined && name === 'removeAllListeners'))
      throw forbiddenCall(`${name}('${String(event ?? '')}')`)
    return (process[name] as (...a: unknown[]) => unknown).call(process, event, ...rest)
  }
}

const eventGuards = new Map<PropertyKey, unknown>((['emit', 'removeAllListeners', 'removeListener', 'off'] as const).map((n) => [n, eventGuard(n)]))

/** `process` as hook code sees it. */
export const guardedProcess: NodeJS.Process = new Proxy(process, {
  get(target, key) {
    return forbidden.has(key) ? denials.get(key) : eventGuards.has(key) ? eventGuards.get(key) : Reflect.get(target, key)
  },
  set(target, key, value) {
    if (forbidden.has(key) || key === 'exitCode') throw forbiddenCall(String(key))
    return Reflect.set(target, key, value)
  },
})

let depth = 0
let patched = false
let realExit: (code?: number) => never = process.exit.bind(process)

/**
 * [0]: which hook's synchronous code runs now (its watch id; 0: none), readable
 * by the watchdog's thread without this one's help (when it cannot be
 * interrupted, in native code, it still knows whom to quarantine). [1]: how
 * many hook calls have begun (the watchdog's sign of progress while timers
 * wait behind a long turn of the event loop).
 */
export const runningHook = new Int32Array(new SharedArrayBuffer(8))

/** Hook code runs (synchronously) between enter() and leave(): the real process members refuse meanwhile. */
export function enterHook(watchId = 0): void {
  if (depth++ === 0) {
    runningHook[0] = watchId
    runningHook[1]++ // calls begun: a loop busy with many short calls is not blocked by one
  }
}

export function leaveHook(): void {
  if (--depth === 0) runningHook[0] = 0
}

/** Makes the real process members throw while hook code runs (`always`: in a hook's worker, where all code is the hook's). */
export function guardProcess(always = false): void {
  if (patched) return
  patched = true
  realExit = process.exit.bind(process)
  const p = process as unknown as Record<string, unknown>
  for (const name of FORBIDDEN) {
    const real = p[name]
    if (typeof real !== 'function') continue
    p[name] = function guarded(this: unknown, ...args: unknown[]): unknown {
      if (always || depth > 0) throw forbiddenCall(name)
      return (real as (...a: unknown[]) => unknown).apply(this, args)
    }
  }
}

/** The broker's own exit, whatever hook code is running (the watchdog ends a process a hook has hung). */
export function exitProcess(code: number): never {
  depth = 0 // (process.exit calls process.reallyExit, guarded too)
  return realExit(code)
}
