import type { Packet } from 'mqtt-packet'
import type { Connection } from '../connection.js'
import { protocolError } from '../errors.js'
import { handleConnect } from './connect.js'
import { handlePublish } from './publish.js'
import { handlePuback, handlePubcomp, handlePubrec, handlePubrel } from './acks.js'
import { handleSubscribe } from './subscribe.js'
import { handleUnsubscribe } from './unsubscribe.js'
import { handleDisconnect } from './disconnect.js'
import { handleAuth } from './auth.js'

/**
 * The dispatcher enforces the connection rules; each handler does one packet
 * kind. A handler returns a promise only when it had to wait (an async hook).
 */
export function dispatch(conn: Connection, packet: Packet): void | Promise<void> {
  if (conn.state.kind === 'awaitingConnect') {
    if (packet.cmd !== 'connect') throw protocolError(`first packet must be CONNECT, got ${packet.cmd.toUpperCase()}`) // [MQTT-3.1.0-1]
    return handleConnect(conn, packet)
  }
  if (packet.cmd === 'connect') throw protocolError('second CONNECT on one connection') // [MQTT-3.1.0-2]
  if (conn.state.kind === 'authenticating' && conn.authExchange !== undefined) return duringAuthentication(conn, packet)
  if (conn.state.kind !== 'connected') return
  switch (packet.cmd) {
    case 'publish':
      return handlePublish(conn, packet)
    case 'puback':
      return handlePuback(conn, packet)
    case 'pubrec':
      return handlePubrec(conn, packet)
    case 'pubrel':
      return handlePubrel(conn, packet)
    case 'pubcomp':
      return handlePubcomp(conn, packet)
    case 'subscribe':
      return handleSubscribe(conn, packet)
    case 'unsubscribe':
      return handleUnsubscribe(conn, packet)
    case 'pingreq':
      conn.write({ cmd: 'pingresp' })
      return
    case 'disconnect':
      return handleDisconnect(conn, packet)
    case 'auth':
      return handleAuth(conn, packet)
    default:
      throw protocolError(`${packet.cmd.toUpperCase()} is not sent by clients`)
  }
}

/** Before CONNACK, in an enhanced authentication exchange: only AUTH and DISCONNECT [MQTT-3.1.2-30]. */
function duringAuthentication(conn: Connection, packet: Packet): void | Promise<void> {
  if (packet.cmd === 'auth') return handleAuth(conn, packet)
  if (packet.cmd === 'disconnect') return conn.beginClose(packet.reasonCode ?? 0, 'the client sent DISCONNECT during authentication')
  throw protocolError(`${packet.cmd.toUpperCase()} before CONNACK during enhanced authentication`) // [MQTT-3.1.2-30]
}
