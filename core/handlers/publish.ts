import type { IPublishPacket } from 'mqtt-packet'
import type { Connection } from '../connection.js'
import { HookmqError, malformed, ReasonCode, protocolError } from '../errors.js'
import { isPromise, LATER } from '../hooks.js'
import type { RefusablePublish } from '../packet-reader.js'
import { acknowledge, ordered, routeFrom } from './publish-order.js'
import { checkTopicName } from '../topic.js'
import { newMessage, type Message, type MessageProperties } from '../types.js'

// Inbound PUBLISH: resolve the topic alias, check the topic, enforce Receive
// Maximum, then ask the broker's publish pipeline for its decision and route it,
// answering with PUBACK / PUBREC. A decision that comes later goes through the
// connection's PublishOrder (publish-order.ts), which keeps routing and
// acknowledgements in arrival order without holding the next PUBLISH back.

export function handlePublish(conn: Connection, packet: IPublishPacket): void {
  if (packet.qos > 0 && packet.messageId === 0) throw protocolError(`QoS ${packet.qos} PUBLISH with packet identifier 0`) // [MQTT-2.2.1-3]
  if (packet.qos === 0 && packet.dup) throw malformed('DUP set on a QoS 0 PUBLISH') // [MQTT-3.3.1-2]
  const topic = resolveTopic(conn, packet)
  // a topic from an alias was checked on the PUBLISH that set it
  const problem = topic === packet.topic ? checkTopicName(topic, conn.ctx.config.limits) : undefined
  if (problem !== undefined) throw new HookmqError('TOPIC_NAME_INVALID', problem) // e.g. a wildcard [MQTT-3.3.2-2]
  const qos = packet.qos
  const session = conn.session!
  const messageId = packet.messageId ?? 0
  if (qos === 2 && session.incoming.has(messageId)) {
    conn.write({ cmd: 'pubrec', messageId }) // a resent QoS 2 message is not routed twice (MQTT 5.0 §4.3.3)
    return
  }
  if (qos === 2 && conn.publishOrder?.has(messageId)) return // resent while its first copy is still deciding: that one's PUBREC answers both
  // MQTT 5 clients were told the Receive Maximum; 3.1.1 has none (its packet ids bound what a client can leave open)
  if (qos > 0 && conn.protocolVersion === 5) {
    if (conn.incomingUnacked + session.incoming.size >= conn.ctx.config.limits.receiveMaximum) {
      throw new HookmqError('RECEIVE_MAXIMUM_EXCEEDED', 'more unacknowledged QoS 1/2 messages than Receive Maximum') // [MQTT-3.3.4-9]
    }
  }
  conn.ctx.stats.received[qos]++
  const message = toMessage(conn, packet, topic)
  if (message === undefined) return refuseProperties(conn, qos, messageId, (packet as RefusablePublish).refusedProperties)
  const ctx = conn.ctx
  if (qos > 0) conn.incomingUnacked++
  // refused, not acknowledged and lost: the client may send it again later
  const decision = qos > 0 && ctx.cluster !== undefined && !ctx.cluster.available ? ReasonCode.QuotaExceeded : ctx.pipeline.decide(conn.client, message, conn)
  if (decision === LATER) return ordered(conn).awaiting(message, qos, messageId) // its decision comes to conn.decided()
  const order = conn.publishOrder
  if (order !== null && order.size > 0) return order.add(decision, qos, messageId) // after the messages still deciding before it
  if (isPromise(decision)) return ordered(conn).add(decision, qos, messageId) // decided later: the next PUBLISH need not wait for it
  const code = typeof decision === 'number' ? decision : routeFrom(conn, decision)
  if (isPromise(code)) return ordered(conn).add(code, qos, messageId) // stored first: later messages wait, acknowledgements keep their order
  if (qos !== 0) acknowledge(conn, qos, messageId, code)
}

function resolveTopic(conn: Connection, packet: IPublishPacket): string {
  const alias = packet.properties?.topicAlias
  if (alias === undefined) return packet.topic
  const max = conn.ctx.config.limits.topicAliasMaximum
  if (alias === 0 || alias > max) throw new HookmqError('TOPIC_ALIAS_INVALID', `topic alias ${alias} outside 1..${max}`) // [MQTT-3.3.2-9]
  const map = (conn.aliasesIn ??= new Map())
  if (packet.topic.length > 0) {
    map.set(alias, packet.topic)
    return packet.topic
  }
  const topic = map.get(alias)
  if (topic === undefined) throw protocolError(`topic alias ${alias} was never set`)
  return topic
}

/** The message of a PUBLISH; undefined when its properties exceed the limits (see packet-reader.ts). */
function toMessage(conn: Connection, packet: RefusablePublish, topic: string): Message | undefined {
  if (packet.refusedProperties !== undefined) return undefined
  const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload
  const p = packet.properties
  if (p === undefined || conn.protocolVersion !== 5) return newMessage(topic, payload, packet.qos, packet.retain, conn.client.id)
  if (p.subscriptionIdentifier !== undefined) throw protocolError('PUBLISH from a client must not carry a Subscription Identifier') // [MQTT-3.3.4-6]
  if (p.responseTopic !== undefined && checkTopicName(p.responseTopic, conn.ctx.config.limits) !== undefined)
    throw protocolError('Response Topic is not a topic name') // [MQTT-3.3.2-14]
  const properties: MessageProperties = {}
  let any = false
  if (p.payloadFormatIndicator !== undefined) {
    properties.payloadFormatIndicator = p.payloadFormatIndicator
    any = true
  }
  if (p.contentType !== undefined) {
    properties.contentType = p.contentType
    any = true
  }
  if (p.responseTopic !== undefined) {
    properties.responseTopic = p.responseTopic
    any = true
  }
  if (p.correlationData !== undefined) {
    properties.correlationData = p.correlationData
    any = true
  }
  if (p.userProperties !== undefined) {
    properties.userProperties = p.userProperties
    any = true
  }
  if (p.messageExpiryInterval !== undefined) {
    properties.messageExpiryInterval = p.messageExpiryInterval
    any = true
  }
  return newMessage(topic, payload, packet.qos, packet.retain, conn.client.id, any ? properties : undefined)
}

/**
 * A PUBLISH whose properties exceed limits.maxUserProperties / maxPropertyBytes
 * is not routed. MQTT 5 has no 0x95 for PUBACK/PUBREC, and 0x99 means a payload
 * that does not match its format indicator: the answer is 0x97 Quota exceeded
 * ("an implementation or administrative imposed limit"); QoS 0 has no answer.
 */
function refuseProperties(conn: Connection, qos: 0 | 1 | 2, messageId: number, reason: string | undefined): void {
  conn.ctx.refusals.note('properties', { clientId: conn.client.id, reason })
  if (qos > 0) conn.write({ cmd: qos === 1 ? 'puback' : 'pubrec', messageId, reasonCode: ReasonCode.QuotaExceeded })
}
