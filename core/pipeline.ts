import { ReasonCode } from './errors.js'
import type { Flow } from './flow.js'
import { isPromise, LATER, refusalCode, refused, type DecisionReceiver, type Later, type PublishDecision } from './hooks.js'
import { DecisionAudit } from './audit.js'
import { RetainedQuota } from './retained-quota.js'
import type { CoreServices } from './services.js'
import type { ClientInfo, Message } from './types.js'

// What every published message goes through: the built-in rules, the
// authorizePublish hooks, the transform hooks, then routing (the retained
// store, listeners, plugin taps, this node's sessions, the other nodes).
// Each step answers synchronously when it did not have to wait. The
// publisher's flow control travels with the message (`from`): a subscriber
// that cannot take it at once holds that publisher back.

/** A plugin that sees every routed message (BrokerPlugin.onPublish). */
export interface PublishTap {
  onPublish(message: Message, client: ClientInfo | undefined): Promise<void> | void
}

export class PublishPipeline {
  /** plugins that see every routed message */
  taps: PublishTap[] = []
  /** what the retained store holds, broker-wide and per client (limits.maxRetained*) */
  readonly retainedQuota: RetainedQuota
  /** every enforced decision's way out: the denial log, audit records, the hook host's watcher (audit.ts) */
  readonly audit: DecisionAudit
  /** defaults.publish, read once per change (not per message) */
  private allowedByDefault: boolean

  constructor(private readonly core: CoreServices) {
    this.allowedByDefault = core.config.defaults.publish === 'allow'
    this.audit = new DecisionAudit(core.id, core.emitter, core.log, core.config.audit)
    this.retainedQuota = new RetainedQuota(core.config.limits, core.stores.retained)
    // what the store held before this start counts too (with Redis: what every node stored)
    core.emitter.once('ready', () => {
      this.retainedQuota.load().catch((err: unknown) => core.log.error({ err }, 'retained usage could not be read'))
    })
  }

  /** `config.defaults` was replaced (a config reload): read defaults.publish again. */
  defaultsChanged(): void {
    this.allowedByDefault = this.core.config.defaults.publish === 'allow'
  }

  /**
   * For wills: built-in rules, then authorizePublish, then transform, then
   * routing. Answers the reason code for the publisher. (A client's PUBLISH
   * is decided and routed in two steps: handlers/publish-order.ts.)
   */
  ingest(client: ClientInfo, message: Message): number | Promise<number> {
    const d = this.decide(client, message)
    if (isPromise(d)) return d.then((o) => (typeof o === 'number' ? o : this.route(o, client, null)))
    return typeof d === 'number' ? d : this.route(d, client, null)
  }

  /**
   * The built-in rules, authorizePublish and transform: the message to route
   * (the same object when unchanged), or the reason code to answer without
   * routing it (a deny; 0 when a transform dropped it). `into`: given, an
   * authorizePublish decision that comes later may go to it (the answer is
   * LATER), which then asks authorized() for the outcome.
   */
  decide(client: ClientInfo, message: Message): Message | number | Promise<Message | number>
  decide(client: ClientInfo, message: Message, into: DecisionReceiver): Message | number | Promise<Message | number> | Later
  decide(client: ClientInfo, message: Message, into?: DecisionReceiver): Message | number | Promise<Message | number> | Later {
    if (message.topic.startsWith('$SYS')) {
      // $SYS is the broker's own, before any hook
      this.audit.publishRefused(client, message, ReasonCode.NotAuthorized, "$SYS is the broker's own")
      return ReasonCode.NotAuthorized
    }
    if (this.allowedByDefault && !this.core.hooks.appliesToPublish(message.topic))
      return this.audit.publishAllows ? this.authorized(PASS, client, message) : message
    const d = this.core.hooks.authorizePublish(client, message, into)
    if (d === LATER) return d
    if (isPromise(d))
      return d.then(
        (r) => this.authorized(r, client, message),
        () => ReasonCode.NotAuthorized,
      )
    return this.authorized(d, client, message)
  }

  /** After the authorizePublish decision: refused, or the transform hooks' outcome. */
  authorized(d: PublishDecision, client: ClientInfo, message: Message): Message | number | Promise<Message | number> {
    if (refused(d, this.allowedByDefault)) {
      const code = refusalCode(d)
      this.audit.publish(client, message, d, false, code)
      return code
    }
    if (this.audit.publishAllows) this.audit.publish(client, message, d, true, ReasonCode.Success)
    return this.transform(client, message)
  }

  /** The transform hooks: the message to route, or 0 (Success) when one dropped it. A failure lets the original through. */
  private transform(client: ClientInfo | undefined, message: Message): Message | number | Promise<Message | number> {
    const t = this.core.hooks.transform(client, message)
    if (isPromise(t))
      return t.then(
        (m) => m ?? ReasonCode.Success,
        () => message,
      )
    return t ?? ReasonCode.Success
  }

  /** transform hooks, then routing (messages published from code) */
  transformAndRoute(client: ClientInfo | undefined, message: Message): number | Promise<number> {
    const t = this.transform(client, message)
    if (isPromise(t)) return t.then((o) => (typeof o === 'number' ? o : this.route(o, client, null)))
    return typeof t === 'number' ? t : this.route(t, client, null)
  }

  /**
   * Stores a retained message, tells listeners and other nodes, routes locally.
   * Answers the reason code for the publisher, once what it waits for is stored.
   * `from`: the publisher's flow control (null for messages from code).
   */
  route(message: Message, client: ClientInfo | undefined, from: Flow | null): number | Promise<number> {
    const b = this.core
    message.node = b.id
    // everything that must be stored before the publisher is acknowledged, waited for once (null: nothing)
    let waits: Array<Promise<unknown>> | null = null
    if (message.retain) {
      const over = this.retainedQuota.admit(message)
      if (over === undefined) {
        const retained = b.stores.retained.set(message)
        if (retained !== undefined) waits = [retained]
      } else {
        b.quotas.refuse(over, message.origin)
        // a publisher that can be told is refused; one that cannot (QoS 0, MQTT 3.1.1) has its message delivered, not retained
        if (message.qos > 0 && client !== undefined && client.protocolVersion === 5) return ReasonCode.QuotaExceeded
        message.retain = false
      }
    }
    if (b.emitter.has('published')) b.emitter.emit('published', message, client)
    for (let i = 0; i < this.taps.length; i++) {
      const r = this.taps[i]!.onPublish(message, client)
      if (r !== undefined) (waits ??= []).push(r)
    }
    const routed = b.router.route(message, from) // before the bus: it decides which node's member of a shared group gets it
    message.encoded = undefined // a cache for this fan-out only: a message kept (retained, queued, in flight) would keep its bytes and the pooled slab they sit in
    let delivered: boolean
    if (typeof routed === 'number') delivered = routed > 0
    else {
      delivered = routed.count > 0
      waits = waits === null ? routed.writes : waits.concat(routed.writes)
    }
    // (in a cluster the bus may carry it to another node's subscribers; a retained message is kept)
    if (!delivered && !message.retain && b.cluster === undefined) b.emitter.dropped(message, 'noSubscribers', undefined)
    const bus = b.stores.bus.publish(message)
    if (bus !== undefined) (waits ??= []).push(bus)
    if (waits === null) return delivered ? ReasonCode.Success : ReasonCode.NoMatchingSubscribers
    return Promise.all(waits).then(delivered ? success : noSubscribers, this.refused)
  }

  private readonly refused = (err: unknown): number => {
    this.core.log.error({ err }, 'message could not be stored; refused')
    return ReasonCode.UnspecifiedError
  }

  /** Routes a message to this node's sessions only (one from another node, or replayed for adopted sessions). */
  routeLocal(message: Message): number | Promise<number> {
    if (message.retain) this.retainedQuota.observe(message) // the other node stored it
    const routed = this.core.router.route(message, null)
    message.encoded = undefined // (as in route)
    if (typeof routed === 'number') return routed > 0 ? ReasonCode.Success : ReasonCode.NoMatchingSubscribers
    return Promise.all(routed.writes).then(routed.count > 0 ? success : noSubscribers)
  }
}

const PASS: PublishDecision = Object.freeze({ result: 'pass' })

function success(): number {
  return ReasonCode.Success
}

function noSubscribers(): number {
  return ReasonCode.NoMatchingSubscribers
}
