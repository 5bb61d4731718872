import type { Message, MessageBus } from '../../core/index.js'
import { HookmqError, throttled } from '../../core/index.js'
import { busMessageFromJson, busMessageToJson } from './cluster-redis.js'
import type { InterestSync } from './interest.js'
import type { ClusterNode } from './node.js'

/**
 * The cluster's MessageBus: a message routed here goes on this node's stream
 * ('m' entries) while it has peers and one of them may need it (interest.ts); those of the others' streams go to the
 * subscribed handlers (the broker routes them to its own sessions only).
 */
export class RedisBus implements MessageBus {
  private readonly handlers: Array<(message: Message) => unknown> = []
  private readonly failed = throttled((err, lost) => this.self.log.warn({ err, lost }, 'QoS 0 messages not passed to the other nodes'))

  constructor(
    private readonly self: ClusterNode,
    private readonly interest: InterestSync,
  ) {}

  publish(message: Message): Promise<unknown> | undefined {
    if (this.self.peers.size === 0) return undefined // nobody reads this node's stream
    if (!this.self.available) return message.qos === 0 ? undefined : Promise.reject(new HookmqError('STORE_UNAVAILABLE', 'Redis is unavailable'))
    if (!this.interest.needed(message)) return undefined // no other node has a use for it
    const p = this.self.append('m', busMessageToJson(message))
    if (message.qos > 0) return p
    p.catch(this.failed)
    return undefined
  }

  subscribe(handler: (message: Message) => unknown): () => void {
    this.handlers.push(handler)
    return () => {
      this.handlers.splice(this.handlers.indexOf(handler), 1)
    }
  }

  async close(): Promise<void> {}

  /** An 'm' entry of `from`'s stream; the handlers' promises go to `pending` (settled before the reader moves on). */
  received(from: string, data: string, pending: unknown[]): void {
    const message = busMessageFromJson(data)
    message.node = from
    for (const h of this.handlers) {
      const r = h(message)
      if (r instanceof Promise) pending.push(r)
    }
  }
}
