import type { Broker } from '../../core/index.js'
import type { HookStatus } from '../host/host.js'
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
  /** why the hooks keep this node from serving (failed to load at start-up, in deny mode), or undefined */
  hooksProblem?(): string | undefined
}

const QOS = ['0', '1', '2'] as const

/**
 * Counters of what the broker refused, one labelled Prometheus counter each,
 * read from a `{ label value: count }` record the broker keeps. To expose
 * another family of refusals, add a row here.
 */
const REFUSALS: ReadonlyArray<{ name: string; help: string; label: string; read(b: Broker): Readonly<Record<string, number>> }> = [
  {
    name: 'hookmq_quota_refused_total',
    help: 'what a quota refused: SUBACK/PUBACK 0x97, retained messages not stored, queued messages dropped',
    label: 'quota',
    read: (b) => b.stats.quota,
  },
  {
    name: 'hookmq_refused_total',
    help: 'connections and sockets refused: malformed packets, protocol errors, CONNECT size, pre-login bytes, connection limit, connect and keep-alive timeouts, bans',
    label: 'cause',
    read: (b) => b.stats.refused as unknown as Record<string, number>,
  },
]

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
  // the hooks' and webhooks' figures are read once per scrape, so that every series of one scrape is of the same moment
  let hooks: HookStatus[] = []
  let webhooks: WebhookStatus[] = []
  /** a value read at scrape time; NaN when it cannot be read (the retained count while Redis is away) */
  const gauge = (name: string, help: string, read: () => number | Promise<number>): void => {
    new client.Gauge({
      name,
      help,
      registers,
      async collect() {
        try {
          this.set(await read())
        } catch {
          this.set(NaN)
        }
      },
    })
  }
  /** labelled series set to what `read` reports at each scrape; a counter's total is kept elsewhere */
  const series = <L extends string>(
    kind: 'counter' | 'gauge',
    name: string,
    help: string,
    labelNames: readonly L[],
    read: (set: (labels: Record<L, string>, value: number) => void) => void,
  ): void => {
    if (kind === 'counter') {
      new client.Counter({
        name,
        help,
        labelNames,
        registers,
        collect() {
          this.reset()
          read((labels, value) => this.inc(labels, value))
        },
      })
    } else {
      new client.Gauge({
        name,
        help,
        labelNames,
        registers,
        collect() {
          this.reset()
          read((labels, value) => this.set(labels, value))
        },
      })
    }
  }
  const perHook = (kind: 'counter' | 'gauge', name: string, help: string, value: (h: HookStatus) => number): void =>
    series(kind, name, help, ['hook'], (set) => {
      for (const h of hooks) set({ hook: h.rollout !== undefined && 'canary' in h.rollout ? `${h.name}#canary` : h.name }, value(h)) // (a canary shares its name)
    })
  const perWebhook = (kind: 'counter' | 'gauge', name: string, help: string, value: (w: WebhookStatus) => number): void =>
    series(kind, name, help, ['webhook'], (set) => {
      for (const w of webhooks) set({ webhook: w.name }, value(w))
    })

  gauge('hookmq_connections', 'open client connections', () => b.connectionCount)
  series('counter', 'hookmq_connections_accepted_total', 'connections accepted since start', [], (set) => set({}, b.stats.connectionsTotal))
  gauge('hookmq_sessions', 'sessions on this node (connected and offline persistent ones)', () => b.sessions.sessions.size)
  gauge('hookmq_subscriptions', 'subscriptions on this node', () => b.router.tree.size)
  gauge('hookmq_retained_messages', 'retained messages', () => b.stores.retained.count())
  series('counter', 'hookmq_messages_received_total', 'PUBLISH packets received from clients', ['qos'], (set) =>
    QOS.forEach((q, i) => set({ qos: q }, b.stats.received[i]!)),
  )
  series('counter', 'hookmq_messages_sent_total', 'PUBLISH packets sent to clients', ['qos'], (set) => QOS.forEach((q, i) => set({ qos: q }, b.stats.sent[i]!)))
  series('counter', 'hookmq_messages_dropped_total', 'messages not delivered: a full queue or client buffer, or too large for the client', [], (set) =>
    set({}, b.stats.dropped),
  )
  series(
    'counter',
    'hookmq_deliveries_unencodable_total',
    'deliveries dropped because MQTT cannot represent them (a string over 65,535 bytes, a packet over 268,435,455)',
    [],
    (set) => set({}, b.stats.unencodable),
  )
  gauge(
    'hookmq_retained_bytes',
    'bytes (topic + payload + properties) of the retained messages, as this node counts them for the quotas',
    () => b.pipeline.retainedQuota.bytes,
  )
  for (const r of REFUSALS) {
    series('counter', r.name, r.help, [r.label], (set) => {
      for (const [value, n] of Object.entries(r.read(b))) set({ [r.label]: value }, n)
    })
  }
  series('counter', 'hookmq_audit_records_total', 'audit records of enforced decisions: every deny, and every allow with audit.allows', ['decision'], (set) => {
    set({ decision: 'allow' }, b.pipeline.audit.counts.allow)
    set({ decision: 'deny' }, b.pipeline.audit.counts.deny)
  })
  series('counter', 'hookmq_audit_dropped_total', 'audit records not emitted: over audit.maxPerSecond', [], (set) => set({}, b.pipeline.audit.counts.dropped))
  if (b.cluster !== undefined)
    gauge('hookmq_redis_available', '1 while Redis answers (persistent sessions and QoS 1/2 need it)', () => (b.cluster!.available ? 1 : 0))

  perHook('gauge', 'hookmq_hook_loaded', "1 when the hook's last load succeeded, 0 when it failed", (h) => (h.state === 'failed' ? 0 : 1))
  perHook('gauge', 'hookmq_hook_tripped', "1 while the hook's circuit breaker is open (decisions deny at once, transforms pass, events are skipped)", (h) =>
    h.breaker === 'tripped' ? 1 : 0,
  )
  perHook('gauge', 'hookmq_hook_quarantined', '1 when this version of the hook once hung the broker and runs in a worker until its file changes', (h) =>
    h.quarantined ? 1 : 0,
  )
  perHook('counter', 'hookmq_hook_worker_restarts_total', "times the hook's worker was replaced (stuck, crashed, over memoryMb)", (h) => h.workerRestarts ?? 0)
  perHook('counter', 'hookmq_hook_calls_total', 'hook calls', (h) => h.calls)
  perHook('counter', 'hookmq_hook_denies_total', 'deny answers', (h) => h.denies)
  perHook('counter', 'hookmq_hook_errors_total', 'throws, rejections and invalid answers', (h) => h.errors)
  perHook('counter', 'hookmq_hook_timeouts_total', 'calls past their deadline', (h) => h.timeouts)
  perHook('gauge', 'hookmq_hook_duration_p99_seconds', "p99 duration of the hook's recent calls", (h) => h.p99Ms / 1000)

  perWebhook('gauge', 'hookmq_webhook_queued', 'deliveries waiting in the outbox', (w) => w.queued)
  perWebhook('gauge', 'hookmq_webhook_in_flight', 'deliveries in requests not yet answered', (w) => w.inFlight)
  perWebhook('counter', 'hookmq_webhook_delivered_total', 'deliveries the endpoint accepted', (w) => w.delivered)
  perWebhook('counter', 'hookmq_webhook_retries_total', 'batches sent again after a failure', (w) => w.retried)
  perWebhook('counter', 'hookmq_webhook_failed_total', 'failed requests', (w) => w.failed)
  perWebhook('counter', 'hookmq_webhook_dead_lettered_total', 'deliveries moved to the dead letters after the last retry', (w) => w.deadLettered)
  perWebhook('counter', 'hookmq_webhook_dropped_total', 'deliveries dropped from a full in-memory outbox', (w) => w.dropped)
  perWebhook('gauge', 'hookmq_webhook_latency_p99_seconds', 'p99 request latency', (w) => w.p99LatencyMs / 1000)

  const own = processRegistry
  return {
    contentType: registry.contentType,
    text: async () => {
      hooks = src.hooks()
      webhooks = src.webhooks()
      return (await own.metrics()) + '\n' + (await registry.metrics())
    },
  }
}
