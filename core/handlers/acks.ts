import type { IPubackPacket, IPubcompPacket, IPubrecPacket, IPubrelPacket } from 'mqtt-packet'
import type { Connection } from '../connection.js'
import { ReasonCode } from '../errors.js'

// Acknowledgements of the QoS 1 and QoS 2 exchanges.

export function handlePuback(conn: Connection, packet: IPubackPacket): void {
  conn.session!.complete(packet.messageId ?? 0) // [MQTT-4.3.2-?] unknown ids are ignored
}

export function handlePubrec(conn: Connection, packet: IPubrecPacket): void {
  const messageId = packet.messageId ?? 0
  const failed = (packet.reasonCode ?? 0) >= 0x80
  if (!conn.session!.received(messageId, failed) && !failed) {
    // [MQTT-4.3.3-?] PUBREL even for an id we no longer know, so the client can finish
    conn.write(conn.protocolVersion === 5
      ? { cmd: 'pubrel', messageId, reasonCode: ReasonCode.PacketIdentifierNotFound }
      : { cmd: 'pubrel', messageId })
  }
}

export function handlePubrel(conn: Connection, packet: IPubrelPacket): void {
  const messageId = packet.messageId ?? 0
  const session = conn.session!
  const known = session.incoming.delete(messageId)
  if (known && session.persistent) session.track(conn.broker.stores.sessions.deleteIncoming(session.clientId, messageId))
  conn.write(conn.protocolVersion === 5 && !known
    ? { cmd: 'pubcomp', messageId, reasonCode: ReasonCode.PacketIdentifierNotFound }
    : { cmd: 'pubcomp', messageId })
}

export function handlePubcomp(conn: Connection, packet: IPubcompPacket): void {
  conn.session!.complete(packet.messageId ?? 0)
}
