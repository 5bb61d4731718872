import { isPromise, type Logger } from '../core/index.js'
import type { CallContext, HookDefinition } from './define.js'

// The one choke point for user code: every hook call goes through invoke(),
// which catches throws and rejections, applies the deadline (aborting the
// call's signal), ignores a late answer, checks the answer and, on any failure,
// answers the caller's fallback: a deny for decisions (fail closed), the
// original message for transforms (fail open), nothing for events.

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
    const k = Math.min(this.n, SAMPLES)
    if (k === 0) return 0
    const sorted = Array.from(this.durations.subarray(0, k)).sort((a, b) => a - b)
    return sorted[Math.min(k - 1, Math.ceil(k * 0.99) - 1)]!
  }
}

/** One loaded version of one hook. */
export interface Registration {
  readonly name: string
  readonly file: string | undefined
  readonly version: number
  readonly loadedAt: number
  readonly def: HookDefinition
  readonly config: unknown
  readonly timeoutMs: number
  readonly log: Logger
  readonly stats: HookStats
  /** the last argument of event handlers */
  readonly eventContext: { config: unknown; log: Logger; forward(webhook: string, body: unknown): Promise<void> }
  readonly forward: (webhook: string, body: unknown) => Promise<void>
  /** calls running now; a retired version tears down when this reaches 0 */
  active: number
  /** a call context to reuse (see callFor) */
  spare: unknown
  retired: boolean
  onIdle: (() => void) | undefined
}

export type HookMethod = 'authenticate' | 'authorizePublish' | 'authorizeSubscribe' | 'transform'

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

export class HookTimeout extends Error {
  constructor(name: string, method: string, ms: number) {
    super(`hook "${name}" ${method} did not answer within ${ms} ms`)
  }
}

/**
 * Calls `reg.def[method](input)`. `check` turns the raw answer into the typed
 * one (throwing when invalid); `fallback` is what a failure answers.
 */
export function invoke<T>(reg: Registration, method: HookMethod, input: unknown, check: (v: unknown) => T, fallback: T): T | Promise<T> {
  const fn = reg.def[method] as (input: unknown, ctx: CallContext<unknown>) => unknown
  const call = callFor(reg)
  // durations are sampled (1 call in 8): two clock reads per call cost more than the hooks they time
  const started = (reg.stats.calls++ & 7) === 0 ? performance.now() : 0
  reg.active++
  let out: unknown
  try {
    out = fn(input, call)
  } catch (err) {
    return fail(reg, method, err, fallback, started)
  }
  if (!isPromise(out)) return settle(reg, method, out, check, fallback, started)
  return new Promise<T>((resolve) => {
    let done = false
    const timer = setTimeout(() => {
      if (done) return
      done = true
      const err = new HookTimeout(reg.name, method, reg.timeoutMs)
      reg.stats.timeouts++
      call.abort(err)
      resolve(fail(reg, method, err, fallback, started))
    }, reg.timeoutMs)
    out.then((v) => {
      if (done) return // a late answer after the deadline is ignored
      done = true
      clearTimeout(timer)
      resolve(settle(reg, method, v, check, fallback, started))
    }, (err: unknown) => {
      if (done) return
      done = true
      clearTimeout(timer)
      resolve(fail(reg, method, err, fallback, started))
    })
  })
}

function settle<T>(reg: Registration, method: HookMethod, raw: unknown, check: (v: unknown) => T, fallback: T, started: number): T {
  let value: T
  try {
    value = check(raw)
  } catch (err) {
    return fail(reg, method, err, fallback, started)
  }
  if ((value as { result?: string } | null)?.result === 'deny') reg.stats.denies++
  finish(reg, started)
  return value
}

function fail<T>(reg: Registration, method: HookMethod, err: unknown, fallback: T, started: number): T {
  reg.stats.errors++
  if ((fallback as { result?: string } | null)?.result === 'deny') reg.stats.denies++
  reg.log.error({ err, hook: reg.name, method, file: reg.file }, `hook ${method} failed`)
  finish(reg, started)
  return fallback
}

function finish(reg: Registration, started: number): void {
  if (started !== 0) reg.stats.record(performance.now() - started)
  if (--reg.active === 0 && reg.retired) reg.onIdle?.()
}

/** Runs an event handler: errors and rejections are logged, nothing waits for it. */
export function notify(reg: Registration, event: string, handler: (...args: unknown[]) => unknown, args: unknown[]): void {
  reg.stats.calls++
  try {
    const r = handler(...args, reg.eventContext)
    if (isPromise(r)) r.then(undefined, (err: unknown) => eventFailed(reg, event, err))
  } catch (err) {
    eventFailed(reg, event, err)
  }
}

function eventFailed(reg: Registration, event: string, err: unknown): void {
  reg.stats.errors++
  reg.log.error({ err, hook: reg.name, event, file: reg.file }, 'hook event handler failed')
}
