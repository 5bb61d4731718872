import type { IPublishPacket, Packet } from 'mqtt-packet'
import { mqtt } from './codec.js'
import { scanProperties, type PropertyLimits } from './properties.js'

// Reading packets without a parser per connection. An mqtt-packet Parser (with
// its BufferList stream) weighs about 2 KB; most chunks a broker reads hold
// whole packets, so one shared parser reads those, and a connection gets a
// parser of its own only while a packet is split across chunks.

export interface PacketSink {
  onPacket(packet: Packet): void
  onParseError(err: Error): void
}

/** A PUBLISH whose property block exceeded the limits: not parsed (only its Topic Alias kept), `refusedProperties` says why. */
export type RefusablePublish = IPublishPacket & { refusedProperties?: string }

type Parser = ReturnType<typeof mqtt.parser> & {
  error: Error | null
  settings: { protocolVersion: number }
  _list: { length: number; readUInt8(i: number): number; slice(start: number, end: number): Buffer }
  _pos: number
  _stateCounter: number
  packet: { length: number; cmd: string }
  sink: PacketSink | null
  limits: PropertyLimits | null
  _parseProperties(): object | false
  _emitError(err: Error): void
}

function makeParser(): Parser {
  const p = mqtt.parser({ protocolVersion: 4 }) as Parser
  p.sink = null
  p.limits = null
  p._parseProperties = boundedProperties
  p.on('packet', (packet: Packet) => p.sink?.onPacket(packet))
  p.on('error', (err: Error) => p.sink?.onParseError(err))
  return p
}

let shared: Parser | null = null

// mqtt-packet parses a property block into objects as it goes (about 3 µs per
// User Property: a 1 MB block of 150,000 takes half a second). A PUBLISH's
// block is measured, and walked without allocating when it could hold more
// User Properties than allowed, before that; one over the limits is skipped.
const parseProperties = (Object.getPrototypeOf(mqtt.parser({ protocolVersion: 5 })) as Parser)._parseProperties
if (typeof parseProperties !== 'function') throw new Error('mqtt-packet has no Parser#_parseProperties: core/packet-reader.ts needs updating')

function boundedProperties(this: Parser): object | false {
  const limits = this.limits
  if (limits === null || this.packet.cmd !== 'publish') return parseProperties.call(this)
  const list = this._list
  let at = this._pos
  let length = 0
  for (let i = 0, mul = 1; ; i++, mul *= 128) {
    if (i === 4 || at >= list.length) return parseProperties.call(this) // malformed: mqtt-packet says so
    const b = list.readUInt8(at++)
    length += (b & 0x7f) * mul
    if ((b & 0x80) === 0) break
  }
  if (at + length > this.packet.length) {
    this._emitError(new Error('Malformed properties: longer than the packet'))
    return false
  }
  // every User Property takes at least 5 bytes: a shorter block cannot hold too many
  if (length <= limits.maxPropertyBytes && length < 5 * (limits.maxUserProperties + 1)) return parseProperties.call(this)
  const scan = scanProperties(list.slice(at, at + length))
  if (scan.malformed) {
    this._emitError(new Error('Malformed properties'))
    return false
  }
  const reason = length > limits.maxPropertyBytes ? `properties of ${length} bytes, more than the ${limits.maxPropertyBytes} allowed`
    : scan.userProperties > limits.maxUserProperties ? `${scan.userProperties} user properties, more than the ${limits.maxUserProperties} allowed` : undefined
  if (reason === undefined) return parseProperties.call(this)
  this._pos = at + length
  ;(this.packet as unknown as RefusablePublish).refusedProperties = reason
  return scan.topicAlias === undefined ? {} : { topicAlias: scan.topicAlias } // the alias still maps its topic
}

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
  private own: Parser | null = null
  private version = 4

  /** `limits`: bounds on PUBLISH properties, checked on the bytes before mqtt-packet parses them (none: it parses every block) */
  constructor(private readonly sink: PacketSink, private readonly limits: PropertyLimits | null = null) {}

  /** After CONNECT: later packets, even in the same chunk, parse as this version. */
  setVersion(v: number): void {
    this.version = v
    if (this.own !== null) this.own.settings.protocolVersion = v
    if (shared !== null && shared.sink === this.sink) shared.settings.protocolVersion = v
  }

  /** Parses a chunk; answers the declared length of a packet still incomplete (0 when none). */
  read(buf: Buffer): number {
    if (this.own === null && wholePackets(buf)) {
      const p = (shared ??= makeParser())
      p.sink = this.sink
      p.limits = this.limits
      p.settings.protocolVersion = this.version
      try {
        p.parse(buf)
      } finally {
        p.sink = null
        p.limits = null
        // after an error mqtt-packet's reset leaves its read position behind: start the next chunk on a fresh parser
        if (p.error !== null) shared = null
      }
      return 0
    }
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
