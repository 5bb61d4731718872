import assert from 'node:assert/strict'
import { test } from 'node:test'
import mqttPacket, { type Packet } from 'mqtt-packet'
import { PacketReader, wholePackets } from '../../core/packet-reader.js'

function reader(): { r: PacketReader; got: string[]; errors: string[] } {
  const got: string[] = []
  const errors: string[] = []
  const r = new PacketReader({ onPacket: (p: Packet) => got.push(p.cmd === 'publish' ? `publish:${p.topic}:${p.payload.toString()}` : p.cmd), onParseError: (e) => errors.push(e.message) })
  return { r, got, errors }
}

const publish = (topic: string, payload: string): Buffer => mqttPacket.generate({ cmd: 'publish', topic, payload, qos: 0, retain: false, dup: false })

test('wholePackets tells chunks of whole packets from cut ones', () => {
  const two = Buffer.concat([publish('a', 'x'), Buffer.from([0xc0, 0])])
  assert.equal(wholePackets(two), true)
  assert.equal(wholePackets(two.subarray(0, two.length - 1)), false)
  assert.equal(wholePackets(Buffer.from([0x30])), false)
  assert.equal(wholePackets(Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x7f])), true) // malformed: the parser reports it
})

test('packets split at every byte are read in order, as are whole chunks', () => {
  const { r, got } = reader()
  const stream = Buffer.concat([publish('a/b', 'one'), Buffer.from([0xc0, 0]), publish('c', 'two')])
  for (let i = 0; i < stream.length; i++) r.read(stream.subarray(i, i + 1))
  r.read(stream)
  assert.deepEqual(got, ['publish:a/b:one', 'pingreq', 'publish:c:two', 'publish:a/b:one', 'pingreq', 'publish:c:two'])
})

test('a malformed chunk on one connection does not disturb the next', () => {
  const a = reader()
  const b = reader()
  a.r.read(Buffer.from([0x30, 0x04, 0x00, 0x32, 0x61, 0x62])) // topic longer than the packet
  b.r.read(Buffer.from([0xc0, 0]))
  assert.equal(a.errors.length, 1)
  assert.deepEqual(b.got, ['pingreq'])
})

test('an incomplete packet answers its declared length (for the size limit)', () => {
  const { r } = reader()
  assert.equal(r.read(Buffer.from([0x30, 0x80, 0x80, 0x80, 0x01])), 2097152)
})
