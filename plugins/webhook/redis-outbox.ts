import type { Redis } from 'ioredis'
import { noop, type Logger, type Message } from '../../core/index.js'
import { deliveryId, type DeadBatch, type Delivery } from './delivery.js'
import { messageJson } from './message-json.js'
import type { Batch, Inlet, Outbox } from './outbox.js'

// The durable outbox: one Redis Stream per webhook, read through a consumer
// group whose consumer is this node. A delivery is in the stream once push()
// resolves; it leaves only when delivered (XACK + XDEL) or moved to the dead
// letters (a list per webhook). Entries a previous run of this node took but
// never acknowledged are read again at start-up; entries of nodes whose
// heartbeat has lapsed are claimed.

const GROUP = 'hookmq'

export class RedisOutbox implements Outbox {
  private readonly counts = new Map<string, number>()
  private readonly recovering = new Map<string, string>()
  /** entries this node has taken and not yet settled (a re-read of its pending list after a claim skips them) */
  private readonly inFlight = new Set<string>()
  private notify: (webhook: string) => void = () => {}
  private heartbeat: NodeJS.Timeout | undefined
  private webhooks: string[] = []

  /** `webhooks`: the names deadLetters() and replay() cover when not given one (start() sets them too) */
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    private readonly node: string,
    private readonly log: Logger,
    webhooks: string[] = [],
  ) {
    this.webhooks = webhooks
  }

  private stream(webhook: string): string {
    return `${this.prefix}webhook:${webhook}`
  }

  private deadKey(webhook: string): string {
    return `${this.prefix}webhook:${webhook}:dead`
  }

  private aliveKey(node: string): string {
    return `${this.prefix}node:${node}:alive`
  }

  async start(webhooks: string[]): Promise<void> {
    this.webhooks = [...webhooks]
    if (webhooks.length === 0) return // (the upkeep starts with the first webhook a reload adds)
    await this.upkeep()
    for (const w of webhooks) await this.open(w)
    await this.claimOrphans()
  }

  /** The heartbeat and, every 3 s, claiming a gone node's entries and counting what others added. */
  private async upkeep(): Promise<void> {
    await this.beat()
    this.heartbeat = setInterval(
      () =>
        void this.beat()
          .then(() => this.claimOrphans())
          .then(() => this.recount())
          .catch((err: unknown) => this.log.warn({ err }, 'webhook outbox upkeep failed')),
      3000,
    )
    this.heartbeat.unref()
  }

  /** One webhook's stream and consumer group, made when missing; what waits in it counted. */
  private async open(w: string): Promise<void> {
    await this.redis.xgroup('CREATE', this.stream(w), GROUP, '0', 'MKSTREAM').catch((err: Error) => {
      if (!err.message.includes('BUSYGROUP')) throw err
    })
    const [len, pending] = await Promise.all([this.redis.xlen(this.stream(w)), this.pending(w)])
    this.counts.set(w, Math.max(0, len - pending.all))
    if (pending.mine > 0) this.recovering.set(w, '0') // first read our own unacknowledged entries
  }

  async prepare(webhook: string): Promise<void> {
    if (this.webhooks.includes(webhook)) return // (bounded by Redis memory, not by count)
    await this.open(webhook)
    if (this.heartbeat === undefined) await this.upkeep()
    this.webhooks.push(webhook)
  }

  remove(webhook: string): number {
    this.webhooks = this.webhooks.filter((w) => w !== webhook)
    this.counts.delete(webhook)
    this.recovering.delete(webhook)
    return 0
  }

  /** Entries added by others (a replay from the CLI, another node) are noticed here. */
  private async recount(): Promise<void> {
    for (const w of this.webhooks) {
      const [len, pending] = await Promise.all([this.redis.xlen(this.stream(w)), this.pending(w)])
      const waiting = Math.max(0, len - pending.all)
      this.counts.set(w, waiting)
      if (waiting > 0) this.notify(w)
    }
  }

  private async beat(): Promise<void> {
    await this.redis.set(this.aliveKey(this.node), String(Date.now()), 'PX', 10000)
  }

  /** entries taken and not yet acknowledged: by any node, and by this one (a previous run's) */
  private async pending(webhook: string): Promise<{ all: number; mine: number }> {
    const summary = (await this.redis.xpending(this.stream(webhook), GROUP)) as [number, unknown, unknown, Array<[string, string]> | null]
    const mine = summary[3]?.find(([consumer]) => consumer === this.node)
    return { all: Number(summary[0] ?? 0), mine: Number(mine?.[1] ?? 0) }
  }

  /** Takes over entries held by consumers (nodes) whose heartbeat has lapsed. */
  private async claimOrphans(): Promise<void> {
    for (const w of this.webhooks) {
      const consumers = (await this.redis.xinfo('CONSUMERS', this.stream(w), GROUP)) as unknown[][]
      for (const c of consumers) {
        const fields = toObject(c)
        const name = String(fields.name)
        if (name === this.node || Number(fields.pending) === 0) continue
        if (await this.redis.exists(this.aliveKey(name))) continue
        const claimed = await this.claimFrom(w, name)
        await this.redis.xgroup('DELCONSUMER', this.stream(w), GROUP, name)
        if (claimed > 0) {
          this.log.info({ webhook: w, from: name, deliveries: claimed }, 'claimed deliveries of a node that is gone')
          this.recovering.set(w, '0')
          this.notify(w)
        }
      }
    }
  }

  private async claimFrom(webhook: string, consumer: string): Promise<number> {
    let claimed = 0
    for (;;) {
      const pending = (await this.redis.xpending(this.stream(webhook), GROUP, '-', '+', 500, consumer)) as Array<[string, ...unknown[]]>
      if (pending.length === 0) return claimed
      const ids = pending.map((p) => p[0])
      await this.redis.xclaim(this.stream(webhook), GROUP, this.node, 0, ...ids, 'JUSTID')
      claimed += ids.length
    }
  }

  push(webhook: string, delivery: Delivery): Promise<void> {
    return this.writer(webhook)(JSON.stringify(delivery))
  }

  /** A published message's delivery gets its id and its JSON now: the stream keeps text. */
  inlet(webhook: string): Inlet {
    const write = this.writer(webhook)
    return { pushMessage: (message: Message, clientId: string | null, at: number) => write(messageJson(deliveryId(this.node), at, clientId, message)) }
  }

  /** Appends a delivery's JSON to one webhook's stream (its key and callbacks made once, not per message). */
  private writer(webhook: string): (json: string) => Promise<void> {
    const key = this.stream(webhook)
    const uncount = (err: unknown): never => {
      this.counts.set(webhook, (this.counts.get(webhook) ?? 1) - 1)
      throw err
    }
    return (json) => {
      this.counts.set(webhook, (this.counts.get(webhook) ?? 0) + 1)
      return this.redis.xadd(key, '*', 'd', json).then(noop, uncount)
    }
  }

  async take(webhook: string, max: number, prefix: string, suffix: string): Promise<Batch | undefined> {
    const from = this.recovering.get(webhook)
    const res = (await this.redis.xreadgroup('GROUP', GROUP, this.node, 'COUNT', max, 'STREAMS', this.stream(webhook), from ?? '>')) as Array<
      [string, Array<[string, string[] | null]>]
    > | null
    const entries = res?.[0]?.[1] ?? []
    if (from !== undefined) {
      if (entries.length === 0) this.recovering.delete(webhook)
      else this.recovering.set(webhook, entries[entries.length - 1]![0])
      if (entries.length === 0) return this.take(webhook, max, prefix, suffix)
    } else {
      this.counts.set(webhook, Math.max(0, (this.counts.get(webhook) ?? 0) - entries.length))
    }
    const refs: string[] = []
    let body = prefix
    for (const [ref, fields] of entries) {
      if (this.inFlight.has(ref)) continue // taken before and still being sent: not twice
      if (!fields) {
        // deleted meanwhile
        await this.redis.xack(this.stream(webhook), GROUP, ref)
        continue
      }
      body += (refs.length === 0 ? '' : ',') + fields[1]!
      refs.push(ref)
    }
    if (refs.length === 0) return from !== undefined ? this.take(webhook, max, prefix, suffix) : undefined // (recovering: read on)
    for (const ref of refs) this.inFlight.add(ref)
    return { webhook, body: body + suffix, count: refs.length, refs }
  }

  waiting(webhook: string): number {
    return (this.counts.get(webhook) ?? 0) + (this.recovering.has(webhook) ? 1 : 0)
  }

  dropped(): number {
    return 0 // a Redis outbox is bounded by Redis memory, not by count
  }

  async done(batch: Batch): Promise<void> {
    for (const ref of batch.refs) this.inFlight.delete(ref)
    const stream = this.stream(batch.webhook)
    await this.redis
      .multi()
      .xack(stream, GROUP, ...batch.refs)
      .xdel(stream, ...batch.refs)
      .exec()
  }

  async dead(dead: DeadBatch, batch: Batch): Promise<void> {
    for (const ref of batch.refs) this.inFlight.delete(ref)
    const stream = this.stream(batch.webhook)
    await this.redis
      .multi()
      .rpush(this.deadKey(batch.webhook), JSON.stringify(dead))
      .xack(stream, GROUP, ...batch.refs)
      .xdel(stream, ...batch.refs)
      .exec()
  }

  async deadLetters(webhook?: string): Promise<DeadBatch[]> {
    const names = webhook === undefined ? this.webhooks : [webhook]
    const out: DeadBatch[] = []
    for (const w of names) for (const s of await this.redis.lrange(this.deadKey(w), 0, -1)) out.push(JSON.parse(s) as DeadBatch)
    return out
  }

  async purge(webhook?: string): Promise<number> {
    let n = 0
    for (const w of webhook === undefined ? this.webhooks : [webhook]) {
      const [[, len], [, deleted]] = (await this.redis.multi().llen(this.deadKey(w)).del(this.deadKey(w)).exec()) as [[null, number], [null, number]]
      if (deleted > 0) n += len
    }
    return n
  }

  async replay(webhook?: string): Promise<number> {
    let n = 0
    for (const w of webhook === undefined ? this.webhooks : [webhook]) {
      for (;;) {
        const s = await this.redis.lpop(this.deadKey(w))
        if (s === null) break
        const batch = JSON.parse(s) as DeadBatch
        for (const d of batch.deliveries) await this.push(w, d)
        n += batch.deliveries.length
      }
      this.notify(w)
    }
    return n
  }

  onWaiting(fn: (webhook: string) => void): void {
    this.notify = fn
  }

  async close(): Promise<void> {
    if (this.heartbeat === undefined) return // (no webhook ever: no heartbeat)
    clearInterval(this.heartbeat)
    await this.redis.del(this.aliveKey(this.node)).catch(() => undefined)
  }
}

function toObject(flat: unknown[]): Record<string, unknown> {
  const o: Record<string, unknown> = {}
  for (let i = 0; i + 1 < flat.length; i += 2) o[String(flat[i])] = flat[i + 1]
  return o
}
