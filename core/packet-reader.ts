import type { IPublishPacket, Packet } from 'mqtt-packet'
import { ParserBase, readInPlace, type PacketInProgress } from './mqtt-packet.js'
import { HookmqError, malformed } from './errors.js'
import { scanProperties, type PropertyLimits } from './properties.js'
import { connectProblem, propertiesProblem, stringProblem } from './wire-rules.js'

// Reading packets without a parser per connection. An mqtt-packet Parser (with
// its BufferList stream) weighs about 2 KB; most chunks a broker reads hold
// whole packets, so one shared parser reads those, and a connection gets a
// parser of its own only while a packet is split across chunks.
//
// The parser is mqtt-packet's, subclassed where its leniency breaks a wire rule
// (core/wire-rules.ts): strings are checked as bytes before they are decoded,
// properties after they are read, a CONNECT once it is whole, and a reserved
// packet type from the fixed header's first byte. A PUBLISH's property block is
// measured before mqtt-packet parses it (about 3 µs per User Property: a 1 MB
// block of 150,000 takes half a second), walked without allocating when it could
// hold more User Properties than allowed, and skipped when over the limits.
// These are the library's internals, declared in core/mqtt-packet.ts (with
// the version they were read from, pinned; test/unit/mqtt-packet.test.ts fails
// if they change).

/** A PUBLISH whose property block exceeded the limits: not parsed (only its Topic Alias kept), `refusedProperties` says why. */
export type RefusablePublish = IPublishPacket & { refusedProperties?: string }

export interface PacketSink {
  onPacket(packet: Packet): void
  /** `connectVersion`: the error was in a CONNECT that named this protocol level */
  onParseError(err: Error, connectVersion: number | undefined): void
  /**
   * False while the sink takes no more packets (an earlier one waits): the
   * reader stops at the next packet boundary and keeps the rest as bytes until
   * resume(). (Absent: always true.)
   */
  readonly accepting?: boolean
}

class WireParser extends ParserBase {
  sink: PacketSink | null = null
  /** bounds on PUBLISH properties (null: every block is parsed) */
  limits: PropertyLimits | null = null

  // mqtt-packet makes a new BufferList here (at the start and after an error)
  override _resetState(): void {
    super._resetState()
    readInPlace(this._list)
  }

  // one error per packet: mqtt-packet reports a refused string again as "cannot parse ..."
  override _emitError(err: Error): void {
    if (this.error === null) super._emitError(err)
  }

  // a reserved packet type is refused from the first byte, before its body arrives
  override _parseHeader(): boolean | undefined {
    if (this.sink !== null && this.sink.accepting === false) return false // held: the bytes wait, unparsed, for resume()
    const type = this._list.readUInt8(0) >> 4 // (in place: see readInPlace; not _bufs[0][0]: an empty chunk can stand first)
    if (type === 0 || (type === 15 && this.settings.protocolVersion !== 5)) {
      // AUTH (15) exists only in MQTT 5
      this._emitError(malformed(`reserved packet type ${type}`)) // MQTT 5 §2.1.2: 0 is Forbidden; 3.1.1 §2.2.1: 0 and 15 are Reserved
      return false
    }
    return super._parseHeader()
  }

  // a length its packet type cannot have: PUBACK, PUBREC, PUBREL, PUBCOMP carry a packet identifier [MQTT-2.2.1-5]; PINGREQ has no body (3.12)
  override _parseLength(): boolean {
    if (!super._parseLength()) return false
    const { cmd, length } = this.packet
    if (length < 2 && (cmd === 'puback' || cmd === 'pubrec' || cmd === 'pubrel' || cmd === 'pubcomp')) {
      this._emitError(malformed(`${cmd} of ${length} bytes, without a packet identifier`))
      return false
    }
    if (length !== 0 && cmd === 'pingreq') {
      this._emitError(malformed(`pingreq with a body of ${length} bytes`))
      return false
    }
    return true
  }

  // replaces mqtt-packet's: the bytes are checked before decoding (it would turn ill-formed UTF-8 into U+FFFD)
  _parseString(): string | null {
    const length = this._parseNum()
    const start = this._pos
    const end = start + length
    if (length === -1 || end > this._list.length || end > this.packet.length) return null
    this._pos = end
    if (this._list._bufs.length === 1) return this.decode(this._list._bufs[0]!, start, end)
    return this.decode(this._list.slice(start, end), 0, length)
  }

  private decode(buf: Buffer, start: number, end: number): string | null {
    const problem = stringProblem(buf, start, end)
    if (problem !== undefined) {
      this._emitError(malformed(problem))
      return null
    }
    return buf.toString('utf8', start, end)
  }

  override _parseProperties(): object | false {
    const start = this._pos
    if (this.limits !== null) {
      const bounded = this.boundedProperties(this.limits)
      if (bounded !== undefined) return bounded
    }
    const result = super._parseProperties()
    if (result === false || this.error !== null || this._pos - start <= 1) return result // none, or an empty list
    const packet = this.packet
    const context = packet.cmd === 'connect' && packet.clientId !== undefined ? 'will' : (packet.cmd ?? '')
    const list = this._list
    const problem =
      list._bufs.length === 1
        ? propertiesProblem(list._bufs[0]!, start, this._pos, context)
        : propertiesProblem(list.slice(start, this._pos), 0, this._pos - start, context)
    if (problem !== undefined) {
      this._emitError(problem)
      return false
    }
    return result
  }

  /**
   * A PUBLISH's block over the limits, skipped (answering only its Topic
   * Alias), or false when malformed; undefined: parse it. Any other packet
   * with more User Properties than allowed ends the connection (0x97): parsing
   * a 1 MiB block of them on a SUBSCRIBE or a PUBACK took 100 ms a packet. (Its
   * size alone is not held against it: Authentication Data may be large.)
   */
  private boundedProperties(limits: PropertyLimits): object | false | undefined {
    const list = this._list
    let at = this._pos
    let length = 0
    for (let i = 0, mul = 1; ; i++, mul *= 128) {
      if (i === 4 || at >= list.length) return undefined // malformed: mqtt-packet says so
      const b = list.readUInt8(at++)
      length += (b & 0x7f) * mul
      if ((b & 0x80) === 0) break
    }
    if (at + length > this.packet.length) {
      this._emitError(malformed('Malformed properties: longer than the packet'))
      return false
    }
    const publish = this.packet.cmd === 'publish'
    // every User Property takes at least 5 bytes: a shorter block cannot hold too many
    if ((!publish || length <= limits.maxPropertyBytes) && length < 5 * (limits.maxUserProperties + 1)) return undefined
    const scan = scanProperties(list.slice(at, at + length))
    if (scan.malformed) {
      this._emitError(malformed('Malformed properties'))
      return false
    }
    const reason =
      publish && length > limits.maxPropertyBytes
        ? `properties of ${length} bytes, more than the ${limits.maxPropertyBytes} allowed`
        : scan.userProperties > limits.maxUserProperties
          ? `${scan.userProperties} user properties, more than the ${limits.maxUserProperties} allowed`
          : undefined
    if (reason === undefined) return undefined
    if (!publish) {
      this._emitError(new HookmqError('QUOTA_EXCEEDED', `${this.packet.cmd ?? 'packet'} with ${reason}`))
      return false
    }
    this._pos = at + length
    ;(this.packet as unknown as RefusablePublish).refusedProperties = reason
    return scan.topicAlias === undefined ? {} : { topicAlias: scan.topicAlias } // the alias still maps its topic
  }

  override _parseConnect(): PacketInProgress | undefined {
    const packet = super._parseConnect()
    if (packet === undefined || this.error !== null) return packet
    const problem = connectProblem(packet, this._pos)
    if (problem !== undefined) this._emitError(problem)
    return packet
  }
}

function makeParser(): WireParser {
  const p = new WireParser().parser({ protocolVersion: 4 })
  p.on('packet', (packet: Packet) => p.sink?.onPacket(packet))
  p.on('error', (err: Error) => p.sink?.onParseError(err, p.packet.cmd === 'connect' ? p.packet.protocolVersion : undefined))
  return p
}

let shared: WireParser | null = null

const NO_BYTES = Buffer.alloc(0)

/** True when `buf` is a sequence of whole packets (or malformed: the parser will say so). */
export function wholePackets(buf: Buffer): boolean {
  let pos = 0
  const end = buf.length
  while (pos < end) {
    if (end - pos < 2) return false
    let len = 0
    let mul = 1
    let i = pos + 1
    for (let n = 0; ; n++, i++) {
      if (n === 4) return true // malformed remaining length
      if (i >= end) return false
      const b = buf[i]!
      len += (b & 0x7f) * mul
      mul *= 128
      if ((b & 0x80) === 0) break
    }
    pos = i + 1 + len
  }
  return pos === end
}

export class PacketReader {
  private own: WireParser | null = null
  private version = 4

  /** `limits`: bounds on PUBLISH properties, checked on the bytes before mqtt-packet parses them (none: it parses every block) */
  constructor(
    private readonly sink: PacketSink,
    private readonly limits: PropertyLimits | null = null,
  ) {}

  /** After CONNECT: later packets, even in the same chunk, parse as this version. */
  setVersion(v: number): void {
    this.version = v
    if (this.own !== null) this.own.settings.protocolVersion = v
    if (shared !== null && shared.sink === this.sink) shared.settings.protocolVersion = v
  }

  /** Bytes held for a packet still incomplete (what this connection costs in memory beyond its objects). */
  get buffered(): number {
    return this.own === null ? 0 : this.own._list.length
  }

  /** Lets go of a partial packet (the connection is closing). */
  discard(): void {
    if (this.own !== null) this.own.sink = null
    this.own = null
  }

  /** True while whole packets wait as bytes because the sink was not accepting them. */
  get holding(): boolean {
    const own = this.own
    return own !== null && own._list.length > 0 && own._stateCounter === 0 && own.packet.length === -1
  }

  /** Parses a chunk; answers the declared length of a packet still incomplete (0 when none). */
  read(buf: Buffer): number {
    if (this.own === null && wholePackets(buf)) {
      const p = (shared ??= makeParser())
      p.sink = this.sink
      p.limits = this.limits
      p.settings.protocolVersion = this.version
      let held = false
      try {
        p.parse(buf)
        held = p.error === null && p._list.length > 0
      } finally {
        if (held) {
          // the sink stopped taking packets: the rest of the chunk is this connection's, and so is this parser
          this.own = p
          shared = null
        } else {
          p.sink = null
          p.limits = null
          // after an error mqtt-packet's reset leaves its read position behind: start the next chunk on a fresh parser
          if (p.error !== null) shared = null
        }
      }
      return 0
    }
    return this.parseOwn(buf)
  }

  /** Parses what was held while the sink was not accepting (it is again); answers as read() does. */
  resume(): number {
    return this.own === null ? 0 : this.parseOwn(NO_BYTES)
  }

  private parseOwn(buf: Buffer): number {
    const own = (this.own ??= makeParser())
    own.sink = this.sink
    own.limits = this.limits
    own.settings.protocolVersion = this.version
    own.parse(buf)
    if (own._list.length === 0 && own._stateCounter === 0 && own.packet.length === -1) {
      this.own = null // at a packet boundary with nothing pending: let the parser go
      return 0
    }
    return own.packet.length
  }
}
