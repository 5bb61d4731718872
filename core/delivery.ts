import type { IPublishPacket } from 'mqtt-packet'
import { encodePacket, encodePublish } from './codec.js'
import type { Connection } from './connection.js'
import type { Message, QoS } from './types.js'

// The bytes of one PUBLISH to one client: shared across QoS 0 subscribers
// that need no properties of their own, otherwise with this client's MQTT 5
// properties (message expiry left, subscription identifiers, topic alias).

/**
 * Encodes `message` for `conn`; undefined when it cannot go to this client
 * (the codec refused it, or it is larger than the client's Maximum Packet Size)
 * and is dropped for this client only.
 */
export function encodeDelivery(conn: Connection, message: Message, qos: QoS, retain: boolean, ids: number[] | undefined, packetId: number, dup: boolean): Buffer | undefined {
  const v5 = conn.protocolVersion === 5
  // MQTT 5 properties to write (a 3.1.1 client gets none): through the codec
  if (v5 && (message.properties !== undefined || ids !== undefined || conn.topicAliasMaxOut > 0)) return encodeWithProperties(conn, message, qos, retain, ids, packetId, dup)
  let buf: Buffer
  if (qos === 0) {
    // the same bytes for every such subscriber: encoded once per message
    const slot = (v5 ? 2 : 0) + (retain ? 1 : 0)
    const shared = message.encoded?.[slot]
    if (shared !== undefined) buf = shared
    else {
      buf = encodePublish(message.topic, message.payload, 0, retain, false, 0, v5)
      ;(message.encoded ??= [])[slot] = buf
    }
  } else {
    buf = encodePublish(message.topic, message.payload, qos, retain, dup, packetId, v5)
  }
  return buf.length > conn.maxOutgoingPacket ? undefined : buf
}

function encodeWithProperties(conn: Connection, message: Message, qos: QoS, retain: boolean, ids: number[] | undefined, packetId: number, dup: boolean): Buffer | undefined {
  const packet: IPublishPacket = { cmd: 'publish', topic: message.topic, payload: message.payload, qos, retain, dup, messageId: packetId }
  const newAlias = addProperties(conn, packet, message, ids)
  let buf: Buffer | undefined
  try {
    buf = encodePacket(packet, conn.genOpts)
  } catch (err) {
    conn.broker.log.warn({ err, clientId: conn.client.id, topic: packet.topic }, 'message could not be encoded for this client')
  }
  if (buf === undefined || buf.length > conn.maxOutgoingPacket) {
    if (newAlias !== '') conn.aliasesOut!.delete(newAlias) // the client never learnt it
    return undefined
  }
  return buf
}

/** Adds this client's MQTT 5 properties; answers the topic when a new outbound alias was assigned. */
function addProperties(conn: Connection, packet: IPublishPacket, message: Message, ids: number[] | undefined): string {
  // the message's own properties are shared by every subscriber: copied only when this one needs changes
  const p = message.properties as NonNullable<IPublishPacket['properties']> | undefined
  const adds = message.expiresAt !== undefined || ids !== undefined || conn.topicAliasMaxOut > 0
  const props: NonNullable<IPublishPacket['properties']> | undefined = adds ? { ...p } : p
  if (props !== undefined && message.expiresAt !== undefined) {
    props.messageExpiryInterval = Math.max(1, Math.ceil((message.expiresAt - Date.now()) / 1000)) // [MQTT-3.3.2-6]
  }
  if (ids !== undefined) props!.subscriptionIdentifier = ids.length === 1 ? ids[0]! : ids
  let newAlias = ''
  if (conn.topicAliasMaxOut > 0) {
    const map = (conn.aliasesOut ??= new Map())
    const alias = map.get(message.topic)
    if (alias !== undefined) {
      props!.topicAlias = alias
      packet.topic = ''
    } else if (map.size < conn.topicAliasMaxOut) {
      const next = map.size + 1
      map.set(message.topic, next)
      props!.topicAlias = next
      newAlias = message.topic
    }
  }
  if (props !== undefined && Object.keys(props).length > 0) packet.properties = props
  return newAlias
}
