import { createHmac, randomUUID } from 'node:crypto'
import http from 'node:http'
import https from 'node:https'
import type { Logger } from '../../core/index.js'
import type { WebhookConfig } from '../config.js'
import type { DeadBatch, Delivery } from './delivery.js'
import type { Batch, Outbox } from './outbox.js'

// One webhook's dispatcher: forms batches by count and wait time, keeps at
// most `concurrency` requests in flight, retries with exponential backoff and
// full jitter (or the Retry-After the endpoint asked for), and sends what
// cannot be delivered to the dead letters.

export interface WebhookStats {
  delivered: number
  retried: number
  failed: number
  deadLettered: number
  batches: number
  latency: number[]
}

const BODY_END = ']}'

type Outcome = { kind: 'ok' } | { kind: 'retry'; reason: string; after?: number } | { kind: 'dead'; reason: string }

export class Dispatcher {
  inFlight = 0
  readonly stats: WebhookStats
  private timer: NodeJS.Timeout | undefined
  private taking = false
  private stopped = false
  /** replaced by a config reload: takes no more batches, finishes those in flight, then stops */
  private retiring: (() => void) | undefined
  private readonly sleeping = new Set<{ timer: NodeJS.Timeout; wake: () => void }>()

  private readonly bodyStart: string
  private readonly url: URL
  private readonly agent: http.Agent

  constructor(
    readonly config: WebhookConfig,
    private readonly outbox: Outbox,
    private readonly log: Logger,
    private readonly userAgent: string,
    /** the counters of the dispatcher this one replaces (a reload changed the webhook's settings) */
    stats?: WebhookStats,
  ) {
    this.stats = stats ?? { delivered: 0, retried: 0, failed: 0, deadLettered: 0, batches: 0, latency: [] }
    this.bodyStart = `{"webhook":${JSON.stringify(config.name)},"deliveries":[`
    this.url = new URL(config.url)
    const options = { keepAlive: true, maxSockets: config.concurrency }
    this.agent = this.url.protocol === 'https:' ? new https.Agent(options) : new http.Agent(options)
  }

  /** One delivery was added, `waiting` now wait (the publish path): act only when a batch fills or a timer is needed. */
  added(waiting: number): void {
    if (waiting < this.config.batch.maxSize ? this.timer !== undefined : this.taking || this.inFlight >= this.config.concurrency) return
    this.kick()
  }

  /** Deliveries were added: send at once when a batch is full, else after maxWaitMs. */
  kick(): void {
    if (this.stopped || this.retiring) return
    const waiting = this.outbox.waiting(this.config.name)
    if (waiting === 0) return
    if (waiting >= this.config.batch.maxSize || this.config.batch.maxWaitMs === 0) {
      clearTimeout(this.timer)
      this.timer = undefined
      this.flush()
    } else if (this.timer === undefined) {
      this.timer = setTimeout(() => {
        this.timer = undefined
        this.flush()
      }, this.config.batch.maxWaitMs)
    }
  }

  private flush(): void {
    if (this.stopped || this.retiring || this.taking || this.inFlight >= this.config.concurrency) return
    if (this.outbox.waiting(this.config.name) === 0) return
    this.taking = true
    this.outbox.take(this.config.name, this.config.batch.maxSize, this.bodyStart, BODY_END).then(
      (batch) => {
        this.taking = false
        if (batch !== undefined) {
          this.inFlight++
          void this.send(batch).finally(this.batchDone)
        }
        this.kick()
        this.retired()
      },
      (err: unknown) => {
        this.taking = false
        this.retired()
        this.log.error({ err, webhook: this.config.name }, 'webhook outbox read failed')
        this.sleep(1000).then(
          () => this.kick(),
          () => {},
        )
      },
    )
  }

  /** a batch is settled (delivered or dead): room for the next */
  private readonly batchDone = (): void => {
    this.inFlight--
    this.kick()
    this.retired()
  }

  /**
   * Replaced (a config reload changed its webhook): takes no more batches; those
   * in flight finish with the settings they were taken with, retries included.
   * Resolves when it has stopped.
   */
  retire(): Promise<void> {
    return new Promise((resolve) => {
      this.retiring = resolve
      this.retired()
    })
  }

  /** A retiring dispatcher with nothing in flight stops. */
  private retired(): void {
    if (this.retiring !== undefined && this.inFlight === 0 && !this.taking) this.stop()
  }

  /** Sends one batch until it is delivered or dead. */
  private async send(batch: Batch): Promise<void> {
    const { body, count } = batch
    const batchId = randomUUID()
    const { maxAttempts, minDelayMs, maxDelayMs } = this.config.retry
    let last = ''
    let attempts = 0
    for (let attempt = 1; attempt <= maxAttempts && !this.stopped; attempt++) {
      attempts = attempt
      const started = performance.now()
      const outcome = await this.post(body, batchId)
      this.stats.batches++
      if (outcome.kind === 'ok') {
        this.stats.delivered += count
        this.recordLatency(performance.now() - started)
        await this.outbox.done(batch).catch((err: unknown) => this.log.error({ err }, 'webhook outbox ack failed'))
        return
      }
      this.stats.failed++
      last = outcome.reason
      if (outcome.kind === 'dead') break
      if (attempt === maxAttempts) break
      this.stats.retried++
      const backoff = Math.random() * Math.min(maxDelayMs, minDelayMs * 2 ** (attempt - 1)) // full jitter
      const wait = outcome.after !== undefined ? Math.min(Math.max(outcome.after, 0), maxDelayMs * 10) : backoff
      this.log.warn(
        { webhook: this.config.name, batch: batchId, attempt, reason: outcome.reason, retryInMs: Math.round(wait) },
        'webhook delivery failed; will retry',
      )
      await this.sleep(wait)
    }
    if (this.stopped) return // not acknowledged: a durable outbox sends it again after restart
    const { deliveries } = JSON.parse(body.toString()) as { deliveries: Delivery[] } // the body this dispatcher framed
    const dead: DeadBatch = { id: batchId, webhook: this.config.name, deliveries, reason: last, attempts, at: new Date().toISOString() }
    this.stats.deadLettered += count
    this.log.error({ webhook: this.config.name, batch: batchId, deliveries: count, reason: last }, 'webhook batch moved to dead letters')
    await this.outbox.dead(dead, batch).catch((err: unknown) => this.log.error({ err }, 'webhook dead-letter write failed'))
  }

  private post(body: string | Buffer, batchId: string): Promise<Outcome> {
    const headers: Record<string, string | number> = {
      ...this.config.headers,
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(body),
      'user-agent': this.userAgent,
      'x-hookmq-delivery': batchId,
    }
    if (this.config.secret) headers['x-hookmq-signature'] = 'sha256=' + createHmac('sha256', this.config.secret).update(body).digest('hex')
    const client = this.url.protocol === 'https:' ? https : http
    return new Promise((resolve) => {
      let settled = false
      const done = (o: Outcome): void => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        resolve(o)
      }
      const req = client.request(this.url, { method: 'POST', headers, agent: this.agent }, (res) => {
        res.resume() // drain so the connection is reused
        res.on('error', (err: Error) => done({ kind: 'retry', reason: err.message }))
        res.on('end', () => {
          const status = res.statusCode ?? 0
          const reason = `HTTP ${status}`
          if (status >= 200 && status < 300) done({ kind: 'ok' })
          else if (status === 408 || status === 429 || status >= 500) done({ kind: 'retry', reason, after: retryAfter(header(res.headers['retry-after'])) })
          else done({ kind: 'dead', reason })
        })
      })
      const timer = setTimeout(() => {
        done({ kind: 'retry', reason: `timeout after ${this.config.timeoutMs} ms` })
        req.destroy()
      }, this.config.timeoutMs)
      req.on('error', (err: Error & { code?: string }) => done({ kind: 'retry', reason: `${err.code ?? err.name}: ${err.message}` }))
      req.end(body)
    })
  }

  private recordLatency(ms: number): void {
    const l = this.stats.latency
    if (l.length >= 512) l.shift()
    l.push(ms)
  }

  /** A wait that stop() cuts short. */
  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const entry = {
        timer: setTimeout(() => {
          this.sleeping.delete(entry)
          resolve()
        }, ms),
        wake: resolve,
      }
      this.sleeping.add(entry)
    })
  }

  stop(): void {
    if (this.stopped) return
    this.stopped = true
    this.agent.destroy()
    clearTimeout(this.timer)
    for (const s of this.sleeping) {
      clearTimeout(s.timer)
      s.wake()
    }
    this.sleeping.clear()
    this.retiring?.()
  }
}

/** Retry-After: seconds or an HTTP date; answers ms. */
export function retryAfter(value: string | null): number | undefined {
  if (value === null) return undefined
  if (/^\d+$/.test(value.trim())) return Number(value) * 1000
  const at = Date.parse(value)
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now())
}

function header(v: string | string[] | undefined): string | null {
  return v === undefined ? null : Array.isArray(v) ? (v[0] ?? null) : v
}
