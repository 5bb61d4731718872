import type { ClientInfo, DeliverySlot, Later, Message, QoS } from '../../core/index.js'
import { TopicMemo } from '../../core/index.js'
import { chainDeliver, type Runnable, type TransformCheck } from './runners.js'
import { makeDeliverCheck, type TransformLimits } from './schemas.js'

// The deliver hook point as the host serves it: the hooks that have one, which
// topics they apply to (filter.topics, cached per topic), and the check of
// their answers. The core asks it only while `list` is not empty.

export class DeliverHooks {
  list: Runnable[] = []
  private unfiltered = false
  private readonly applies = new TopicMemo<boolean>((topic) => this.list.some((e) => e.filter!(topic)))
  private readonly check: TransformCheck

  constructor(limits: TransformLimits | undefined) {
    this.check = makeDeliverCheck(limits)
  }

  /** The hooks with a deliver method now (a load, a removal, a hook turned off). */
  set(list: Runnable[]): void {
    this.list = list
    this.unfiltered = list.some((e) => e.filter === null)
    this.applies.clear()
  }

  appliesTo(topic: string): boolean {
    if (this.list.length === 0) return false
    return this.unfiltered || this.applies.get(topic)
  }

  deliver(client: ClientInfo, message: Message, qos: QoS, retain: boolean, slot: DeliverySlot | undefined): Message | null | Promise<Message | null> | Later {
    return chainDeliver(this.list, client, message, qos, retain, this.check, slot)
  }
}
