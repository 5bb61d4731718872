import type { ClientInfo, DeliverySlot, Later, Message, QoS } from '../../core/index.js'
import { TopicMemo } from '../../core/index.js'
import type { CanarySplit, MethodLists } from './rollout.js'
import { chainDeliver, type Runnable, type TransformCheck } from './runners.js'
import { makeDeliverCheck, type TransformLimits } from './schemas.js'

// The deliver hook point as the host serves it: the hooks that have one (a
// canary's for its share of subscribers' client ids), which topics they apply
// to (filter.topics, cached per topic), and the check of their answers. The
// core asks it only while `active`.

export class DeliverHooks {
  /** the hooks every subscriber meets when no canary serves it */
  list: Runnable[] = []
  /** some hook (or canary) has a deliver method */
  active = false
  private split: CanarySplit<MethodLists<Runnable>> | undefined
  /** the list and the canaries' hooks: what a topic may meet */
  private any: Runnable[] = []
  private unfiltered = false
  private readonly applies = new TopicMemo<boolean>((topic) => this.any.some((e) => e.filter!(topic)))
  private readonly check: TransformCheck

  constructor(limits: TransformLimits | undefined) {
    this.check = makeDeliverCheck(limits)
  }

  /** The hooks with a deliver method now (a load, a removal, a hook turned off): `list`, and with canaries their split and their hooks. */
  set(list: Runnable[], split: CanarySplit<MethodLists<Runnable>> | undefined, canaries: Runnable[]): void {
    this.list = list
    this.split = split
    this.any = canaries.length === 0 ? list : [...list, ...canaries]
    this.active = this.any.length > 0
    this.unfiltered = this.any.some((e) => e.filter === null)
    this.applies.clear()
  }

  appliesTo(topic: string): boolean {
    if (!this.active) return false
    return this.unfiltered || this.applies.get(topic)
  }

  deliver(client: ClientInfo, message: Message, qos: QoS, retain: boolean, slot: DeliverySlot | undefined): Message | null | Promise<Message | null> | Later {
    const list = this.split === undefined ? this.list : this.split.for(client.id).deliver
    return chainDeliver(list, client, message, qos, retain, this.check, slot)
  }
}
