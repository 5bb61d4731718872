import { HookmqError, isPromise, type Later, type Logger, type Tracer } from '../../core/index.js'
import type { Compiled } from './compile.js'
import { firstFrame, mapStack, where } from './compile.js'
import type { CallContext, HookDefinition } from './define.js'
import type { Breaker } from './sandbox/breaker.js'
import { enterHook, leaveHook } from './sandbox/guard.js'
import { percentile } from '../percentile.js'

// The one choke point for user code: every hook call goes through invoke(),
// which asks the hook's circuit breaker, catches throws and rejections, applies
// the deadline (aborting the call's signal), ignores a late answer, checks the
// answer and, on any failure, answers the caller's fallback: a deny for
// decisions (fail closed), the original message for transforms (fail open),
// nothing for events. A worker-isolated hook's calls cross to its thread
// (`remote`) and come back through the same settle/fail.

const SAMPLES = 512

export class HookStats {
  calls = 0
  denies = 0
  errors = 0
  timeouts = 0
  private readonly durations = new Float64Array(SAMPLES)
  private n = 0

  record(ms: number): void {
    this.durations[this.n++ % SAMPLES] = ms
  }

  /** p99 of the last 512 sampled call durations, in ms. */
  p99(): number {
    return percentile(this.durations.subarray(0, Math.min(this.n, SAMPLES)), 0.99)
  }
}

export type HookMethod = 'authenticate' | 'authorizePublish' | 'authorizeSubscribe' | 'transform' | 'deliver'

/**
 * Where an answer given later goes, with the `target` the call was given: a
 * Connection (a core DecisionReceiver) with the message, for authorizePublish;
 * the deliver point's receiver (deliver.ts), for deliver.
 */
export interface LaterReceiver {
  decided(value: unknown, target: unknown): void
}

/** How a worker-isolated hook is called: the calls cross to its thread, answers come back through settle/fail. */
export interface RemoteCalls {
  /** `into`: the answer may go to it with `target`, and the call answers LATER */
  call<T>(
    reg: Registration,
    method: HookMethod,
    input: unknown,
    check: (v: unknown) => T,
    fallback: T,
    into?: LaterReceiver,
    target?: unknown,
  ): T | Promise<T> | Later
  notify(reg: Registration, event: string, args: unknown[]): void
}

/** One loaded version of one hook. */
export interface Registration {
  readonly name: string
  readonly file: string | undefined
  readonly version: number
  readonly loadedAt: number
  /** the hook's definition; for a worker-isolated hook, what its worker reported (methods are markers) */
  readonly def: HookDefinition
  readonly config: unknown
  readonly timeoutMs: number
  readonly log: Logger
  readonly stats: HookStats
  readonly isolation: 'inline' | 'worker'
  /** names it to the watchdog while its code runs (0: not watched, an embedded hook) */
  readonly watchId: number
  readonly breaker: Breaker
  /** the compiled file (source-mapped stacks of inline hooks) */
  readonly compiled: Compiled | undefined
  /** set for worker isolation */
  readonly remote: RemoteCalls | undefined
  /** logs a failed call (throttled) */
  readonly reportFailure: (failure: { what: string; err: unknown }) => void
  /** the last argument of event handlers */
  readonly eventContext: { config: unknown; log: Logger; forward(webhook: string, body: unknown): Promise<void> }
  readonly forward: (webhook: string, body: unknown) => Promise<void>
  /** the broker's live trace: while it is active, decisions on traced clients and topics are reported to it */
  readonly tracer: Tracer | undefined
  /** name this version on its allows too (audit records of allows, the record file, shadow comparisons want to know who allowed) */
  signAllows: boolean
  /** calls running now; a retired version tears down when this reaches 0 */
  active: number
  /** a call context to reuse (see callFor) */
  spare: unknown
  retired: boolean
  onIdle: (() => void) | undefined
}

class Call implements CallContext<unknown> {
  private ctrl: AbortController | undefined = undefined

  constructor(private readonly reg: Registration) {}

  get config(): unknown {
    return this.reg.config
  }

  get log(): Logger {
    return this.reg.log
  }

  /** a getter, so `({ forward }) =>` destructuring works */
  get forward(): (webhook: string, body: unknown) => Promise<void> {
    return this.reg.forward
  }

  get signal(): AbortSignal {
    return (this.ctrl ??= new AbortController()).signal
  }

  abort(reason: Error): void {
    this.ctrl?.abort(reason)
  }

  reset(): void {
    this.ctrl = undefined
  }
}

/** One context object per registration, reused while no other call of it is running. */
function callFor(reg: Registration): Call {
  if (reg.active !== 0) return new Call(reg)
  let call = reg.spare as Call | undefined
  if (call === undefined) reg.spare = call = new Call(reg)
  else call.reset()
  return call
}

export function hookTimeout(name: string, method: string, ms: number): HookmqError {
  return new HookmqError('HOOK_TIMEOUT', `hook "${name}" ${method} did not answer within ${ms} ms`)
}

/**
 * Calls `reg.def[method](input)`. `check` turns the raw answer into the typed
 * one (throwing when invalid); `fallback` is what a failure answers, and what a
 * tripped hook answers at once. `into`: see RemoteCalls.call (an inline
 * hook answers at once or in a promise).
 */
export function invoke<T>(reg: Registration, method: HookMethod, input: unknown, check: (v: unknown) => T, fallback: T): T | Promise<T>
export function invoke<T>(
  reg: Registration,
  method: HookMethod,
  input: unknown,
  check: (v: unknown) => T,
  fallback: T,
  into: LaterReceiver | undefined,
  target: unknown,
): T | Promise<T> | Later
export function invoke<T>(
  reg: Registration,
  method: HookMethod,
  input: unknown,
  check: (v: unknown) => T,
  fallback: T,
  into?: LaterReceiver,
  target?: unknown,
): T | Promise<T> | Later {
  if (!reg.breaker.admit()) return signed(reg, fallback)
  if (reg.remote !== undefined) return reg.remote.call(reg, method, input, check, fallback, into, target)
  const fn = reg.def[method] as (input: unknown, ctx: CallContext<unknown>) => unknown
  const call = callFor(reg)
  const started = begin(reg)
  let out: unknown
  let promised: boolean
  enterHook(reg.watchId)
  try {
    out = fn(input, call)
    promised = isPromise(out) // (a Proxy's `then` can throw too)
  } catch (err) {
    leaveHook()
    return fail(reg, method, err, fallback, started)
  }
  leaveHook()
  if (!promised) return settle(reg, method, out, check, fallback, started)
  return new Promise<T>((resolve) => {
    const pending = out as Promise<unknown>
    let done = false
    const timer = setTimeout(() => {
      if (done) return
      done = true
      const err = hookTimeout(reg.name, method, reg.timeoutMs)
      reg.stats.timeouts++
      call.abort(err)
      resolve(fail(reg, method, err, fallback, started))
    }, reg.timeoutMs)
    pending.then(
      (v) => {
        if (done) return // a late answer after the deadline is ignored
        done = true
        clearTimeout(timer)
        resolve(settle(reg, method, v, check, fallback, started))
      },
      (err: unknown) => {
        if (done) return
        done = true
        clearTimeout(timer)
        resolve(fail(reg, method, err, fallback, started))
      },
    )
  })
}

/** Counts a call; answers its start time when this one is sampled for the p99 (1 call in 8: two clock reads cost more than many hooks). */
export function begin(reg: Registration): number {
  reg.active++
  return (reg.stats.calls++ & 7) === 0 ? performance.now() : 0
}

export function settle<T>(reg: Registration, method: HookMethod, raw: unknown, check: (v: unknown) => T, fallback: T, started: number): T {
  let value: T
  try {
    value = check(raw)
  } catch (err) {
    return fail(reg, method, err, fallback, started)
  }
  const result = (value as { result?: string } | null)?.result
  if (result === 'deny') {
    reg.stats.denies++
    value = signed(reg, value)
  } else if (result === 'allow' && reg.signAllows) value = { ...value, hook: reg.name, hookVersion: reg.version }
  else if (result === 'continue') value = { ...value, hook: reg.name } // an enhanced authentication goes on with this hook alone
  reg.breaker.success()
  finish(reg, started)
  return value
}

/** A failed call answers its fallback. `alone`: its own failure (counted by the breaker, logged); false when one cause failed many calls. */
export function fail<T>(reg: Registration, method: string, err: unknown, fallback: T, started: number, alone = true): T {
  reg.stats.errors++
  if ((fallback as { result?: string } | null)?.result === 'deny') reg.stats.denies++
  if (alone) {
    reg.breaker.failure()
    reg.reportFailure({ what: method, err })
  }
  finish(reg, started)
  return signed(reg, fallback)
}

/** A deny, naming the hook version that gave it (the denial log line says which hook denied); any other answer as it is. Made only for a deny. */
function signed<T>(reg: Registration, answer: T): T {
  const d = answer as { result?: string } | null | undefined
  return d?.result === 'deny' ? ({ ...d, hook: reg.name, hookVersion: reg.version } as T) : answer
}

function finish(reg: Registration, started: number): void {
  if (started !== 0) reg.stats.record(performance.now() - started)
  if (--reg.active === 0 && reg.retired && reg.onIdle !== undefined) {
    const idle = reg.onIdle
    reg.onIdle = undefined // once: its teardown runs once
    idle()
  }
}

/** Runs an event handler: errors and rejections are logged, nothing waits for it. A tripped hook's handlers are skipped. */
export function notify(reg: Registration, event: string, handler: (...args: unknown[]) => unknown, args: unknown[]): void {
  if (!reg.breaker.admit()) return
  if (reg.remote !== undefined) {
    reg.stats.calls++
    reg.remote.notify(reg, event, args)
    return
  }
  reg.stats.calls++
  enterHook(reg.watchId)
  try {
    const r = handler(...args, reg.eventContext)
    if (isPromise(r)) r.then(undefined, (err: unknown) => eventFailed(reg, event, err))
  } catch (err) {
    eventFailed(reg, event, err)
  } finally {
    leaveHook()
  }
}

export function eventFailed(reg: Registration, event: string, err: unknown): void {
  reg.stats.errors++
  reg.breaker.failure()
  reg.reportFailure({ what: `on.${event}`, err })
}

export interface FailureReport {
  message: string
  /** file:line:column in the hook's own source, when the stack shows it */
  at: string | undefined
  stack: string | undefined
  code: string | undefined
}

/**
 * A hook's failure as the log shows it: the message, where in the hook's .ts
 * file it happened and the stack with source positions (an error from a worker
 * arrives mapped already, with `at`).
 */
export function describeFailure(err: unknown, compiled: Compiled | undefined): FailureReport {
  try {
    const e = err instanceof Error ? (err as Error & { at?: string; code?: string }) : undefined
    const message = e ? String(e.message) : String(err)
    const code = typeof e?.code === 'string' ? e.code : undefined
    const stack = typeof e?.stack === 'string' ? e.stack : undefined
    if (e?.at !== undefined || compiled === undefined || stack === undefined) return { message, at: e?.at, stack, code }
    const pos = firstFrame(stack, compiled)
    return { message, at: pos ? where(pos) : undefined, stack: mapStack(stack, compiled), code }
  } catch {
    // hook code threw something whose message or stack throws when read (a getter, a Proxy)
    return { message: 'a value that cannot be read was thrown', at: undefined, stack: undefined, code: undefined }
  }
}
