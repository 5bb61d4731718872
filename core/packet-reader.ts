import type { Packet } from 'mqtt-packet'
import { mqtt } from './codec.js'

// Reading packets without a parser per connection. An mqtt-packet Parser (with
// its BufferList stream) weighs about 2 KB; most chunks a broker reads hold
// whole packets, so one shared parser reads those, and a connection gets a
// parser of its own only while a packet is split across chunks.

export interface PacketSink {
  onPacket(packet: Packet): void
  onParseError(err: Error): void
}

type Parser = ReturnType<typeof mqtt.parser> & {
  error: Error | null
  settings: { protocolVersion: number }
  _list: { length: number }
  _stateCounter: number
  packet: { length: number }
  sink: PacketSink | null
}

function makeParser(): Parser {
  const p = mqtt.parser({ protocolVersion: 4 }) as Parser
  p.sink = null
  p.on('packet', (packet: Packet) => p.sink?.onPacket(packet))
  p.on('error', (err: Error) => p.sink?.onParseError(err))
  return p
}

let shared: Parser | null = null

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

  constructor(private readonly sink: PacketSink) {}

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
      p.settings.protocolVersion = this.version
      try {
        p.parse(buf)
      } finally {
        p.sink = null
        // after an error mqtt-packet's reset leaves its read position behind: start the next chunk on a fresh parser
        if (p.error !== null) shared = null
      }
      return 0
    }
    const own = (this.own ??= makeParser())
    own.sink = this.sink
    own.settings.protocolVersion = this.version
    own.parse(buf)
    if (own._list.length === 0 && own._stateCounter === 0 && own.packet.length === -1) {
      this.own = null // at a packet boundary with nothing pending: let the parser go
      return 0
    }
    return own.packet.length
  }
}
