import assert from 'node:assert/strict'
import { test } from 'node:test'
import { connectProblem, propertiesProblem, stringProblem } from '../../core/wire-rules.js'

const bytes = (...b: number[]): Buffer => Buffer.from(b)
const ok = (b: Buffer): string | undefined => stringProblem(b, 0, b.length)

test('[MQTT-1.5.4-1] stringProblem: well-formed UTF-8 passes, ill-formed sequences are named', () => {
  for (const s of ['', 'a/b', 'é', '€', '𝄞', '\ufffd', '\ufeff', 'a\u007fb']) assert.equal(ok(Buffer.from(s)), undefined, JSON.stringify(s))
  const bad: Array<[string, Buffer]> = [
    ['lone continuation', bytes(0x80)],
    ['overlong "/" (C0 AF)', bytes(0xc0, 0xaf)],
    ['overlong three bytes', bytes(0xe0, 0x80, 0xaf)],
    ['surrogate U+D800', bytes(0xed, 0xa0, 0x80)],
    ['past U+10FFFF', bytes(0xf4, 0x90, 0x80, 0x80)],
    ['F5 lead', bytes(0xf5, 0x80, 0x80, 0x80)],
    ['cut short', bytes(0x61, 0xe2, 0x82)],
    ['lead then ASCII', bytes(0xc3, 0x28)],
  ]
  for (const [what, b] of bad) assert.equal(ok(b), 'ill-formed UTF-8 in a string', what)
})

test('[MQTT-1.5.4-2] stringProblem: U+0000 is refused, wherever it is', () => {
  assert.equal(ok(bytes(0x00)), 'U+0000 in a UTF-8 string')
  assert.equal(ok(Buffer.concat([Buffer.from('é'), bytes(0x00)])), 'U+0000 in a UTF-8 string')
  // only the range asked about is checked
  const b = bytes(0x00, 0x61, 0x62, 0x00)
  assert.equal(stringProblem(b, 1, 3), undefined)
})

const p = (...b: number[]): Buffer => Buffer.from([b.length, ...b]) // properties with a one-byte length
const problem = (b: Buffer, context: string): { code: string; message: string } | undefined => {
  const e = propertiesProblem(b, 0, b.length, context)
  return e === undefined ? undefined : { code: e.code, message: e.message }
}

test('propertiesProblem: allowed properties pass, an empty list passes', () => {
  assert.equal(problem(p(), 'publish'), undefined)
  assert.equal(problem(p(0x01, 0x01, 0x03, 0x00, 0x01, 0x61, 0x23, 0x00, 0x05), 'publish'), undefined) // PFI, Content Type, Topic Alias
  assert.equal(problem(p(0x26, 0, 1, 0x6b, 0, 1, 0x76, 0x26, 0, 1, 0x6b, 0, 1, 0x77), 'publish'), undefined) // User Property twice
  assert.equal(problem(p(0x11, 0, 0, 0, 1, 0x21, 0, 10, 0x27, 0, 0, 1, 0), 'connect'), undefined)
  assert.equal(problem(p(0x18, 0, 0, 0, 5), 'will'), undefined)
  assert.equal(problem(p(0x0b, 0x81, 0x01), 'subscribe'), undefined) // Subscription Identifier 129
  assert.equal(problem(p(0x1f, 0, 1, 0x61), 'puback'), undefined)
})

test('propertiesProblem: a property not allowed in the packet is a protocol error', () => {
  assert.deepEqual(problem(p(0x11, 0, 0, 0, 1), 'subscribe'), {
    code: 'HOOKMQ_ERR_PROTOCOL_ERROR',
    message: 'Session Expiry Interval is not allowed in SUBSCRIBE',
  })
  assert.equal(problem(p(0x0b, 0x01), 'publish')?.code, 'HOOKMQ_ERR_PROTOCOL_ERROR') // [MQTT-3.3.4-6]
  assert.equal(problem(p(0x12, 0, 1, 0x61), 'publish')?.code, 'HOOKMQ_ERR_PROTOCOL_ERROR') // server only
  assert.equal(problem(p(0x18, 0, 0, 0, 5), 'connect')?.message, 'Will Delay Interval is not allowed in CONNECT')
  assert.equal(problem(p(0x11, 0, 0, 0, 5), 'will')?.message, 'Session Expiry Interval is not allowed in the will properties')
})

test('propertiesProblem: a property included twice is a protocol error, a zero value too', () => {
  assert.equal(problem(p(0x03, 0, 1, 0x61, 0x03, 0, 1, 0x62), 'publish')?.message, 'Content Type included more than once')
  assert.equal(problem(p(0x01, 0, 0x01, 0), 'publish')?.message, 'Payload Format Indicator included more than once')
  // the walk for one packet does not leak into the next
  assert.equal(problem(p(0x01, 0), 'publish'), undefined)
  assert.equal(problem(p(0x01, 0), 'publish'), undefined)
})

test('propertiesProblem: byte properties must be 0 or 1; lengths must add up', () => {
  assert.equal(problem(p(0x01, 2), 'publish')?.message, 'Payload Format Indicator must be 0 or 1')
  assert.equal(problem(p(0x17, 2), 'connect')?.message, 'Request Problem Information must be 0 or 1')
  assert.equal(problem(Buffer.from([3, 0x03, 0, 2, 0x61, 0x62]), 'publish')?.code, 'HOOKMQ_ERR_MALFORMED_PACKET') // length says 3, entry needs 5
  assert.equal(problem(p(0x03, 0, 5, 0x61), 'publish')?.code, 'HOOKMQ_ERR_MALFORMED_PACKET') // value past the end
  assert.equal(problem(p(0x02, 0, 0), 'publish')?.code, 'HOOKMQ_ERR_MALFORMED_PACKET') // four-byte integer cut short
  assert.equal(problem(p(0x0b, 0x80, 0x80, 0x80, 0x80, 0x01), 'subscribe')?.code, 'HOOKMQ_ERR_MALFORMED_PACKET') // varint of five bytes
})

test('propertiesProblem: server-to-client packets are not its business', () => {
  assert.equal(problem(p(0x12, 0, 1, 0x61), 'connack'), undefined)
})

test('connectProblem: bytes after the payload, and 3.1.1 password without user name', () => {
  assert.equal(connectProblem({ protocolVersion: 4, length: 20 }, 20), undefined)
  assert.equal(connectProblem({ protocolVersion: 4, length: 23 }, 20)?.message, '3 bytes left over after the CONNECT payload') // [MQTT-3.1.2-18]
  assert.equal(connectProblem({ protocolVersion: 4, length: 20, password: Buffer.from('x') }, 20)?.code, 'HOOKMQ_ERR_MALFORMED_PACKET') // [MQTT-3.1.2-22]
  assert.equal(connectProblem({ protocolVersion: 3, length: 20, password: Buffer.from('x') }, 20)?.code, 'HOOKMQ_ERR_MALFORMED_PACKET')
  assert.equal(connectProblem({ protocolVersion: 5, length: 20, password: Buffer.from('x') }, 20), undefined)
  assert.equal(connectProblem({ protocolVersion: 4, length: 20, username: '', password: Buffer.from('x') }, 20), undefined)
})
