import type { BrokerEmitter } from './events.js'
import { Fifo } from './fifo.js'
import type { Flow } from './flow.js'
import { isPromise, type HookRunner } from './hooks.js'
import type { ClientInfo, Message, QoS } from './types.js'

// The deliver hooks, between a session and its connection's socket: each
// PUBLISH to a subscriber may be changed for that subscriber alone, or
// skipped. An answer given at once goes out at once. While one comes later
// (an async or worker-isolated hook), that subscriber's later PUBLISH packets
// wait behind it, in order (their hooks are asked at once, not one after
// another): a slow answer holds its own subscriber back, never another.

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
  /** the PUBLISH packets waiting for a deliver answer that comes later (null: none) */
  outbound: OutboundOrder | null
  /** encodes and writes a PUBLISH; false when the client's Maximum Packet Size forbade it */
  writePublish(message: Message, qos: QoS, retain: boolean, ids: number[] | undefined, packetId: number, dup: boolean, from: Flow | null): boolean
  /** a QoS 1/2 message that will not be written after all (skipped, too large): done, as if acknowledged */
  settled(packetId: number): void
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
  const order = conn.outbound
  if (order !== null) {
    // behind an answer still coming
    if (qos === 0 && conn.buffered + order.bytes > conn.ctx.config.limits.maxClientBufferBytes) {
      conn.ctx.stats.dropped++
      conn.ctx.emitter.dropped(message, 'clientBufferFull', conn.client.id)
      return true
    }
    order.add(message, qos, retain, ids, packetId, dup, from, applies ? hooks.deliver!(conn.client, message, qos, retain) : message)
    return true
  }
  if (!applies) return conn.writePublish(message, qos, retain, ids, packetId, dup, from)
  const answer = hooks.deliver!(conn.client, message, qos, retain)
  if (isPromise(answer)) {
    ;(conn.outbound = new OutboundOrder(conn)).add(message, qos, retain, ids, packetId, dup, from, answer)
    return true
  }
  if (answer === null) return qos === 0 // skipped
  return conn.writePublish(answer, qos, retain, ids, packetId, dup, from)
}

/** One PUBLISH waiting for its deliver answer, or for those before it. */
class Outgoing {
  decided = false
  constructor(
    readonly order: OutboundOrder,
    /** what to send: the original until decided, then the answer (null: skipped) */
    public message: Message | null,
    readonly qos: QoS,
    readonly retain: boolean,
    readonly ids: number[] | undefined,
    readonly packetId: number,
    readonly dup: boolean,
    readonly from: Flow | null,
    /** payload bytes counted against the client's buffer (QoS 0) */
    readonly bytes: number,
  ) {}

  answer(m: Message | null): void {
    this.message = m
    this.decided = true
    this.order.flush()
  }
}

/** A connection's PUBLISH packets in the order they were handed over, each written once it and those before it are decided. */
export class OutboundOrder {
  private readonly queue = new Fifo<Outgoing>()
  /** payload bytes of the QoS 0 messages waiting (they count as buffered: limits.maxClientBufferBytes) */
  bytes = 0
  private flushing = false

  constructor(private readonly conn: OutboundTarget) {}

  get size(): number {
    return this.queue.length
  }

  add(
    message: Message,
    qos: QoS,
    retain: boolean,
    ids: number[] | undefined,
    packetId: number,
    dup: boolean,
    from: Flow | null,
    answer: Message | null | Promise<Message | null>,
  ): void {
    const bytes = qos === 0 ? message.payload.length : 0
    const e = new Outgoing(this, message, qos, retain, ids, packetId, dup, from, bytes)
    this.bytes += bytes
    this.queue.push(e)
    if (!isPromise(answer)) return e.answer(answer)
    answer.then(
      (m) => e.answer(m),
      () => e.answer(message), // (the hooks fail open: they do not reject)
    )
  }

  /** Writes what is decided at the front; the connection goes back to the direct path once nothing waits. */
  flush(): void {
    if (this.flushing) return // (a write that completes a message sends the next queued one: it is added, and written by this loop)
    this.flushing = true
    const conn = this.conn
    try {
      for (let e = this.queue.peek(); e !== undefined && e.decided; e = this.queue.peek()) {
        this.queue.shift()
        this.bytes -= e.bytes
        if (!conn.isOpen) continue // a QoS 1/2 message stays in flight in its session: sent again when it resumes
        const m = e.message
        if ((m === null || !conn.writePublish(m, e.qos, e.retain, e.ids, e.packetId, e.dup, e.from)) && e.qos > 0) conn.settled(e.packetId)
      }
    } finally {
      this.flushing = false
    }
    if (this.queue.length === 0 && conn.outbound === this) conn.outbound = null
  }
}
