import type { IDisconnectPacket } from 'mqtt-packet'
import type { Connection } from '../connection.js'
import { ReasonCode, protocolError } from '../errors.js'

export function handleDisconnect(conn: Connection, packet: IDisconnectPacket): void {
  const session = conn.session!
  const reasonCode = packet.reasonCode ?? 0
  const expiry = packet.properties?.sessionExpiryInterval
  if (expiry !== undefined) {
    // [MQTT-3.14.2-2] a session that was to end with the connection cannot be extended now
    if (session.expiryInterval === 0 && expiry !== 0) throw protocolError('Session Expiry Interval set on DISCONNECT after 0 on CONNECT')
    session.expiryInterval = Math.min(expiry, conn.ctx.config.limits.maxSessionExpiryInterval)
  }
  // [MQTT-3.14.4-3] a normal DISCONNECT discards the will; 0x04 asks for it to be sent
  conn.cleanDisconnect = reasonCode !== ReasonCode.DisconnectWithWill
  conn.beginClose(reasonCode, reasonCode === ReasonCode.DisconnectWithWill ? 'the client sent DISCONNECT (with will)' : 'the client sent DISCONNECT')
}
