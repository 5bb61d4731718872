import { EventEmitter } from 'node:events'
import type { AuditRecord } from './audit.js'
import type { Logger } from './logger.js'
import type { ClientInfo, Message, Subscription } from './types.js'

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
}
