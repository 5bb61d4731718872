import { messageSize, type QuotaName } from './quota.js'
import type { RetainedStore } from './stores.js'
import type { Message } from './types.js'
import { noop } from './hooks.js'

// How much the retained store holds, broker-wide and per publishing client,
// kept in memory so that the publish path decides in O(1) whether a retained
// message may be stored. Fed by what this node stores, by what other nodes
// store (their messages arrive here on the bus), and at start-up by the store.
// With several nodes it is therefore approximate: two nodes can each admit a
// message in the moment before they hear of the other's.

export interface RetainedLimits {
  maxRetainedMessages: number
  maxRetainedBytes: number
  maxRetainedMessagesPerClient: number
  maxRetainedBytesPerClient: number
}

interface Held {
  bytes: number
  origin: string | undefined
  expiresAt: number | undefined
}

interface Usage {
  count: number
  bytes: number
}

const RECLAIM_EVERY_MS = 1000

export class RetainedQuota {
  private readonly held = new Map<string, Held>()
  private readonly clients = new Map<string, Usage>()
  private readonly total: Usage = { count: 0, bytes: 0 }
  /** held messages with an expiry: only then can a refusal be lifted by reclaiming expired ones */
  private expiring = 0
  private reclaimedAt = 0

  constructor(
    private readonly limits: RetainedLimits,
    private readonly store: RetainedStore,
  ) {}

  get count(): number {
    return this.total.count
  }

  get bytes(): number {
    return this.total.bytes
  }

  /** what `clientId`'s retained messages hold */
  usageOf(clientId: string): Usage {
    const u = this.clients.get(clientId)
    return { count: u?.count ?? 0, bytes: u?.bytes ?? 0 }
  }

  /**
   * Whether `message` may be stored: undefined (and it is counted), or the
   * quota it would exceed. Clearing always may; replacing counts the
   * difference. Messages published from code (no origin) are never refused.
   */
  admit(message: Message): QuotaName | undefined {
    if (clears(message)) {
      this.forget(message.topic)
      return undefined
    }
    const size = messageSize(message)
    const origin = message.origin
    if (origin !== undefined) {
      let over = this.exceeds(message.topic, size, origin)
      if (over !== undefined && this.reclaim()) over = this.exceeds(message.topic, size, origin)
      if (over !== undefined) return over
    }
    this.hold(message.topic, size, origin, message.expiresAt)
    return undefined
  }

  /** A retained message another node stored (it decided): counted without a check. */
  observe(message: Message): void {
    if (clears(message)) this.forget(message.topic)
    else this.hold(message.topic, messageSize(message), message.origin, message.expiresAt)
  }

  /** Counts what the store holds already (start-up); topics seen since are newer and kept. */
  async load(): Promise<void> {
    const entries = this.store.usage === undefined ? [] : await this.store.usage()
    const now = Date.now()
    for (const e of entries) {
      if (e.expiresAt !== undefined && e.expiresAt <= now) this.store.clearExpired?.(e.topic)?.catch(noop)
      else if (!this.held.has(e.topic)) this.hold(e.topic, e.bytes, e.origin, e.expiresAt)
    }
  }

  private exceeds(topic: string, size: number, origin: string): QuotaName | undefined {
    const l = this.limits
    const old = this.held.get(topic)
    if (old === undefined && this.total.count >= l.maxRetainedMessages) return 'retained_messages'
    const grows = size - (old === undefined ? 0 : old.bytes)
    if (grows > 0 && this.total.bytes + grows > l.maxRetainedBytes) return 'retained_bytes'
    const mine = old !== undefined && old.origin === origin // replacing its own message: only the difference
    const u = this.clients.get(origin)
    if (!mine && (u === undefined ? 0 : u.count) >= l.maxRetainedMessagesPerClient) return 'client_retained_messages'
    const clientGrows = mine ? grows : size
    if (clientGrows > 0 && (u === undefined ? 0 : u.bytes) + clientGrows > l.maxRetainedBytesPerClient) return 'client_retained_bytes'
    return undefined
  }

  private hold(topic: string, bytes: number, origin: string | undefined, expiresAt: number | undefined): void {
    let h = this.held.get(topic)
    if (h === undefined) {
      h = { bytes: 0, origin: undefined, expiresAt: undefined }
      this.held.set(topic, h)
      this.total.count++
    } else this.release(h)
    h.bytes = bytes
    h.origin = origin
    h.expiresAt = expiresAt
    this.total.bytes += bytes
    if (expiresAt !== undefined) this.expiring++
    if (origin === undefined) return
    const u = this.clients.get(origin)
    if (u === undefined) this.clients.set(origin, { count: 1, bytes })
    else {
      u.count++
      u.bytes += bytes
    }
  }

  /** Takes `h`'s bytes off the totals and off its client (the topic itself stays counted). */
  private release(h: Held): void {
    this.total.bytes -= h.bytes
    if (h.expiresAt !== undefined) this.expiring--
    if (h.origin === undefined) return
    const u = this.clients.get(h.origin)
    if (u === undefined) return
    u.count--
    u.bytes -= h.bytes
    if (u.count <= 0) this.clients.delete(h.origin)
  }

  private forget(topic: string): void {
    const h = this.held.get(topic)
    if (h === undefined) return
    this.release(h)
    this.held.delete(topic)
    this.total.count--
  }

  /** At most once a second, when a quota is reached: forget expired messages (and clear them from the store). */
  private reclaim(): boolean {
    const now = Date.now()
    if (this.expiring === 0 || now - this.reclaimedAt < RECLAIM_EVERY_MS) return false
    this.reclaimedAt = now
    let freed = false
    for (const [topic, h] of this.held) {
      if (h.expiresAt === undefined || h.expiresAt > now) continue
      this.forget(topic)
      this.store.clearExpired?.(topic)?.catch(noop) // a store that is away keeps it until it expires there, or is matched
      freed = true
    }
    return freed
  }
}

/** [MQTT-3.3.1-6] an empty payload clears the topic; so does a message that has already expired */
function clears(message: Message): boolean {
  return message.payload.length === 0 || (message.expiresAt !== undefined && message.expiresAt <= Date.now())
}
