import type { Cluster, SysRecord } from './cluster.js'
import type { Logger } from './logger.js'
import { throttled } from './logger.js'

// $SYS topics, retained, every sys.intervalMs. A single node publishes its
// figures under $SYS/broker/. In a cluster each node publishes its own under
// $SYS/brokers/<node id>/ and keeps them where the others read them
// (Cluster.shareSys, with a time to live a little over the interval); one node
// at a time publishes $SYS/broker/ from every live node's figures, so a
// subscriber sees the broker-wide value, not each node's in turn.

/** What the $SYS publisher reads and publishes through (the Broker). */
export interface SysSource {
  readonly log: Logger
  /** this node's id */
  readonly id: string
  readonly cluster: Cluster | undefined
  /** this node's values now, keyed relative to $SYS/broker/ */
  sysSnapshot(): Promise<Record<string, string | number>>
  publish(options: { topic: string; payload: string; retain: boolean }): Promise<void>
}

/** Figures that add up across nodes: each node counts its own clients, messages, subscriptions, hook calls, webhook deliveries. */
const SUM =
  /^(clients\/(connected|total)|connections\/total|messages\/[^/]+|subscriptions\/count|hooks\/.+\/(calls|denies|errors|timeouts|workerRestarts)|webhooks\/.+\/(inFlight|delivered|retried|failed|deadLettered|dropped))$/
/** Figures whose broker-wide value is the largest: the oldest node's uptime, the slowest node's p99. */
const MAX = /^(uptime|hooks\/.+\/p99ms|webhooks\/.+\/p99LatencyMs)$/
// any other figure is the same on every node (version, the retained count of a
// shared store, the cluster's node count) or a state: the publishing node's own

/**
 * The broker-wide figures from every node's (`records`, this node's first):
 * SUM keys added, MAX keys the largest, others the first node's that has it
 * (`clients/maximum`, a peak, is the caller's).
 */
export function brokerWide(records: readonly SysRecord[]): Record<string, string | number> {
  const out: Record<string, string | number> = {}
  for (const r of records) {
    for (const [key, v] of Object.entries(r.figures)) {
      const had = out[key]
      if (had === undefined) out[key] = v
      else if (typeof had === 'number' && typeof v === 'number') {
        if (SUM.test(key)) out[key] = had + v
        else if (MAX.test(key)) out[key] = Math.max(had, v)
      }
    }
  }
  return out
}

/** Publishes $SYS topics (retained) every `intervalMs`. */
export class SysPublisher {
  private readonly timer: NodeJS.Timeout
  /** the broker-wide peak of connected clients this node has seen (cluster) */
  private peak = 0
  /** this node's keys last published under $SYS/brokers/<id>/ (cluster: cleared when it stops) */
  private own: string[] = []
  private running: Promise<void> | undefined
  private stopped = false
  private readonly shareFailed: (err: unknown) => void

  constructor(
    private readonly source: SysSource,
    private readonly intervalMs: number,
  ) {
    this.shareFailed = throttled((err, count) => source.log.warn({ err, count }, '$SYS: the broker-wide figures could not be read from the cluster'))
    this.tick()
    this.timer = setInterval(() => this.tick(), intervalMs)
    this.timer.unref()
  }

  private tick(): void {
    if (this.running !== undefined) return // the last one still runs (a slow store): skip this one
    this.running = this.publishOnce()
      .catch((err: unknown) => this.source.log.error({ err }, '$SYS values could not be read'))
      .finally(() => {
        this.running = undefined
      })
  }

  private async publishOnce(): Promise<void> {
    const s = this.source
    const values = await s.sysSnapshot()
    if (this.stopped) return
    if (s.cluster?.shareSys === undefined) return this.publishAll('$SYS/broker/', values)
    this.own = Object.keys(values)
    this.publishAll(`$SYS/brokers/${s.id}/`, values)
    let shared: Awaited<ReturnType<NonNullable<Cluster['shareSys']>>>
    try {
      // a node's record outlives one missed interval, not a dead node by much
      shared = await s.cluster.shareSys({ node: s.id, figures: values, peak: this.peak }, this.intervalMs + Math.max(1000, this.intervalMs / 2))
    } catch (err) {
      this.shareFailed(err)
      return
    }
    const records = [{ node: s.id, figures: values, peak: this.peak }, ...shared.records.filter((r) => r.node !== s.id)]
    const all = brokerWide(records)
    // the peak of the sum as any live node saw it (it outlives the node that saw it while another one lives), at least each node's own peak
    for (const r of records) this.peak = Math.max(this.peak, r.peak, Number(r.figures['clients/maximum']) || 0)
    this.peak = Math.max(this.peak, Number(all['clients/connected']) || 0)
    all['clients/maximum'] = this.peak
    if (shared.publisher && !this.stopped) this.publishAll('$SYS/broker/', all)
  }

  private publishAll(prefix: string, values: Record<string, string | number>): void {
    const s = this.source
    for (const [key, value] of Object.entries(values)) {
      s.publish({ topic: prefix + key, payload: String(value), retain: true }).catch((err: unknown) => s.log.error({ err }, '$SYS publish failed'))
    }
  }

  /** Stops publishing; in a cluster, this node's $SYS/brokers/<id>/ topics are cleared (a node that left leaves no figures behind). */
  async stop(): Promise<void> {
    this.stopped = true
    clearInterval(this.timer)
    await this.running
    const prefix = `$SYS/brokers/${this.source.id}/`
    await Promise.all(this.own.map((key) => this.source.publish({ topic: prefix + key, payload: '', retain: true }).catch(() => {})))
  }
}
