import type { Packet } from 'mqtt-packet'
import type { Config } from './config.js'
import { HookmqError, ReasonCode } from './errors.js'
import { PacketReader, type PacketSink } from './packet-reader.js'
import type { Refusals } from './refusals.js'
import type { ClientInfo } from './types.js'

/** What the intake needs of the broker. */
export interface IntakeContext {
  readonly config: Config
  readonly refusals: Refusals
  /** bytes held by connections whose CONNECT is still partial (bounded by limits.maxPreLoginBytes) */
  preLoginBytes: number
}

/** What the intake needs of its connection. */
export interface IntakeOwner {
  readonly ctx: IntakeContext
  readonly state: { readonly kind: string }
  readonly isOpen: boolean
  readonly client: ClientInfo
  readonly listener: { readonly name: string }
  lastSeen: number
  /** false while an earlier packet waits: later ones stay bytes in the reader (resume() parses them) */
  readonly accepting: boolean
  refuse(err: HookmqError): void
  beginClose(reasonCode: number): void
  /** a parse error in a CONNECT that named MQTT 5: it is answered with CONNACK */
  refuseConnect5(): void
  onPacket(packet: Packet): void
}

/**
 * One connection's bytes becoming packets, with what is refused on the way: a
 * packet too large from its declared length, a CONNECT too large, bytes past the
 * broker's pre-login bound, a codec or wire-rule error. Only a complete packet
 * moves the keep-alive clock.
 */
export class Intake implements PacketSink {
  private readonly reader: PacketReader
  /** a packet completed during the current read */
  private sawPacket = false
  /** this connection's share of the broker's pre-login bytes (its partial CONNECT) */
  private preLoginHeld = 0

  constructor(private readonly conn: IntakeOwner) {
    this.reader = new PacketReader(this, conn.ctx.config.limits) // PUBLISH properties bounded before they are parsed
  }

  setVersion(v: number): void {
    this.reader.setVersion(v)
  }

  get accepting(): boolean {
    return this.conn.accepting
  }

  read(buf: Buffer): void {
    this.took(this.reader.read(buf))
  }

  /** The connection accepts packets again: those held as bytes are parsed now. */
  resume(): void {
    this.took(this.reader.resume())
  }

  private took(partial: number): void {
    const conn = this.conn
    if (this.sawPacket) {
      // [MQTT-3.1.2-24] (3.1.1), [MQTT-3.1.2-22] (5.0): a complete Control Packet, not any byte, resets the keep-alive
      this.sawPacket = false
      conn.lastSeen = Date.now()
    }
    if (partial > 0 && conn.isOpen) this.checkDeclared(partial)
    if ((this.preLoginHeld !== 0 || conn.state.kind === 'awaitingConnect') && conn.isOpen) this.holdPreLogin()
  }

  /** The connection is closing: the partial packet and its pre-login share go. */
  close(): void {
    this.reader.discard()
    this.conn.ctx.preLoginBytes -= this.preLoginHeld
    this.preLoginHeld = 0
  }

  onPacket(packet: Packet): void {
    const conn = this.conn
    if (!conn.isOpen) return
    this.sawPacket = true
    const length = packet.length ?? 0
    if (length > conn.ctx.config.limits.maxPacketSize) {
      conn.refuse(new HookmqError('PACKET_TOO_LARGE', `packet of ${length} bytes exceeds the maximum`))
    } else if (packet.cmd === 'connect' && length > conn.ctx.config.limits.maxConnectPacketSize) {
      this.refuseConnectSize(length)
    } else conn.onPacket(packet)
  }

  onParseError(err: Error, connectVersion: number | undefined): void {
    const conn = this.conn
    if (!conn.isOpen) return
    // an MQTT 5 CONNECT that breaks a rule is answered CONNACK with the reason code [MQTT-3.1.4-1]
    if (conn.state.kind === 'awaitingConnect' && connectVersion === 5) conn.refuseConnect5()
    if (err instanceof HookmqError) conn.refuse(err)
    else conn.refuse(new HookmqError(/protocol version/i.test(err.message) ? 'UNSUPPORTED_PROTOCOL' : 'MALFORMED_PACKET', err.message))
  }

  /** A packet still being received is refused from its declared length, before its body arrives. */
  private checkDeclared(declared: number): void {
    const limits = this.conn.ctx.config.limits
    if (declared > limits.maxPacketSize) {
      // [MQTT-3.2.2-15]
      this.conn.refuse(new HookmqError('PACKET_TOO_LARGE', `packet of ${declared} bytes exceeds the maximum of ${limits.maxPacketSize}`))
    } else if (this.conn.state.kind === 'awaitingConnect' && declared > limits.maxConnectPacketSize) {
      this.refuseConnectSize(declared)
    }
  }

  private refuseConnectSize(size: number): void {
    const conn = this.conn
    const max = conn.ctx.config.limits.maxConnectPacketSize
    conn.ctx.refusals.note('connectTooLarge', { remoteAddress: conn.client.remoteAddress, listener: conn.listener.name, reason: `${size} bytes` })
    conn.refuse(new HookmqError('PACKET_TOO_LARGE', `CONNECT of ${size} bytes exceeds the maximum of ${max}`))
  }

  /**
   * Accounts the bytes of a partial CONNECT in the broker's pre-login total; the
   * connection whose bytes would take the total past limits.maxPreLoginBytes is
   * closed (the ones already holding bytes keep them until connectTimeoutMs).
   */
  private holdPreLogin(): void {
    const conn = this.conn
    const ctx = conn.ctx
    const held = conn.state.kind === 'awaitingConnect' ? this.reader.buffered : 0
    const grow = held - this.preLoginHeld
    if (grow > 0 && ctx.preLoginBytes + grow > ctx.config.limits.maxPreLoginBytes) {
      ctx.refusals.note('preLoginBytes', {
        remoteAddress: conn.client.remoteAddress,
        listener: conn.listener.name,
        reason: `${ctx.preLoginBytes} bytes held before login`,
      })
      conn.beginClose(ReasonCode.QuotaExceeded) // its CONNECT never arrived: nothing to answer
      return
    }
    ctx.preLoginBytes += grow
    this.preLoginHeld = held
  }
}
