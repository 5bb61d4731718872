import type { IPubackPacket, IPubcompPacket, IPubrecPacket, IPubrelPacket } from 'mqtt-packet'
import type { Connection } from '../connection.js'
import { ReasonCode, protocolError } from '../errors.js'

// Acknowledgements of the QoS 1 and QoS 2 exchanges. An id the session does not
// know is not an error (it may be a duplicate after a reconnect); a known id in
// the wrong phase of its flow is a Protocol Error (MQTT 5 §4.13.2: DISCONNECT 0x82).

export function handlePuback(conn: Connection, packet: IPubackPacket): void {
  const messageId = packet.messageId ?? 0
  const session = conn.session!
  const entry = session.inflight.get(messageId)
  if (entry !== undefined && entry.qos !== 1) throw protocolError(`PUBACK for QoS ${entry.qos} message ${messageId}`) // MQTT 5 §4.3.2
  session.complete(messageId) // unknown ids are ignored
}

export function handlePubrec(conn: Connection, packet: IPubrecPacket): void {
  const messageId = packet.messageId ?? 0
  const failed = (packet.reasonCode ?? 0) >= 0x80
  const session = conn.session!
  const entry = session.inflight.get(messageId)
  if (entry !== undefined && entry.qos !== 2) throw protocolError(`PUBREC for QoS ${entry.qos} message ${messageId}`) // MQTT 5 §4.3.3
  if (!session.received(messageId, failed) && !failed) {
    // PUBREL even for an id we no longer know, so the client can finish (MQTT 5 §4.3.3: 0x92)
    conn.write(conn.protocolVersion === 5 ? { cmd: 'pubrel', messageId, reasonCode: ReasonCode.PacketIdentifierNotFound } : { cmd: 'pubrel', messageId })
  }
}

export function handlePubrel(conn: Connection, packet: IPubrelPacket): void {
  const messageId = packet.messageId ?? 0
  const session = conn.session!
  const known = session.incoming.delete(messageId)
  if (known && session.persistent) session.track(conn.ctx.stores.sessions.deleteIncoming(session.clientId, messageId))
  conn.write(
    conn.protocolVersion === 5 && !known ? { cmd: 'pubcomp', messageId, reasonCode: ReasonCode.PacketIdentifierNotFound } : { cmd: 'pubcomp', messageId },
  )
}

export function handlePubcomp(conn: Connection, packet: IPubcompPacket): void {
  const messageId = packet.messageId ?? 0
  const session = conn.session!
  const entry = session.inflight.get(messageId)
  if (entry !== undefined && (entry.qos !== 2 || entry.state !== 'pubrel')) {
    throw protocolError(entry.qos !== 2 ? `PUBCOMP for QoS ${entry.qos} message ${messageId}` : `PUBCOMP for message ${messageId} before its PUBREL`) // MQTT 5 §4.3.3
  }
  session.complete(messageId) // unknown ids are ignored
}
