import { HookmqError } from './errors.js'
import type { MessageProperties } from './types.js'

// A message's own MQTT 5 properties as bytes, and the walk that bounds a
// received property block before anything is parsed out of it.
//
// encodeMessageProperties writes the properties a publisher may set and a
// subscriber receives unaltered [MQTT-3.3.2-17] — Payload Format Indicator,
// Content Type, Response Topic, Correlation Data, User Properties — once per
// message; codec.ts encodePublish copies the block into every MQTT 5
// subscriber's PUBLISH beside that subscriber's own (Message Expiry Interval
// left, Topic Alias, Subscription Identifiers). Anything else on the object is
// not written. Byte for byte what mqtt-packet writes for the same properties in
// this order (test/unit/codec.test.ts); a string or binary over 65,535 bytes,
// or a value of the wrong type, throws HOOKMQ_ERR_NOT_ENCODABLE.

const MAX_STRING = 65535

const SMALL = 4096
let out = Buffer.allocUnsafeSlow(SMALL)
let pos = 0

function notEncodable(what: string): HookmqError {
  return new HookmqError('NOT_ENCODABLE', `cannot encode: ${what}`)
}

function ensure(n: number): void {
  if (pos + n <= out.length) return
  const bigger = Buffer.allocUnsafeSlow(Math.max(out.length * 2, pos + n))
  out.copy(bigger, 0, 0, pos)
  out = bigger
}

/** A two-byte length, then the UTF-8 of `s` (ASCII copied without the encoder). */
function writeString(s: string, what: string): void {
  const len = s.length
  ensure(2 + len * 3)
  const at = pos + 2
  let n = 0
  if (len <= 64) {
    for (; n < len; n++) {
      const c = s.charCodeAt(n)
      if (c >= 0x80) break
      out[at + n] = c
    }
  }
  if (n < len) n = out.write(s, at, 'utf8')
  if (n > MAX_STRING) throw notEncodable(`${what} of ${n} bytes`) // MQTT 1.5.4: a two-byte length
  out[pos] = n >> 8
  out[pos + 1] = n & 0xff
  pos = at + n
}

function writeBinary(b: Uint8Array, what: string): void {
  if (b.length > MAX_STRING) throw notEncodable(`${what} of ${b.length} bytes`) // MQTT 1.5.6: a two-byte length
  ensure(2 + b.length)
  out[pos++] = b.length >> 8
  out[pos++] = b.length & 0xff
  out.set(b, pos)
  pos += b.length
}

function writeUserProperties(up: unknown): void {
  if (typeof up !== 'object' || up === null) throw notEncodable('userProperties: not an object')
  const names = Object.keys(up)
  for (let i = 0; i < names.length; i++) {
    const name = names[i]!
    const value = (up as Record<string, unknown>)[name]
    if (Array.isArray(value)) {
      for (let k = 0; k < value.length; k++) writePair(name, String(value[k]))
    } else writePair(name, String(value))
  }
}

function writePair(name: string, value: string): void {
  ensure(1)
  out[pos++] = 0x26 // User Property
  writeString(name, 'user property name')
  writeString(value, 'user property value')
}

/** The property block of `p` (without its length), for every MQTT 5 subscriber of the message. */
export function encodeMessageProperties(p: MessageProperties): Buffer {
  pos = 0
  try {
    if (p.payloadFormatIndicator != null) {
      if (typeof p.payloadFormatIndicator !== 'boolean') throw notEncodable('payloadFormatIndicator: not a boolean')
      ensure(2)
      out[pos++] = 0x01
      out[pos++] = p.payloadFormatIndicator ? 1 : 0
    }
    for (const [id, name] of STRINGS) {
      const v = p[name]
      if (v == null) continue
      if (typeof v !== 'string') throw notEncodable(`${name}: not a string`)
      ensure(1)
      out[pos++] = id
      writeString(v, name)
    }
    const cd = p.correlationData as unknown
    if (cd != null) {
      ensure(1)
      out[pos++] = 0x09 // Correlation Data
      if (cd instanceof Uint8Array) writeBinary(cd, 'correlationData')
      else if (typeof cd === 'string') writeString(cd, 'correlationData')
      else throw notEncodable('correlationData: not binary')
    }
    if (p.userProperties != null) writeUserProperties(p.userProperties)
    // a copy of its own size, not a slice of Node's pooled 8 KB slabs: the block is cached on the message, which may be kept
    const block = Buffer.allocUnsafeSlow(pos)
    block.set(out.subarray(0, pos))
    return block
  } finally {
    if (out.length > SMALL * 16) out = Buffer.allocUnsafeSlow(SMALL) // a big block does not stay held
  }
}

const STRINGS = [
  [0x03, 'contentType'],
  [0x08, 'responseTopic'],
] as const

/** Bounds on a message's MQTT 5 properties (limits.maxUserProperties / maxPropertyBytes). */
export interface PropertyLimits {
  maxUserProperties: number
  maxPropertyBytes: number
}

/** Why `p` may not travel as a message's properties (as for a client's PUBLISH), or undefined when it may. */
export function checkMessageProperties(p: MessageProperties, limits: PropertyLimits): string | undefined {
  let bytes: number
  try {
    bytes = encodeMessageProperties(p).length + (p.messageExpiryInterval === undefined ? 0 : 5)
  } catch (err) {
    return (err as Error).message
  }
  if (bytes > limits.maxPropertyBytes) return `properties of ${bytes} bytes, more than the ${limits.maxPropertyBytes} allowed`
  let count = 0
  const up = p.userProperties ?? {}
  for (const name of Object.keys(up)) {
    const v = up[name]
    count += Array.isArray(v) ? v.length : 1
  }
  if (count > limits.maxUserProperties) return `${count} user properties, more than the ${limits.maxUserProperties} allowed`
  return undefined
}

// ---- the walk over a received block

/** What a property block holds, read without parsing it; `malformed` when it cannot be walked. */
export interface PropertyScan {
  userProperties: number
  topicAlias: number | undefined
  malformed: boolean
}

// Property identifier -> size: 1, 2 or 4 bytes; V a variable byte integer; S a string or binary; P a string pair; 0 none
const V = -1
const S = -2
const P = -3
const SIZES = new Int8Array(256)
for (const [id, size] of [
  [0x01, 1],
  [0x02, 4],
  [0x03, S],
  [0x08, S],
  [0x09, S],
  [0x0b, V],
  [0x11, 4],
  [0x12, S],
  [0x13, 2],
  [0x15, S],
  [0x16, S],
  [0x17, 1],
  [0x18, 4],
  [0x19, 1],
  [0x1a, S],
  [0x1c, S],
  [0x1f, S],
  [0x21, 2],
  [0x22, 2],
  [0x23, 2],
  [0x24, 1],
  [0x25, 1],
  [0x26, P],
  [0x27, 4],
  [0x28, 1],
  [0x29, 1],
  [0x2a, 1],
] as const)
  SIZES[id] = size

/** Walks the property block `b` (the bytes after the Property Length): counts User Properties, finds the Topic Alias. */
export function scanProperties(b: Buffer): PropertyScan {
  const end = b.length
  let userProperties = 0
  let topicAlias: number | undefined
  let p = 0
  let malformed = false
  while (p < end) {
    const id = b[p++]!
    const size = SIZES[id]!
    if (size > 0) {
      if (id === 0x23 && p + 2 <= end) topicAlias = (b[p]! << 8) | b[p + 1]!
      p += size
    } else if (size === P || size === S) {
      if (size === P) {
        userProperties++
        if (p + 2 > end) {
          malformed = true
          break
        }
        p += 2 + ((b[p]! << 8) | b[p + 1]!)
      }
      if (p + 2 > end) {
        malformed = true
        break
      }
      p += 2 + ((b[p]! << 8) | b[p + 1]!)
    } else if (size === V) {
      let n = 1
      while (p < end && n < 4 && (b[p]! & 0x80) !== 0) {
        p++
        n++
      }
      if (p >= end || (b[p++]! & 0x80) !== 0) {
        malformed = true
        break
      }
    } else {
      malformed = true
      break
    } // no such property
  }
  return { userProperties, topicAlias, malformed: malformed || p !== end }
}
