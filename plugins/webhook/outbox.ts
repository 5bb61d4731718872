import type { Message } from '../../core/index.js'
import { ByteQueue, JsonWriter } from './byte-queue.js'
import { deliveryId, type DeadBatch, type Delivery } from './delivery.js'

// Where deliveries wait for their webhook. In memory by default (bounded: the
// oldest go first, counted); in a Redis Stream when Redis is configured. Both
// keep the whole Outbox contract, held by test/unit/outbox-contract.test.ts:
// the dispatcher and the publish path never ask which one they have.

/** What take() answers: one request's body, and what done() or dead() need of it. */
export interface Batch {
  webhook: string
  /** `prefix` + the deliveries' JSON joined by commas + `suffix` */
  body: Buffer | string
  count: number
  /** the outbox's own handles of these deliveries (stream entry ids in Redis; none in memory, where take() removes them) */
  refs: readonly string[]
}

/** One webhook's way into the outbox for published messages, resolved once: the publish path looks nothing up. */
export interface Inlet {
  /**
   * Adds a published message (its delivery's JSON is written here or when
   * taken). Answers how many deliveries wait when it was added at once, or a
   * promise when the write must be waited for (it is durable once resolved).
   */
  pushMessage(message: Message, clientId: string | null, at: number): number | Promise<void>
}

export interface Outbox {
  /** adds a delivery; a promise when the write must be waited for (it is durable once resolved) */
  push(webhook: string, delivery: Delivery): Promise<void> | undefined
  /** where the publish path adds one webhook's published messages */
  inlet(webhook: string): Inlet
  /** up to `max` deliveries not yet taken, oldest first, as one body; undefined when none wait. done() or dead() settles it. */
  take(webhook: string, max: number, prefix: string, suffix: string): Promise<Batch | undefined>
  /** deliveries waiting (not taken); a durable outbox counts deliveries it recovered as one until they are taken */
  waiting(webhook: string): number
  /** deliveries dropped because the outbox was full */
  dropped(webhook: string): number
  /** the batch was delivered */
  done(batch: Batch): Promise<void>
  /** the batch goes to the dead letters as `dead` */
  dead(dead: DeadBatch, batch: Batch): Promise<void>
  deadLetters(webhook?: string): Promise<DeadBatch[]>
  /** moves dead letters (of one webhook, or all) back into the outbox; answers how many deliveries */
  replay(webhook?: string): Promise<number>
  /** deletes dead letters (of one webhook, or all); answers how many batches */
  purge(webhook?: string): Promise<number>
  /** called when deliveries appear (e.g. recovered at start-up, replayed) */
  onWaiting(fn: (webhook: string) => void): void
  start(webhooks: string[]): Promise<void>
  /** a config reload: makes a new webhook ready to take (as start() did the others), or sets a kept one's bound */
  prepare(webhook: string, maxQueue: number, maxQueueBytes?: number): Promise<void>
  /**
   * a config reload removed the webhook: answers the waiting deliveries dropped with it (a durable outbox drops
   * none: its stream stays, for another node that still has the webhook, or for this one when it comes back)
   */
  remove(webhook: string): number
  close(): Promise<void>
}

/** A webhook's in-memory bound: deliveries, and bytes of them as kept. */
export interface QueueBound {
  count: number
  bytes: number
}

const UNBOUNDED: QueueBound = { count: Infinity, bytes: Infinity }

/** One webhook's bounded queue: the oldest delivery goes when it is full, counted. */
class MemoryQueue implements Inlet {
  readonly items = new ByteQueue()
  dropped = 0

  constructor(
    private readonly name: string,
    private limit: QueueBound,
    private readonly onDrop: (webhook: string, total: number) => void,
  ) {}

  /** a new bound; the oldest beyond it go now, counted */
  bound(limit: QueueBound): void {
    this.limit = limit
    this.trim()
  }

  pushMessage(message: Message, clientId: string | null, at: number): number {
    this.items.pushMessage(message, clientId, at)
    this.trim()
    return this.items.length
  }

  pushJson(json: string): void {
    this.items.pushJson(json)
    this.trim()
  }

  /** Drops the oldest while over the bound (the newest always stays, however large), and reports it if any went. */
  private trim(): void {
    if (!this.over()) return
    do {
      this.items.drop()
      this.dropped++
    } while (this.over())
    this.onDrop(this.name, this.dropped)
  }

  private over(): boolean {
    const { length, bytes } = this.items
    return length > this.limit.count || (length > 1 && bytes > this.limit.bytes)
  }
}

const NO_REFS: readonly string[] = []

export class MemoryOutbox implements Outbox {
  private readonly queues = new Map<string, MemoryQueue>()
  private deadList: DeadBatch[] = []
  private notify: (webhook: string) => void = () => {}
  private readonly makeId: () => string
  private readonly writer = new JsonWriter()

  /** `limits`: each webhook's bound (none: unbounded); `onDrop` hears of deliveries dropped, with the webhook's total */
  constructor(
    private readonly limits: Map<string, QueueBound>,
    private readonly onDrop: (webhook: string, total: number) => void,
    node: string,
  ) {
    this.makeId = () => deliveryId(node)
  }

  private queue(webhook: string): MemoryQueue {
    let q = this.queues.get(webhook)
    if (!q) {
      q = new MemoryQueue(webhook, this.limits.get(webhook) ?? UNBOUNDED, this.onDrop)
      this.queues.set(webhook, q)
    }
    return q
  }

  push(webhook: string, delivery: Delivery): undefined {
    this.queue(webhook).pushJson(JSON.stringify(delivery))
    return undefined
  }

  inlet(webhook: string): Inlet {
    return this.queue(webhook)
  }

  /** The body is written straight from the queue's bytes; the deliveries leave the queue now. */
  async take(webhook: string, max: number, prefix: string, suffix: string): Promise<Batch | undefined> {
    const q = this.queues.get(webhook)
    if (q === undefined || q.items.length === 0) return undefined
    const w = this.writer
    w.ascii(prefix)
    let count = 0
    while (count < max && q.items.length > 0) {
      if (count > 0) w.ascii(',')
      q.items.shiftInto(w, this.makeId)
      count++
    }
    w.ascii(suffix)
    return { webhook, body: w.take(), count, refs: NO_REFS }
  }

  waiting(webhook: string): number {
    return this.queues.get(webhook)?.items.length ?? 0
  }

  dropped(webhook: string): number {
    return this.queues.get(webhook)?.dropped ?? 0
  }

  async done(): Promise<void> {}

  async dead(dead: DeadBatch): Promise<void> {
    this.deadList.push(dead)
  }

  async deadLetters(webhook?: string): Promise<DeadBatch[]> {
    return this.deadList.filter((b) => webhook === undefined || b.webhook === webhook)
  }

  async replay(webhook?: string): Promise<number> {
    let n = 0
    for (let i = 0; i < this.deadList.length; ) {
      const b = this.deadList[i]!
      if (webhook !== undefined && b.webhook !== webhook) {
        i++
        continue
      }
      this.deadList.splice(i, 1)
      for (const d of b.deliveries) this.push(b.webhook, d)
      n += b.deliveries.length
      this.notify(b.webhook)
    }
    return n
  }

  async purge(webhook?: string): Promise<number> {
    const before = this.deadList.length
    this.deadList = this.deadList.filter((b) => webhook !== undefined && b.webhook !== webhook)
    return before - this.deadList.length
  }

  onWaiting(fn: (webhook: string) => void): void {
    this.notify = fn
  }

  async start(): Promise<void> {}

  async prepare(webhook: string, maxQueue: number, maxQueueBytes = Infinity): Promise<void> {
    const bound = { count: maxQueue, bytes: maxQueueBytes }
    this.limits.set(webhook, bound)
    this.queues.get(webhook)?.bound(bound)
  }

  remove(webhook: string): number {
    const dropped = this.queues.get(webhook)?.items.length ?? 0
    this.queues.delete(webhook)
    this.limits.delete(webhook)
    return dropped
  }

  async close(): Promise<void> {}
}
