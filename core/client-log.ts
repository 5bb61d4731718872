import type { Connection } from './connection.js'

// A client's connect and disconnect, one line each at info, as Mosquitto logs
// them by default ("New client connected from ... as ...", "Client ...
// disconnected"). Refused CONNECTs are logged where they are refused
// ("connection refused": handlers/connect.ts, refusals.ts), sockets that never
// sent a CONNECT by refusals.ts.

/** What the CONNECT asked for and got. */
export interface ConnectedAs {
  keepalive: number
  cleanStart: boolean
  sessionPresent: boolean
}

export function logConnected(conn: Connection, as: ConnectedAs): void {
  const c = conn.client
  conn.ctx.log.info(
    {
      clientId: c.id,
      username: c.username,
      remoteAddress: c.remoteAddress,
      listener: c.listener,
      protocolVersion: c.protocolVersion,
      keepalive: as.keepalive,
      cleanStart: as.cleanStart,
      sessionPresent: as.sessionPresent,
    },
    'client connected',
  )
}

/** A connected client's connection closed: why (`Connection.closeText`) and with which reason code. */
export function logDisconnected(conn: Connection): void {
  const c = conn.client
  conn.ctx.log.info(
    { clientId: c.id, username: c.username, remoteAddress: c.remoteAddress, listener: c.listener, reasonCode: conn.closeReason, reason: conn.closeText },
    'client disconnected',
  )
}
