import type { ClientInfo, DecisionReceiver, DeliveryReceiver, DeliverySlot, Later, Message, QoS } from '../../core/index.js'
import { isPromise, LATER, matchesFilter, TopicMemo } from '../../core/index.js'
import type { DeliverInput, TransformInput } from './define.js'
import { invoke, notify, type HookMethod, type Registration } from './invoke.js'
import { PASS, type TransformPatch } from './schemas.js'
import { applyPatch } from './lifecycle.js'

// The runners, one per composition rule: decisions (the first answer that is
// not "pass" wins), transforms (each gets the previous output), notifications
// (all run, none can block). Each call goes through invoke/notify, the one
// choke point for user code.

/** A registration as the runners see it: with its compiled `filter.topics` (null: every topic). */
export interface Runnable extends Registration {
  readonly filter: ((topic: string) => boolean) | null
  /** the version that replaced this one (a chain that began before the reload goes on with it) */
  successor: Runnable | undefined
}

/**
 * The version of `e` that serves now. A chain of hooks began on the list of its
 * moment; a hook reloaded (or removed) since is called in its new version (or
 * skipped), never in the retired one, whose teardown may have run.
 */
function serving(e: Runnable, method: string): Runnable | undefined {
  if (!e.retired) return e // the per-method lists hold only entries with that method: nothing to check
  do {
    if (e.successor === undefined) return undefined
    e = e.successor
  } while (e.retired)
  return typeof e.def[method as HookMethod] === 'function' ? e : undefined // a new version may have dropped the method
}

/**
 * The first answer that is not "pass" among `list` (hooks whose filter does not
 * match `topic` skipped), or PASS. Synchronous while every hook answers
 * synchronously. `into`: the last hook to ask may give its answer to it later
 * (a worker-isolated one does: the answer is LATER) instead of in a promise.
 */
export function firstDecision<D extends { result: string }>(
  list: Runnable[],
  method: HookMethod,
  input: unknown,
  check: (v: unknown) => D,
  fallback: D,
  topic: string | undefined,
): D | Promise<D>
export function firstDecision<D extends { result: string }>(
  list: Runnable[],
  method: HookMethod,
  input: unknown,
  check: (v: unknown) => D,
  fallback: D,
  topic: string | undefined,
  into: DecisionReceiver | undefined,
  message: Message,
): D | Promise<D> | Later
export function firstDecision<D extends { result: string }>(
  list: Runnable[],
  method: HookMethod,
  input: unknown,
  check: (v: unknown) => D,
  fallback: D,
  topic: string | undefined,
  into?: DecisionReceiver,
  message?: Message,
): D | Promise<D> | Later {
  return decideFrom(list, 0, method, input, check, fallback, topic, into, message)
}

function decideFrom<D extends { result: string }>(
  list: Runnable[],
  from: number,
  method: HookMethod,
  input: unknown,
  check: (v: unknown) => D,
  fallback: D,
  topic: string | undefined,
  into: DecisionReceiver | undefined,
  message: Message | undefined,
): D | Promise<D> | Later {
  for (let i = from; i < list.length; i++) {
    const entry = serving(list[i]!, method)
    if (entry === undefined || (topic !== undefined && entry.filter !== null && !entry.filter(topic))) continue
    const last = !hasLater(list, i, topic)
    // traced: the answer comes back here (not straight to `into`), to be reported with its time
    const traced = entry.tracer?.active === true
    const started = traced ? performance.now() : 0
    let d = invoke(entry, method, input, check, fallback, last && !traced ? into : undefined, message)
    if (traced && d !== LATER) d = traceDecision(entry, method, input, d, topic, started)
    if (d === LATER) return d // its answer, pass or not, is the answer
    if (isPromise(d)) {
      if (last) return d // its answer, pass or not, is the answer: no promise on top
      return d.then((r) => (r.result === 'pass' ? (decideFrom(list, i + 1, method, input, check, fallback, topic, undefined, undefined) as D | Promise<D>) : r))
    }
    if (d.result !== 'pass') return d
  }
  return PASS as D
}

/** Reports a decision (now, or when its promise settles) to the entry's tracer; answers it unchanged. */
function traceDecision<D extends { result: string }>(
  entry: Runnable,
  method: HookMethod,
  input: unknown,
  d: D | Promise<D>,
  topic: string | undefined,
  started: number,
): D | Promise<D> {
  const i = input as { client?: ClientInfo; filter?: string }
  const report = (r: D): D => {
    const reason = (r as { reasonCode?: number }).reasonCode
    const answer = r.result + (reason !== undefined ? ` 0x${reason.toString(16)}` : '')
    entry.tracer!.decision(i.client, method, entry.name, entry.version, answer, performance.now() - started, topic ?? i.filter)
    return r
  }
  return isPromise(d) ? d.then(report) : report(d)
}

/** What a publish or transform hook is given of `message` (one shape for every caller). */
export function messageInput<C extends ClientInfo | undefined>(
  client: C,
  message: Message,
): { client: C; topic: string; payload: Buffer; qos: Message['qos']; retain: boolean; properties: Message['properties'] } {
  return { client, topic: message.topic, payload: message.payload, qos: message.qos, retain: message.retain, properties: message.properties }
}

/** Checks a transform's answer (schemas.ts makeTransformCheck): null = drop, undefined = unchanged; throws when invalid. */
export type TransformCheck = (v: unknown) => TransformPatch | null | undefined

/** `message` through every transform of `list` from `from` on, each given the previous output, each answer checked by `check`; null: dropped. Fails open. */
export function chainTransforms(
  list: Runnable[],
  client: ClientInfo | undefined,
  message: Message,
  check: TransformCheck,
  from = 0,
): Message | null | Promise<Message | null> {
  let current = message
  for (let i = from; i < list.length; i++) {
    const entry = serving(list[i]!, 'transform')
    if (entry === undefined || (entry.filter !== null && !entry.filter(current.topic))) continue
    const input: TransformInput = messageInput(client, current)
    const started = entry.tracer?.active === true ? performance.now() : 0
    let patch = invoke<TransformPatch | null | undefined>(entry, 'transform', input, check, undefined) // fails open
    if (started !== 0) patch = traceTransform(entry, client, current.topic, patch, started)
    if (isPromise(patch)) {
      const base = current
      return patch.then((p) => (p === null ? null : chainTransforms(list, client, p === undefined ? base : applyPatch(base, p), check, i + 1)))
    }
    if (patch === null) return null
    if (patch !== undefined) current = applyPatch(current, patch)
  }
  return current
}

/**
 * `message` as subscriber `client` gets it at `qos`/`retain`: through every
 * deliver hook of `list` whose filter matches, each given the previous output;
 * null: skipped. The shared message is never changed: a change makes a copy.
 * Fails open (a failed hook leaves the message as it was). `slot`: when the
 * last hook to ask runs in a worker (and none changed the message before it),
 * its answer goes to the receiver the slot makes (LATER), not into a promise.
 */
export function chainDeliver(
  list: Runnable[],
  client: ClientInfo,
  message: Message,
  qos: QoS,
  retain: boolean,
  check: TransformCheck,
  slot: DeliverySlot | undefined,
  from = 0,
): Message | null | Promise<Message | null> | Later {
  let current = message
  for (let i = from; i < list.length; i++) {
    const entry = serving(list[i]!, 'deliver')
    if (entry === undefined || (entry.filter !== null && !entry.filter(current.topic))) continue
    const input: DeliverInput = {
      client,
      topic: current.topic,
      payload: current.payload,
      qos,
      retain,
      properties: current.properties,
      publisher: message.origin,
    }
    if (slot !== undefined && entry.remote !== undefined && current === message && !hasLater(list, i, current.topic)) {
      const receiver = slot.later()
      const patch = invoke<TransformPatch | null | undefined>(entry, 'deliver', input, check, undefined, TO_RECEIVER, receiver)
      if (patch !== LATER) TO_RECEIVER.decided(patch, receiver) // (answered at once: a tripped hook, a worker restarting)
      return LATER
    }
    const patch = invoke<TransformPatch | null | undefined>(entry, 'deliver', input, check, undefined) // fails open
    if (isPromise(patch)) {
      const base = current
      return patch.then((p) =>
        p === null ? null : (chainDeliver(list, client, p === undefined ? base : applyPatch(base, p), qos, retain, check, undefined, i + 1) as Message | null),
      )
    }
    if (patch === null) return null
    if (patch !== undefined) current = applyPatch(current, patch)
  }
  return current
}

/** A worker's deliver answer, given later, to the core's receiver of it: the message to send, a copy when changed, or null. */
const TO_RECEIVER = {
  decided(patch: unknown, receiver: unknown): void {
    const r = receiver as DeliveryReceiver
    const p = patch as TransformPatch | null | undefined
    r.delivered(p === null ? null : p === undefined ? r.message : applyPatch(r.message, p))
  },
}

function traceTransform(
  entry: Runnable,
  client: ClientInfo | undefined,
  topic: string,
  patch: TransformPatch | null | undefined | Promise<TransformPatch | null | undefined>,
  started: number,
): typeof patch {
  const report = (p: TransformPatch | null | undefined): TransformPatch | null | undefined => {
    const answer = p === null ? 'drop' : p === undefined ? 'unchanged' : `changed ${Object.keys(p).join(',')}`
    entry.tracer!.decision(client, 'transform', entry.name, entry.version, answer, performance.now() - started, topic)
    return p
  }
  return isPromise(patch) ? patch.then(report) : report(patch)
}

/** Runs every `on.<event>` handler of `list`; none can block or break another. */
export function notifyAll(list: readonly Registration[], event: string, args: unknown[]): void {
  for (const e of list) {
    const h = e.def.on?.[event as keyof NonNullable<typeof e.def.on>] as ((...a: unknown[]) => unknown) | undefined
    if (h) notify(e, event, h, args)
  }
}

/** A hook's `filter.topics` as one test, its answers cached per topic (bounded). */
export function compileFilter(topics: string[] | undefined): ((topic: string) => boolean) | null {
  if (!topics) return null
  const cache = new TopicMemo<boolean>((topic) => topics.some((f) => matchesFilter(f, topic)))
  return (topic) => cache.get(topic)
}

/** True when a hook after `i` in `list` applies to `topic` (undefined: every hook applies). */
function hasLater(list: Runnable[], i: number, topic: string | undefined): boolean {
  for (let j = i + 1; j < list.length; j++) {
    const f = list[j]!.filter
    if (topic === undefined || f === null || f(topic)) return true
  }
  return false
}
