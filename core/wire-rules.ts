import { malformed, protocolError, type HookmqError } from './errors.js'

// Wire rules the codec (mqtt-packet) does not enforce, decided over a packet's
// bytes: it decodes ill-formed UTF-8 into U+FFFD, merges a repeated property into
// an array (or, for a zero value, silently keeps the last), accepts any property
// in any packet and ignores bytes left after a CONNECT. The packet reader calls
// these while it parses; each answers undefined when the input is fine, without
// allocating, and a HookmqError (malformed 0x81 / protocol error 0x82) otherwise.

/** Why the UTF-8 string in `buf[start, end)` is refused, or undefined. */
export function stringProblem(buf: Uint8Array, start: number, end: number): string | undefined {
  let i = start
  while (i < end) {
    const b = buf[i]!
    if (b < 0x80) {
      if (b === 0) return 'U+0000 in a UTF-8 string' // [MQTT-1.5.4-2]
      i++
      continue
    }
    const n = sequenceLength(buf, i, end)
    if (n === 0) return 'ill-formed UTF-8 in a string' // [MQTT-1.5.4-1]
    i += n
  }
  return undefined
}

/** Length of the well-formed multi-byte sequence at `i` (RFC 3629: no overlongs, surrogates or code points past U+10FFFF), 0 if there is none. */
function sequenceLength(buf: Uint8Array, i: number, end: number): number {
  const b = buf[i]!
  const b1 = i + 1 < end ? buf[i + 1]! : 0
  if (b >= 0xc2 && b <= 0xdf) return isCont(b1) ? 2 : 0
  if (b >= 0xe0 && b <= 0xef) {
    if (i + 2 >= end || !isCont(b1) || !isCont(buf[i + 2]!)) return 0
    if (b === 0xe0 && b1 < 0xa0) return 0 // overlong
    if (b === 0xed && b1 >= 0xa0) return 0 // U+D800..U+DFFF
    return 3
  }
  if (b >= 0xf0 && b <= 0xf4) {
    if (i + 3 >= end || !isCont(b1) || !isCont(buf[i + 2]!) || !isCont(buf[i + 3]!)) return 0
    if (b === 0xf0 && b1 < 0x90) return 0 // overlong
    if (b === 0xf4 && b1 >= 0x90) return 0 // past U+10FFFF
    return 4
  }
  return 0
}

function isCont(b: number): boolean {
  return (b & 0xc0) === 0x80
}

// MQTT 5 properties (§2.2.2.2): value type of each identifier and the packets it may appear in.
const BYTE = 1,
  INT16 = 2,
  INT32 = 4,
  VARINT = 5,
  STRING = 6,
  BINARY = 7,
  PAIR = 8
const MAX_ID = 0x2a

interface PropertyDef {
  name: string
  type: number
  in: string[]
}

const PROPERTIES: Record<number, PropertyDef> = {
  0x01: { name: 'Payload Format Indicator', type: BYTE, in: ['publish', 'will'] },
  0x02: { name: 'Message Expiry Interval', type: INT32, in: ['publish', 'will'] },
  0x03: { name: 'Content Type', type: STRING, in: ['publish', 'will'] },
  0x08: { name: 'Response Topic', type: STRING, in: ['publish', 'will'] },
  0x09: { name: 'Correlation Data', type: BINARY, in: ['publish', 'will'] },
  0x0b: { name: 'Subscription Identifier', type: VARINT, in: ['subscribe'] }, // a client's PUBLISH must not carry one [MQTT-3.3.4-6]
  0x11: { name: 'Session Expiry Interval', type: INT32, in: ['connect', 'disconnect'] },
  0x12: { name: 'Assigned Client Identifier', type: STRING, in: [] },
  0x13: { name: 'Server Keep Alive', type: INT16, in: [] },
  0x15: { name: 'Authentication Method', type: STRING, in: ['connect', 'auth'] },
  0x16: { name: 'Authentication Data', type: BINARY, in: ['connect', 'auth'] },
  0x17: { name: 'Request Problem Information', type: BYTE, in: ['connect'] },
  0x18: { name: 'Will Delay Interval', type: INT32, in: ['will'] },
  0x19: { name: 'Request Response Information', type: BYTE, in: ['connect'] },
  0x1a: { name: 'Response Information', type: STRING, in: [] },
  0x1c: { name: 'Server Reference', type: STRING, in: ['disconnect'] },
  0x1f: { name: 'Reason String', type: STRING, in: ['puback', 'pubrec', 'pubrel', 'pubcomp', 'disconnect', 'auth'] },
  0x21: { name: 'Receive Maximum', type: INT16, in: ['connect'] },
  0x22: { name: 'Topic Alias Maximum', type: INT16, in: ['connect'] },
  0x23: { name: 'Topic Alias', type: INT16, in: ['publish'] },
  0x24: { name: 'Maximum QoS', type: BYTE, in: [] },
  0x25: { name: 'Retain Available', type: BYTE, in: [] },
  0x26: {
    name: 'User Property',
    type: PAIR,
    in: ['connect', 'will', 'publish', 'puback', 'pubrec', 'pubrel', 'pubcomp', 'subscribe', 'unsubscribe', 'disconnect', 'auth'],
  },
  0x27: { name: 'Maximum Packet Size', type: INT32, in: ['connect'] },
  0x28: { name: 'Wildcard Subscription Available', type: BYTE, in: [] },
  0x29: { name: 'Subscription Identifier Available', type: BYTE, in: [] },
  0x2a: { name: 'Shared Subscription Available', type: BYTE, in: [] },
}

/** The packets a client sends that carry properties ('will': the will properties inside CONNECT). */
export type PropertyContext = 'connect' | 'will' | 'publish' | 'puback' | 'pubrec' | 'pubrel' | 'pubcomp' | 'subscribe' | 'unsubscribe' | 'disconnect' | 'auth'

const CONTEXTS: PropertyContext[] = ['connect', 'will', 'publish', 'puback', 'pubrec', 'pubrel', 'pubcomp', 'subscribe', 'unsubscribe', 'disconnect', 'auth']
const TYPES = new Uint8Array(MAX_ID + 1)
/** ALLOWED.get(context)[id] === 1 when the property may appear there */
const ALLOWED = new Map<string, Uint8Array>(CONTEXTS.map((c) => [c, new Uint8Array(MAX_ID + 1)]))
for (const [id, def] of Object.entries(PROPERTIES)) {
  TYPES[Number(id)] = def.type
  for (const c of def.in) ALLOWED.get(c)![Number(id)] = 1
}

// which identifiers the current walk has seen: generation-stamped, so nothing is cleared or allocated per packet
const seenAt = new Uint32Array(MAX_ID + 1)
let generation = 0

/**
 * Checks the properties field `buf[start, end)` (its length prefix included) of
 * a packet of kind `context`: each identifier allowed there, none repeated but
 * User Property, byte values in range, and the entries ending exactly where the
 * length said. Server-to-client packets are not checked here (the dispatcher refuses them).
 */
export function propertiesProblem(buf: Uint8Array, start: number, end: number, context: string): HookmqError | undefined {
  const allowed = ALLOWED.get(context)
  if (allowed === undefined) return undefined
  let declared = 0
  let mul = 1
  let i = start
  for (;;) {
    if (i >= end) return malformed('properties cut short')
    const b = buf[i++]!
    declared += (b & 0x7f) * mul
    mul *= 128
    if ((b & 0x80) === 0) break
  }
  if (i + declared !== end) return malformed('properties do not end where their length says') // MQTT 5 §2.2.2.1 Property Length
  if (++generation === 0xffffffff) {
    seenAt.fill(0)
    generation = 1
  }
  while (i < end) {
    const id = buf[i++]!
    const type = id <= MAX_ID ? TYPES[id]! : 0
    if (type === 0) return malformed(`unknown property identifier 0x${id.toString(16)}`)
    const name = PROPERTIES[id]!.name
    if (allowed[id] !== 1) return protocolError(`${name} is not allowed in ${context === 'will' ? 'the will properties' : context.toUpperCase()}`)
    if (type !== PAIR) {
      if (seenAt[id] === generation) return protocolError(`${name} included more than once`) // MQTT 5 §2.2.2.2, §3.x: a Protocol Error
      seenAt[id] = generation
    }
    const next = skipValue(buf, i, end, type)
    if (next < 0) return malformed(`${name} runs past the properties`)
    if (type === BYTE && buf[i]! > 1) return protocolError(`${name} must be 0 or 1`)
    i = next
  }
  return undefined
}

/** Index after the value at `i` of `type`, or -1 when it does not fit before `end`. */
function skipValue(buf: Uint8Array, i: number, end: number, type: number): number {
  switch (type) {
    case BYTE:
      i += 1
      break
    case INT16:
      i += 2
      break
    case INT32:
      i += 4
      break
    case VARINT: {
      for (let n = 0; ; n++) {
        if (n === 4 || i >= end) return -1
        if ((buf[i++]! & 0x80) === 0) break
      }
      break
    }
    case STRING:
    case BINARY:
      i = skipField(buf, i, end)
      break
    case PAIR:
      i = skipField(buf, skipField(buf, i, end), end)
      break
  }
  return i > end ? -1 : i
}

function skipField(buf: Uint8Array, i: number, end: number): number {
  if (i < 0 || i + 2 > end) return end + 1
  return i + 2 + ((buf[i]! << 8) | buf[i + 1]!)
}

/** What a CONNECT parse left: the fields the rules below look at. */
export interface ParsedConnect {
  protocolVersion: number
  length: number
  username?: string | undefined
  password?: Buffer | undefined
  will?: { qos?: number } | undefined
}

/**
 * Rules of a whole CONNECT: `end` is where its payload was read up to. A
 * malformed CONNECT gets no CONNACK under 3.1.1 (the connection just closes).
 */
export function connectProblem(packet: ParsedConnect, end: number): HookmqError | undefined {
  // a field whose flag is 0 is still there (a user name with the User Name Flag 0 [MQTT-3.1.2-18],
  // a password with the Password Flag 0 [MQTT-3.1.2-20]), or anything else after the payload
  if (end !== packet.length) return malformed(`${packet.length - end} bytes left over after the CONNECT payload`)
  // [MQTT-3.1.2-12] (5.0: a Malformed Packet), [MQTT-3.1.2-14] (3.1.1): the Will QoS is 0, 1 or 2
  if (packet.will?.qos === 3) return malformed('Will QoS 3')
  // [MQTT-3.1.2-22] 3.1.1 (and 3.1): no password without a user name; MQTT 5 allows it
  if (packet.protocolVersion !== 5 && packet.password !== undefined && packet.username === undefined) {
    return malformed('Password Flag set without the User Name Flag')
  }
  return undefined
}
