import type { BrokerEmitter } from './events.js'
import { Fifo } from './fifo.js'
import type { Flow } from './flow.js'
import { isPromise, LATER, type DeliveryReceiver, type DeliverySlot, type HookRunner, type Later } from './hooks.js'
import type { ClientInfo, Message, QoS } from './types.js'

// The deliver hooks, between a session and its connection's socket: each
// PUBLISH to a subscriber may be changed for that subscriber alone, or
// skipped. An answer given at once goes out at once. While one comes later
// (an async or worker-isolated hook), that subscriber's later PUBLISH packets
// wait behind it, in order (their hooks are asked at once, not one after
// another): a slow answer holds its own subscriber back, never another. A
// subscriber whose answers fall behind (more than CONGESTED_AT waiting) is
// congested as one whose socket is full (flow.ts): it holds back the
// publishers feeding it until they are in (at most a second, then it is slow
// and stops holding anyone), so the calls waiting for a hook stay bounded.

/** messages waiting for answers on one connection beyond which it holds its publishers back */
const CONGESTED_AT = 32
/** QoS 0 messages that may wait for answers on one connection; more are dropped (clientBufferFull), as beyond limits.maxClientBufferBytes */
const MAX_WAITING_QOS0 = 4096

/** What the deliver path needs of a connection (a Connection). */
export interface OutboundTarget {
  readonly client: ClientInfo
  readonly isOpen: boolean
  readonly ctx: {
    readonly hooks: HookRunner
    readonly emitter: BrokerEmitter
    readonly config: { readonly limits: { readonly maxClientBufferBytes: number } }
    readonly stats: { dropped: number }
  }
  /** bytes waiting on the socket */
  readonly buffered: number
  /** the socket wants a drain (its 'drain' will say it caught up) */
  readonly backedUp: boolean
  /** its deliveries through the deliver hooks (made on the first; null again once no deliver hook is loaded and none waits) */
  outbound: OutboundOrder | null
  /** encodes and writes a PUBLISH; false when the client's Maximum Packet Size forbade it */
  writePublish(message: Message, qos: QoS, retain: boolean, ids: number[] | undefined, packetId: number, dup: boolean, from: Flow | null): boolean
  /** a QoS 1/2 message that will not be written after all (skipped, too large): done, as if acknowledged */
  settled(packetId: number): void
  /** its messages wait for answers: hold the publisher (`from`) back, and stop it parsing (`park`) */
  congested(from: Flow | null, park: boolean): void
  /** nothing waits any more: release the publishers it held */
  caughtUp(): void
}

/**
 * Sends a PUBLISH through the deliver hooks (Connection.sendPublish calls it
 * only while some are loaded, or answers are still coming). Answers as
 * sendPublish does: false when a QoS 1/2 message will not go to this client
 * (skipped, or too large), and the session takes it as delivered.
 */
export function deliverThroughHooks(
  conn: OutboundTarget,
  message: Message,
  qos: QoS,
  retain: boolean,
  ids: number[] | undefined,
  packetId: number,
  dup: boolean,
  from: Flow | null,
): boolean {
  const hooks = conn.ctx.hooks
  const applies = hooks.delivering === true && hooks.appliesToDeliver!(message.topic)
  let order = conn.outbound
  const waiting = order !== null && order.size > 0 // behind an answer still coming: in order
  if (!waiting) {
    if (!applies) {
      if (order !== null && hooks.delivering !== true) conn.outbound = null // no deliver hook any more: the direct path again
      return conn.writePublish(message, qos, retain, ids, packetId, dup, from)
    }
  } else if (qos === 0 && (order!.size >= MAX_WAITING_QOS0 || conn.buffered + order!.bytes > conn.ctx.config.limits.maxClientBufferBytes)) {
    conn.ctx.stats.dropped++
    conn.ctx.emitter.dropped(message, 'clientBufferFull', conn.client.id)
    return true
  }
  order ??= conn.outbound = new OutboundOrder(conn)
  let answer: Message | null | Promise<Message | null> | Later = message
  if (applies) {
    // (staged already: a hook deciding a delivery to this client published to it; that one answers in a promise)
    const slot = order.staged ? undefined : order
    slot?.stage(message, qos, retain, ids, packetId, dup, from)
    answer = hooks.deliver!(conn.client, message, qos, retain, slot)
    slot?.unstage()
  }
  if (answer !== LATER) {
    if (!waiting && !isPromise(answer)) {
      if (answer === null) return qos === 0 // skipped
      return conn.writePublish(answer, qos, retain, ids, packetId, dup, from)
    }
    order.enqueue(message, qos, retain, ids, packetId, dup, from).answer(answer)
  }
  if (order.size > CONGESTED_AT) conn.congested(from, true)
  return true
}

/** One PUBLISH waiting for its deliver answer, or for those before it. */
class Outgoing implements DeliveryReceiver {
  decided = false
  /** what to send once decided (null: skipped) */
  answered: Message | null = null

  constructor(
    readonly order: OutboundOrder,
    /** the message asked about */
    readonly message: Message,
    readonly qos: QoS,
    readonly retain: boolean,
    readonly ids: number[] | undefined,
    readonly packetId: number,
    readonly dup: boolean,
    readonly from: Flow | null,
    /** payload bytes counted against the client's buffer (QoS 0) */
    readonly bytes: number,
  ) {}

  delivered(m: Message | null): void {
    if (this.decided) return
    this.answered = m
    this.decided = true
    this.order.flush()
  }

  /** its answer, now or in a promise (the hooks fail open: a promise does not reject) */
  answer(a: Message | null | Promise<Message | null>): void {
    if (!isPromise(a)) return this.delivered(a)
    a.then(
      (m) => this.delivered(m),
      () => this.delivered(this.message),
    )
  }
}

/**
 * A connection's deliveries through the deliver hooks, in the order they were
 * handed over, each written once it and those before it are decided. The
 * delivery being asked about is staged here (no object made for it) and only
 * becomes an entry when its answer comes later (`later()`).
 */
export class OutboundOrder implements DeliverySlot {
  private readonly queue = new Fifo<Outgoing>()
  /** payload bytes of the QoS 0 messages waiting (they count as buffered: limits.maxClientBufferBytes) */
  bytes = 0
  private flushing = false
  // the delivery being asked about
  private message: Message | null = null
  private qos: QoS = 0
  private retain = false
  private ids: number[] | undefined = undefined
  private packetId = 0
  private dup = false
  private from: Flow | null = null

  constructor(private readonly conn: OutboundTarget) {}

  get size(): number {
    return this.queue.length
  }

  /** a delivery is being asked about */
  get staged(): boolean {
    return this.message !== null
  }

  stage(message: Message, qos: QoS, retain: boolean, ids: number[] | undefined, packetId: number, dup: boolean, from: Flow | null): void {
    this.message = message
    this.qos = qos
    this.retain = retain
    this.ids = ids
    this.packetId = packetId
    this.dup = dup
    this.from = from
  }

  /** The staged delivery was answered (or taken by later()): let its objects go. */
  unstage(): void {
    this.message = null
    this.ids = undefined
    this.from = null
  }

  /** The staged delivery's answer comes later: it waits, in order, for it. */
  later(): Outgoing {
    const e = this.enqueue(this.message!, this.qos, this.retain, this.ids, this.packetId, this.dup, this.from)
    this.unstage()
    return e
  }

  enqueue(message: Message, qos: QoS, retain: boolean, ids: number[] | undefined, packetId: number, dup: boolean, from: Flow | null): Outgoing {
    const bytes = qos === 0 ? message.payload.length : 0
    const e = new Outgoing(this, message, qos, retain, ids, packetId, dup, from, bytes)
    this.bytes += bytes
    this.queue.push(e)
    return e
  }

  /** Writes what is decided at the front; once nothing waits, the publishers it held go on. */
  flush(): void {
    if (this.flushing) return // (a write that completes a message sends the next queued one: it is added, and written by this loop)
    this.flushing = true
    const conn = this.conn
    try {
      for (let e = this.queue.peek(); e !== undefined && e.decided; e = this.queue.peek()) {
        this.queue.shift()
        this.bytes -= e.bytes
        if (!conn.isOpen) continue // a QoS 1/2 message stays in flight in its session: sent again when it resumes
        const m = e.answered
        if ((m === null || !conn.writePublish(m, e.qos, e.retain, e.ids, e.packetId, e.dup, e.from)) && e.qos > 0) conn.settled(e.packetId)
      }
    } finally {
      this.flushing = false
    }
    // nothing waits for an answer: the publishers it held go on, unless the socket itself is full (its drain releases them then)
    if (this.queue.length === 0 && conn.isOpen && !conn.backedUp) conn.caughtUp()
  }
}
