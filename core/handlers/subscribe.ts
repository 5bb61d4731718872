import type { ISubscribePacket, ISubscription } from 'mqtt-packet'
import type { Connection } from '../connection.js'
import { HookmqError, ReasonCode, protocolError } from '../errors.js'
import { isPromise, refusalCode, refused, type SubscribeDecision } from '../hooks.js'
import { checkTopicFilter, parseShared } from '../topic.js'
import type { QoS, Subscription } from '../types.js'

// SUBSCRIBE: check each filter, ask the authorizeSubscribe hooks, record the
// granted subscriptions, answer SUBACK, then send matching retained messages.

/** topic filters one SUBSCRIBE may carry, or limits.maxSubscriptionsPerClient when that is larger; past it the connection is closed (0x97) */
const MAX_FILTERS_PER_PACKET = 10000

export function handleSubscribe(conn: Connection, packet: ISubscribePacket): void | Promise<void> {
  // (a filter with ill-formed UTF-8 or U+0000 never gets here: the reader closed the connection [MQTT-1.5.4-1/2])
  if (packet.messageId === 0) throw protocolError('SUBSCRIBE with packet identifier 0') // [MQTT-2.2.1-3]
  if (packet.subscriptions.length === 0) throw protocolError('SUBSCRIBE without a topic filter') // [MQTT-3.8.3-3] (3.1.1), [MQTT-3.8.3-2] (5.0)
  const id = packet.properties?.subscriptionIdentifier
  if (id === 0) throw protocolError('Subscription Identifier of 0') // 5.0 section 3.8.2.1.2: 1 to 268,435,455 (no conformance statement of its own)
  // more filters in one packet than the client may hold: each would be decided, routed and fed retained messages
  // (one 1 MiB SUBSCRIBE repeating '#' 262,125 times held the broker 30 s and ended it out of memory)
  // (within that, new filters past the quota get 0x97 each, in their place [MQTT-3.9.3-1])
  const max = Math.max(conn.ctx.config.limits.maxSubscriptionsPerClient, MAX_FILTERS_PER_PACKET)
  if (packet.subscriptions.length > max) {
    conn.ctx.quotas.refuse('subscriptions', conn.client.id)
    throw new HookmqError('QUOTA_EXCEEDED', `a SUBSCRIBE with ${packet.subscriptions.length} topic filters, more than the ${max} one packet may carry`)
  }
  const decisions: Array<SubscribeDecision | Promise<SubscribeDecision> | number> = packet.subscriptions.map((s) => check(conn, s))
  if (decisions.some((d) => typeof d === 'object' && isPromise(d))) {
    return Promise.all(decisions.map((d) => (typeof d === 'number' ? d : Promise.resolve(d).catch(() => deny)))).then((settled) =>
      apply(conn, packet, settled, id),
    )
  }
  return apply(conn, packet, decisions as Array<SubscribeDecision | number>, id)
}

const deny: SubscribeDecision = { result: 'deny', reasonCode: ReasonCode.NotAuthorized }

/** A reason code when the filter fails the built-in rules, else the hooks' decision. */
function check(conn: Connection, s: ISubscription): SubscribeDecision | Promise<SubscribeDecision> | number {
  const shared = parseShared(s.topic)
  if (typeof shared === 'string') return ReasonCode.TopicFilterInvalid
  const filter = shared === null ? s.topic : shared.filter
  if (checkTopicFilter(filter, conn.ctx.config.limits) !== undefined) return ReasonCode.TopicFilterInvalid // [MQTT-4.7.1-1]
  if (shared !== null && s.nl) throw protocolError('No Local on a shared subscription') // [MQTT-3.8.3-4]
  return conn.ctx.hooks.authorizeSubscribe(conn.client, { filter: s.topic, qos: s.qos })
}

function apply(conn: Connection, packet: ISubscribePacket, decisions: Array<SubscribeDecision | number>, id: number | undefined): void | Promise<void> {
  const session = conn.session
  if (session === undefined || !conn.isOpen) return
  const ctx = conn.ctx
  const granted: number[] = []
  const added: Array<{ sub: Subscription; isNew: boolean }> = []
  /** filter -> its entry in `added`: a filter repeated in one packet replaces its earlier copy [MQTT-3.8.4-3], fed retained messages once */
  let seen: Map<string, number> | undefined
  const announced: Array<Promise<unknown>> = []
  for (let i = 0; i < packet.subscriptions.length; i++) {
    const s = packet.subscriptions[i]!
    const d = decisions[i]!
    if (typeof d === 'number' || refused(d, ctx.config.defaults.subscribe === 'allow')) {
      const code = typeof d === 'number' ? d : refusalCode(d)
      if (typeof d !== 'number') ctx.pipeline.audit.subscribe(conn.client, { filter: s.topic, qos: s.qos }, d, false, code)
      granted.push(conn.protocolVersion === 5 ? code : 0x80)
      continue
    }
    if (ctx.pipeline.audit.subscribeAllows) ctx.pipeline.audit.subscribe(conn.client, { filter: s.topic, qos: s.qos }, d, true, ReasonCode.Success)
    const isNew = !session.subscriptions.has(s.topic)
    if (isNew && overQuota(conn, session.subscriptions.size, session.subscriptions.chars + s.topic.length)) {
      granted.push(conn.protocolVersion === 5 ? ReasonCode.QuotaExceeded : 0x80) // [MQTT-3.9.3-1] one code per filter, in order
      continue
    }
    const qos = (d.result === 'allow' && d.qos !== undefined && d.qos < s.qos ? d.qos : s.qos) as QoS
    const sub: Subscription = { filter: s.topic, qos, nl: s.nl ?? false, rap: s.rap ?? false, rh: (s.rh ?? 0) as 0 | 1 | 2 }
    if (id !== undefined) sub.id = id
    session.subscriptions.set(s.topic, sub) // [MQTT-3.8.4-3] replaces an existing one
    ctx.router.add(session, sub, announced)
    if (packet.subscriptions.length > 1) seen ??= new Map()
    const earlier = seen?.get(s.topic)
    if (earlier === undefined) {
      seen?.set(s.topic, added.length)
      added.push({ sub, isNew })
    } else added[earlier]!.sub = sub
    granted.push(qos)
  }
  session.persistSubscriptions(
    added.map((a) => a.sub),
    [],
  )
  // in a cluster, a filter new to this node is acknowledged once the other nodes know of it (they send this node only what matches)
  if (announced.length > 0) return Promise.allSettled(announced).then(() => acknowledge(conn, packet, granted, added))
  acknowledge(conn, packet, granted, added)
}

function acknowledge(conn: Connection, packet: ISubscribePacket, granted: number[], added: Array<{ sub: Subscription; isNew: boolean }>): void {
  const session = conn.session
  if (session === undefined || !conn.isOpen) return
  const ctx = conn.ctx
  conn.write({ cmd: 'suback', messageId: packet.messageId ?? 0, granted })
  for (const { sub, isNew } of added) {
    ctx.emitter.emit('subscribed', sub, conn.client)
    // [MQTT-3.3.1-9..11] retained messages per Retain Handling; none for shared subscriptions
    if (sub.rh === 2 || (sub.rh === 1 && !isNew) || sub.filter.startsWith('$share/')) continue
    ctx.sendRetained(conn, session, sub)
  }
}

/** A new filter beyond limits.maxSubscriptionsPerClient, or past maxSubscriptionBytesPerClient, is refused (and counted); replacing one costs nothing. */
function overQuota(conn: Connection, held: number, chars: number): boolean {
  const limits = conn.ctx.config.limits
  if (held < limits.maxSubscriptionsPerClient && chars <= limits.maxSubscriptionBytesPerClient) return false
  conn.ctx.quotas.refuse('subscriptions', conn.client.id)
  return true
}
