import type * as MqttPacket from 'mqtt-packet'
import { HookmqError } from './errors.js'
import { mqtt } from './mqtt-packet.js'

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
    this.error ??= err ?? new HookmqError('NOT_ENCODABLE', 'encoding failed')
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

// The PUBLISH every subscriber gets is encoded by hand, the one hot path that
// needs it: byte for byte what mqtt-packet writes (test/unit/codec.test.ts
// holds it to that) without its intermediate objects and buffers, and with the
// message's own MQTT 5 properties encoded once (encodeMessageProperties) and
// copied into each subscriber's packet beside the few properties that are that
// subscriber's own. It refuses what MQTT cannot represent rather than write a
// length modulo its field: the caller drops that delivery.

const MAX_REMAINING = 268435455 // MQTT 1.5.5: four bytes of variable byte integer
const MAX_STRING = 65535 // MQTT 1.5.4: a two-byte length

/** The MQTT 5 properties of one PUBLISH to one client. One object is reused for every delivery. */
export interface PublishProperties {
  /** the message's own properties (encodeMessageProperties), shared by every MQTT 5 subscriber */
  shared: Buffer
  /** Message Expiry Interval left, in seconds; -1: none */
  expiry: number
  /** Topic Alias; 0: none */
  alias: number
  /** Subscription Identifiers of the matching subscriptions */
  ids: number[] | undefined
}

function notEncodable(what: string): HookmqError {
  return new HookmqError('NOT_ENCODABLE', `cannot encode: ${what}`)
}

function varIntLength(n: number): number {
  return n < 128 ? 1 : n < 16384 ? 2 : n < 2097152 ? 3 : 4
}

function writeVarInt(buf: Buffer, p: number, n: number): number {
  do {
    let digit = n % 128
    n = Math.floor(n / 128)
    if (n > 0) digit |= 0x80
    buf[p++] = digit
  } while (n > 0)
  return p
}

/** Bytes of this client's own properties (the shared block excluded); throws for a value MQTT cannot carry. */
function ownPropertiesLength(props: PublishProperties): number {
  let n = 0
  if (props.expiry >= 0) {
    if (props.expiry > 0xffffffff) throw notEncodable(`message expiry interval ${props.expiry}`)
    n += 5
  }
  if (props.alias !== 0) {
    if (props.alias < 0 || props.alias > 0xffff) throw notEncodable(`topic alias ${props.alias}`)
    n += 3
  }
  const ids = props.ids
  if (ids !== undefined) {
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!
      if (!(id >= 1 && id <= MAX_REMAINING)) throw notEncodable(`subscription identifier ${id}`)
      n += 1 + varIntLength(id)
    }
  }
  return n
}

function writeOwnProperties(buf: Buffer, p: number, props: PublishProperties): number {
  if (props.expiry >= 0) {
    buf[p++] = 0x02 // Message Expiry Interval
    buf.writeUInt32BE(props.expiry, p)
    p += 4
  }
  if (props.alias !== 0) {
    buf[p++] = 0x23 // Topic Alias
    buf[p++] = props.alias >> 8
    buf[p++] = props.alias & 0xff
  }
  const ids = props.ids
  if (ids !== undefined) {
    for (let i = 0; i < ids.length; i++) {
      buf[p++] = 0x0b // Subscription Identifier
      p = writeVarInt(buf, p, ids[i]!)
    }
  }
  return p
}

/**
 * Encodes one PUBLISH. `v5` without `props` writes an empty property length;
 * with `props`, this client's properties then the shared block. An empty
 * `topic` is written as such (a Topic Alias stands for it). Throws a
 * HOOKMQ_ERR_NOT_ENCODABLE HookmqError when a length does not fit its field.
 */
export function encodePublish(
  topic: string,
  payload: Buffer,
  qos: 0 | 1 | 2,
  retain: boolean,
  dup: boolean,
  packetId: number,
  v5: boolean,
  props?: PublishProperties,
): Buffer {
  let topicLen = topic.length
  let ascii = topicLen <= 128
  if (ascii) {
    for (let i = 0; i < topicLen; i++)
      if (topic.charCodeAt(i) >= 0x80) {
        ascii = false
        break
      }
  }
  if (!ascii) topicLen = Buffer.byteLength(topic, 'utf8')
  if (topicLen > MAX_STRING) throw notEncodable(`topic of ${topicLen} bytes`) // MQTT 1.5.4
  const own = props === undefined ? 0 : ownPropertiesLength(props)
  const propLen = props === undefined ? 0 : own + props.shared.length
  const remaining = 2 + topicLen + (qos > 0 ? 2 : 0) + (v5 ? varIntLength(propLen) + propLen : 0) + payload.length
  if (remaining > MAX_REMAINING) throw notEncodable(`PUBLISH of ${remaining} bytes`) // MQTT 1.5.5
  const buf = Buffer.allocUnsafe(1 + varIntLength(remaining) + remaining)
  buf[0] = 0x30 | (dup ? 8 : 0) | (qos << 1) | (retain ? 1 : 0)
  let p = writeVarInt(buf, 1, remaining)
  buf[p++] = topicLen >> 8
  buf[p++] = topicLen & 0xff
  if (ascii) {
    for (let i = 0; i < topicLen; i++) buf[p++] = topic.charCodeAt(i)
  } else p += buf.write(topic, p, 'utf8')
  if (qos > 0) {
    buf[p++] = packetId >> 8
    buf[p++] = packetId & 0xff
  }
  if (v5) {
    p = writeVarInt(buf, p, propLen)
    if (props !== undefined) {
      p = writeOwnProperties(buf, p, props)
      p += props.shared.copy(buf, p)
    }
  }
  buf.set(payload, p)
  return buf
}
