import { memoryUsage } from 'node:process'
import { parentPort } from 'node:worker_threads'
import type { ClientInfo, Logger, PublishOptions } from '../../../core/index.js'
import { brokerModules, evaluate, firstFrame, HookLoadError, mapStack, where, withMap, type Compiled } from '../compile.js'
import type { CallContext, HookDefinition } from '../define.js'
import { configOf, parseHookConfig, runSetup, runTeardown, type SetupResult } from '../lifecycle.js'
import { checkHookModule } from '../schemas.js'
import { exitProcess, guardProcess } from './guard.js'
import { BEAT_MS } from './watchdog-beat.js'
import * as hookApi from './hook-api.js'
import { answerCode, batchTable, batchTopics, EVENT, ID, METHOD, readInput, SKIPPED, TABLE, VALUE, type AnswerBatch, type CallBatch } from './batch.js'
import { LOG_LEVELS, MEMORY_EXIT, METHODS, reviveError, WorkerFlags, type FromWorker, type HookMeta, type SerializedError, type ToWorker } from './protocol.js'
import { HookmqError } from '../../../core/errors.js'
import { isPromise } from '../../../core/hooks.js'
import { Fifo } from '../../../core/fifo.js'

// A hook's own thread. It waits for `load` (kept warm until then: a spare
// worker has this module and zod loaded already), evaluates the hook file,
// checks it and its config, and either reports what it found (preflight: then
// it is thrown away) or runs setup and serves calls (serve). Everything here is
// the hook's: process.exit and friends always throw.

const port = parentPort!
guardProcess(true)
const modules = brokerModules(hookApi)

let compiled: Compiled | undefined
let def: HookDefinition | undefined
let config: unknown
let setup: SetupResult | undefined
let flags: WorkerFlags | undefined
/** the shared memory the broker writes payloads into (copied out before hook code sees them) */
let ring: SharedArrayBuffer | undefined
/** the clients of this worker's calls, by the broker's reference */
const clients = new Map<number, ClientInfo>()
let logLevel = 30
const controllers = new Map<number, AbortController>()
const requests = new Map<number, { resolve(): void; reject(err: Error): void }>()
let requestSeq = 0

function post(m: FromWorker, transfer?: ArrayBuffer[]): void {
  port.postMessage(m, transfer)
}

port.on('message', (m: ToWorker) => {
  switch (m.t) {
    case 'load':
      return void load(m)
    case 'calls':
      return runBatch(m)
    case 'abort':
      for (const id of m.ids) controllers.get(id)?.abort(new hookApi.HookmqError('HOOK_TIMEOUT', 'the call passed its deadline'))
      return
    case 'reply': {
      const r = requests.get(m.id)
      requests.delete(m.id)
      sendWaiting()
      if (m.error) r?.reject(reviveError(m.error))
      else r?.resolve()
      return
    }
    case 'retire':
      return void retire(m.ms)
    case 'logLevel':
      logLevel = m.level
      return
  }
})

process.on('unhandledRejection', (reason) => post({ t: 'unhandled', error: serializeError(reason) }))
process.on('uncaughtException', (err) => post({ t: 'unhandled', error: serializeError(err) }))

async function load(m: Extract<ToWorker, { t: 'load' }> & { logLevel?: number }): Promise<void> {
  logLevel = m.logLevel ?? 30
  flags = m.flags ? new WorkerFlags(m.flags) : undefined
  ring = m.ring
  watchMemory(flags, m.memoryMb)
  try {
    compiled = withMap(m.compiled)
    post({ t: 'evaluating' })
    const t0 = performance.now()
    def = checkHookModule(evaluate(compiled, modules))
    const evalMs = performance.now() - t0
    if (m.mode === 'preflight') {
      parseHookConfig(def, configOf((m.config ?? {}) as Record<string, unknown>, def.name))
      post({ t: 'loaded', meta: { ...metaOf(def), evalMs } })
      return
    }
    config = parseHookConfig(def, m.config)
    const log = makeLog({ hook: def.name })
    setup = await runSetup(def, {
      name: def.name,
      config,
      log,
      publish: (msg) => request('publish', [wireMessage(msg)]),
      forward: (w, body) => request('forward', [w, body]),
    })
    post({ t: 'loaded', meta: metaOf(def) })
  } catch (err) {
    post({ t: 'failed', error: serializeError(err, true) })
  }
}

function metaOf(d: HookDefinition): HookMeta {
  return {
    name: d.name,
    order: d.order,
    timeoutMs: d.timeoutMs,
    isolation: d.isolation,
    memoryMb: d.memoryMb,
    filter: d.filter,
    rollout: d.rollout,
    methods: METHODS.filter((k) => k !== 'event' && typeof d[k] === 'function'),
    events: Object.entries(d.on ?? {})
      .filter(([, fn]) => typeof fn === 'function')
      .map(([e]) => e),
  }
}

/** One tick's calls: run each, answer the synchronous ones together at once, the asynchronous ones together as they settle. */
function runBatch(b: CallBatch): void {
  if (b.newClients !== null) for (const [ref, client] of b.newClients) clients.set(ref, client)
  if (b.forget !== null) for (const ref of b.forget) clients.delete(ref)
  const { table, region } = batchTable(b, ring, true)
  const objects = b.inputs === null ? null : new Map(b.inputs)
  const props = b.properties === null ? null : new Map(b.properties)
  const inputs = new Array<unknown>(b.count)
  const topics = batchTopics(b, table)
  for (let i = 0; i < b.count; i++)
    if (table[i * TABLE + METHOD] !== SKIPPED) inputs[i] = readInput(topics[i]!, i, table, region, clients, objects, props, b.publishers)
  if (flags) {
    flags.busySince = Date.now()
    flags.seen = b.seq // its table and payloads are copied out: the broker may write over them
  }
  const out = new Answers()
  for (let i = 0; i < b.count; i++) {
    const id = table[i * TABLE + ID]!
    const method = table[i * TABLE + METHOD]!
    if (method === SKIPPED) continue
    let result: unknown
    try {
      if (method === EVENT) {
        runEvent(inputs[i] as { event: string; args: unknown[] })
        continue
      }
      const fn = def![METHODS[method] as 'authenticate'] as unknown as (input: unknown, ctx: CallContext<unknown>) => unknown
      result = fn(inputs[i], new WorkerCall(id))
      if (isPromise(result)) {
        // (inside the try: a Proxy's `then` can throw, and that is this call's error, not the batch's)
        result.then(
          (v) => later(id, v, undefined),
          (err: unknown) => later(id, undefined, serializeError(err)),
        )
        continue
      }
    } catch (err) {
      out.error(id, serializeError(err))
      controllers.delete(id)
      continue
    }
    controllers.delete(id)
    out.value(id, result)
  }
  if (flags) flags.busySince = 0
  out.send()
}

/** Answers collected to leave in one message. */
class Answers {
  ids: number[] = []
  codes: number[] = []
  values: unknown[] = []
  errors: Array<[number, SerializedError]> | null = null

  value(id: number, v: unknown): void {
    const code = answerCode(v)
    this.ids.push(id)
    this.codes.push(code)
    if (code === VALUE) this.values.push(v)
  }

  error(id: number, e: SerializedError): void {
    ;(this.errors ??= []).push([id, e])
  }

  /** Posts them; one that cannot cross threads (a function in it, say) becomes that call's error. */
  send(): void {
    if (this.ids.length === 0 && this.errors === null) return
    const ids = new Int32Array(this.ids)
    const codes = new Uint8Array(this.codes)
    const m: AnswerBatch = { t: 'answers', ids, codes, values: this.values, errors: this.errors }
    try {
      post(m, [ids.buffer, codes.buffer])
    } catch {
      const again = new Answers()
      again.errors = this.errors
      let v = 0
      for (let i = 0; i < this.ids.length; i++) {
        const value = this.codes[i] === VALUE ? this.values[v++] : undefined
        try {
          structuredClone(value)
          again.value(this.ids[i]!, value)
        } catch (err) {
          again.error(this.ids[i]!, { message: `the answer cannot be passed to the broker: ${(err as Error).message}` })
        }
      }
      post({ t: 'answers', ids: new Int32Array(again.ids), codes: new Uint8Array(again.codes), values: again.values, errors: again.errors })
    }
  }
}

function runEvent(input: { event: string; args: unknown[] }): void {
  const handler = def!.on?.[input.event as keyof NonNullable<HookDefinition['on']>] as ((...a: unknown[]) => unknown) | undefined
  if (!handler) return
  eventCtx ??= { config, log: makeLog({ hook: def!.name }), forward: (w: string, body: unknown) => request('forward', [w, body]) }
  try {
    const r = handler(...input.args, eventCtx)
    if (isPromise(r)) {
      r.then(undefined, (err: unknown) => post({ t: 'unhandled', error: { ...serializeError(err), code: `on.${input.event}` } }))
    }
  } catch (err) {
    post({ t: 'unhandled', error: { ...serializeError(err), code: `on.${input.event}` } })
  }
}

/** the last argument of event handlers (one per worker: its hook's config, a logger, forward) */
let eventCtx: { config: unknown; log: Logger; forward(webhook: string, body: unknown): Promise<void> } | undefined

let late: Answers | null = null

function later(id: number, value: unknown, error: SerializedError | undefined): void {
  controllers.delete(id)
  if (late === null) {
    late = new Answers()
    setImmediate(flushLate)
  }
  if (error) late.error(id, error)
  else late.value(id, value)
}

function flushLate(): void {
  const a = late!
  late = null
  a.send()
}

/** The call context of one call: its signal is aborted when the broker gave up on it. */
class WorkerCall implements CallContext<unknown> {
  constructor(private readonly id: number) {}

  get config(): unknown {
    return config
  }

  get log(): Logger {
    return (callLog ??= makeLog({ hook: def!.name }))
  }

  get signal(): AbortSignal {
    let c = controllers.get(this.id)
    if (!c) controllers.set(this.id, (c = new AbortController()))
    return c.signal
  }

  forward(webhook: string, body: unknown): Promise<void> {
    return request('forward', [webhook, body])
  }
}

let callLog: Logger | undefined

/**
 * ctx.publish / ctx.forward calls sent to the broker's thread and not yet
 * answered, at most: the rest wait here, in this thread's memory (its memoryMb
 * counts them), so a loop that does not await them floods this worker, not the
 * broker.
 */
const MAX_REQUESTS_SENT = 256
const waiting = new Fifo<{ id: number; kind: 'publish' | 'forward'; args: unknown[] }>()
let sent = 0

function request(kind: 'publish' | 'forward', args: unknown[]): Promise<void> {
  const id = ++requestSeq
  return new Promise<void>((resolve, reject) => {
    requests.set(id, { resolve, reject })
    if (sent < MAX_REQUESTS_SENT) {
      sent++
      post({ t: 'req', id, kind, args })
    } else waiting.push({ id, kind, args })
  })
}

/** An answer came: the next waiting request may go. */
function sendWaiting(): void {
  sent--
  const next = waiting.shift()
  if (next === undefined) return
  sent++
  post({ t: 'req', id: next.id, kind: next.kind, args: next.args })
}

async function retire(ms: number): Promise<void> {
  for (const c of controllers.values()) c.abort(new HookmqError('HOOK_RETIRED', 'the hook version was retired'))
  if (def && setup) {
    setup.abort()
    let timer: NodeJS.Timeout | undefined
    await Promise.race([
      runTeardown(def, setup, makeLog({ hook: def.name })),
      new Promise((r) => {
        timer = setTimeout(r, ms)
      }),
    ])
    clearTimeout(timer)
  }
  post({ t: 'retired' })
}

// ---- values across the thread boundary

/** `ctx.publish`'s message with its payload as bytes. */
function wireMessage(m: PublishOptions): PublishOptions {
  if (m === null || typeof m !== 'object') return m // the broker refuses it: ctx.publish rejects
  return { ...m, payload: typeof m.payload === 'string' ? m.payload : m.payload === undefined ? undefined : (new Uint8Array(m.payload) as Buffer) }
}

function serializeError(err: unknown, load = false): SerializedError {
  if (!(err instanceof Error)) return { message: String(err) }
  const e = err as Error & { code?: unknown; file?: string; line?: number; column?: number }
  const out: SerializedError = { message: e.message, name: e.name, code: typeof e.code === 'string' ? e.code : undefined }
  if (err instanceof HookLoadError) return { ...out, file: err.file, line: err.line, column: err.column, at: err.file ? where(err) : undefined }
  if (compiled && e.stack) {
    const pos = firstFrame(e.stack, compiled)
    out.stack = mapStack(e.stack, compiled)
    if (pos) {
      out.at = where(pos)
      if (load) Object.assign(out, pos)
    }
  }
  return out
}

/**
 * What a worker's log may send the broker's thread: lines a second, and bytes
 * of one line's message (longer ones are cut). Past the lines, the rest of the
 * second is dropped and counted, and one line says so. A hook logging in a loop
 * would otherwise queue messages on the broker's thread without bound.
 */
const LOG_LINES_PER_S = 1000
const LOG_MSG_CHARS = 16384
let logWindow = 0
let logLines = 0
let logDropped = 0

/** Whether one more line may go now; says how many were dropped when a new second begins. */
function logAllowed(): boolean {
  const now = Date.now()
  if (now - logWindow >= 1000) {
    logWindow = now
    logLines = 0
    if (logDropped > 0) {
      const dropped = logDropped
      logDropped = 0
      logLines++
      post({
        t: 'log',
        level: 'warn',
        obj: { hook: def?.name, dropped },
        msg: `${dropped} log lines of this hook dropped: more than ${LOG_LINES_PER_S} a second`,
      })
    }
  }
  if (logLines >= LOG_LINES_PER_S) {
    logDropped++
    return false
  }
  logLines++
  return true
}

/** ctx.log in a worker: records go to the broker's logger, under the hook's name. */
function makeLog(bindings: Record<string, unknown>): Logger {
  const at =
    (level: string) =>
    (a?: unknown, b?: unknown, ...rest: unknown[]): void => {
      if (LOG_LEVELS[level]! < logLevel || !logAllowed()) return
      const [obj, whole] =
        typeof a === 'string' ? [undefined, [a, b, ...rest].filter((x) => x !== undefined).join(' ')] : [a, typeof b === 'string' ? b : undefined]
      const msg = whole !== undefined && whole.length > LOG_MSG_CHARS ? `${whole.slice(0, LOG_MSG_CHARS)}... (${whole.length} characters)` : whole
      const record = obj === undefined ? bindings : { ...bindings, ...(obj as object) }
      try {
        post({ t: 'log', level, obj: record, msg })
      } catch {
        post({
          t: 'log',
          level,
          obj: JSON.parse(JSON.stringify(record, (_k, v: unknown) => (v instanceof Error ? { message: v.message, stack: v.stack } : v)) as string),
          msg,
        })
      }
    }
  const log = {
    fatal: at('fatal'),
    error: at('error'),
    warn: at('warn'),
    info: at('info'),
    debug: at('debug'),
    trace: at('trace'),
    silent: () => {},
    level: Object.entries(LOG_LEVELS).find(([, n]) => n === logLevel)?.[0] ?? 'info',
    child: (more: Record<string, unknown>) => makeLog({ ...bindings, ...more }),
    isLevelEnabled: (level: string) => (LOG_LEVELS[level] ?? 0) >= logLevel,
  }
  return log as unknown as Logger
}

/**
 * One look every BEAT_MS at this thread's memory. The heap limit
 * (resourceLimits) does not count Buffers, which live outside the heap: a hook
 * keeping payloads would grow the process without bound, so heap and buffers
 * together past `memoryMb` end this worker (the broker starts another). And the
 * heartbeat the broker's memory watch reads (memory-watch.ts): quiet while this
 * thread is in synchronous code, with what it holds, so that its growth is not
 * laid at another thread's door.
 */
function watchMemory(f: WorkerFlags | undefined, memoryMb: number | undefined): void {
  if (f === undefined && memoryMb === undefined) return
  const limit = memoryMb === undefined ? Infinity : memoryMb * 1024 * 1024
  const look = (): void => {
    // this thread's own figures (rss aside); Buffers counted as allocated (arrayBuffers: V8's external count
    // lags until a collection, and a table of Buffers built at the top level would be nobody's)
    const m = memoryUsage()
    const buffers = Math.max(m.external, m.arrayBuffers)
    if (f !== undefined) {
      f.beat = Date.now()
      f.mem = m.heapTotal + buffers
    }
    const used = m.heapUsed + buffers
    if (used <= limit) return
    post({ t: 'memory', usedMb: Math.round(used / 1048576) })
    exitProcess(MEMORY_EXIT)
  }
  look()
  setInterval(look, BEAT_MS).unref()
}
