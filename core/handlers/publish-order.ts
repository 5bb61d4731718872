import type { IPubrecPacket } from 'mqtt-packet'
import type { Connection, PublishQueue } from '../connection.js'
import { ReasonCode } from '../errors.js'
import { Fifo } from '../fifo.js'
import { isPromise, type PublishDecision } from '../hooks.js'
import type { Message } from '../types.js'

// One publisher's messages, routed and acknowledged in the order they arrived
// while their hooks decide concurrently. A hook that answers later (an async
// hook, a worker-isolated one) does not hold the connection's next PUBLISH
// back: its decision is asked for at once, and routing waits only for the
// decisions of the messages before it. A message's routing that waits for
// storage (a persistent subscriber, a retained message in Redis) does hold
// the ones after it, as acknowledgements must leave in order.

/**
 * Messages deciding or waiting for an earlier one, at most: a further PUBLISH
 * waits for room (and the connection stops reading, its later packets kept as
 * bytes) until half of them are done. Decisions in flight keep their messages alive:
 * more would not go faster, and would cost the garbage collector.
 */
const MAX_PENDING = 64

const PENDING = 0
const DECIDED = 1
const ROUTING = 2
const DONE = 3

interface Entry {
  state: number
  /** the message to route, or the code to answer without routing */
  outcome: Message | number
  code: number
  qos: 0 | 1 | 2
  messageId: number
}

export class PublishOrder {
  private readonly queue = new Fifo<Entry>()
  /** packet ids of QoS 2 messages here, not yet acknowledged (a resend of one is not routed again) */
  private qos2: Set<number> | null = null
  private waiters: Array<() => void> | null = null
  private roomWaiters: Array<() => void> | null = null
  /** entries taken off the front so far, and where (counted as they) the last decided() found its entry, plus one */
  private shifted = 0
  private found = 0

  constructor(private readonly conn: Connection) {}

  /** Messages not yet routed and acknowledged. */
  get size(): number {
    return this.queue.length
  }

  /** A PUBLISH's decision (or its promise): routed and acknowledged after every earlier one. */
  add(decision: Message | number | Promise<Message | number>, qos: 0 | 1 | 2, messageId: number): void {
    const entry: Entry = { state: PENDING, outcome: 0, code: 0, qos, messageId }
    if (isPromise(decision)) this.later(entry, decision)
    else {
      entry.state = DECIDED
      entry.outcome = decision
    }
    this.push(entry)
  }

  /** A PUBLISH whose authorizePublish decision will come to decided() (the pipeline answered LATER). */
  awaiting(message: Message, qos: 0 | 1 | 2, messageId: number): void {
    this.push({ state: PENDING, outcome: message, code: 0, qos, messageId })
  }

  /**
   * The decision on a message given to awaiting(): the outcome is the
   * pipeline's (a refusal, or the transform hooks' message). A message whose
   * connection closed meanwhile is no longer here, and the decision is dropped.
   */
  decided(decision: PublishDecision, message: Message): void {
    const q = this.queue
    let entry: Entry | undefined
    // answers mostly come in order: the one waited for is mostly just after the last one found
    // (decided entries held by a congested subscriber may fill the front)
    const n = q.length
    const from = Math.min(Math.max(this.found - this.shifted, 0), n)
    for (let k = 0; k < n; k++) {
      const i = from + k < n ? from + k : from + k - n
      const e = q.at(i)!
      if (e.outcome === message && e.state === PENDING) {
        entry = e
        this.found = this.shifted + i + 1
        break
      }
    }
    if (entry === undefined) return
    const outcome = this.conn.ctx.pipeline.authorized(decision, this.conn.client, message)
    if (isPromise(outcome)) this.later(entry, outcome)
    else this.settle(entry, outcome)
  }

  /** The outcome of `entry` comes in a promise (a failure refuses it). */
  private later(entry: Entry, outcome: Promise<Message | number>): void {
    outcome.then(
      (o) => this.settle(entry, o),
      () => this.settle(entry, ReasonCode.NotAuthorized),
    )
  }

  private push(entry: Entry): void {
    this.queue.push(entry)
    if (entry.qos === 2) (this.qos2 ??= new Set()).add(entry.messageId)
    if (this.queue.length === 1) this.flush()
  }

  /** True while a QoS 2 message with this packet id waits here. */
  has(messageId: number): boolean {
    return this.qos2 !== null && this.qos2.has(messageId)
  }

  /** As many messages as may be in flight: the next PUBLISH waits for room(). */
  get full(): boolean {
    return this.queue.length >= MAX_PENDING
  }

  /** Resolves when half the messages in flight are done. */
  room(): Promise<void> {
    if (this.queue.length <= MAX_PENDING / 2) return Promise.resolve()
    return new Promise((resolve) => (this.roomWaiters ??= []).push(resolve))
  }

  /** Resolves when every message so far has been routed and acknowledged (a later packet of another kind waits for it). */
  drained(): Promise<void> {
    if (this.queue.length === 0) return Promise.resolve()
    return new Promise((resolve) => (this.waiters ??= []).push(resolve))
  }

  /** The congested subscribers that held this publisher caught up. */
  resume(): void {
    if (this.queue.length > 0) this.flush()
  }

  private settle(entry: Entry, outcome: Message | number): void {
    entry.state = DECIDED
    entry.outcome = outcome
    this.flush()
  }

  /** Routes and acknowledges from the oldest on, until one is still deciding or waits for its storage. */
  private flush(): void {
    const q = this.queue
    // a closed connection's messages not yet routed go nowhere: those at QoS 1 and 2 were not acknowledged, the client sends them again
    if (!this.conn.isOpen) {
      this.shifted += q.length
      while (q.length > 0) q.shift()
      this.qos2 = null
    }
    while (q.length > 0) {
      const e = q.peek()!
      if (e.state === PENDING || e.state === ROUTING) return
      if (e.state === DECIDED) {
        // a subscriber could not take the last one at once: what is decided waits with the unread packets (unthrottled() resumes)
        if (this.conn.flow.congestion > 0) return
        const code = this.route(e)
        if (isPromise(code)) {
          e.state = ROUTING
          code.then(
            (c) => this.routed(e, c),
            () => this.routed(e, ReasonCode.UnspecifiedError),
          )
          return
        }
        e.code = code
      }
      q.shift()
      this.shifted++
      if (e.qos === 2) this.qos2!.delete(e.messageId)
      if (!this.conn.isOpen) continue // closed by the acknowledgement before it (a refusal a 3.1.1 client cannot be told)
      if (e.qos !== 0) acknowledge(this.conn, e.qos, e.messageId, e.code)
      if (this.roomWaiters !== null && q.length <= MAX_PENDING / 2) {
        const r = this.roomWaiters
        this.roomWaiters = null
        for (const fn of r) fn()
      }
    }
    const w = this.waiters
    this.waiters = null
    if (w !== null) for (const fn of w) fn()
  }

  private routed(entry: Entry, code: number): void {
    entry.state = DONE
    entry.code = code
    this.flush()
  }

  private route(e: Entry): number | Promise<number> {
    if (typeof e.outcome === 'number') return e.outcome
    return routeFrom(this.conn, e.outcome)
  }
}

/** Routes `message` with its publisher's flow control (a congested subscriber holds the publisher back). */
export function routeFrom(conn: Connection, message: Message): number | Promise<number> {
  return conn.ctx.pipeline.route(message, conn.client, conn.flow)
}

/** The connection's PublishOrder, made on first use. */
export function ordered(conn: Connection): PublishQueue {
  return (conn.publishOrder ??= new PublishOrder(conn))
}

/** PUBACK / PUBREC with the routing's reason code (a v3 client that cannot be told of a refusal is closed instead). */
export function acknowledge(conn: Connection, qos: 1 | 2, messageId: number, code: number): void {
  conn.incomingUnacked--
  const session = conn.session
  if (session === undefined) return
  const v5 = conn.protocolVersion === 5
  if (code >= 0x80 && code !== 0x87 && !v5) {
    // a v3 client cannot be told the message was refused: close without acknowledging, so it sends it again
    conn.closeWith(code, 'message could not be accepted')
    return
  }
  if (qos === 1) {
    conn.write(v5 && code !== 0 ? { cmd: 'puback', messageId, reasonCode: code } : { cmd: 'puback', messageId })
    return
  }
  const pubrec: IPubrecPacket = v5 && code !== 0 ? { cmd: 'pubrec', messageId, reasonCode: code } : { cmd: 'pubrec', messageId }
  const stored = code < 0x80 ? session.receive(messageId) : undefined
  if (stored === undefined) {
    conn.write(pubrec)
    return
  }
  // PUBREC once the id is stored, so a resend after a crash is not routed twice; a failed write is logged by the session
  const send = (): void => conn.write(pubrec)
  session.track(stored)
  stored.then(send, send)
}
