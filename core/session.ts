import type { DropReason } from './events.js'
import { Fifo } from './fifo.js'
import type { Flow } from './flow.js'
import { messageSize, type QuotaName } from './quota.js'
import { matchesFilter, parseShared } from './topic.js'
import { keep, type Message, type QoS, type Subscription, type ClientInfo } from './types.js'
import type { OutgoingEntry, QueuedEntry, SessionState, SessionStore, StoredSession, Will, Written } from './stores.js'

/** The connection serving a session (a Connection; the session and its manager see only this). */
export interface Outlet {
  /**
   * Writes a PUBLISH; false when the client's maximum packet size forbade it.
   * `from`: the publisher's flow control, held back when the socket is full.
   */
  sendPublish(message: Message, qos: QoS, retain: boolean, ids: number[] | undefined, packetId: number, dup: boolean, from: Flow | null): boolean
  sendPubrel(packetId: number): void
  /** the most unacknowledged QoS 1/2 messages this client accepts */
  readonly sendWindow: number
  readonly client: ClientInfo
  /** the will of its CONNECT */
  readonly will: Will | undefined
  /** it ended with a DISCONNECT that leaves no will (or the broker is closing) */
  readonly cleanDisconnect: boolean
  /** a message to it had to wait: hold the publisher (`from`) back */
  congested(from: Flow | null): void
  /** the queue is empty again */
  caughtUp(): void
  /** Closes it with a reason code (MQTT 5 DISCONNECT) and reason string. */
  closeWith(reasonCode: number, reason?: string): void
}

export interface SessionContext {
  store: SessionStore
  maxQueued: number
  /** bytes (messageSize) a session queue may hold */
  maxQueuedBytes: number
  /** bytes (messageSize) sent and unacknowledged; one message goes even when larger */
  maxInflightBytes: number
  dropNewest: boolean
  onDelivered(message: Message, client: ClientInfo): void
  onDropped(): void
  /** a message for this session was not delivered (the messageDropped event) */
  onMessageDropped(message: Message, reason: DropReason, clientId: string): void
  /** a queued message was dropped because the queue reached a quota */
  onQueueFull(quota: QuotaName, clientId: string): void
  onStoreError(err: unknown): void
  /** how long a message may wait for an offline client (unset: no limit) */
  queuedTtlMs: number | undefined
}

export const NEVER_EXPIRES = 0xffffffff

/** The broker's live state of one MQTT session, connected or not. */
export class Session {
  expiryInterval = 0
  readonly subscriptions = new Subscriptions()
  outlet: Outlet | null = null
  private inflightMap: Map<number, OutgoingEntry> | null = null
  /** messageSize of everything in inflightMap */
  private inflightBytes = 0
  /** waiting to be sent; made on first use (idle sessions stay small) */
  private queueList: Fifo<QueuedEntry> | null = null
  /** messageSize of everything in queueList */
  private queueBytes = 0
  private incomingSet: Set<number> | null = null
  private nextId = 1
  will: Will | undefined = undefined
  willTimer: NodeJS.Timeout | undefined = undefined
  expiryTimer: NodeJS.Timeout | undefined = undefined
  disconnectedAt: number | undefined = undefined
  lastClient: ClientInfo | undefined = undefined
  /** the identity of the connection that last opened it (null: anonymous; undefined: unknown, stored before owners were recorded) */
  owner: string | null | undefined = undefined
  constructor(
    readonly clientId: string,
    private readonly ctx: SessionContext,
  ) {}

  /** sent and unacknowledged, by packet id (made on first use: idle sessions stay small) */
  get inflight(): Map<number, OutgoingEntry> {
    return (this.inflightMap ??= new Map())
  }

  /** QoS 2 packet ids received and not yet released */
  get incoming(): Set<number> {
    return (this.incomingSet ??= new Set())
  }

  get persistent(): boolean {
    return this.expiryInterval > 0
  }

  get queued(): number {
    return this.queueList === null ? 0 : this.queueList.length
  }

  private get queue(): Fifo<QueuedEntry> {
    return (this.queueList ??= new Fifo())
  }

  /** Hand `message` to this session at the QoS and retain flag its subscription gives it. */
  deliver(message: Message, qos: QoS, retain: boolean, ids: number[] | undefined, from: Flow | null): Written {
    const outlet = this.outlet
    if (qos === 0) {
      if (outlet !== null) {
        if (!expired(message)) outlet.sendPublish(message, 0, retain, ids, 0, false, from)
        else this.ctx.onMessageDropped(message, 'expired', this.clientId)
      }
      return undefined // QoS 0 is not queued for offline sessions
    }
    if (outlet !== null && this.queued === 0 && this.hasRoom(outlet)) {
      return this.send(message, qos, retain, ids, outlet, from)
    }
    if (outlet !== null) outlet.congested(from)
    const ttl = this.ctx.queuedTtlMs
    const expiresAt = outlet === null && ttl !== undefined && message.expiresAt === undefined ? Date.now() + ttl : undefined
    return this.enqueue({ message, qos, retain, subscriptionIds: ids, expiresAt }) // one shape for every entry
  }

  /** At the queue's bound (messages or bytes), queueOverflow decides which message goes. */
  private enqueue(entry: QueuedEntry): Written {
    const max = this.ctx.maxQueued
    const maxBytes = this.ctx.maxQueuedBytes
    const size = messageSize(entry.message)
    const queue = this.queue
    if (queue.length >= max || this.queueBytes + size > maxBytes) {
      if (this.ctx.dropNewest || max === 0 || size > maxBytes) {
        this.dropped(queue.length >= max ? 'queued_messages' : 'queued_bytes', entry.message)
        return undefined
      }
      while (queue.length > 0 && (queue.length >= max || this.queueBytes + size > maxBytes)) {
        const quota = queue.length >= max ? 'queued_messages' : 'queued_bytes'
        const oldest = queue.shift()!.message
        this.queueBytes -= messageSize(oldest)
        if (this.persistent) this.track(this.ctx.store.dequeue(this.clientId))
        this.dropped(quota, oldest)
      }
    }
    keep(entry.message) // (not a view of the read it came in: ownBytes)
    queue.push(entry)
    this.queueBytes += size
    return this.persistent ? this.ctx.store.enqueue(this.clientId, entry, max) : undefined
  }

  private dropped(quota: QuotaName, message: Message): void {
    this.ctx.onDropped()
    this.ctx.onQueueFull(quota, this.clientId)
    this.ctx.onMessageDropped(message, 'queueFull', this.clientId)
  }

  /** `fromQueue`: the message is the oldest queued one, which moves to in flight in the store too. */
  private send(message: Message, qos: QoS, retain: boolean, ids: number[] | undefined, outlet: Outlet, from: Flow | null, fromQueue = false): Written {
    const packetId = this.allocateId()
    keep(message) // in flight until acknowledged: not a view of the read it came in (ownBytes)
    const entry: OutgoingEntry = { message, qos, retain, subscriptionIds: ids, packetId, state: 'publish' }
    this.inflight.set(packetId, entry)
    this.inflightBytes += messageSize(message)
    const store = this.ctx.store
    const stored = !this.persistent ? undefined : fromQueue ? store.dequeueToInflight(this.clientId, entry) : store.putInflight(this.clientId, entry)
    if (!outlet.sendPublish(message, qos, retain, ids, packetId, false, from)) {
      this.complete(packetId) // [MQTT-3.1.2-25] too large for this client: act as if delivered
    }
    return stored
  }

  /** A message at `qos` would go out now, not into the queue (the session is connected). */
  hasRoomNow(qos: QoS): boolean {
    return qos === 0 || (this.outlet !== null && this.queued === 0 && this.hasRoom(this.outlet))
  }

  /** The client's window has room: fewer messages in flight than it takes, and their bytes under maxInflightBytes. */
  private hasRoom(outlet: Outlet): boolean {
    return this.inflight.size < outlet.sendWindow && this.inflightBytes < this.ctx.maxInflightBytes
  }

  /** Frees an in-flight slot. */
  private landed(entry: OutgoingEntry): void {
    this.inflight.delete(entry.packetId)
    this.inflightBytes -= messageSize(entry.message)
  }

  private allocateId(): number {
    for (;;) {
      const id = this.nextId
      this.nextId = id === 65535 ? 1 : id + 1
      if (!this.inflight.has(id)) return id
    }
  }

  /** An inbound QoS 2 message was accepted: its id is held until PUBREL (stored for a persistent session). */
  receive(packetId: number): Written {
    this.incoming.add(packetId)
    return this.persistent ? this.ctx.store.addIncoming(this.clientId, packetId) : undefined
  }

  /** PUBACK for QoS 1, PUBCOMP for QoS 2: the message is delivered. */
  complete(packetId: number): boolean {
    const entry = this.inflight.get(packetId)
    if (entry === undefined) return false
    this.landed(entry)
    if (this.persistent) this.track(this.ctx.store.deleteInflight(this.clientId, packetId))
    if (this.outlet !== null) this.ctx.onDelivered(entry.message, this.outlet.client)
    this.pump()
    return true
  }

  /** PUBREC: QoS 2 delivery moves to its second phase. */
  received(packetId: number, failed: boolean): boolean {
    const entry = this.inflight.get(packetId)
    if (entry === undefined || entry.qos !== 2) return false
    if (failed) {
      // reason code >= 0x80 ends the exchange: PUBREL only below 0x80 [MQTT-4.3.3-4]
      this.landed(entry)
      if (this.persistent) this.track(this.ctx.store.deleteInflight(this.clientId, packetId))
      this.pump()
      return true
    }
    entry.state = 'pubrel'
    if (this.persistent) this.track(this.ctx.store.putInflight(this.clientId, entry))
    this.outlet?.sendPubrel(packetId)
    return true
  }

  /** A connection takes over this session: resend what was unacknowledged, then the queue. */
  attach(outlet: Outlet, resume: boolean): void {
    this.outlet = outlet
    this.disconnectedAt = undefined
    if (resume) {
      for (const entry of this.inflight.values()) {
        // [MQTT-4.4.0-1]
        if (entry.state === 'pubrel') outlet.sendPubrel(entry.packetId)
        else if (!outlet.sendPublish(entry.message, entry.qos, entry.retain, entry.subscriptionIds, entry.packetId, true, null)) this.complete(entry.packetId)
      }
    }
    this.pump()
  }

  detach(): void {
    this.outlet = null
    this.disconnectedAt = Date.now()
  }

  /** Send queued messages while the client's window allows. */
  pump(): void {
    const outlet = this.outlet
    if (outlet === null) return
    while (this.queued > 0 && this.hasRoom(outlet)) {
      const q = this.queue.shift()!
      this.queueBytes -= messageSize(q.message)
      if (expired(q.message) || (q.expiresAt !== undefined && q.expiresAt <= Date.now())) {
        // its own deadline, or the queue's
        if (this.persistent) this.track(this.ctx.store.dequeue(this.clientId))
        this.ctx.onMessageDropped(q.message, 'expired', this.clientId)
        continue
      }
      this.track(this.send(q.message, q.qos, q.retain, q.subscriptionIds, outlet, null, true))
    }
    if (this.queued === 0) outlet.caughtUp()
  }

  /** Discard all message state (clean start). */
  reset(): void {
    this.inflightMap = null
    this.inflightBytes = 0
    this.queueList = null
    this.queueBytes = 0
    this.incomingSet = null
    this.subscriptions.clear()
  }

  /** After a change: what is stored of a persistent session is written again (a write failure is logged, see track). */
  persist(): void {
    if (this.persistent) this.track(this.ctx.store.save(this.toStored()))
  }

  /** After SUBSCRIBE, UNSUBSCRIBE or a revocation: only the subscriptions that changed are written, where the store can (SessionStore.updateSubscriptions). */
  persistSubscriptions(set: Subscription[], removed: string[]): void {
    if (!this.persistent || (set.length === 0 && removed.length === 0)) return
    const store = this.ctx.store
    if (store.updateSubscriptions === undefined) return this.persist()
    this.track(store.updateSubscriptions({ clientId: this.clientId, expiryInterval: this.expiryInterval, disconnectedAt: this.disconnectedAt, set, removed }))
  }

  toStored(): StoredSession {
    return {
      clientId: this.clientId,
      expiryInterval: this.expiryInterval,
      subscriptions: [...this.subscriptions.values()],
      disconnectedAt: this.disconnectedAt,
      will: this.will,
      owner: this.owner,
    }
  }

  restore(state: SessionState): void {
    this.expiryInterval = state.expiryInterval
    for (const s of state.subscriptions) this.subscriptions.set(s.filter, s)
    for (const e of state.inflight) {
      this.inflight.set(e.packetId, { ...e })
      this.inflightBytes += messageSize(e.message)
    }
    this.queueList = state.queue.length === 0 ? null : Fifo.from(state.queue)
    this.queueBytes = 0
    for (const q of state.queue) this.queueBytes += messageSize(q.message)
    for (const id of state.incoming) this.incoming.add(id)
    this.disconnectedAt = state.disconnectedAt
    this.will = state.will
    this.owner = state.owner
  }

  /**
   * Drops the messages waiting for this client that none of its subscriptions
   * matches any more (one was revoked): queued ones, and sent ones not
   * acknowledged yet. A PUBREL still owed goes on: that message was delivered.
   */
  discardUncovered(): void {
    const filters = this.subscriptions.keys().map(plainFilter)
    const covered = (topic: string): boolean => filters.some((f) => matchesFilter(f, topic))
    const queue = this.queueList
    if (queue !== null) {
      const kept = queue.toArray().filter((e) => covered(e.message.topic))
      if (kept.length !== queue.length) {
        this.queueList = kept.length === 0 ? null : Fifo.from(kept)
        this.queueBytes = 0
        for (const e of kept) this.queueBytes += messageSize(e.message)
        if (this.persistent) this.track(this.ctx.store.replaceQueue(this.clientId, kept))
      }
    }
    // in flight to a connected client: sent already, its acknowledgement frees the slot (dropping it would strand the window)
    const inflight = this.inflightMap
    if (inflight !== null && this.outlet === null) {
      for (const entry of inflight.values()) {
        if (entry.state === 'pubrel' || covered(entry.message.topic)) continue
        this.landed(entry)
        if (this.persistent) this.track(this.ctx.store.deleteInflight(this.clientId, entry.packetId))
      }
    }
    this.pump() // a connected client's queue may have room now (offline: nothing to do)
  }

  track(p: Written): void {
    if (p !== undefined) p.then(undefined, this.ctx.onStoreError)
  }
}

function expired(message: Message): boolean {
  return message.expiresAt !== undefined && message.expiresAt <= Date.now()
}

/**
 * A session's subscriptions by filter. Most sessions have one: it is kept in a
 * field, and a Map (about 250 bytes even when small) is made from the second on.
 */
export class Subscriptions {
  private one: Subscription | undefined = undefined
  private map: Map<string, Subscription> | null = null
  /** characters of the filters held (limits.maxSubscriptionBytesPerClient) */
  chars = 0

  get size(): number {
    return this.map !== null ? this.map.size : this.one === undefined ? 0 : 1
  }

  get(filter: string): Subscription | undefined {
    if (this.map !== null) return this.map.get(filter)
    return this.one !== undefined && this.one.filter === filter ? this.one : undefined
  }

  has(filter: string): boolean {
    return this.get(filter) !== undefined
  }

  set(filter: string, sub: Subscription): void {
    if (this.map === null && (this.one === undefined || this.one.filter === filter)) {
      if (this.one === undefined) this.chars += filter.length
      this.one = sub
      return
    }
    if (this.map === null) {
      this.map = new Map([[this.one!.filter, this.one!]])
      this.one = undefined
    }
    const held = this.map.size
    this.map.set(filter, sub)
    if (this.map.size !== held) this.chars += filter.length
  }

  delete(filter: string): boolean {
    if (this.map !== null) {
      if (!this.map.delete(filter)) return false
    } else {
      if (this.one === undefined || this.one.filter !== filter) return false
      this.one = undefined
    }
    this.chars -= filter.length
    return true
  }

  clear(): void {
    this.one = undefined
    this.map = null
    this.chars = 0
  }

  /** a copy: safe to change the set while going through it */
  values(): Subscription[] {
    if (this.map !== null) return [...this.map.values()]
    return this.one === undefined ? [] : [this.one]
  }

  keys(): string[] {
    return this.values().map((s) => s.filter)
  }
}

/** the filter a subscription matches topics with (`$share/<group>/` removed) */
function plainFilter(filter: string): string {
  const shared = parseShared(filter)
  return shared !== null && typeof shared === 'object' ? shared.filter : filter
}
