import type { Redis } from 'ioredis'
import { isDeepStrictEqual } from 'node:util'
import type { Broker, BrokerPlugin, ClientInfo, Logger, Message } from '../../core/index.js'
import { HookmqError, Matches, noop, throttled, TopicMemo, TopicTree } from '../../core/index.js'
import { percentile } from '../percentile.js'
import { version } from '../version.js'
import type { WebhookConfig } from '../config.js'
import { deliveryId, fromEvent, type DeadBatch, type Delivery } from './delivery.js'
import { MemoryOutbox, type Inlet, type Outbox } from './outbox.js'
import { RedisOutbox } from './redis-outbox.js'
import { Dispatcher } from './sender.js'
import type { WebhookStatus } from './status.js'

export type { WebhookStatus }

// Webhook forwarding: rules match published messages (a topic tree compiled
// once) and lifecycle events; matches are enqueued in the outbox on the
// publish path and sent by one dispatcher per webhook, off that path.

/** A rule as the publish path sees it: resolved once, no lookups per message. */
interface Target {
  dispatcher: Dispatcher
  inlet: Inlet
  /** made once: what follows a write that was waited for, so a message costs no closure */
  kick: () => void
}

export class WebhookPlugin implements BrokerPlugin {
  readonly name = 'webhooks'
  readonly outbox: Outbox
  private readonly dispatchers = new Map<string, Dispatcher>()
  /** dispatchers a reload replaced, finishing their batches in flight */
  private readonly retiring = new Set<Dispatcher>()
  private tree = new TopicTree<Target>()
  private readonly matchCache = new TopicMemo<Target[]>((topic) => {
    const found = new Matches<Target>()
    this.tree.match(topic, found)
    // a webhook whose filters overlap (s/# and s/+/t) is matched once per filter: it gets the message once
    const rules: Target[] = []
    for (let i = 0; i < found.subCount; i++) if (!rules.includes(found.subs[i] as Target)) rules.push(found.subs[i] as Target)
    return rules
  })
  private anyTopics = false
  private broker: Broker | undefined
  private nodeId = 'node'
  private lastDropLog = 0
  private readonly listeners = new Map<string, (...args: unknown[]) => void>()

  constructor(
    private configs: WebhookConfig[],
    private readonly log: Logger,
    node: string,
    redis?: { client: Redis; keyPrefix: string },
  ) {
    this.nodeId = node
    this.outbox = redis
      ? new RedisOutbox(redis.client, redis.keyPrefix, node, log)
      : new MemoryOutbox(new Map(configs.map((c) => [c.name, { count: c.maxQueue, bytes: c.maxQueueBytes }])), (w, total) => this.dropped(w, total), node)
    for (const c of configs) this.dispatchers.set(c.name, new Dispatcher(c, this.outbox, log, `hookmq/${version}`))
    this.index()
    this.outbox.onWaiting((w) => this.dispatchers.get(w)?.kick())
  }

  /** The rules as the publish path reads them: a topic tree of targets, resolved once (after a reload: made again). */
  private index(): void {
    const tree = new TopicTree<Target>()
    for (const c of this.configs) {
      const dispatcher = this.dispatchers.get(c.name)!
      const target: Target = { dispatcher, inlet: this.outbox.inlet(c.name), kick: () => dispatcher.kick() }
      for (const f of c.topics) tree.add(f, c.name, target)
    }
    this.tree = tree
    this.matchCache.clear()
    this.anyTopics = this.configs.some((c) => c.topics.length > 0)
    this.broker?.tapPublish(this, this.anyTopics)
  }

  async start(broker: Broker): Promise<void> {
    this.broker = broker
    await this.outbox.start(this.configs.map((c) => c.name))
    broker.tapPublish(this, this.anyTopics)
    this.listen()
    for (const d of this.dispatchers.values()) d.kick()
  }

  /** Listens to the lifecycle events some webhook forwards, and to no other. */
  private listen(): void {
    const events = new Set<string>(this.configs.flatMap((c) => c.events))
    for (const [event, fn] of this.listeners) {
      if (events.has(event)) continue
      this.broker?.off(brokerEvent(event), fn as never)
      this.listeners.delete(event)
    }
    for (const event of events) {
      if (this.listeners.has(event)) continue
      const fn = (...args: unknown[]): void => this.onEvent(event, args)
      this.listeners.set(event, fn)
      this.broker?.on(brokerEvent(event), fn as never)
    }
  }

  async stop(): Promise<void> {
    for (const [event, fn] of this.listeners) this.broker?.off(brokerEvent(event), fn as never)
    for (const d of [...this.dispatchers.values(), ...this.retiring]) d.stop()
    await this.outbox.close()
  }

  /**
   * A config reload's webhooks. A kept webhook (same name) keeps its queue and
   * counters; changed settings apply from its next batch (a batch already being
   * sent finishes with those it was taken with, retries included). A new one
   * starts. A removed one takes no more: its deliveries waiting in memory are
   * dropped (logged with their count); in Redis its stream is left as it is.
   * Resolves when the new webhooks' streams are ready (throws, changing
   * nothing, when one cannot be made), with the function that applies the
   * rest at once and answers the names of the webhooks added, changed or removed.
   */
  async prepare(next: WebhookConfig[]): Promise<() => string[]> {
    const prev = new Map(this.configs.map((c) => [c.name, c]))
    const changed = next.filter((c) => !isDeepStrictEqual(prev.get(c.name), c))
    for (const c of changed) if (!prev.has(c.name)) await this.outbox.prepare(c.name, c.maxQueue, c.maxQueueBytes)
    return () => this.reconfigure(next, changed)
  }

  private reconfigure(next: WebhookConfig[], changed: WebhookConfig[]): string[] {
    const removed = this.configs.filter((c) => !next.some((n) => n.name === c.name))
    for (const c of changed) if (this.dispatchers.has(c.name)) void this.outbox.prepare(c.name, c.maxQueue, c.maxQueueBytes) // a kept one's bound (at once in memory)
    for (const c of removed) {
      this.retire(c.name)
      const dropped = this.outbox.remove(c.name)
      const left = this.outbox instanceof RedisOutbox ? 'what waits in its Redis stream stays there' : `${dropped} waiting deliveries dropped`
      this.log.warn({ webhook: c.name, dropped }, `webhook removed by a config reload: ${left}`)
    }
    for (const c of changed) {
      const stats = this.dispatchers.get(c.name)?.stats // (its counters go on)
      this.retire(c.name)
      this.dispatchers.set(c.name, new Dispatcher(c, this.outbox, this.log, `hookmq/${version}`, stats))
    }
    this.configs = next
    this.index()
    this.listen()
    for (const c of changed) this.dispatchers.get(c.name)!.kick()
    return [...changed, ...removed].map((c) => c.name)
  }

  /** The webhook's dispatcher finishes what it has in flight, then stops. */
  private retire(name: string): void {
    const d = this.dispatchers.get(name)
    if (d === undefined) return
    this.dispatchers.delete(name)
    this.retiring.add(d)
    void d.retire().then(() => this.retiring.delete(d))
  }

  /** On the publish path: find matching rules (cached per topic) and enqueue. */
  onPublish(message: Message, client: ClientInfo | undefined): Promise<void> | undefined {
    if (!this.anyTopics) return undefined
    const rules = this.matchCache.get(message.topic)
    if (rules.length === 0) return undefined
    const at = Date.now()
    const clientId = client === undefined ? null : client.id
    let pending: Promise<void> | Array<Promise<void>> | undefined // (one write, or the writes of several rules, waited for once)
    for (let i = 0; i < rules.length; i++) {
      const target = rules[i]!
      const written = target.inlet.pushMessage(message, clientId, at)
      if (typeof written === 'number') {
        // added at once (in memory): no promise, no closure
        target.dispatcher.added(written)
        continue
      }
      const p = written.then(target.kick)
      // QoS 0 is not waited for: at most once, and the publisher is never held by the outbox
      if (message.qos === 0) p.catch(this.enqueueFailed)
      else if (pending === undefined) pending = p
      else if (Array.isArray(pending)) pending.push(p)
      else pending = [pending, p]
    }
    return Array.isArray(pending) ? Promise.all(pending).then(noop) : pending
  }

  /** A QoS 0 message or an event that could not be queued (Redis away): not retried; logged every 10 s with a count. */
  private readonly enqueueFailed = throttled((err, lost) =>
    this.log.error({ err, lost }, 'webhook deliveries could not be queued (QoS 0 messages and events are not retried)'),
  )

  private onEvent(event: string, args: unknown[]): void {
    for (const c of this.configs) {
      if (!c.events.includes(event as never)) continue
      const p = this.enqueue(c.name, fromEvent(deliveryId(this.nodeId), event, args))
      if (p !== undefined) p.catch(this.enqueueFailed)
    }
  }

  private enqueue(webhook: string, delivery: Delivery): Promise<void> | undefined {
    const p = this.outbox.push(webhook, delivery)
    const d = this.dispatchers.get(webhook)!
    if (p === undefined) {
      d.kick()
      return undefined
    }
    return p.then(() => d.kick())
  }

  /** `ctx.forward(name, body)` from a hook: same outbox, retries and signing. */
  forward(webhook: string, body: unknown, hook?: string): Promise<void> {
    if (!this.dispatchers.has(webhook)) return Promise.reject(new HookmqError('WEBHOOK_UNKNOWN', `no webhook named "${webhook}"`))
    const delivery: Delivery = { id: deliveryId(this.nodeId), event: 'custom', timestamp: new Date().toISOString(), hook, body }
    return Promise.resolve(this.enqueue(webhook, delivery))
  }

  deadLetters(webhook?: string): Promise<DeadBatch[]> {
    return this.outbox.deadLetters(webhook)
  }

  /** Queues dead letters again: of one webhook, or of every configured one (those of a webhook a reload removed stay dead letters). */
  async replay(webhook?: string): Promise<number> {
    let n = 0
    for (const name of webhook === undefined ? [...this.dispatchers.keys()] : [webhook]) {
      if (!this.dispatchers.has(name)) continue
      n += await this.outbox.replay(name)
      this.dispatchers.get(name)!.kick()
    }
    return n
  }

  /** deletes dead letters (of one webhook, or all); answers how many batches */
  purge(webhook?: string): Promise<number> {
    return this.outbox.purge(webhook)
  }

  status(): WebhookStatus[] {
    return this.configs.map((c) => {
      const d = this.dispatchers.get(c.name)!
      return {
        name: c.name,
        url: redactUrl(c.url),
        queued: this.outbox.waiting(c.name),
        inFlight: d.inFlight,
        delivered: d.stats.delivered,
        retried: d.stats.retried,
        failed: d.stats.failed,
        deadLettered: d.stats.deadLettered,
        dropped: this.outbox.dropped(c.name),
        p99LatencyMs: Number(percentile(d.stats.latency, 0.99).toFixed(3)),
      }
    })
  }

  sys(): Record<string, string | number> {
    const out: Record<string, string | number> = {}
    for (const s of this.status()) {
      for (const k of ['queued', 'inFlight', 'delivered', 'retried', 'failed', 'deadLettered', 'dropped', 'p99LatencyMs'] as const)
        out[`webhooks/${s.name}/${k}`] = s[k]
    }
    return out
  }

  private dropped(webhook: string, total: number): void {
    const now = Date.now()
    if (now - this.lastDropLog < 1000) return
    this.lastDropLog = now
    this.log.warn({ webhook, dropped: total }, 'webhook outbox full: oldest deliveries dropped')
  }
}

/** The broker event a webhook event name forwards: `decision` is the audit record (core/audit.ts). */
function brokerEvent(event: string): 'clientConnected' {
  return (event === 'decision' ? 'audit' : event) as 'clientConnected'
}

function redactUrl(url: string): string {
  const u = new URL(url)
  if (u.password) u.password = '***'
  return u.toString()
}
