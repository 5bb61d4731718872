import type { Broker } from '../../core/index.js'
import type { HookStatus } from '../host.js'
import type { WebhookStatus } from '../webhook/index.js'

// Prometheus metrics, read at scrape time from the counters the broker, the
// hook host and the webhook plugin keep anyway: nothing is added to the
// publish path. prom-client is loaded with the first HTTP endpoint.

type PromClient = typeof import('prom-client')
type Registry = import('prom-client').Registry

export interface MetricSources {
  broker: Broker
  hooks(): HookStatus[]
  webhooks(): WebhookStatus[]
}

const QOS = ['0', '1', '2'] as const

/** Node.js process metrics (CPU, memory, event loop, GC): one set per process, whatever the number of brokers in it. */
let processRegistry: Registry | undefined

export function createMetrics(client: PromClient, src: MetricSources): { contentType: string; text(): Promise<string> } {
  if (processRegistry === undefined) {
    processRegistry = new client.Registry()
    client.collectDefaultMetrics({ register: processRegistry })
  }
  const registry = new client.Registry()
  const registers = [registry]
  const b = src.broker
  /** a value read at scrape time; NaN when it cannot be read (the retained count while Redis is away) */
  const gauge = (name: string, help: string, read: () => number | Promise<number>): void => {
    new client.Gauge({ name, help, registers, async collect() {
      try {
        this.set(await read())
      } catch {
        this.set(NaN)
      }
    } })
  }
  /** a counter whose total is kept elsewhere: set to that total at each scrape */
  const total = <L extends string>(name: string, help: string, labelNames: readonly L[], read: (set: (labels: Record<L, string>, value: number) => void) => void): void => {
    new client.Counter({ name, help, labelNames, registers, collect() {
      this.reset()
      read((labels, value) => this.inc(labels, value))
    } })
  }
  const labelled = <L extends string>(name: string, help: string, labelNames: readonly L[], read: (set: (labels: Record<L, string>, value: number) => void) => void): void => {
    new client.Gauge({ name, help, labelNames, registers, collect() {
      this.reset()
      read((labels, value) => this.set(labels, value))
    } })
  }

  gauge('hookmq_connections', 'open client connections', () => b.connectionCount)
  total('hookmq_connections_accepted_total', 'connections accepted since start', [], (set) => set({}, b.stats.connectionsTotal))
  gauge('hookmq_sessions', 'sessions on this node (connected and offline persistent ones)', () => b.sessions.sessions.size)
  gauge('hookmq_subscriptions', 'subscriptions on this node', () => b.router.tree.size)
  gauge('hookmq_retained_messages', 'retained messages', () => b.stores.retained.count())
  total('hookmq_messages_received_total', 'PUBLISH packets received from clients', ['qos'], (set) => QOS.forEach((q, i) => set({ qos: q }, b.stats.received[i]!)))
  total('hookmq_messages_sent_total', 'PUBLISH packets sent to clients', ['qos'], (set) => QOS.forEach((q, i) => set({ qos: q }, b.stats.sent[i]!)))
  total('hookmq_messages_dropped_total', 'messages not delivered: a full queue or client buffer, or too large for the client', [], (set) => set({}, b.stats.dropped))
  if (b.cluster !== undefined) gauge('hookmq_redis_available', '1 while Redis answers (persistent sessions and QoS 1/2 need it)', () => (b.cluster!.available ? 1 : 0))

  const hook = ['hook'] as const
  labelled('hookmq_hook_loaded', '1 when the hook\'s last load succeeded, 0 when it failed', hook, (set) => src.hooks().forEach((h) => set({ hook: h.name }, h.state === 'loaded' ? 1 : 0)))
  total('hookmq_hook_calls_total', 'hook calls', hook, (set) => src.hooks().forEach((h) => set({ hook: h.name }, h.calls)))
  total('hookmq_hook_denies_total', 'deny answers', hook, (set) => src.hooks().forEach((h) => set({ hook: h.name }, h.denies)))
  total('hookmq_hook_errors_total', 'throws, rejections and invalid answers', hook, (set) => src.hooks().forEach((h) => set({ hook: h.name }, h.errors)))
  total('hookmq_hook_timeouts_total', 'calls past their deadline', hook, (set) => src.hooks().forEach((h) => set({ hook: h.name }, h.timeouts)))
  labelled('hookmq_hook_duration_p99_seconds', 'p99 duration of the hook\'s recent calls', hook, (set) => src.hooks().forEach((h) => set({ hook: h.name }, h.p99Ms / 1000)))

  const webhook = ['webhook'] as const
  labelled('hookmq_webhook_queued', 'deliveries waiting in the outbox', webhook, (set) => src.webhooks().forEach((w) => set({ webhook: w.name }, w.queued)))
  labelled('hookmq_webhook_in_flight', 'deliveries in requests not yet answered', webhook, (set) => src.webhooks().forEach((w) => set({ webhook: w.name }, w.inFlight)))
  total('hookmq_webhook_delivered_total', 'deliveries the endpoint accepted', webhook, (set) => src.webhooks().forEach((w) => set({ webhook: w.name }, w.delivered)))
  total('hookmq_webhook_retries_total', 'batches sent again after a failure', webhook, (set) => src.webhooks().forEach((w) => set({ webhook: w.name }, w.retried)))
  total('hookmq_webhook_failed_total', 'failed requests', webhook, (set) => src.webhooks().forEach((w) => set({ webhook: w.name }, w.failed)))
  total('hookmq_webhook_dead_lettered_total', 'deliveries moved to the dead letters after the last retry', webhook, (set) => src.webhooks().forEach((w) => set({ webhook: w.name }, w.deadLettered)))
  total('hookmq_webhook_dropped_total', 'deliveries dropped from a full in-memory outbox', webhook, (set) => src.webhooks().forEach((w) => set({ webhook: w.name }, w.dropped)))
  labelled('hookmq_webhook_latency_p99_seconds', 'p99 request latency', webhook, (set) => src.webhooks().forEach((w) => set({ webhook: w.name }, w.p99LatencyMs / 1000)))

  const own = processRegistry
  return { contentType: registry.contentType, text: async () => (await own.metrics()) + '\n' + (await registry.metrics()) }
}
