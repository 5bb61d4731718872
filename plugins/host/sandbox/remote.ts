import type { Worker } from 'node:worker_threads'
import { HookmqError, LATER, type Later, type Logger, type PublishOptions } from '../../../core/index.js'
import type { Compiled } from '../compile.js'
import { begin, fail, hookTimeout, settle, type HookMethod, type LaterReceiver, type RemoteCalls, type Registration } from '../invoke.js'
import {
  AUTHENTICATE,
  AUTHORIZE_PUBLISH,
  AUTHORIZE_SUBSCRIBE,
  BatchWriter,
  DELIVER,
  batchTable,
  EVENT,
  FALSE,
  ID,
  NULL,
  TABLE,
  TRANSFORM,
  TRUE,
  UNDEFINED,
  wireProperties,
  type AnswerBatch,
  type CallBatch,
} from './batch.js'
import { asBuffer, LOG_LEVELS, reviveError, WorkerFlags, type FromWorker, type HookMeta, type ToWorker } from './protocol.js'
import { CallQueue } from './call-queue.js'
import { linkWorker } from './worker-link.js'
import { NOT_A_MESSAGE } from '../schemas.js'

// A worker-isolated hook, seen from the broker's thread. Calls made in one tick
// leave together (batch.ts: a table and the payloads in a ring of shared
// memory); answers come back the same way. One timer watches the oldest
// call's deadline: a call past it answers its fallback at once, and when the
// worker is stuck (still in the synchronous code of that call's batch, or it
// never began it) it is terminated and replaced, every call it had answering
// its fallback. A second timer watches that the worker keeps beginning what it
// is sent (a hook with only event handlers has no deadlines). A worker that
// dies (heap limit, crash) is replaced too, with a growing pause when that
// keeps happening; meanwhile calls answer their fallbacks at once.

const CODES: Record<HookMethod, number> = {
  authenticate: AUTHENTICATE,
  authorizePublish: AUTHORIZE_PUBLISH,
  authorizeSubscribe: AUTHORIZE_SUBSCRIBE,
  transform: TRANSFORM,
  deliver: DELIVER,
}
const RETIRE_MS = 5000
const TIMER_SLACK_MS = 5

export interface RemoteOptions {
  compiled: Compiled
  /** the hook's raw config value, `hooks.<name>` */
  config: unknown
  memoryMb: number
  timeoutMs: number
  /** the longest evaluation + setup may take */
  setupMs: number
  log: Logger
  publish(m: PublishOptions): Promise<void>
  forward(webhook: string, body: unknown): Promise<void>
}

class Pending {
  constructor(
    readonly id: number,
    /** where the answer goes: a promise's resolve, or a receiver with its target */
    readonly resolve: ((v: unknown) => void) | null,
    readonly into: LaterReceiver | null,
    readonly target: unknown,
    readonly reg: Registration,
    readonly method: HookMethod,
    readonly check: (v: unknown) => unknown,
    readonly fallback: unknown,
    readonly started: number,
    readonly due: number,
    /** the batch that carries it */
    readonly batch: number,
  ) {}

  answer(v: unknown): void {
    if (this.into !== null) this.into.decided(v, this.target)
    else this.resolve!(v)
  }
}

export class RemoteHook implements RemoteCalls {
  /** times its worker was replaced */
  restarts = 0
  /** the registration its calls count for (set once installed) */
  reg: Registration | undefined = undefined
  private worker: Worker | undefined = undefined
  /** workers replaced or retired: what they still say is not heard (but for answers to their requests) */
  private readonly stale = new WeakSet<Worker>()
  private state: 'starting' | 'ready' | 'down' | 'retiring' | 'retired' = 'starting'
  private flags = new WorkerFlags()
  private readonly pending = new CallQueue<Pending>()
  private seq = 0
  private sentSeq = 0
  private readonly writer = new BatchWriter()
  private flushScheduled = false
  /** when the batch `clockBatch` began (the deadlines of its calls count from it) */
  private clock = 0
  private clockBatch = -1
  private deadline: NodeJS.Timeout | NodeJS.Immediate | undefined = undefined
  /** the deadline fired late once: the queued answers were read before expiring */
  private lateChecked = false
  private progress: NodeJS.Timeout | undefined = undefined
  private progressSeq = 0
  private recentLosses: number[] = []
  private restartTimer: NodeJS.Timeout | undefined = undefined
  private restartAt = 0
  private onRetired: (() => void) | undefined = undefined

  constructor(private readonly options: RemoteOptions) {}

  /** Where its worker is: serving (ready), loading (starting), replaced and waiting to restart (down), or gone (retiring, retired). */
  get workerState(): 'starting' | 'ready' | 'down' | 'retiring' | 'retired' {
    return this.state
  }

  /** Starts the worker: evaluate, check, parse config, setup. Throws (leaving nothing running) when that fails. */
  async start(): Promise<HookMeta> {
    try {
      return await this.link()
    } catch (err) {
      this.state = 'retired'
      throw err
    }
  }

  /** A new worker for this version: fresh flags (a dying one cannot touch them), no client known, nothing of the ring in use. */
  private async link(): Promise<HookMeta> {
    const o = this.options
    this.state = 'starting'
    this.flags = new WorkerFlags()
    this.writer.reset()
    const { worker, meta } = await linkWorker(
      {
        compiled: o.compiled,
        config: o.config,
        memoryMb: o.memoryMb,
        setupMs: o.setupMs,
        logLevel: LOG_LEVELS[o.log.level] ?? 30,
        ring: this.writer.ring.buffer,
        flags: this.flags.buffer,
      },
      {
        message: (w, m) => this.onMessage(w, m),
        lost: (w, reason) => {
          if (w === this.worker) this.lost(reason)
        },
      },
    )
    if (this.state !== 'starting') {
      // retired while it loaded
      void worker.terminate()
      throw new HookmqError('HOOK_WORKER_LOST', 'this version was retired while its worker loaded')
    }
    this.worker = worker
    this.state = 'ready'
    this.flush()
    return meta
  }

  // ---- calls

  call<T>(
    reg: Registration,
    method: HookMethod,
    input: unknown,
    check: (v: unknown) => T,
    fallback: T,
    into?: LaterReceiver,
    target?: unknown,
  ): T | Promise<T> | Later {
    const started = begin(reg)
    const refused = this.refusal(reg)
    if (refused !== undefined) return fail(reg, method, refused, fallback, started, false)
    const id = ++this.seq
    const batch = this.enqueue(id, CODES[method], input)
    if (batch === -1) {
      const err = new HookmqError('HOOK_WORKER_LOST', "the client's user cannot be passed to the hook's worker (not structured-cloneable)")
      return fail(reg, method, err, fallback, started)
    }
    // one clock read a batch: its calls are made within one tick (while the worker is ready; otherwise a read each)
    if (batch !== this.clockBatch || this.state !== 'ready') {
      this.clock = performance.now()
      this.clockBatch = batch
    }
    const due = this.clock + reg.timeoutMs
    if (into !== undefined) {
      this.wait(new Pending(id, null, into, target, reg, method, check, fallback, started, due, batch))
      return LATER
    }
    return new Promise<T>((resolve) => {
      this.wait(new Pending(id, resolve as (v: unknown) => void, null, null, reg, method, check, fallback, started, due, batch))
    })
  }

  private wait(p: Pending): void {
    this.pending.add(p.id, p)
    if (this.deadline === undefined) this.armDeadline()
  }

  /** Why a call cannot be made now (it answers its fallback at once), or undefined. */
  private refusal(reg: Registration): HookmqError | undefined {
    if (this.state === 'retiring' || this.state === 'retired') return new HookmqError('HOOK_WORKER_LOST', 'this version of the hook was retired')
    if (this.state === 'down' && this.restartAt - performance.now() > reg.timeoutMs)
      return new HookmqError('HOOK_WORKER_LOST', "the hook's worker is restarting")
    return undefined
  }

  notify(_reg: Registration, event: string, args: unknown[]): void {
    if (this.state === 'ready' || this.state === 'starting') this.enqueue(0, EVENT, { event, args: args.map(this.wire) })
  }

  /** the last message wired for an event, and its wired form: a fan-out's `delivered` events carry one message, copied once */
  private wiredFrom: unknown = undefined
  private wired: unknown = undefined

  private readonly wire = (a: unknown): unknown => {
    if (a === this.wiredFrom) return this.wired
    const w = wireArg(a)
    if (w !== a) {
      this.wiredFrom = a
      this.wired = w
    }
    return w
  }

  /** Adds a call to this tick's batch; answers the batch's sequence number (-1: its input cannot cross). */
  private enqueue(id: number, method: number, input: unknown): number {
    const seq = this.writer.add(id, method, input)
    if (seq !== -1 && !this.flushScheduled && this.state === 'ready') {
      this.flushScheduled = true
      setImmediate(flushRemote, this)
    }
    return seq
  }

  /** Sends this tick's batch. */
  flush(): void {
    this.flushScheduled = false
    if (this.state !== 'ready') return
    const batch = this.writer.take(this.flags.seen)
    if (batch === null) return
    this.sentSeq = batch.seq
    try {
      this.worker!.postMessage(batch, batch.pack ? [batch.pack] : undefined)
    } catch (err) {
      this.sendOneByOne(batch, err as Error) // something in an input cannot cross threads
    }
    this.watchProgress()
  }

  /** Sends what can cross of a batch that could not: a call whose input cannot answers its fallback. */
  private sendOneByOne(batch: CallBatch, err: Error): void {
    const bad = new Set<number>()
    for (const list of [batch.inputs, batch.properties]) {
      if (list === null) continue
      for (const entry of list) {
        try {
          structuredClone(entry[1])
        } catch {
          bad.add(entry[0])
          entry[1] = null
        }
      }
    }
    const { table } = batchTable(batch, this.writer.ring.buffer)
    for (let i = 0; i < batch.count; i++) {
      if (!bad.has(i)) continue
      this.writer.skip(batch, i)
      const p = this.pending.take(table[i * TABLE + ID]!)
      if (p === undefined) continue
      p.answer(
        fail(
          p.reg,
          p.method,
          new HookmqError('HOOK_WORKER_LOST', `the call's input cannot be passed to the hook's worker: ${err.message}`),
          p.fallback,
          p.started,
        ),
      )
    }
    try {
      this.worker!.postMessage(batch, batch.pack ? [batch.pack] : undefined)
    } catch (e) {
      this.lost(`a batch could not be sent: ${(e as Error).message}`)
    }
  }

  private onMessage(worker: Worker, m: FromWorker): void {
    if (m.t === 'req') return this.request(worker, m.id, m.kind, m.args)
    if (this.stale.has(worker)) return // a replaced worker's last words
    switch (m.t) {
      case 'answers':
        return this.answers(m)
      case 'log':
        return this.workerLog(m.level, m.obj, m.msg)
      case 'unhandled':
        return this.unhandled(reviveError(m.error))
      case 'retired':
        return void (this.state === 'retiring' && this.retired())
      case 'memory':
        return this.lost(`it used ${m.usedMb} MiB (heap and buffers), more than its memoryMb ${this.options.memoryMb}`)
      default:
    }
  }

  private answers(m: AnswerBatch): void {
    const { ids, codes, values, errors } = m
    let v = 0
    for (let i = 0; i < ids.length; i++) {
      const code = codes[i]!
      const raw = code === UNDEFINED ? undefined : code === TRUE ? true : code === FALSE ? false : code === NULL ? null : values[v++]
      const p = this.pending.take(ids[i]!)
      if (p === undefined) continue // answered already: it passed its deadline
      p.answer(settle(p.reg, p.method, p.method === 'transform' || p.method === 'deliver' ? reviveTransform(raw) : raw, p.check, p.fallback, p.started))
    }
    if (errors !== null) {
      for (const [id, e] of errors) {
        const p = this.pending.take(id)
        if (p === undefined) continue
        p.answer(fail(p.reg, p.method, reviveError(e), p.fallback, p.started))
      }
    }
    if (this.pending.size === 0) this.disarmDeadline()
  }

  // ---- deadlines and progress

  private armDeadline(): void {
    const first = this.pending.oldest()
    if (first === undefined) return
    this.deadline = setTimeout(onRemoteDeadline, Math.max(0, first.due - performance.now()), this)
  }

  private disarmDeadline(): void {
    if (this.lateChecked) clearImmediate(this.deadline as NodeJS.Immediate)
    else clearTimeout(this.deadline as NodeJS.Timeout)
    this.deadline = undefined
    this.lateChecked = false
  }

  /** The oldest calls passed their deadline: they answer their fallbacks; a stuck worker is replaced. */
  expire(): void {
    this.deadline = undefined
    // a timer fires on the event loop's millisecond clock, read when the turn began: up to a few ms behind
    // performance.now(), so a call whose deadline timer fired is taken as due with that much slack (else the
    // stuck-worker check below could replace the worker first, and its call would count as an error, not a timeout)
    const now = performance.now() + TIMER_SLACK_MS
    const first = this.pending.oldest()
    if (first !== undefined && !this.lateChecked && now - first.due > Math.max(50, this.options.timeoutMs / 4)) {
      // this thread was late (blocked, or starved): the answers may be waiting in its queue; read them first
      this.lateChecked = true
      this.deadline = setImmediate(onRemoteDeadline, this)
      return
    }
    this.lateChecked = false
    const aborted: number[] = []
    const seen = this.flags.seen
    const busySince = this.flags.busySince
    let stuck = false
    for (let p = this.pending.oldest(); p !== undefined && p.due <= now; p = this.pending.oldest()) {
      this.pending.take(p.id)
      p.reg.stats.timeouts++
      p.answer(fail(p.reg, p.method, hookTimeout(p.reg.name, p.method, p.reg.timeoutMs), p.fallback, p.started))
      aborted.push(p.id)
      // sent and never begun, or its batch is still running synchronously: the thread does not come back
      if (p.batch <= this.sentSeq && (p.batch > seen || (p.batch === seen && busySince !== 0))) stuck = true
    }
    if (this.state === 'ready' && (stuck || (busySince !== 0 && Date.now() - busySince >= this.options.timeoutMs))) {
      const ms = busySince !== 0 ? Date.now() - busySince : this.options.timeoutMs
      this.lost(`it was stuck (no answer for ${Math.round(ms)} ms: synchronous code that does not return?)`)
      return
    }
    if (aborted.length > 0 && this.state === 'ready') this.worker!.postMessage({ t: 'abort', ids: aborted } satisfies ToWorker)
    if (this.deadline === undefined) this.armDeadline()
  }

  /** Checks, a deadline after sending, that the worker has begun what it was sent then (events have no deadlines of their own). */
  private watchProgress(): void {
    if (this.progress !== undefined) return
    this.progressSeq = this.sentSeq
    this.progress = setTimeout(onRemoteProgress, this.options.timeoutMs, this)
    this.progress.unref()
  }

  checkProgress(): void {
    this.progress = undefined
    if (this.state !== 'ready') return
    if (this.pending.size > 0) {
      // calls have deadlines: expire() answers them (counted as timeouts) and finds a stuck worker; this watch is for events alone
      if (this.flags.seen < this.sentSeq) this.watchProgress()
      return
    }
    const busySince = this.flags.busySince
    if (this.flags.seen < this.progressSeq || (busySince !== 0 && Date.now() - busySince >= this.options.timeoutMs)) {
      this.lost(`it was stuck (what it was sent ${this.options.timeoutMs} ms ago is not begun: synchronous code that does not return?)`)
      return
    }
    if (this.flags.seen < this.sentSeq) this.watchProgress()
  }

  // ---- losing and replacing the worker

  /** The worker is gone: every call it had, sent or not, answers its fallback (one failure for the hook); another worker starts. */
  private lost(reason: string): void {
    if (this.state === 'retiring' || this.state === 'retired' || this.state === 'down') return
    this.endWorker()
    this.state = 'down'
    this.restarts++
    this.options.log.error({ file: this.options.compiled.file, pending: this.pending.size }, `hook worker replaced: ${reason}`)
    this.failPending(new HookmqError('HOOK_WORKER_LOST', `the hook's worker was replaced: ${reason}`))
    this.reg?.breaker.failure()
    const now = Date.now()
    this.recentLosses = this.recentLosses.filter((t) => now - t < 60000)
    this.recentLosses.push(now)
    const wait = this.recentLosses.length <= 2 ? 0 : Math.min(100 * 2 ** (this.recentLosses.length - 2), 30000)
    this.restartAt = performance.now() + wait
    this.restartTimer = setTimeout(() => this.restart(), wait)
    this.restartTimer.unref()
  }

  private restart(): void {
    if (this.state !== 'down') return
    this.link().then(
      () => this.options.log.info({ restarts: this.restarts }, 'hook worker restarted'),
      (err: Error) => {
        if (this.state !== 'starting') return // retired meanwhile
        this.options.log.error({ err }, 'hook worker could not be restarted')
        this.state = 'ready' // (so that lost() takes it for a loss)
        this.lost(err.message)
      },
    )
  }

  private endWorker(): void {
    const worker = this.worker
    this.worker = undefined
    if (worker === undefined) return
    this.stale.add(worker)
    void worker.terminate()
  }

  /** Every pending call, and what waits to be sent, answers its fallback. */
  private failPending(err: HookmqError): void {
    this.writer.discard()
    this.flushScheduled = false
    for (const p of this.pending.drain()) p.answer(fail(p.reg, p.method, err, p.fallback, p.started, false))
    this.disarmDeadline()
    clearTimeout(this.progress)
    this.progress = undefined
  }

  /** The broker's log level changed: the worker's ctx.log drops what the broker would (a worker started later reads it at start). */
  logLevelChanged(): void {
    if (this.state === 'ready') this.worker!.postMessage({ t: 'logLevel', level: LOG_LEVELS[this.options.log.level] ?? 30 } satisfies ToWorker)
  }

  // ---- from the worker

  private workerLog(level: string, obj: unknown, msg: string | undefined): void {
    const log = this.options.log as unknown as Record<string, (o: unknown, m?: string) => void>
    log[level]?.call(this.options.log, obj ?? {}, msg)
  }

  /** ctx.publish / ctx.forward from the worker (also during setup and teardown): the answer goes back to the worker that asked. */
  private request(worker: Worker, id: number, kind: 'publish' | 'forward', args: unknown[]): void {
    const o = this.options
    const reply = (err?: Error): void => {
      try {
        worker.postMessage({ t: 'reply', id, error: err ? { message: err.message, code: (err as { code?: string }).code } : undefined } satisfies ToWorker)
      } catch {
        // that worker is gone
      }
    }
    // in a promise: whatever the worker sent, a throw becomes its error, never the broker's
    Promise.resolve()
      .then(() => (kind === 'publish' ? o.publish(revivePublish(args[0])) : o.forward(String(args[0]), args[1])))
      .then(() => reply(), reply)
  }

  /** A rejection nobody handled, or a throw outside a call, in the hook's worker: the hook's error. */
  private unhandled(err: Error & { code?: string }): void {
    const reg = this.reg
    if (reg === undefined) return
    reg.stats.errors++
    reg.breaker.failure()
    reg.reportFailure({ what: err.code?.startsWith('on.') ? err.code : 'unhandled rejection', err })
  }

  // ---- retiring

  /** Runs the version's teardown in its worker (the host retires it once its calls have answered), then ends the worker. */
  retire(): Promise<void> {
    if (this.state === 'retired') return Promise.resolve()
    clearTimeout(this.restartTimer)
    const worker = this.worker
    if (worker === undefined || this.state !== 'ready') {
      this.retired()
      return Promise.resolve()
    }
    this.state = 'retiring'
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => this.retired(), RETIRE_MS + 1000)
      this.onRetired = () => {
        clearTimeout(timer)
        resolve()
      }
      worker.postMessage({ t: 'retire', ms: RETIRE_MS } satisfies ToWorker)
    })
  }

  private retired(): void {
    if (this.state === 'retired') return
    this.state = 'retired'
    this.failPending(new HookmqError('HOOK_WORKER_LOST', 'this version of the hook was retired'))
    this.endWorker()
    this.onRetired?.()
  }
}

function flushRemote(r: RemoteHook): void {
  r.flush()
}

function onRemoteDeadline(r: RemoteHook): void {
  r.expire()
}

function onRemoteProgress(r: RemoteHook): void {
  r.checkProgress()
}

/** An event argument as it crosses: a message without the broker's own bookkeeping. */
function wireArg(a: unknown): unknown {
  if (a === null || typeof a !== 'object') return a
  const m = a as Record<string, unknown>
  if (!Buffer.isBuffer(m.payload)) return a
  return {
    topic: m.topic,
    payload: new Uint8Array(m.payload),
    qos: m.qos,
    retain: m.retain,
    properties: m.properties === undefined ? undefined : wireProperties(m.properties as Record<string, unknown>),
    origin: m.origin,
  }
}

function reviveTransform(v: unknown): unknown {
  if (v === null || typeof v !== 'object') return v
  const patch = v as Record<string, unknown>
  if (patch.payload !== undefined) patch.payload = asBuffer(patch.payload)
  return patch
}

/** ctx.publish's message from a worker: a topic is checked by broker.publish, bytes become a Buffer. */
function revivePublish(m: unknown): PublishOptions {
  if (m === null || typeof m !== 'object') throw new HookmqError('TOPIC_NAME_INVALID', NOT_A_MESSAGE)
  const o = m as PublishOptions
  return { ...o, payload: typeof o.payload === 'string' || o.payload === undefined ? o.payload : (asBuffer(o.payload) as Buffer) }
}
