import type { Worker } from 'node:worker_threads'
import { HookmqError, type Logger, type PublishOptions } from '../../core/index.js'
import type { Compiled } from '../compile.js'
import { begin, fail, hookTimeout, settle, type HookMethod, type RemoteCalls, type Registration } from '../invoke.js'
import { BOOT_MS, compiledData, loadError, takeWorker, workerFailure } from './pool.js'
import { AUTHENTICATE, AUTHORIZE_PUBLISH, AUTHORIZE_SUBSCRIBE, BatchWriter, batchTable, CLIENT, EVENT, FALSE, ID, NULL, TABLE, TRANSFORM, TRUE, UNDEFINED, type AnswerBatch, type CallBatch } from './batch.js'
import { asBuffer, BATCH_SEEN, BUSY_SINCE, reviveError, type FromWorker, type HookMeta, type ToWorker } from './protocol.js'

// A worker-isolated hook, seen from the broker's thread. Calls made in one tick
// leave together (one message, payloads packed into one transferred buffer);
// answers come back the same way. One timer watches the oldest call's
// deadline: a call past it answers its fallback at once, and when the worker
// is stuck (synchronous code since before that deadline, or it never began the
// batch) it is terminated and replaced, its other calls answering their
// fallbacks. A worker that dies (heap limit, crash) is replaced too, with a
// growing pause when that keeps happening.

const CODES: Record<HookMethod, number> = { authenticate: AUTHENTICATE, authorizePublish: AUTHORIZE_PUBLISH, authorizeSubscribe: AUTHORIZE_SUBSCRIBE, transform: TRANSFORM }
const RETIRE_MS = 5000

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

interface Pending {
  resolve(v: unknown): void
  reg: Registration
  method: HookMethod
  check(v: unknown): unknown
  fallback: unknown
  started: number
  due: number
  /** the batch that carried it (0: not sent yet) */
  batch: number
}


const LOG_LEVELS: Record<string, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60, silent: 100 }

export class RemoteHook implements RemoteCalls {
  /** times its worker was replaced */
  restarts = 0
  lastLoss: string | undefined = undefined
  meta: HookMeta | undefined = undefined
  /** the registration its calls count for (set once installed) */
  reg: Registration | undefined = undefined
  private worker: Worker | undefined = undefined
  private state: 'starting' | 'ready' | 'down' | 'retiring' | 'retired' = 'starting'
  private readonly shared = new SharedArrayBuffer(16)
  private readonly flags = new Float64Array(this.shared)
  private readonly pending = new Map<number, Pending>()
  private seq = 0
  private sentSeq = 0
  private readonly writer = new BatchWriter()
  private flushScheduled = false
  private deadline: NodeJS.Timeout | undefined = undefined
  /** the deadline fired late once: the queued answers were read before expiring */
  private lateChecked = false
  private recentLosses: number[] = []
  private restartTimer: NodeJS.Timeout | undefined = undefined
  private onRetired: (() => void) | undefined = undefined

  constructor(private readonly options: RemoteOptions) {}

  /** Starts the worker: evaluate, check, parse config, setup. Throws a HookLoadError when that fails. */
  start(): Promise<HookMeta> {
    return new Promise<HookMeta>((resolve, reject) => this.spawn(resolve, reject))
  }

  private spawn(resolve: (m: HookMeta) => void, reject: (e: Error) => void): void {
    const o = this.options
    const worker = takeWorker(o.memoryMb)
    this.worker = worker
    this.state = 'starting'
    this.flags[BUSY_SINCE] = 0
    this.flags[BATCH_SEEN] = 0
    let loading = true
    const expire = (): void => {
      if (!loading) return
      loading = false
      void worker.terminate()
      reject(new HookmqError('HOOK_TIMEOUT', `evaluating the file and running setup did not finish within ${o.setupMs} ms`))
    }
    let timer = setTimeout(expire, o.setupMs + BOOT_MS) // until it starts evaluating: its boot
    worker.on('message', (m: FromWorker) => {
      if (loading && m.t === 'evaluating') {
        clearTimeout(timer)
        timer = setTimeout(expire, o.setupMs)
        return
      }
      if (loading && (m.t === 'loaded' || m.t === 'failed')) {
        loading = false
        clearTimeout(timer)
        if (m.t === 'failed') {
          void worker.terminate()
          reject(loadError(m.error, o.compiled.file))
          return
        }
        this.meta = m.meta
        this.state = 'ready'
        resolve(m.meta)
        this.flush()
        return
      }
      this.onMessage(worker, m)
    })
    worker.on('error', (err) => {
      if (loading) {
        loading = false
        clearTimeout(timer)
        reject(new HookmqError('HOOK_WORKER_LOST', `its worker stopped while loading: ${workerFailure(err)}`))
        return
      }
      if (this.worker === worker) this.lost(workerFailure(err))
    })
    worker.on('exit', (code) => {
      if (loading) {
        loading = false
        clearTimeout(timer)
        reject(new HookmqError('HOOK_WORKER_LOST', `its worker exited while loading (code ${code})`))
        return
      }
      if (this.worker === worker && this.state !== 'retiring' && this.state !== 'retired') this.lost(`its worker exited (code ${code})`)
      if (this.state === 'retiring') this.retired()
    })
    const level = LOG_LEVELS[o.log.level] ?? 30
    worker.postMessage({ t: 'load', mode: 'serve', compiled: compiledData(o.compiled), config: o.config, setupMs: o.setupMs, shared: this.shared, ring: this.writer.ring.buffer, logLevel: level, memoryMb: o.memoryMb } satisfies ToWorker)
  }

  // ---- calls

  call<T>(reg: Registration, method: HookMethod, input: unknown, check: (v: unknown) => T, fallback: T): Promise<T> {
    const started = begin(reg)
    return new Promise<T>((resolve) => {
      const id = ++this.seq
      const due = performance.now() + reg.timeoutMs
      const batch = this.enqueue(id, CODES[method], input)
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reg, method, check, fallback, started, due, batch })
      if (this.deadline === undefined) this.armDeadline()
    })
  }

  notify(_reg: Registration, event: string, args: unknown[]): void {
    this.enqueue(0, EVENT, { event, args: args.map(wireArg) })
  }

  /** Adds a call to this tick's batch; answers the batch's sequence number. */
  private enqueue(id: number, method: number, input: unknown): number {
    const seq = this.writer.add(id, method, input)
    if (!this.flushScheduled && this.state === 'ready') {
      this.flushScheduled = true
      setImmediate(flushRemote, this)
    }
    return seq
  }

  /** Sends this tick's batch. */
  flush(): void {
    this.flushScheduled = false
    if (this.state !== 'ready') return
    const batch = this.writer.take(this.flags[BATCH_SEEN]!)
    if (batch === null) return
    this.sentSeq = batch.seq
    try {
      this.worker!.postMessage(batch, batch.pack ? [batch.pack] : undefined)
    } catch (err) {
      this.sendOneByOne(batch, err as Error) // something in an input cannot cross threads
    }
  }

  /** Sends what can cross of a batch that could not: a call whose input (or client) cannot answers its fallback. */
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
    const badClients = new Set<number>()
    if (batch.newClients !== null) {
      for (const entry of batch.newClients) {
        try {
          structuredClone(entry[1])
        } catch {
          badClients.add(entry[0])
          entry[1] = { ...entry[1], user: undefined }
        }
      }
    }
    const { table } = batchTable(batch, this.writer.ring.buffer)
    for (let i = 0; i < batch.count; i++) {
      if (!bad.has(i) && !badClients.has(table[i * TABLE + CLIENT]!)) continue
      this.writer.skip(batch, i)
      const p = this.pending.get(table[i * TABLE + ID]!)
      if (p === undefined) continue
      this.pending.delete(table[i * TABLE + ID]!)
      p.resolve(fail(p.reg, p.method, new HookmqError('HOOK_WORKER_LOST', `the call's input cannot be passed to the hook's worker: ${err.message}`), p.fallback, p.started))
    }
    try {
      this.worker!.postMessage(batch, batch.pack ? [batch.pack] : undefined)
    } catch (e) {
      this.lost(`a batch could not be sent: ${(e as Error).message}`)
    }
  }

  private onMessage(worker: Worker, m: FromWorker): void {
    if (worker !== this.worker && m.t !== 'req') return // a replaced worker's last words
    switch (m.t) {
      case 'answers': return this.answers(m)
      case 'log': return this.workerLog(m.level, m.obj, m.msg)
      case 'req': return this.request(worker, m.id, m.kind, m.args)
      case 'unhandled': return this.unhandled(reviveError(m.error))
      case 'retired': return this.retired()
      case 'memory': return this.lost(`it used ${m.usedMb} MiB (heap and buffers), more than its memoryMb ${this.options.memoryMb}`)
      default:
    }
  }

  private answers(m: AnswerBatch): void {
    const { ids, codes, values, errors } = m
    let v = 0
    for (let i = 0; i < ids.length; i++) {
      const code = codes[i]!
      const raw = code === UNDEFINED ? undefined : code === TRUE ? true : code === FALSE ? false : code === NULL ? null : values[v++]
      const p = this.pending.get(ids[i]!)
      if (p === undefined) continue // answered already: it passed its deadline
      this.pending.delete(ids[i]!)
      p.resolve(settle(p.reg, p.method, p.method === 'transform' ? reviveTransform(raw) : raw, p.check, p.fallback, p.started))
    }
    if (errors !== null) {
      for (const [id, e] of errors) {
        const p = this.pending.get(id)
        if (p === undefined) continue
        this.pending.delete(id)
        p.resolve(fail(p.reg, p.method, reviveError(e), p.fallback, p.started))
      }
    }
    if (this.pending.size === 0) this.disarmDeadline()
  }

  // ---- deadlines

  private armDeadline(): void {
    const first = this.pending.values().next()
    if (first.done) return
    this.deadline = setTimeout(onRemoteDeadline, Math.max(0, first.value.due - performance.now()), this)
  }

  private disarmDeadline(): void {
    if (this.lateChecked) clearImmediate(this.deadline as unknown as NodeJS.Immediate)
    else clearTimeout(this.deadline)
    this.deadline = undefined
    this.lateChecked = false
  }

  /** The oldest calls passed their deadline: they answer their fallbacks; a stuck worker is replaced. */
  expire(): void {
    this.deadline = undefined
    const now = performance.now()
    const first = this.pending.values().next()
    if (!first.done && !this.lateChecked && now - first.value.due > Math.max(50, this.options.timeoutMs / 4)) {
      // this thread was late (blocked, or starved): the answers may be waiting in its queue; read them first
      this.lateChecked = true
      this.deadline = setImmediate(onRemoteDeadline, this) as unknown as NodeJS.Timeout
      return
    }
    this.lateChecked = false
    const aborted: number[] = []
    const seen = this.flags[BATCH_SEEN]!
    const busySince = this.flags[BUSY_SINCE]!
    let stuck = false
    for (const [id, p] of this.pending) {
      if (p.due > now) break
      this.pending.delete(id)
      p.reg.stats.timeouts++
      p.resolve(fail(p.reg, p.method, hookTimeout(p.reg.name, p.method, p.reg.timeoutMs), p.fallback, p.started))
      aborted.push(id)
      // sent and never begun, or its batch is still running synchronously: the thread does not come back
      if (p.batch <= this.sentSeq && (p.batch > seen || (p.batch === seen && busySince !== 0))) stuck = true
    }
    const timeoutMs = this.options.timeoutMs
    if (this.state === 'ready' && (stuck || (busySince !== 0 && Date.now() - busySince >= timeoutMs))) {
      const ms = busySince !== 0 ? Date.now() - busySince : timeoutMs
      this.lost(`it was stuck (no answer for ${Math.round(ms)} ms: synchronous code that does not return?)`)
    } else if (aborted.length > 0 && this.state === 'ready') {
      this.worker!.postMessage({ t: 'abort', ids: aborted } satisfies ToWorker)
    }
    if (this.deadline === undefined) this.armDeadline()
  }

  // ---- losing and replacing the worker


  /** The worker is gone: the calls it had answer their fallbacks (one failure for the hook), calls not sent yet go to the next worker. */
  private lost(reason: string): void {
    if (this.state === 'retiring' || this.state === 'retired') return
    const worker = this.worker
    this.worker = undefined // its exit, when it comes, is not another loss
    void worker?.terminate()
    this.state = 'down'
    this.writer.reset() // the next worker knows no client and holds no shared memory
    this.restarts++
    this.lastLoss = reason
    this.options.log.error({ file: this.options.compiled.file, pending: this.pending.size }, `hook worker replaced: ${reason}`)
    const err = new HookmqError('HOOK_WORKER_LOST', `the hook's worker was replaced: ${reason}`)
    const unsent = this.writer.batch?.seq
    for (const [id, p] of this.pending) {
      if (p.batch === unsent) continue
      this.pending.delete(id)
      p.resolve(fail(p.reg, p.method, err, p.fallback, p.started, false))
    }
    this.reg?.breaker.failure()
    if (this.pending.size === 0) this.disarmDeadline()
    const now = Date.now()
    this.recentLosses = this.recentLosses.filter((t) => now - t < 60000)
    this.recentLosses.push(now)
    const wait = this.recentLosses.length <= 2 ? 0 : Math.min(100 * 2 ** (this.recentLosses.length - 2), 30000)
    this.restartTimer = setTimeout(() => this.restart(), wait)
    this.restartTimer.unref()
  }

  private restart(): void {
    if (this.state !== 'down') return
    this.spawn(() => this.options.log.info({ hook: this.reg?.name, restarts: this.restarts }, 'hook worker restarted'), (err) => {
      this.options.log.error({ err, hook: this.reg?.name }, 'hook worker could not be restarted')
      this.lost(err.message)
    })
  }

  // ---- from the worker

  private workerLog(level: string, obj: unknown, msg: string | undefined): void {
    const log = this.options.log as unknown as Record<string, (o: unknown, m?: string) => void>
    log[level]?.call(this.options.log, obj ?? {}, msg)
  }

  /** ctx.publish / ctx.forward from the worker (also during setup and teardown): the answer goes back to the worker that asked. */
  private request(worker: Worker, id: number, kind: 'publish' | 'forward', args: unknown[]): void {
    const o = this.options
    const p = kind === 'publish' ? o.publish(revivePublish(args[0] as PublishOptions)) : o.forward(args[0] as string, args[1])
    const reply = (err?: Error): void => {
      try {
        worker.postMessage({ t: 'reply', id, error: err ? { message: err.message, code: (err as { code?: string }).code } : undefined } satisfies ToWorker)
      } catch {
        // that worker is gone
      }
    }
    p.then(() => reply(), reply)
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

  /** Runs the version's teardown in its worker (after its calls have answered), then ends the worker. */
  retire(): Promise<void> {
    if (this.state === 'retired') return Promise.resolve()
    clearTimeout(this.restartTimer)
    const worker = this.worker
    if (worker === undefined || this.state !== 'ready') {
      this.state = 'retired'
      void worker?.terminate()
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
    this.disarmDeadline()
    void this.worker?.terminate()
    this.onRetired?.()
  }
}

function flushRemote(r: RemoteHook): void {
  r.flush()
}

function onRemoteDeadline(r: RemoteHook): void {
  r.expire()
}

function wireProperties(p: Record<string, unknown>): Record<string, unknown> {
  if (!Buffer.isBuffer(p.correlationData)) return p
  return { ...p, correlationData: new Uint8Array(p.correlationData) }
}

/** An event argument as it crosses: a message without the broker's own bookkeeping. */
function wireArg(a: unknown): unknown {
  if (a === null || typeof a !== 'object') return a
  const m = a as Record<string, unknown>
  if (!Buffer.isBuffer(m.payload)) return a
  return { topic: m.topic, payload: new Uint8Array(m.payload), qos: m.qos, retain: m.retain, properties: m.properties === undefined ? undefined : wireProperties(m.properties as Record<string, unknown>), origin: m.origin }
}

function reviveTransform(v: unknown): unknown {
  if (v === null || typeof v !== 'object') return v
  const patch = v as Record<string, unknown>
  if (patch.payload !== undefined) patch.payload = asBuffer(patch.payload)
  return patch
}

function revivePublish(m: PublishOptions): PublishOptions {
  return { ...m, payload: typeof m.payload === 'string' || m.payload === undefined ? m.payload : asBuffer(m.payload) as Buffer }
}
