import type { IAuthPacket } from 'mqtt-packet'
import type { Connection } from '../connection.js'
import { ReasonCode, protocolError } from '../errors.js'
import { isPromise, type AuthenticateDecision } from '../hooks.js'
import { acceptsMethod, authenticateInput } from './connect.js'

// AUTH from a connected client: re-authentication, one step, through the same
// authenticate hooks as CONNECT (a token refreshed before it expires, say).
// Authentication at CONNECT is one step too, so no other AUTH is expected.

const RE_AUTHENTICATE = 0x19

export function handleAuth(conn: Connection, packet: IAuthPacket): void | Promise<void> {
  const method = packet.properties?.authenticationMethod
  if (conn.authMethod === undefined) throw protocolError('AUTH from a client that did not authenticate with a method on CONNECT') // [MQTT-4.12.0-7]
  if (packet.reasonCode !== RE_AUTHENTICATE)
    throw protocolError(`AUTH with reason 0x${packet.reasonCode.toString(16)}: only re-authentication (0x19) is expected`)
  if (method !== conn.authMethod) throw protocolError('re-authentication must use the Authentication Method of CONNECT') // [MQTT-4.12.1-1]
  const decision = conn.ctx.hooks.authenticate(
    authenticateInput(conn, { authenticationMethod: method, authenticationData: packet.properties?.authenticationData, reauthenticate: true }),
  )
  if (isPromise(decision))
    return decision.then(
      (d) => finish(conn, d),
      () => finish(conn, { result: 'deny', reason: 're-authentication failed' }),
    )
  finish(conn, decision)
}

function finish(conn: Connection, decision: AuthenticateDecision): void {
  if (conn.state.kind !== 'connected') return
  if (!acceptsMethod(decision, conn.authMethod!)) {
    // [MQTT-4.12.1-2] a failed re-authentication ends the connection; DISCONNECT has no 0x86 or 0x8C, so 0x87
    const reason = decision.result === 'deny' ? (decision.reason ?? 'not authorized') : 're-authentication not accepted'
    conn.ctx.log.info({ clientId: conn.client.id, reason }, 're-authentication refused; disconnecting')
    conn.closeWith(ReasonCode.NotAuthorized, reason)
    return
  }
  if (decision.user !== undefined) conn.client.user = decision.user
  conn.write({ cmd: 'auth', reasonCode: ReasonCode.Success, properties: { authenticationMethod: conn.authMethod } })
}
