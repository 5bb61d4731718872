import type { DeadBatch, Delivery } from './delivery.js'

// Where deliveries wait for their webhook. In memory by default (bounded: the
// oldest go first, counted); in a Redis Stream when Redis is configured.

export interface Taken {
  /** the outbox's own handle (a stream entry id in Redis) */
  ref: string
  delivery: Delivery
}

export interface Outbox {
  /** adds a delivery; a promise when the write must be waited for (it is durable once resolved) */
  push(webhook: string, delivery: Delivery): Promise<void> | undefined
  /** up to `max` deliveries not yet taken, oldest first */
  take(webhook: string, max: number): Promise<Taken[]>
  /** deliveries waiting (not taken) */
  waiting(webhook: string): number
  /** deliveries dropped because the outbox was full */
  dropped(webhook: string): number
  /** the batch was delivered */
  done(webhook: string, taken: Taken[]): Promise<void>
  /** the batch goes to the dead letters */
  dead(batch: DeadBatch, taken: Taken[]): Promise<void>
  deadLetters(webhook?: string): Promise<DeadBatch[]>
  /** moves dead letters (of one webhook, or all) back into the outbox; answers how many deliveries */
  replay(webhook?: string): Promise<number>
  /** called when deliveries appear (e.g. recovered at start-up) */
  onWaiting(fn: (webhook: string) => void): void
  start(webhooks: string[]): Promise<void>
  close(): Promise<void>
}

export class MemoryOutbox implements Outbox {
  private readonly queues = new Map<string, { items: Delivery[]; head: number; dropped: number }>()
  private readonly deadList: DeadBatch[] = []
  private notify: (webhook: string) => void = () => {}
  private seq = 0

  constructor(private readonly limits: Map<string, number>, private readonly onDrop: (webhook: string, total: number) => void) {}

  private queue(webhook: string): { items: Delivery[]; head: number; dropped: number } {
    let q = this.queues.get(webhook)
    if (!q) {
      q = { items: [], head: 0, dropped: 0 }
      this.queues.set(webhook, q)
    }
    return q
  }

  push(webhook: string, delivery: Delivery): undefined {
    const q = this.queue(webhook)
    if (q.items.length - q.head >= (this.limits.get(webhook) ?? Infinity)) {
      q.head++ // the oldest goes
      q.dropped++
      this.onDrop(webhook, q.dropped)
    }
    q.items.push(delivery)
    return undefined
  }

  async take(webhook: string, max: number): Promise<Taken[]> {
    const q = this.queue(webhook)
    const n = Math.min(max, q.items.length - q.head)
    const out: Taken[] = new Array(n)
    for (let i = 0; i < n; i++) out[i] = { ref: String(++this.seq), delivery: q.items[q.head + i]! }
    q.head += n
    if (q.head > 1024 && q.head * 2 > q.items.length) {
      q.items = q.items.slice(q.head)
      q.head = 0
    }
    return out
  }

  waiting(webhook: string): number {
    const q = this.queues.get(webhook)
    return q ? q.items.length - q.head : 0
  }

  dropped(webhook: string): number {
    return this.queues.get(webhook)?.dropped ?? 0
  }

  async done(): Promise<void> {}

  async dead(batch: DeadBatch): Promise<void> {
    this.deadList.push(batch)
  }

  async deadLetters(webhook?: string): Promise<DeadBatch[]> {
    return this.deadList.filter((b) => webhook === undefined || b.webhook === webhook)
  }

  async replay(webhook?: string): Promise<number> {
    let n = 0
    for (let i = 0; i < this.deadList.length;) {
      const b = this.deadList[i]!
      if (webhook !== undefined && b.webhook !== webhook) { i++; continue }
      this.deadList.splice(i, 1)
      for (const d of b.deliveries) this.push(b.webhook, d)
      n += b.deliveries.length
      this.notify(b.webhook)
    }
    return n
  }

  onWaiting(fn: (webhook: string) => void): void {
    this.notify = fn
  }

  async start(): Promise<void> {}
  async close(): Promise<void> {}
}
