import { EventEmitter } from 'node:events'
import type { AuditRecord, DenialInfo } from './audit.js'
import type { Logger } from './logger.js'
import type { ClientInfo, Message, QoS, Subscription } from './types.js'

/**
 * Why a message did not reach a subscriber (or anyone): its session's queue was
 * full (`limits.maxQueuedMessages` / `maxQueuedBytes`, the message that
 * `queueOverflow` gave up), it expired while it waited (Message Expiry Interval,
 * `limits.queuedMessageExpiry`), the client's socket held more than
 * `limits.maxClientBufferBytes` (QoS 0), it is larger than the client's Maximum
 * Packet Size (or MQTT cannot carry it), or nobody subscribes to its topic (a
 * single node, not retained).
 */
export type DropReason = 'queueFull' | 'expired' | 'clientBufferFull' | 'tooLarge' | 'noSubscribers'

/** A session as the session events tell it. */
export interface SessionEventInfo {
  clientId: string
  /** its Session Expiry Interval in seconds (0: ends with its connection) */
  expiryInterval: number
}

/** The lifecycle events, named as Mosca named them, with their payloads. */
export interface BrokerEvents {
  ready: []
  closed: []
  clientConnected: [client: ClientInfo, info: { sessionPresent: boolean }]
  clientDisconnecting: [client: ClientInfo, info: { reasonCode: number }]
  clientDisconnected: [client: ClientInfo, info: { reasonCode: number; reason?: string }]
  clientError: [client: ClientInfo | undefined, error: Error]
  keepaliveTimeout: [client: ClientInfo]
  published: [message: Message, client: ClientInfo | undefined]
  delivered: [message: Message, client: ClientInfo]
  subscribed: [subscription: Subscription, client: ClientInfo]
  unsubscribed: [filter: string, client: ClientInfo]
  /** a CONNECT opened a new session (none was there, or Clean Start discarded it) */
  sessionCreated: [session: SessionEventInfo, client: ClientInfo]
  /** a CONNECT resumed the client id's session; `queued`: messages waiting for it */
  sessionResumed: [session: SessionEventInfo & { queued: number }, client: ClientInfo]
  /** a disconnected session reached its expiry and ended; `client`: its last connection, when known */
  sessionExpired: [session: SessionEventInfo & { disconnectedAt: number | undefined }, client: ClientInfo | undefined]
  /** a message was dropped: for one subscriber (`clientId`), or for all (noSubscribers) */
  messageDropped: [message: Message, info: { reason: DropReason; clientId: string | undefined }]
  /** a PUBLISH was refused by the hooks, `defaults.publish` or the broker's own rules ($SYS) */
  publishDenied: [message: Message, client: ClientInfo, info: DenialInfo]
  /** a filter of a SUBSCRIBE was refused by the hooks or `defaults.subscribe` */
  subscribeDenied: [subscription: { filter: string; qos: QoS }, client: ClientInfo, info: DenialInfo]
  /** an enforced authenticate/authorize decision: every deny, and every allow with audit.allows (core/audit.ts) */
  audit: [record: AuditRecord]
}

export type BrokerEventName = keyof BrokerEvents
export type BrokerListener<E extends BrokerEventName> = (...args: BrokerEvents[E]) => void

/**
 * Event emitter whose listeners cannot harm the broker: a throw or a rejected
 * promise is caught and logged.
 */
export class BrokerEmitter {
  private readonly ee = new EventEmitter()
  private readonly wrapped = new WeakMap<(...a: never[]) => unknown, (...a: unknown[]) => void>()

  constructor(private readonly log: Logger) {
    this.ee.setMaxListeners(0)
  }

  on<E extends BrokerEventName>(event: E, fn: BrokerListener<E>): void {
    const safe = (...args: unknown[]): void => {
      try {
        const r = (fn as (...a: unknown[]) => unknown)(...args)
        if (r !== null && typeof r === 'object' && typeof (r as Promise<unknown>).catch === 'function') {
          ;(r as Promise<unknown>).catch((err: unknown) => this.log.error({ err, event }, 'event listener rejected'))
        }
      } catch (err) {
        this.log.error({ err, event }, 'event listener threw')
      }
    }
    this.wrapped.set(fn, safe)
    this.ee.on(event, safe)
  }

  once<E extends BrokerEventName>(event: E, fn: BrokerListener<E>): void {
    const wrapper = ((...args: BrokerEvents[E]) => {
      this.off(event, wrapper)
      fn(...args)
    }) as BrokerListener<E>
    this.on(event, wrapper)
  }

  off<E extends BrokerEventName>(event: E, fn: BrokerListener<E>): void {
    const safe = this.wrapped.get(fn)
    if (safe) this.ee.off(event, safe)
  }

  /** True when anyone listens: lets the hot path skip building a payload. */
  has(event: BrokerEventName): boolean {
    return this.ee.listenerCount(event) > 0
  }

  emit<E extends BrokerEventName>(event: E, ...args: BrokerEvents[E]): void {
    this.ee.emit(event, ...args)
  }

  /** `messageDropped`, when anyone listens (the payload is built only then). */
  dropped(message: Message, reason: DropReason, clientId: string | undefined): void {
    if (this.ee.listenerCount('messageDropped') > 0) this.ee.emit('messageDropped', message, { reason, clientId })
  }
}
