import type { IUnsubscribePacket } from 'mqtt-packet'
import type { Connection } from '../connection.js'
import { ReasonCode, protocolError } from '../errors.js'

export function handleUnsubscribe(conn: Connection, packet: IUnsubscribePacket): void {
  if (packet.messageId === 0) throw protocolError('UNSUBSCRIBE with packet identifier 0') // [MQTT-2.2.1-3]
  if (packet.unsubscriptions.length === 0) throw protocolError('UNSUBSCRIBE without a topic filter') // [MQTT-3.10.3-2]
  const session = conn.session!
  const ctx = conn.ctx
  const granted: number[] = []
  const removed: string[] = []
  for (const filter of packet.unsubscriptions) {
    const existed = session.subscriptions.delete(filter)
    if (existed) {
      removed.push(filter)
      ctx.router.remove(session, filter)
      ctx.emitter.emit('unsubscribed', filter, conn.client)
    }
    granted.push(existed ? ReasonCode.Success : ReasonCode.NoSubscriptionExisted)
  }
  session.persistSubscriptions([], removed)
  conn.write({ cmd: 'unsuback', messageId: packet.messageId ?? 0, granted }) // reason codes only go to MQTT 5 clients
}
