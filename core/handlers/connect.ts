import type { IConnectPacket, IConnackPacket } from 'mqtt-packet'
import { randomBytes } from 'node:crypto'
import { encodePacket } from '../codec.js'
import { logConnected } from '../client-log.js'
import type { Connection } from '../connection.js'
import { HookmqError, ReasonCode, protocolError } from '../errors.js'
import { isPromise, refusalCode, refused, type AuthenticateInput, type ExistingSession, type FinalAuthDecision } from '../hooks.js'
import { acceptsMethod, afterAuthenticate, authenticateInput, type Credentials } from './auth.js'
import { chooseSession, identityOf } from '../identity.js'
import { deniedSubscriptions, revokeOnResume } from '../resume.js'
import { NEVER_EXPIRES, type Session } from '../session.js'
import type { OpenRequest } from '../sessions.js'
import { checkTopicName } from '../topic.js'
import { ownBytes, ownProperties } from '../types.js'

// CONNECT, as a list of steps: check the packet, settle limits, look up the
// client id's session, authenticate, decide what happens to that session (its
// owner is checked), authorize resumed subscriptions again, open or resume the
// session, answer with CONNACK.

interface ConnectPlan {
  clientId: string
  assigned: boolean
  cleanStart: boolean
  expiryInterval: number
  keepalive: number
  keepaliveChanged: boolean
  expiryChanged: boolean
  /** MQTT 5 enhanced authentication asked for (accepted or refused in CONNACK, after as many AUTH steps as the hook asks) */
  authMethod: string | undefined
  /** the Authentication Data the accepting hook gave for the CONNACK (the last step of an exchange, e.g. SCRAM's server signature) */
  authData?: Buffer
}

export function handleConnect(conn: Connection, packet: IConnectPacket): void | Promise<void> {
  conn.setProtocolVersion(packet.protocolVersion ?? 4)
  conn.connectSeen = true
  const plan = checkConnect(conn, packet)
  if (plan === undefined) return
  readClientLimits(conn, packet)
  conn.will = readWill(conn, packet)
  conn.client.id = plan.clientId
  conn.client.username = packet.username
  conn.keepaliveMs = plan.keepalive * 1500 // [MQTT-3.1.2-22] 1.5 times the keep alive
  // (limits.maxConnections was applied when the socket was accepted: listeners/admission.ts)
  conn.state = { kind: 'authenticating' }
  const ban = conn.ctx.bans.admit(conn.client, packet.clientId.length > 0) // (an id the broker assigned is not counted for flapping)
  if (ban !== undefined) return refuseBanned(conn, ban.id)
  // (Authentication Data without a method was refused by checkConnect)
  const credentials: Credentials = {
    password: packet.password,
    authenticationMethod: plan.authMethod,
    authenticationData: packet.properties?.authenticationData,
  }
  const existing = conn.ctx.sessions.describe(plan.clientId)
  if (isPromise(existing)) {
    return existing.then(
      (e) => authenticate(conn, plan, credentials, e),
      (err: unknown) => {
        conn.ctx.log.warn({ err, clientId: plan.clientId }, 'session owner could not be looked up; connection refused')
        conn.closeWith(ReasonCode.ServerUnavailable, 'the session could not be looked up')
      },
    )
  }
  return authenticate(conn, plan, credentials, existing)
}

function authenticate(conn: Connection, plan: ConnectPlan, credentials: Credentials, existing: ExistingSession | undefined): void | Promise<void> {
  if (conn.state.kind !== 'authenticating') return // closed meanwhile
  const input = authenticateInput(conn, { ...credentials, session: existing })
  // a `continue` goes on in AUTH packets (auth.ts) before it comes back here, with the input of its last step
  return afterAuthenticate(conn, input, conn.ctx.hooks.authenticate(input), (c, d, last) => finishConnect(c, plan, d, existing, last))
}

function checkConnect(conn: Connection, packet: IConnectPacket): ConnectPlan | undefined {
  const limits = conn.ctx.config.limits
  const v5 = conn.protocolVersion === 5
  let clientId = packet.clientId
  let assigned = false
  if (clientId.length === 0) {
    if (!v5 && (conn.protocolVersion === 3 || !packet.clean)) {
      // [MQTT-3.1.3-8]
      conn.refuse(new HookmqError('CLIENT_ID_INVALID', 'an empty client id needs clean session'))
      return undefined
    }
    clientId = 'hookmq-' + randomBytes(9).toString('base64url') // [MQTT-3.1.3-6]
    assigned = v5
  }
  if (clientId.includes('\ufffd') || clientId.includes('\u0000')) {
    conn.refuse(new HookmqError('CLIENT_ID_INVALID', 'client id is not valid UTF-8'))
    return undefined
  }
  let keepalive = packet.keepalive ?? 0
  let keepaliveChanged = false
  if (keepalive > limits.maxKeepalive || (keepalive === 0 && limits.maxKeepalive < 65535)) {
    if (!v5) {
      // a v3 client cannot be told another keep-alive
      conn.refuse(new HookmqError('KEEPALIVE_NOT_ALLOWED', `keep-alive must be 1..${limits.maxKeepalive} s`))
      return undefined
    }
    keepalive = limits.maxKeepalive
    keepaliveChanged = true
  }
  const cleanStart = packet.clean ?? true
  let expiryInterval: number
  let expiryChanged = false
  if (v5) {
    expiryInterval = packet.properties?.sessionExpiryInterval ?? 0
  } else {
    expiryInterval = cleanStart ? 0 : (limits.persistentSessionExpiry ?? NEVER_EXPIRES) // 3.1.1 sessions last until clean session (or the configured TTL)
  }
  if (expiryInterval > limits.maxSessionExpiryInterval) {
    expiryInterval = limits.maxSessionExpiryInterval
    expiryChanged = v5
  }
  const authMethod = v5 ? packet.properties?.authenticationMethod : undefined
  if (v5 && authMethod === undefined && packet.properties?.authenticationData !== undefined) {
    throw protocolError('Authentication Data without an Authentication Method') // a Protocol Error by MQTT 5.0 §3.1.2.11.10
  }
  return { clientId, assigned, cleanStart, expiryInterval, keepalive, keepaliveChanged, expiryChanged, authMethod }
}

function readClientLimits(conn: Connection, packet: IConnectPacket): void {
  const p = packet.properties
  if (conn.protocolVersion !== 5 || p === undefined) {
    conn.sendWindow = conn.ctx.config.limits.maxInflightMessages
    return
  }
  if (p.receiveMaximum === 0) throw protocolError('Receive Maximum of 0') // 5.0 section 3.1.2.11.3: a Protocol Error (no conformance statement of its own)
  if (p.maximumPacketSize === 0) throw protocolError('Maximum Packet Size of 0')
  conn.sendWindow = Math.min(conn.ctx.config.limits.maxInflightMessages, p.receiveMaximum ?? 65535)
  if (p.maximumPacketSize !== undefined) conn.maxOutgoingPacket = p.maximumPacketSize
  // no more than the broker lets a client hold the other way: each alias keeps its topic for the connection's life
  conn.topicAliasMaxOut = Math.min(p.topicAliasMaximum ?? 0, conn.ctx.config.limits.topicAliasMaximum)
}

function readWill(conn: Connection, packet: IConnectPacket): Connection['will'] {
  const w = packet.will
  if (!w) return undefined
  const problem = checkTopicName(w.topic, conn.ctx.config.limits)
  if (problem !== undefined) throw new HookmqError('TOPIC_NAME_INVALID', `will topic: ${problem}`)
  const { willDelayInterval, ...properties } = w.properties ?? {}
  return {
    topic: w.topic,
    // kept for the connection's life and its will delay: not views of the read the CONNECT came in (ownBytes)
    payload: typeof w.payload === 'string' ? Buffer.from(w.payload) : ownBytes(w.payload),
    qos: w.qos ?? 0,
    retain: w.retain ?? false,
    properties: Object.keys(properties).length > 0 ? ownProperties(properties) : undefined,
    delay: willDelayInterval ?? 0,
  }
}

/** `input`: what the deciding step was asked (the CONNECT's, or an exchange's last AUTH): audited with the decision. */
function finishConnect(
  conn: Connection,
  plan: ConnectPlan,
  decision: FinalAuthDecision,
  existing: ExistingSession | undefined,
  input: AuthenticateInput,
): void | Promise<void> {
  if (conn.state.kind !== 'authenticating' || !admitted(conn, plan, decision, input)) return
  const ctx = conn.ctx
  if (decision.result === 'allow' && decision.user !== undefined) conn.client.user = decision.user
  if (decision.result === 'allow' && plan.authMethod !== undefined) plan.authData = decision.authenticationData
  conn.authMethod = plan.authMethod
  const owner = identityOf(conn.client)
  const choice = chooseSession(existing, owner, decision.result === 'allow' ? decision.session : undefined, ctx.config.sessions.identityMismatch)
  if (choice === 'refuse') return refuseClientId(conn, plan.clientId, 'the client id belongs to another identity')
  if (!connackFits(conn, plan)) return
  const request: OpenRequest = {
    clientId: plan.clientId,
    cleanStart: plan.cleanStart || choice === 'fresh',
    expiryInterval: plan.expiryInterval,
    owner,
    seen: existing,
  }
  const cluster = ctx.cluster
  if (cluster === undefined) return openSession(conn, plan, request)
  if (!cluster.available && (plan.expiryInterval > 0 || !plan.cleanStart)) {
    // a persistent session cannot be kept safely now; a clean one still works on this node
    conn.closeWith(ReasonCode.ServerUnavailable, 'the session store is unavailable')
    return
  }
  return ctx.sessions.prepare(plan.clientId, request.cleanStart, { owner, seen: existing }).then(
    (claim) => {
      if (conn.state.kind === 'authenticating') return openSession(conn, plan, { ...request, claim })
      ctx.sessions.abandon(claim)
    },
    (err: unknown) => {
      if (err instanceof HookmqError && err.code === 'HOOKMQ_ERR_CLIENT_ID_TAKEN')
        return refuseClientId(conn, plan.clientId, 'another identity took the client id while this connection was accepted')
      ctx.log.warn({ err, clientId: plan.clientId }, 'session could not be taken over; connection refused')
      conn.closeWith(ReasonCode.ServerUnavailable, 'the session could not be loaded')
    },
  )
}

/** The authenticate hooks' final decision (and the default) let the client in; else it is refused here. Either way audited, once per login (audit.ts). */
function admitted(conn: Connection, plan: ConnectPlan, decision: FinalAuthDecision, input: AuthenticateInput): boolean {
  const ctx = conn.ctx
  const audit = ctx.pipeline.audit
  if (refused(decision, ctx.anonymousAllowed(conn.listener))) {
    const code = refusalCode(decision)
    const reason = decision.result === 'deny' ? (decision.reason ?? 'not authorized') : 'anonymous clients are not allowed on this listener'
    const hook = decision.result === 'deny' ? decision.hook : 'default'
    ctx.log.info({ clientId: plan.clientId, remoteAddress: conn.client.remoteAddress, reason, hook }, 'connection refused')
    audit.authenticate(input, decision, false, code, reason)
    conn.closeWith(code, reason)
    return false
  }
  if (plan.authMethod !== undefined && !acceptsMethod(decision, plan.authMethod)) {
    // no hook took the method: unsupported, the connection closes [MQTT-4.12.0-1]
    ctx.log.info(
      { clientId: plan.clientId, remoteAddress: conn.client.remoteAddress, method: plan.authMethod },
      'connection refused: authentication method not supported',
    )
    conn.closeWith(ReasonCode.BadAuthenticationMethod, `authentication method "${plan.authMethod}" is not supported`)
    audit.authenticate(input, decision, false, ReasonCode.BadAuthenticationMethod, 'authentication method not supported')
    return false
  }
  if (audit.authenticateAllows) audit.authenticate(input, decision, true, ReasonCode.Success)
  return true
}

/** CONNACK 0x8A Banned (3.1.1: return code 5, not authorized), before any authenticate hook runs. */
function refuseBanned(conn: Connection, ban: string): void {
  conn.ctx.refusals.note('banned', { clientId: conn.client.id, remoteAddress: conn.client.remoteAddress, reason: `ban ${ban}` })
  conn.closeWith(ReasonCode.Banned, 'banned')
}

/** 5.0 [MQTT-3.1.3-8] CONNACK 0x85, 3.1.1 [MQTT-3.1.3-9] return code 2: the session of this client id is not this client's. */
function refuseClientId(conn: Connection, clientId: string, reason: string): void {
  conn.ctx.log.info({ clientId, remoteAddress: conn.client.remoteAddress, reason }, 'connection refused')
  conn.closeWith(ReasonCode.ClientIdentifierNotValid, reason)
}

/** the largest MQTT packet: a client that sets no Maximum Packet Size */
const NO_LIMIT = 268435455

/**
 * A client whose Maximum Packet Size is smaller than the CONNACK is closed
 * without one (and takes no session over). [MQTT-3.1.2-24]
 */
function connackFits(conn: Connection, plan: ConnectPlan): boolean {
  if (conn.protocolVersion !== 5 || conn.maxOutgoingPacket === NO_LIMIT) return true
  const size = encodePacket(connack(conn, plan, false), conn.genOpts).length
  if (size <= conn.maxOutgoingPacket) return true
  conn.ctx.log.info(
    { clientId: plan.clientId, remoteAddress: conn.client.remoteAddress, size, maximumPacketSize: conn.maxOutgoingPacket },
    "connection closed: the CONNACK exceeds the client's maximum packet size",
  )
  conn.beginClose(ReasonCode.PacketTooLarge)
  return false
}

/** Authorizes the subscriptions of the session to be resumed again, then opens it. */
function openSession(conn: Connection, plan: ConnectPlan, request: OpenRequest): void | Promise<void> {
  const ctx = conn.ctx
  const resumed = request.cleanStart ? undefined : ctx.sessions.sessions.get(request.clientId)
  if (resumed === undefined || resumed.subscriptions.size === 0) return attachSession(conn, plan, request, undefined, [])
  const denied = deniedSubscriptions(ctx, conn.client, resumed.subscriptions.values())
  if (!isPromise(denied)) return attachSession(conn, plan, request, resumed, denied)
  return denied.then((d) => {
    if (conn.state.kind === 'authenticating') attachSession(conn, plan, request, resumed, d)
    else ctx.sessions.abandon(request.claim)
  })
}

/** Opens the session (`checked`: the one whose subscriptions were authorized again, `denied` those refused), answers CONNACK, attaches. */
function attachSession(conn: Connection, plan: ConnectPlan, request: OpenRequest, checked: Session | undefined, denied: string[]): void {
  const ctx = conn.ctx
  const opened = ctx.sessions.open(conn, request)
  if (opened === undefined && request.claim?.lost === true) return conn.closeWith(ReasonCode.ServerBusy, 'the client id was taken on another node meanwhile')
  if (opened === undefined) return refuseClientId(conn, plan.clientId, 'the session of the client id changed hands while connecting')
  const { session, present } = opened
  const revoked = present && session === checked && denied.length > 0
  if (revoked) revokeOnResume(ctx, session, denied) // before anything queued is sent
  conn.state = { kind: 'connected', session }
  conn.connectedAt = Date.now()
  const stats = conn.ctx.stats
  if (++stats.clientsConnected > stats.clientsPeak) stats.clientsPeak = stats.clientsConnected
  conn.write(connack(conn, plan, present))
  session.attach(conn, present)
  ctx.emitter.emit('clientConnected', conn.client, { sessionPresent: present })
  logConnected(conn, { keepalive: plan.keepalive, cleanStart: plan.cleanStart, sessionPresent: present })
  if (revoked && ctx.config.revokedSubscriptions === 'disconnect') conn.closeWith(ReasonCode.NotAuthorized, `subscription ${denied[0]} is no longer authorized`)
}

function connack(conn: Connection, plan: ConnectPlan, present: boolean): IConnackPacket {
  if (conn.protocolVersion !== 5) return { cmd: 'connack', sessionPresent: present, returnCode: 0 }
  const limits = conn.ctx.config.limits
  const properties: NonNullable<IConnackPacket['properties']> = {
    receiveMaximum: limits.receiveMaximum,
    maximumPacketSize: limits.maxPacketSize,
    topicAliasMaximum: limits.topicAliasMaximum,
    retainAvailable: true,
    wildcardSubscriptionAvailable: true,
    subscriptionIdentifiersAvailable: true,
    sharedSubscriptionAvailable: true,
  }
  if (plan.assigned) properties.assignedClientIdentifier = plan.clientId // [MQTT-3.2.2-16]
  if (plan.keepaliveChanged) properties.serverKeepAlive = plan.keepalive // [MQTT-3.2.2-21]
  if (plan.expiryChanged) properties.sessionExpiryInterval = plan.expiryInterval
  if (plan.authMethod !== undefined) properties.authenticationMethod = plan.authMethod // [MQTT-4.12.0-5]
  if (plan.authData !== undefined) properties.authenticationData = plan.authData
  return { cmd: 'connack', sessionPresent: present, reasonCode: 0, properties }
}
