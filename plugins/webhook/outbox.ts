import type { Message } from '../../core/index.js'
import { ByteQueue, JsonWriter } from './byte-queue.js'
import { deliveryId, PendingMessage, type DeadBatch, type Delivery, type Queued } from './delivery.js'

// Where deliveries wait for their webhook. In memory by default (bounded: the
// oldest go first, counted); in a Redis Stream when Redis is configured.

export interface Taken {
  /** the outbox's own handle (a stream entry id in Redis) */
  ref: string
  /** the delivery as JSON text */
  json: string
}

export function parseTaken(taken: Taken[]): Delivery[] {
  return taken.map((t) => JSON.parse(t.json) as Delivery)
}

export interface Outbox {
  /** adds a delivery; a promise when the write must be waited for (it is durable once resolved) */
  push(webhook: string, item: Queued): Promise<void> | undefined
  /**
   * An outbox has one of these two. `take`: up to `max` deliveries not yet
   * taken, oldest first, each acknowledged later by done() or dead().
   * `takeBody`: the same, gone from the outbox already and written as a request
   * body `prefix` + deliveries joined by commas + `suffix` (an outbox that keeps
   * bytes skips the strings).
   */
  take?(webhook: string, max: number): Promise<Taken[]>
  takeBody?(webhook: string, max: number, prefix: string, suffix: string): { body: Buffer; count: number }
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

export interface MemoryQueueHandle {
  name: string
  items: ByteQueue
  dropped: number
  limit: number
}

export class MemoryOutbox implements Outbox {
  private readonly queues = new Map<string, MemoryQueueHandle>()
  private readonly deadList: DeadBatch[] = []
  private notify: (webhook: string) => void = () => {}
  private readonly makeId: () => string

  constructor(private readonly limits: Map<string, number>, private readonly onDrop: (webhook: string, total: number) => void, node: string) {
    this.makeId = () => deliveryId(node)
  }

  private queue(webhook: string): MemoryQueueHandle {
    let q = this.queues.get(webhook)
    if (!q) {
      q = { name: webhook, items: new ByteQueue(), dropped: 0, limit: this.limits.get(webhook) ?? Infinity }
      this.queues.set(webhook, q)
    }
    return q
  }

  push(webhook: string, item: Queued): undefined {
    if (item instanceof PendingMessage) return this.pushMessage(webhook, item.message, item.clientId, item.at)
    this.room(this.queue(webhook)).items.pushJson(JSON.stringify(item))
    return undefined
  }

  /** push() for a published message without wrapping it first. */
  pushMessage(webhook: string, message: Message, clientId: string | null, at: number): undefined {
    this.pushMessageTo(this.queue(webhook), message, clientId, at)
    return undefined
  }

  /** The queue of one webhook, to push to without looking it up (the publish path). */
  handle(webhook: string): MemoryQueueHandle {
    return this.queue(webhook)
  }

  /** Appends to a queue (the oldest goes when full); answers how many wait. */
  pushMessageTo(q: MemoryQueueHandle, message: Message, clientId: string | null, at: number): number {
    this.room(q).items.pushMessage(message, clientId, at)
    return q.items.length
  }

  private room(q: MemoryQueueHandle): MemoryQueueHandle {
    if (q.items.length >= q.limit) {
      q.items.drop()
      q.dropped++
      this.onDrop(q.name, q.dropped)
    }
    return q
  }

  takeBody(webhook: string, max: number, prefix: string, suffix: string): { body: Buffer; count: number } {
    const q = this.queue(webhook)
    const w = this.writer
    w.ascii(prefix)
    let count = 0
    while (count < max && q.items.length > 0) {
      if (count > 0) w.ascii(',')
      q.items.shiftInto(w, this.makeId)
      count++
    }
    w.ascii(suffix)
    return { body: w.take(), count }
  }

  private readonly writer = new JsonWriter()

  waiting(webhook: string): number {
    return this.queues.get(webhook)?.items.length ?? 0
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
      for (const d of b.deliveries) this.push(b.webhook, d as Delivery)
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
