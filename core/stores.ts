import { keep, newMessage, ownProperties, type Message, type MessageProperties, type QoS, type Subscription } from './types.js'
import type { BanStore } from './ban-store.js'
import { Fifo } from './fifo.js'
import { RetainedTree } from './retained.js'
import { messageSize } from './quota.js'

// The narrow persistence interfaces the core needs, all asynchronous, with the
// in-memory implementations used by default. The core keeps a live copy of the
// sessions it serves; these stores hold what must survive the connection (and,
// with a durable backend, the process). Only persistent sessions are written.

export interface Will {
  topic: string
  payload: Buffer
  qos: 0 | 1 | 2
  retain: boolean
  properties?: Message['properties']
  /** seconds (MQTT 5 Will Delay Interval) */
  delay: number
}

export interface StoredSession {
  clientId: string
  /** seconds; 0xFFFFFFFF never expires */
  expiryInterval: number
  subscriptions: Subscription[]
  /** epoch ms the last connection ended; undefined while connected */
  disconnectedAt?: number
  will?: Will
  /**
   * The identity that owns the session (core/identity.ts), null for an
   * anonymous client; absent in sessions stored before owners were recorded
   * (the first identity to resume one becomes its owner).
   */
  owner?: string | null
}

/** A message on its way to one client: queued, or sent and awaiting acknowledgement. */
export interface OutgoingEntry {
  message: Message
  /** QoS granted for this client */
  qos: 0 | 1 | 2
  retain: boolean
  subscriptionIds?: number[]
  packetId: number
  /** 'publish' = PUBLISH sent, awaiting PUBACK/PUBREC; 'pubrel' = PUBREL sent, awaiting PUBCOMP */
  state: 'publish' | 'pubrel'
}

export interface SessionState extends StoredSession {
  /** sent, unacknowledged, in packet-id order of sending */
  inflight: OutgoingEntry[]
  /** waiting to be sent, oldest first */
  queue: Array<Omit<OutgoingEntry, 'packetId' | 'state'> & { /** epoch ms it may wait until (queued message expiry) */ expiresAt?: number }>
  /** QoS 2 packet ids received and PUBREC'd, awaiting PUBREL */
  incoming: number[]
}

export type QueuedEntry = SessionState['queue'][number]

/**
 * What a store write answers: a promise to wait for before the write counts as
 * durable, or undefined when it is already done (the memory stores), so that
 * nothing on the publish path waits a tick for a write that has happened.
 */
export type Written = Promise<void> | undefined

/** A persistent session's subscriptions changed (SessionStore.updateSubscriptions); its expiry is given for stores whose keys expire. */
export interface SubscriptionChange {
  clientId: string
  expiryInterval: number
  disconnectedAt?: number
  set: Subscription[]
  removed: string[]
}

export interface SessionStore {
  load(clientId: string): Promise<SessionState | undefined>
  /** every stored session (for restoring routes at start-up) */
  list(): Promise<StoredSession[]>
  save(session: StoredSession): Written
  /**
   * Only the subscriptions changed: `set` are added or replace the one of
   * their filter, `removed` are gone. A store without it is sent the whole
   * session (save) instead, which for a client subscribing one filter at a
   * time rewrites every subscription each time.
   */
  updateSubscriptions?(change: SubscriptionChange): Written
  /** forget the session with its queue, in-flight and incoming state */
  delete(clientId: string): Written
  /** append to the queue; when it then holds more than `max`, the oldest go */
  enqueue(clientId: string, entry: QueuedEntry, max: number): Written
  /** remove the oldest queued entry (it is being sent) */
  dequeue(clientId: string): Written
  /** the queue is now `entries`, oldest first (some were dropped: their subscription was revoked) */
  replaceQueue(clientId: string, entries: QueuedEntry[]): Written
  putInflight(clientId: string, entry: OutgoingEntry): Written
  /** the oldest queued entry is now in flight as `entry` (dequeue + putInflight in one; a store may move it without rewriting it) */
  dequeueToInflight(clientId: string, entry: OutgoingEntry): Written
  deleteInflight(clientId: string, packetId: number): Written
  addIncoming(clientId: string, packetId: number): Written
  deleteIncoming(clientId: string, packetId: number): Written
  close(): Promise<void>
}

/** What one stored retained message costs, as the store reports it at start-up. */
export interface RetainedUsage {
  topic: string
  bytes: number
  /** client id of the publisher; undefined for messages published from code */
  origin?: string
  expiresAt?: number
}

export interface RetainedStore {
  /** store `message` as the retained one for its topic; an empty payload clears it */
  set(message: Message): Written
  /** retained messages whose topic matches `filter` */
  match(filter: string): Promise<Message[]>
  /** the same a page at a time, found as they are asked for (a subscription matching a million is served without holding them all) */
  pages(filter: string): AsyncIterator<Message[]>
  count(): Promise<number>
  /** what each stored retained message costs (read once at start-up, for the retained quotas) */
  usage?(): Promise<RetainedUsage[]>
  /** clears `topic` only if its retained message has expired (a newer one stays) */
  clearExpired?(topic: string): Written
  close(): Promise<void>
}

/**
 * Carries routed messages between broker nodes. A node routes its own messages
 * locally and hands them to the bus for the others; what arrives from the bus
 * (`message.node` set to another node's id) is routed locally only.
 */
export interface MessageBus {
  publish(message: Message): Promise<unknown> | void
  /**
   * Returns a function that stops the subscription. The handler answers a
   * promise when store writes follow from the message (a durable bus waits for
   * them before it counts the message as handled). `node`, the subscribing
   * node's id, lets a bus skip handing a node its own messages (the handler
   * ignores them anyway).
   */
  subscribe(handler: (message: Message) => unknown, node?: string): () => void
  close(): Promise<void>
}

export interface Stores {
  sessions: SessionStore
  retained: RetainedStore
  bus: MessageBus
  /** bans added at run time (core/ban-store.ts); in memory when omitted */
  bans?: BanStore
}

type MemorySession = Omit<SessionState, 'queue' | 'subscriptions'> & { queue: Fifo<QueuedEntry>; subscriptions: Map<string, Subscription> }

const byFilter = (subs: Subscription[]): Map<string, Subscription> => new Map(subs.map((sub) => [sub.filter, sub]))

export class MemorySessionStore implements SessionStore {
  private readonly sessions = new Map<string, MemorySession>()

  async load(clientId: string): Promise<SessionState | undefined> {
    const s = this.sessions.get(clientId)
    if (!s) return undefined
    return {
      ...s,
      subscriptions: [...s.subscriptions.values()],
      inflight: s.inflight.map((e) => ({ ...e })),
      queue: s.queue.toArray(),
      incoming: [...s.incoming],
    }
  }

  async list(): Promise<StoredSession[]> {
    return [...this.sessions.values()].map((s) => ({
      clientId: s.clientId,
      expiryInterval: s.expiryInterval,
      subscriptions: [...s.subscriptions.values()],
      disconnectedAt: s.disconnectedAt,
      will: s.will,
      owner: s.owner,
    }))
  }

  save(session: StoredSession): Written {
    const cur = this.sessions.get(session.clientId)
    if (cur) Object.assign(cur, session, { subscriptions: byFilter(session.subscriptions) })
    else this.sessions.set(session.clientId, { ...session, subscriptions: byFilter(session.subscriptions), inflight: [], queue: new Fifo(), incoming: [] })
    return undefined
  }

  updateSubscriptions(change: SubscriptionChange): Written {
    const subs = this.sessions.get(change.clientId)?.subscriptions
    if (subs !== undefined) {
      for (const sub of change.set) subs.set(sub.filter, sub)
      for (const filter of change.removed) subs.delete(filter)
    }
    return undefined
  }

  delete(clientId: string): Written {
    this.sessions.delete(clientId)
    return undefined
  }

  enqueue(clientId: string, entry: QueuedEntry, max: number): Written {
    const s = this.sessions.get(clientId)
    if (s) {
      s.queue.push(entry)
      while (s.queue.length > max) s.queue.shift()
    }
    return undefined
  }

  dequeue(clientId: string): Written {
    this.sessions.get(clientId)?.queue.shift()
    return undefined
  }

  replaceQueue(clientId: string, entries: QueuedEntry[]): Written {
    const s = this.sessions.get(clientId)
    if (s) s.queue = Fifo.from(entries)
    return undefined
  }

  putInflight(clientId: string, entry: OutgoingEntry): Written {
    const s = this.sessions.get(clientId)
    if (s) {
      const i = s.inflight.findIndex((e) => e.packetId === entry.packetId)
      if (i >= 0) s.inflight[i] = { ...entry }
      else s.inflight.push({ ...entry })
    }
    return undefined
  }

  dequeueToInflight(clientId: string, entry: OutgoingEntry): Written {
    this.dequeue(clientId)
    return this.putInflight(clientId, entry)
  }

  deleteInflight(clientId: string, packetId: number): Written {
    const s = this.sessions.get(clientId)
    if (s) {
      const i = s.inflight.findIndex((e) => e.packetId === packetId)
      if (i >= 0) s.inflight.splice(i, 1)
    }
    return undefined
  }

  addIncoming(clientId: string, packetId: number): Written {
    const s = this.sessions.get(clientId)
    if (s && !s.incoming.includes(packetId)) s.incoming.push(packetId)
    return undefined
  }

  deleteIncoming(clientId: string, packetId: number): Written {
    const s = this.sessions.get(clientId)
    if (s) s.incoming = s.incoming.filter((id) => id !== packetId)
    return undefined
  }

  async close(): Promise<void> {}
}

/** retained messages a page holds (RetainedStore.pages) */
export const RETAINED_PAGE = 500

/** payloads up to this many bytes are kept as a string (Kept.bytes) */
const SMALL_PAYLOAD = 1024

/**
 * A retained message as the memory store keeps it. A Message has fifteen
 * fields, most of them caches for routing, and its payload a Buffer: a typed
 * array and its ArrayBuffer, about 200 bytes of heap before the bytes. Kept,
 * a small payload is a one-byte string instead (16 bytes before them; the
 * Buffer is made again for each delivery) and only what a delivery needs
 * stays. That is less to hold, and less for the young-generation collector to
 * copy: a bulk load of a million retained messages left them for the first
 * collections after it, which stalled every client (`Performance` in README).
 */
class Kept {
  constructor(
    readonly topic: string,
    /** small payloads as latin1 (one char per byte: the same bytes back), larger ones a Buffer of their own */
    readonly bytes: string | Buffer,
    readonly qos: QoS,
    readonly properties: MessageProperties | undefined,
    readonly expiresAt: number | undefined,
    readonly origin: string | undefined,
  ) {}

  static of(m: Message): Kept {
    const p = m.payload
    if (p.length <= SMALL_PAYLOAD) return new Kept(m.topic, p.toString('latin1'), m.qos, ownProperties(m.properties), m.expiresAt, m.origin)
    keep(m) // a large payload is held as the message's own bytes, copied once for the store and any queue that keeps it too
    return new Kept(m.topic, m.payload, m.qos, m.properties, m.expiresAt, m.origin)
  }

  message(): Message {
    const b = this.bytes
    const m = newMessage(this.topic, typeof b === 'string' ? latin1Bytes(b) : b, this.qos, true, this.origin, this.properties)
    m.expiresAt = this.expiresAt
    m.kept = true
    return m
  }
}

/**
 * `s`'s bytes in a Buffer of their own (Buffer.from would cut them from a
 * shared 8 KB slab, which keep() would copy again). Short ones copied in a
 * loop: Buffer#write crosses into C++, ~290 ns for 16 bytes against ~40.
 */
function latin1Bytes(s: string): Buffer {
  const b = Buffer.allocUnsafeSlow(s.length)
  if (s.length > 128) b.write(s, 'latin1')
  else for (let i = 0; i < s.length; i++) b[i] = s.charCodeAt(i)
  return b
}

function message(k: Kept): Message {
  return k.message()
}

export class MemoryRetainedStore implements RetainedStore {
  private readonly tree = new RetainedTree<Kept>()

  set(message: Message): Written {
    // [MQTT-3.3.1-6] an empty payload clears; so does a message that has already expired
    if (message.payload.length === 0 || (message.expiresAt !== undefined && message.expiresAt <= Date.now())) this.tree.delete(message.topic)
    else this.tree.set(message.topic, Kept.of(message))
    return undefined
  }

  async match(filter: string): Promise<Message[]> {
    return this.tree.match(filter).map(message)
  }

  async *pages(filter: string): AsyncGenerator<Message[]> {
    for (const page of this.tree.pages(filter, RETAINED_PAGE)) yield page.map(message)
  }

  async count(): Promise<number> {
    return this.tree.size
  }

  async usage(): Promise<RetainedUsage[]> {
    const out: RetainedUsage[] = []
    for (const k of this.tree.messages()) out.push({ topic: k.topic, bytes: messageSize(k.message()), origin: k.origin, expiresAt: k.expiresAt })
    return out
  }

  clearExpired(topic: string): Written {
    const k = this.tree.get(topic)
    if (k?.expiresAt !== undefined && k.expiresAt <= Date.now()) this.tree.delete(topic)
    return undefined
  }

  async close(): Promise<void> {}
}

/** An in-process bus: brokers in one process that share it behave as one cluster. */
export class MemoryBus implements MessageBus {
  private handlers: Array<{ handler: (message: Message) => unknown; node: string | undefined }> = []

  /** to every other node's handler: a broker alone on its bus makes no call per message */
  publish(message: Message): void {
    const hs = this.handlers
    for (let i = 0; i < hs.length; i++) if (hs[i]!.node !== message.node) hs[i]!.handler(message)
  }

  subscribe(handler: (message: Message) => unknown, node?: string): () => void {
    const entry = { handler, node }
    this.handlers = [...this.handlers, entry]
    return () => {
      this.handlers = this.handlers.filter((h) => h !== entry)
    }
  }

  async close(): Promise<void> {}
}

export function memoryStores(): Stores {
  return { sessions: new MemorySessionStore(), retained: new MemoryRetainedStore(), bus: new MemoryBus() }
}
