import { encodePacket } from './codec.js'
import { encodeDelivery } from './delivery.js'
import { deliverThroughHooks, type OutboundOrder, type OutboundTarget } from './outbound.js'
import { Flow } from './flow.js'
import { Intake, type IntakeContext, type IntakeOwner } from './intake.js'
import type { Packet } from 'mqtt-packet'
import type { Duplex } from 'node:stream'
import { HookmqError, ReasonCode, v3ConnackCode } from './errors.js'
import type { AuthenticateInput, DecisionReceiver, FinalAuthDecision, PublishDecision } from './hooks.js'
import type { PublishPipeline } from './pipeline.js'
import type { CoreServices } from './services.js'
import type { Outlet, Session } from './session.js'
import type { SessionManager } from './sessions.js'
import type { Will } from './stores.js'
import type { ClientInfo, Message, QoS, Subscription } from './types.js'
import type { RetainedFeed } from './retained-feed.js'

export type ConnectionState =
  | { kind: 'awaitingConnect' }
  | { kind: 'authenticating' }
  | { kind: 'connected'; session: Session }
  | { kind: 'closing'; session: Session | undefined }
  | { kind: 'closed' }

/** Packets that need not wait for the PUBLISH packets before them: acknowledgements of what this client receives, and PINGREQ. */
const ORDER_FREE = new Set(['puback', 'pubrec', 'pubcomp', 'pingreq'])

/**
 * What a connection and its packet handlers may use of the broker. The Broker
 * implements it and hands it to each connection; nothing under core/ imports
 * the Broker itself.
 */
export interface ConnectionContext extends CoreServices, IntakeContext {
  readonly sessions: SessionManager
  readonly pipeline: PublishPipeline
  /** runs one packet's handler (handlers/index.ts) */
  dispatch(conn: Connection, packet: Packet): void | Promise<void>
  /** whether a client without credentials that no hook decided may connect on this listener */
  anonymousAllowed(listener: ListenerInfo): boolean
  /** sends the retained messages matching a new subscription (core/retained-feed.ts) */
  sendRetained(conn: Connection, session: Session, sub: Subscription): void
  /** removes subscriptions no longer authorized (`disconnect`: and closes their client with 0x87); answers those removed */
  revokeSubscriptions(clientId: string, filters: readonly string[], disconnect?: boolean): string[]
  clientError(conn: Connection, err: Error): void
  connectionClosed(conn: Connection, session: Session | undefined): void
}

/** The client's PUBLISH packets still deciding or waiting to be routed, in order (handlers/publish-order.ts). */
export interface PublishQueue {
  /** messages not yet routed and acknowledged */
  readonly size: number
  /** as many as may be in flight: the next PUBLISH waits for room() */
  readonly full: boolean
  /** a QoS 2 message with this packet id waits here */
  has(messageId: number): boolean
  add(decision: Message | number | Promise<Message | number>, qos: QoS, messageId: number): void
  /** a message whose authorizePublish decision comes to decided() later */
  awaiting(message: Message, qos: QoS, messageId: number): void
  decided(decision: PublishDecision, message: Message): void
  /** resolves when every message so far is routed and acknowledged */
  drained(): Promise<void>
  /** resolves when there is room again */
  room(): Promise<void>
  /** the congested subscribers that held this publisher caught up */
  resume(): void
}

/** An enhanced authentication going on over several steps (Connection.authExchange while the client's next AUTH is awaited; handlers/auth.ts). */
export interface AuthExchange {
  readonly method: string
  /** where the last decision goes, with what its step was asked: the CONNECT's end, or the re-authentication's */
  readonly finish: (conn: Connection, decision: FinalAuthDecision, input: AuthenticateInput) => void | Promise<void>
  /** what the last step was asked (the CONNECT's or AUTH 0x19's input, then each AUTH 0x18's): its `reauthenticate` and `session` (at CONNECT, the client id's existing session) go on to the next */
  input: AuthenticateInput
  /** the hook that answered `continue` (only it is asked again) */
  hook: string | undefined
  /** the client's answers so far */
  step: number
  state: unknown
  /** when the client's next AUTH is due (ms since the epoch) */
  due: number
}

export interface ListenerInfo {
  name: string
  /** true when bound to a loopback address (anonymous clients allowed by default) */
  loopback: boolean
  certificate?: () => object | undefined
}

/** One network connection, whatever the transport, speaking MQTT to one client. */
export class Connection implements Outlet, IntakeOwner, DecisionReceiver, OutboundTarget {
  state: ConnectionState = { kind: 'awaitingConnect' }
  protocolVersion: 3 | 4 | 5 = 4
  readonly client: ClientInfo
  keepaliveMs = 0
  /** when the last complete packet arrived (keep-alive counts packets, not bytes) */
  lastSeen = Date.now()
  will: Will | undefined = undefined
  /** a CONNECT packet was parsed (its refusal gets a CONNACK) */
  connectSeen = false
  /** set by a DISCONNECT packet: a normal close, no will unless reason 0x04 */
  cleanDisconnect = false
  /** the MQTT 5 Authentication Method the client was accepted with (re-authentication uses it) */
  authMethod: string | undefined = undefined
  /** an enhanced authentication waiting for the client's next AUTH (handlers/auth.ts) */
  authExchange: AuthExchange | undefined = undefined
  /** client limits from CONNECT (MQTT 5) */
  sendWindow = 65535
  maxOutgoingPacket = 268435455
  topicAliasMaxOut = 0
  aliasesIn: Map<number, string> | null = null
  /** outbound topic aliases (MQTT 5), made on first use: topic -> alias */
  aliasesOut: Map<string, number> | null = null
  /** characters of the topics in aliasesOut (delivery.ts bounds them) */
  aliasCharsOut = 0
  /** inbound QoS 1/2 PUBLISH not yet acknowledged (MQTT 5 Receive Maximum) */
  incomingUnacked = 0
  /** bytes read from and written to the socket (for the admin API) */
  bytesIn = 0
  bytesOut = 0
  /** when its CONNACK accepted it (ms since the epoch); 0 before */
  connectedAt = 0
  private readonly intake: Intake
  /** an earlier packet's handler is still running: the packets after it stay bytes in the intake, and the socket is not read */
  private waiting = false
  genOpts: { protocolVersion: 3 | 4 | 5 } = GEN_OPTS[4]

  /** `openedAt`: when the listener accepted the socket (before a TLS handshake or WebSocket upgrade) */
  constructor(
    readonly socket: Duplex,
    readonly ctx: ConnectionContext,
    readonly listener: ListenerInfo,
    remoteAddress: string,
    readonly openedAt = Date.now(),
  ) {
    this.client = { id: '', remoteAddress, protocolVersion: 4, listener: listener.name }
    this.intake = new Intake(this)
    ;(socket as Duplex & { [CONN]?: Connection })[CONN] = this
    socket.on('data', onSocketData)
    socket.on('error', onSocketError)
    socket.on('close', onSocketClose)
    socket.on('end', onSocketEnd)
    socket.on('drain', onSocketDrain)
  }

  get session(): Session | undefined {
    return this.state.kind === 'connected' ? this.state.session : undefined
  }

  get isOpen(): boolean {
    return this.state.kind !== 'closing' && this.state.kind !== 'closed'
  }

  setProtocolVersion(v: 3 | 4 | 5): void {
    this.protocolVersion = v
    this.client.protocolVersion = v
    this.genOpts = GEN_OPTS[v]
    this.intake.setVersion(v)
  }

  onData(buf: Buffer): void {
    this.bytesIn += buf.length
    if (this.isOpen) this.intake.read(buf)
  }

  /**
   * False while a packet waits for an earlier one: the packets after it stay
   * bytes in the reader (parsed when drain() resumes it), so a publisher whose
   * messages wait for a hook holds a few decoded messages, not a socket read's
   * worth (up to 64 KB) of them. False too while a subscriber whose deliver
   * hooks are behind holds it (flow.ts `parked`): the rest of a read waits as
   * bytes, not as a read's worth of calls to a hook that is behind.
   */
  get accepting(): boolean {
    return !this.waiting && (this.flowState === null || this.flowState.parked === 0)
  }

  refuseConnect5(): void {
    this.setProtocolVersion(5)
    this.connectSeen = true
  }

  /** A packet the intake let through (only while accepting: the intake holds the rest while one waits). */
  onPacket(packet: Packet): void {
    this.run(packet)
  }

  /** PUBLISH packets whose routing waits for an earlier one's decision (made on first use, by the PUBLISH handler) */
  publishOrder: PublishQueue | null = null

  /** The decision on one of its PUBLISHes, given later (the handler made the publish order wait for it). */
  decided(decision: PublishDecision, message: Message): void {
    try {
      this.publishOrder!.decided(decision, message)
    } catch (err) {
      this.fail(err) // (routing it threw: as for a packet's handler)
    }
  }

  /**
   * Runs one packet's handler; an async handler holds later packets back so
   * order is kept. A PUBLISH does not (its order is the PublishOrder's) unless
   * that is full; a packet of another kind waits until the PUBLISH packets
   * before it are done.
   */
  private run(packet: Packet): void {
    if (this.ctx.tracer.active) this.ctx.tracer.packet(this.client, 'in', packet)
    let result: Promise<void> | void
    try {
      const order = this.publishOrder
      if (order === null || order.size === 0) result = this.ctx.dispatch(this, packet)
      else if (packet.cmd !== 'publish' && !ORDER_FREE.has(packet.cmd)) result = order.drained().then(() => this.ctx.dispatch(this, packet))
      else if (order.full) result = order.room().then(() => this.ctx.dispatch(this, packet))
      else result = this.ctx.dispatch(this, packet)
    } catch (err) {
      this.fail(err)
      return
    }
    if (result === undefined) return
    // what the client sends meanwhile (while its authentication runs, or as many of its messages as may are deciding) waits in the socket
    this.waiting = true
    this.flow.hold()
    result.then(
      () => this.drain(),
      (err: unknown) => this.fail(err),
    )
  }

  /** The packet that waited is done: reading goes on, from the packets held as bytes. */
  private drain(): void {
    this.waiting = false
    this.flow.release()
    if (this.isOpen) this.intake.resume()
  }

  private fail(err: unknown): void {
    if (err instanceof HookmqError) this.refuse(err)
    else {
      this.ctx.log.error({ err, clientId: this.client.id }, 'packet handler failed')
      this.refuse(new HookmqError('UNSPECIFIED', err instanceof Error ? err.message : String(err)))
    }
  }

  write(packet: Packet): void {
    if (!this.isOpen && packet.cmd !== 'disconnect' && packet.cmd !== 'connack') return
    if (this.ctx.tracer.active) this.ctx.tracer.packet(this.client, 'out', packet)
    // answers to what the client sends (PINGRESP, PUBACK, PUBCOMP, SUBACK...) pile up while it does not read: past
    // maxClientBufferBytes waiting, it is not read either until its socket drains (a client streaming PINGREQs
    // without reading grew the broker by gigabytes). Looked at only once the socket wants a drain.
    const room = this.writeBytes(encodePacket(packet, this.genOpts))
    if (!room && !this.answersHeld && this.isOpen && this.socket.writableLength > this.ctx.config.limits.maxClientBufferBytes) {
      this.answersHeld = true
      this.flow.hold()
    }
  }

  /** Writes within one tick leave in one batch (cork until the next tick). False when the socket wants a drain. */
  private writeBytes(buf: Buffer): boolean {
    this.bytesOut += buf.length
    if (!this.corked) {
      this.corked = true
      this.socket.cork()
      process.nextTick(uncork, this)
    }
    return this.socket.write(buf)
  }

  private corked = false

  private flowState: Flow | null = null
  /** reading stopped until the socket drains: the answers waiting on it passed maxClientBufferBytes */
  private answersHeld = false

  /** flow control state, made on first use */
  get flow(): Flow {
    return (this.flowState ??= new Flow(this))
  }

  /** messages waiting to be sent: in the session queue, and for a deliver hook's answer */
  get queued(): number {
    return (this.session?.queued ?? 0) + (this.outbound?.size ?? 0)
  }

  /** A message to this client could not go out at once: hold its publisher (`from`) back (`park`: its deliver hooks are behind; the publisher stops parsing too). */
  congested(from: Flow | null, park = false): void {
    if (from !== null && from !== this.flowState) this.flow.throttle(from, park)
  }

  caughtUp(): void {
    if (this.answersHeld && !this.socket.writableNeedDrain) {
      this.answersHeld = false
      this.flowState!.release()
    }
    this.flowState?.caughtUp()
    const feeds = this.feeds
    if (feeds !== null) {
      this.feeds = null
      for (const f of feeds) f.resume()
    }
  }

  /** retained-message feeds waiting for this client to take more */
  private feeds: RetainedFeed[] | null = null

  get backedUp(): boolean {
    return this.socket.writableNeedDrain
  }

  awaitRoom(feed: RetainedFeed): void {
    const feeds = (this.feeds ??= [])
    if (!feeds.includes(feed)) feeds.push(feed)
  }

  /** No congested subscriber holds this publisher any more: its decided messages go on, and its packets held as bytes are read. */
  unthrottled(): void {
    this.publishOrder?.resume()
    if (!this.waiting && this.isOpen) this.intake.resume()
  }

  sendPublish(message: Message, qos: QoS, retain: boolean, ids: number[] | undefined, packetId: number, dup: boolean, from: Flow | null): boolean {
    if (!this.isOpen) return true
    // the deliver hooks (core/outbound.ts): asked only while some are loaded, or an answer of theirs is still coming
    if (this.outbound !== null || this.ctx.hooks.delivering === true) return deliverThroughHooks(this, message, qos, retain, ids, packetId, dup, from)
    return this.writePublish(message, qos, retain, ids, packetId, dup, from)
  }

  /** PUBLISH packets waiting for a deliver hook's answer that comes later (core/outbound.ts); null while none does */
  outbound: OutboundOrder | null = null

  get buffered(): number {
    return this.socket.writableLength
  }

  /** Encodes and writes a PUBLISH (what the deliver hooks let through); false when the client's Maximum Packet Size forbids it. */
  writePublish(message: Message, qos: QoS, retain: boolean, ids: number[] | undefined, packetId: number, dup: boolean, from: Flow | null): boolean {
    if (qos === 0 && this.socket.writableLength > this.ctx.config.limits.maxClientBufferBytes) {
      this.ctx.stats.dropped++
      this.ctx.emitter.dropped(message, 'clientBufferFull', this.client.id)
      return true
    }
    const buf = encodeDelivery(this, message, qos, retain, ids, packetId, dup)
    if (buf === undefined) {
      this.ctx.stats.dropped++
      this.ctx.emitter.dropped(message, 'tooLarge', this.client.id)
      return false
    }
    this.ctx.stats.sent[qos]++
    if (this.ctx.tracer.active) this.ctx.tracer.delivery(this.client, message.topic, qos, packetId, message.payload.length)
    if (!this.writeBytes(buf)) this.congested(from)
    return true
  }

  /** A QoS 1/2 message handed to sendPublish that was not written after all (a deliver hook skipped it, or too large): done, as if acknowledged. */
  settled(packetId: number): void {
    this.session?.complete(packetId)
  }

  sendPubrel(packetId: number): void {
    this.write({ cmd: 'pubrel', messageId: packetId })
  }

  /**
   * What the client did wrong, or what refused it: counted, told to the
   * clientError listeners, then answered with its reason code (closeWith).
   */
  refuse(err: HookmqError): void {
    if (!this.isOpen) return
    this.ctx.clientError(this, err)
    const code = err.reasonCode
    if (code === ReasonCode.MalformedPacket || code === ReasonCode.ProtocolError) {
      this.ctx.refusals.note(code === ReasonCode.MalformedPacket ? 'malformedPacket' : 'protocolError', {
        remoteAddress: this.client.remoteAddress,
        clientId: this.client.id,
        reason: err.message,
      })
    }
    this.closeWith(code, err.message)
  }

  /**
   * The one place a close becomes an MQTT answer: CONNACK before the session
   * exists, DISCONNECT (MQTT 5) after, then the socket is closed.
   */
  closeWith(code: number, text?: string): void {
    if (!this.isOpen) return
    const wasConnected = this.state.kind === 'connected'
    if (this.state.kind === 'awaitingConnect' || this.state.kind === 'authenticating') {
      // a refused CONNECT is answered with CONNACK [MQTT-3.2.2-6]; an unparseable one only when it named an unknown version
      if (this.connectSeen && this.protocolVersion === 5) {
        this.write({ cmd: 'connack', sessionPresent: false, reasonCode: code, properties: text ? { reasonString: text } : undefined })
      } else if (this.connectSeen || code === ReasonCode.UnsupportedProtocolVersion) {
        this.write({ cmd: 'connack', sessionPresent: false, returnCode: v3ConnackCode(code) })
      }
    } else if (wasConnected && this.protocolVersion === 5) {
      this.write({ cmd: 'disconnect', reasonCode: code, properties: text ? { reasonString: text } : undefined })
    }
    this.beginClose(code, text)
  }

  /** Moves to `closing`, lets queued bytes flush, then closes the socket. `why`: for the log (closeText). */
  beginClose(reasonCode: number, why = 'closed by the broker'): void {
    if (!this.isOpen) return
    const session = this.session
    if (session !== undefined) this.ctx.emitter.emit('clientDisconnecting', this.client, { reasonCode })
    this.state = { kind: 'closing', session }
    this.closeReason = reasonCode
    this.closeText = why
    this.intake.close()
    this.socket.end()
    const t = setTimeout(() => this.socket.destroy(), 2000)
    t.unref()
  }

  closeReason = 0
  /** why the connection closed, in words (the disconnect log line) */
  closeText = ''
  /** the first error of the socket */
  private socketError: Error | undefined = undefined

  /** The socket failed (a reset, a TLS error): told to the clientError listeners; the close that follows names it. */
  onSocketError(err: Error): void {
    this.socketError ??= err
    this.ctx.clientError(this, err)
  }

  onClose(): void {
    if (this.state.kind === 'closed') return
    const session = this.state.kind === 'connected' || this.state.kind === 'closing' ? this.state.session : undefined
    if (this.state.kind === 'connected') {
      this.closeReason = ReasonCode.UnspecifiedError
      this.closeText = this.socketError === undefined ? 'the client closed the connection without DISCONNECT' : `socket error: ${this.socketError.message}`
    }
    this.state = { kind: 'closed' }
    this.intake.close()
    this.flowState?.releaseAll()
    this.ctx.connectionClosed(this, session)
  }
}

function uncork(conn: Connection): void {
  ;(conn as unknown as { corked: boolean }).corked = false
  conn.socket.uncork()
}

/** Encoder options, one object per protocol version for all connections. */
const GEN_OPTS = { 3: { protocolVersion: 3 as const }, 4: { protocolVersion: 4 as const }, 5: { protocolVersion: 5 as const } }

// Socket listeners shared by every connection (no closures per connection):
// the socket carries its Connection.
const CONN = Symbol('hookmq.connection')
type ConnSocket = Duplex & { [CONN]: Connection }

function onSocketData(this: ConnSocket, buf: Buffer): void {
  this[CONN].onData(buf)
}

function onSocketError(this: ConnSocket, err: Error): void {
  this[CONN].onSocketError(err)
}

function onSocketClose(this: ConnSocket): void {
  this[CONN].onClose()
}

function onSocketEnd(this: ConnSocket): void {
  this.end()
}

function onSocketDrain(this: ConnSocket): void {
  this[CONN].caughtUp()
}
