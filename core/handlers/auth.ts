import type { IAuthPacket } from 'mqtt-packet'
import type { AuthExchange, Connection } from '../connection.js'
import { ReasonCode, protocolError } from '../errors.js'
import { isPromise, type AuthContinue, type AuthenticateDecision, type AuthenticateInput, type FinalAuthDecision } from '../hooks.js'

// AUTH, and MQTT 5 enhanced authentication over several steps. A hook that
// answers `continue` sends the client AUTH 0x18 with its data; the client's
// AUTH 0x18 goes back to that hook alone (with the step and the state the
// hook gave), until it allows or denies. At CONNECT the end is the CONNACK
// (connect.ts finishConnect); a connected client re-authenticates with AUTH
// 0x19, through the same hooks, ending with AUTH 0x00 or DISCONNECT 0x87.
// Bounded: MAX_AUTH_STEPS answers from the client, each within
// limits.connectTimeoutMs (the broker's sweep ends one that is late).

const CONTINUE = 0x18
const RE_AUTHENTICATE = 0x19

/** the most AUTH 0x18 a client may answer in one exchange */
export const MAX_AUTH_STEPS = 10

export type Credentials = Pick<AuthenticateInput, 'password' | 'authenticationMethod' | 'authenticationData' | 'reauthenticate' | 'session' | 'step' | 'state'>

/**
 * What the authenticate hooks are asked about this connection's client: at
 * CONNECT, and again at a re-authentication (AUTH; its session then is the
 * connection's own).
 */
export function authenticateInput(conn: Connection, credentials: Credentials): AuthenticateInput {
  const own = conn.session
  return {
    clientId: conn.client.id,
    username: conn.client.username,
    remoteAddress: conn.client.remoteAddress,
    protocolVersion: conn.protocolVersion,
    listener: conn.listener.name,
    certificate: conn.listener.certificate?.(),
    session: own === undefined ? undefined : { owner: own.owner },
    ...credentials,
  }
}

/** True when the authenticate hooks took the MQTT 5 Authentication Method: an allow that names it. */
export function acceptsMethod(decision: FinalAuthDecision, method: string): decision is Extract<FinalAuthDecision, { result: 'allow' }> {
  return decision.result === 'allow' && decision.authenticationMethod === method
}

const FAILED: FinalAuthDecision = { result: 'deny', reason: 'authentication failed' }

/**
 * Goes on from the authenticate decision on `input` (or its promise): a
 * `continue` starts an exchange (AUTH 0x18 to the client), any other decision
 * goes to `finish` with `input`. Without an Authentication Method in `input`
 * a `continue` fails closed.
 */
export function afterAuthenticate(
  conn: Connection,
  input: AuthenticateInput,
  decision: AuthenticateDecision | Promise<AuthenticateDecision>,
  finish: AuthExchange['finish'],
): void | Promise<void> {
  const go = (d: AuthenticateDecision): void | Promise<void> => {
    if (d.result !== 'continue') return finish(conn, d, input)
    const method = input.authenticationMethod
    if (method === undefined)
      return finish(conn, { result: 'deny', reason: 'an authenticate hook answered continue to a CONNECT without an Authentication Method' }, input)
    const ex: AuthExchange = { method, finish, input, hook: undefined, step: 0, state: undefined, due: 0 }
    return challenge(conn, d, ex)
  }
  return isPromise(decision) ? decision.then(go, () => go(FAILED)) : go(decision)
}

/** AUTH 0x18 to the client with the hook's data; its answer is awaited (handleAuth) until `due`. */
function challenge(conn: Connection, d: AuthContinue, ex: AuthExchange): void | Promise<void> {
  if (!conn.isOpen) return
  if (ex.step >= MAX_AUTH_STEPS) return ex.finish(conn, { result: 'deny', reason: `more than ${MAX_AUTH_STEPS} authentication steps` }, ex.input)
  ex.hook = d.hook
  ex.state = d.state
  ex.due = Date.now() + conn.ctx.config.limits.connectTimeoutMs
  conn.authExchange = ex
  conn.write({ cmd: 'auth', reasonCode: CONTINUE, properties: { authenticationMethod: ex.method, authenticationData: d.authenticationData } }) // [MQTT-4.12.0-2]
}

/** The client's answer to AUTH 0x18: the hook that asked decides again. */
function step(conn: Connection, ex: AuthExchange, packet: IAuthPacket): void | Promise<void> {
  conn.authExchange = undefined // until the hook answers, no further step
  ex.step++
  const input = authenticateInput(conn, {
    authenticationMethod: ex.method,
    authenticationData: packet.properties?.authenticationData,
    reauthenticate: ex.input.reauthenticate,
    session: ex.input.session,
    step: ex.step,
    state: ex.state,
  })
  ex.input = input
  const d = conn.ctx.hooks.authenticate(input, ex.hook)
  const go = (r: AuthenticateDecision): void | Promise<void> => (r.result === 'continue' ? challenge(conn, r, ex) : ex.finish(conn, r, input))
  return isPromise(d) ? d.then(go, () => go(FAILED)) : go(d)
}

export function handleAuth(conn: Connection, packet: IAuthPacket): void | Promise<void> {
  const method = packet.properties?.authenticationMethod
  const ex = conn.authExchange
  if (packet.reasonCode === CONTINUE) {
    if (ex === undefined) throw protocolError('AUTH 0x18 without an authentication exchange going on')
    if (method !== ex.method) throw protocolError('AUTH with another Authentication Method than the exchange began with') // [MQTT-4.12.0-5]
    return step(conn, ex, packet)
  }
  if (conn.state.kind !== 'connected') throw protocolError('AUTH before CONNACK: only 0x18 (Continue authentication) answers the server') // [MQTT-4.12.0-3]
  if (conn.authMethod === undefined) throw protocolError('AUTH from a client that did not authenticate with a method on CONNECT') // [MQTT-4.12.0-7]
  if (packet.reasonCode !== RE_AUTHENTICATE)
    throw protocolError(`AUTH with reason 0x${packet.reasonCode.toString(16)}: only re-authentication (0x19) or 0x18 in an exchange is expected`)
  if (method !== conn.authMethod) throw protocolError('re-authentication must use the Authentication Method of CONNECT') // [MQTT-4.12.1-1]
  if (ex !== undefined) throw protocolError('AUTH 0x19 while a re-authentication is going on')
  const input = authenticateInput(conn, { authenticationMethod: method, authenticationData: packet.properties?.authenticationData, reauthenticate: true })
  return afterAuthenticate(conn, input, conn.ctx.hooks.authenticate(input), finishReauthentication)
}

function finishReauthentication(conn: Connection, decision: FinalAuthDecision): void {
  if (conn.state.kind !== 'connected') return
  if (!acceptsMethod(decision, conn.authMethod!)) {
    // [MQTT-4.12.1-2] a failed re-authentication ends the connection; DISCONNECT has no 0x86 or 0x8C, so 0x87
    const reason = decision.result === 'deny' ? (decision.reason ?? 'not authorized') : 're-authentication not accepted'
    conn.ctx.log.info({ clientId: conn.client.id, reason }, 're-authentication refused; disconnecting')
    conn.closeWith(ReasonCode.NotAuthorized, reason)
    return
  }
  if (decision.user !== undefined) conn.client.user = decision.user
  conn.write({
    cmd: 'auth',
    reasonCode: ReasonCode.Success,
    properties: { authenticationMethod: conn.authMethod, authenticationData: decision.authenticationData },
  })
}

/** The client did not answer AUTH 0x18 in time (the broker's sweep): the exchange fails closed. */
export function authExchangeLate(conn: Connection): void {
  conn.authExchange = undefined
  conn.ctx.log.info({ clientId: conn.client.id, remoteAddress: conn.client.remoteAddress }, 'authentication exchange timed out')
  conn.closeWith(ReasonCode.NotAuthorized, 'the authentication exchange timed out')
}
