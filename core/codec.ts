import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import type * as MqttPacket from 'mqtt-packet'

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

/**
 * Collects what writeToStream writes. mqtt.generate() does the same with a new
 * EventEmitter per packet; one reusable collector spares that on every send.
 */
class Collector {
  parts: Array<Buffer | string> = []
  length = 0
  error: Error | undefined = undefined

  write(chunk: Buffer | string): boolean {
    this.parts.push(chunk)
    this.length += typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.length
    return true
  }

  destroy(err?: Error): void {
    this.error ??= err ?? new Error('encoding failed')
  }

  // writeToStream may listen for these; nothing is emitted
  on(): this {
    return this
  }

  once(): this {
    return this
  }

  emit(): boolean {
    return false
  }
}

const collector = new Collector()

/** Encodes one packet; throws what mqtt-packet reports for an invalid one. */
export function encodePacket(packet: MqttPacket.Packet, opts: { protocolVersion: 3 | 4 | 5 }): Buffer {
  const c = collector
  c.parts.length = 0
  c.length = 0
  c.error = undefined
  mqtt.writeToStream(packet, c as unknown as NodeJS.WritableStream, opts)
  if (c.error !== undefined) throw c.error
  const out = Buffer.allocUnsafe(c.length)
  let pos = 0
  for (const part of c.parts) pos += typeof part === 'string' ? out.write(part, pos) : part.copy(out, pos)
  c.parts.length = 0
  return out
}

/**
 * A PUBLISH without MQTT 5 properties, encoded by hand: the packet every
 * subscriber gets on the hot path. Byte for byte what mqtt-packet writes (a unit
 * test holds it to that), without its intermediate objects and buffers: about
 * 600 bytes less garbage per message. `v5` adds the empty property length.
 */
export function encodePublish(topic: string, payload: Buffer, qos: 0 | 1 | 2, retain: boolean, dup: boolean, packetId: number, v5: boolean): Buffer {
  let topicLen = topic.length
  let ascii = topicLen <= 128
  if (ascii) {
    for (let i = 0; i < topicLen; i++) if (topic.charCodeAt(i) >= 0x80) { ascii = false; break }
  }
  if (!ascii) topicLen = Buffer.byteLength(topic, 'utf8')
  const remaining = 2 + topicLen + (qos > 0 ? 2 : 0) + (v5 ? 1 : 0) + payload.length
  const lenBytes = remaining < 128 ? 1 : remaining < 16384 ? 2 : remaining < 2097152 ? 3 : 4
  const buf = Buffer.allocUnsafe(1 + lenBytes + remaining)
  buf[0] = 0x30 | (dup ? 8 : 0) | (qos << 1) | (retain ? 1 : 0)
  let p = 1
  let n = remaining
  do {
    let digit = n % 128
    n = Math.floor(n / 128)
    if (n > 0) digit |= 0x80
    buf[p++] = digit
  } while (n > 0)
  buf[p++] = topicLen >> 8
  buf[p++] = topicLen & 0xff
  if (ascii) {
    for (let i = 0; i < topicLen; i++) buf[p++] = topic.charCodeAt(i)
  } else p += buf.write(topic, p, 'utf8')
  if (qos > 0) {
    buf[p++] = packetId >> 8
    buf[p++] = packetId & 0xff
  }
  if (v5) buf[p++] = 0 // no properties
  buf.set(payload, p)
  return buf
}
