import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import type * as MqttPacket from 'mqtt-packet'
import type { ParsedConnect } from './wire-rules.js'

// Everything hookmq does to mqtt-packet beyond its public API, in one place:
// the codec loaded without `debug`, its number cache off, and the parser
// internals packet-reader.ts subclasses. They were read from mqtt-packet
// MQTT_PACKET_VERSION (package.json pins it exactly); test/unit/mqtt-packet.test.ts
// checks that version and every internal named here, and fails if one changes.

/** The mqtt-packet version whose internals this module relies on. */
export const MQTT_PACKET_VERSION = '9.0.2'

// The MQTT codec is mqtt-packet. Its parser calls `debug()` at every state of
// every packet; with the `debug` package that costs a rest-args call and a
// getter each time (about 8% of the broker's CPU under load, by profile) even
// when nothing is logged. Unless DEBUG names mqtt-packet, the codec is loaded
// with a no-op logger in place of `debug`; nothing else sees the substitute.

const require = createRequire(import.meta.url)

function load(): typeof MqttPacket {
  const wanted = /(^|,)\s*(\*|mqtt-packet)/.test(process.env.DEBUG ?? '')
  const entry = require.resolve('mqtt-packet')
  if (wanted || require.cache[entry]) return require('mqtt-packet') as typeof MqttPacket
  const debugPath = createRequire(join(dirname(entry), 'parser.js')).resolve('debug')
  const saved = require.cache[debugPath]
  const noop = Object.assign(() => {}, { enabled: false, extend: () => noop, log: () => {} })
  const factory = Object.assign(() => noop, { enable: () => {}, disable: () => '', enabled: () => false, names: [], skips: [] })
  require.cache[debugPath] = { id: debugPath, filename: debugPath, loaded: true, exports: factory } as unknown as NodeJS.Module
  try {
    return require('mqtt-packet') as typeof MqttPacket
  } finally {
    if (saved) require.cache[debugPath] = saved
    else delete require.cache[debugPath]
  }
}

export const mqtt = load()

// mqtt-packet would otherwise build, on its first encode, a cache of 65,536
// two-byte Buffers for 16-bit numbers: 6 MB of heap that every full GC walks.
// Writing a number allocates a tiny Buffer instead (a few per packet).
;(mqtt.writeToStream as unknown as { cacheNumbers: boolean }).cacheNumbers = false

interface BufferList {
  length: number
  _bufs: Buffer[]
  slice(start: number, end: number): Buffer
  readUInt8(i: number): number
  readUInt16BE(i: number): number
}

// The parser reads every header byte, length byte and 16-bit number through
// its BufferList (bl), whose readUInt8/readUInt16BE slice a Buffer (and two
// arrays) to read one or two bytes: four or five Buffers per PUBLISH that are
// garbage at once. A parser's list reads them in place instead, with the same
// answers and the same RangeError past the end (test/unit/mqtt-packet.test.ts).

const NO_BYTES = Buffer.alloc(0)

function byteAt(list: BufferList, offset: number): number {
  const bufs = list._bufs
  if (offset >= 0) {
    for (let i = 0; i < bufs.length; i++) {
      const b = bufs[i]!
      if (offset < b.length) return b[offset]!
      offset -= b.length
    }
  }
  return NO_BYTES.readUInt8(0) // throws bl's own RangeError
}

function readUInt8InPlace(this: BufferList, offset = 0): number {
  return byteAt(this, offset)
}

function readUInt16BEInPlace(this: BufferList, offset = 0): number {
  const first = this._bufs.length === 0 ? undefined : this._bufs[0]!
  if (first !== undefined && offset >= 0 && offset + 2 <= first.length) return (first[offset]! << 8) | first[offset + 1]!
  return (byteAt(this, offset) << 8) | byteAt(this, offset + 1)
}

/** Makes a parser's BufferList read single bytes and 16-bit numbers without slicing. */
export function readInPlace(list: BufferList): void {
  list.readUInt8 = readUInt8InPlace
  list.readUInt16BE = readUInt16BEInPlace
}

export interface PacketInProgress extends ParsedConnect {
  cmd: string | null
  clientId?: string
  length: number
}

/** The parts of mqtt-packet's Parser this module relies on. */
interface ParserInternals {
  error: Error | null
  settings: { protocolVersion: number }
  _list: BufferList
  _pos: number
  _stateCounter: number
  packet: PacketInProgress
  parser(opts: { protocolVersion: number }): this
  parse(buf: Buffer): number
  on(event: string, fn: (...args: never[]) => void): this
  _emitError(err: Error): void
  _parseNum(): number
  _parseHeader(): boolean | undefined
  _parseLength(): boolean
  _parseConnect(): PacketInProgress | undefined
  _parseProperties(): object | false
  _resetState(): void
}

/** mqtt-packet's Parser class, to subclass (packet-reader.ts). */
export const ParserBase = Object.getPrototypeOf(mqtt.parser({ protocolVersion: 4 })).constructor as new () => ParserInternals
