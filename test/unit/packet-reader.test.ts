import assert from 'node:assert/strict'
import { test } from 'node:test'
import mqttPacket, { type Packet } from 'mqtt-packet'
import { PacketReader, wholePackets } from '../../core/packet-reader.js'

function reader(): { r: PacketReader; got: string[]; errors: string[] } {
  const got: string[] = []
  const errors: string[] = []
  const r = new PacketReader({
    onPacket: (p: Packet) => got.push(p.cmd === 'publish' ? `publish:${p.topic}:${p.payload.toString()}` : p.cmd),
    onParseError: (e) => errors.push(e.message),
  })
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

// The reader's hooks into mqtt-packet's parser (library internals): these fail if the library changes them.

test('strings are checked as bytes: ill-formed UTF-8 is an error, not a U+FFFD (one error per packet)', () => {
  const { r, got, errors } = reader()
  r.read(Buffer.from([0x30, 0x06, 0x00, 0x03, 0x61, 0xc3, 0x28, 0x78]))
  assert.deepEqual(got, [])
  assert.deepEqual(errors, ['ill-formed UTF-8 in a string'])
})

test('strings split across chunks are checked too', () => {
  const { r, got, errors } = reader()
  const bad = Buffer.from([0x30, 0x06, 0x00, 0x03, 0x61, 0x00, 0x62, 0x78])
  r.read(bad.subarray(0, 5))
  r.read(bad.subarray(5))
  assert.deepEqual(got, [])
  assert.deepEqual(errors, ['U+0000 in a UTF-8 string'])
  const ok = reader()
  const good = publish('é/ü', 'x')
  ok.r.read(good.subarray(0, 5))
  ok.r.read(good.subarray(5))
  assert.deepEqual(ok.got, ['publish:é/ü:x'])
})

test('a reserved packet type is refused from its first byte', () => {
  const { r, errors } = reader()
  assert.equal(r.read(Buffer.from([0x00])), -1)
  assert.deepEqual(errors, ['reserved packet type 0'])
  const v4 = reader()
  v4.r.read(Buffer.from([0xf0, 0x7f]))
  assert.deepEqual(v4.errors, ['reserved packet type 15'])
})

test('MQTT 5 properties are checked per packet kind', () => {
  const { r, errors } = reader()
  r.setVersion(5)
  // SUBSCRIBE id 1, properties: Session Expiry Interval 10, filter "a" QoS 0
  r.read(Buffer.from([0x82, 0x0b, 0x00, 0x01, 0x05, 0x11, 0, 0, 0, 10, 0x00, 0x01, 0x61, 0x00]))
  assert.deepEqual(errors, ['Session Expiry Interval is not allowed in SUBSCRIBE'])
})

test('a CONNECT with bytes after its payload is an error naming its protocol level', () => {
  const seen: Array<[string, number | undefined]> = []
  const r = new PacketReader({ onPacket: () => {}, onParseError: (e, v) => seen.push([e.message, v]) })
  const connect = mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId: 'c', clean: true, keepalive: 10 }, {
    protocolVersion: 5,
  } as never)
  const longer = Buffer.concat([connect, Buffer.from([1, 2])])
  longer[1] = longer[1]! + 2
  r.read(longer)
  assert.deepEqual(seen, [['2 bytes left over after the CONNECT payload', 5]])
})

test('buffered tells the bytes held for a partial packet, discard lets them go', () => {
  const { r } = reader()
  r.read(Buffer.from([0x10, 0x80, 0x01, 0x00, 0x04]))
  assert.equal(r.buffered, 2)
  r.discard()
  assert.equal(r.buffered, 0)
})

test('an empty chunk (an empty WebSocket frame) before a packet is read past, not taken for packet type 0', () => {
  const { r, got, errors } = reader()
  r.read(Buffer.alloc(0))
  r.read(Buffer.from([0xc0, 0]))
  r.read(Buffer.from([0x30]))
  r.read(Buffer.alloc(0))
  r.read(publish('a', 'x').subarray(1))
  assert.deepEqual(errors, [])
  assert.deepEqual(got, ['pingreq', 'publish:a:x'])
})

test('a sink that stops accepting keeps the rest of the chunk as bytes until resume(), in order, across later chunks and with the shared parser in use by another connection', () => {
  const got: string[] = []
  let accepting = true
  const r = new PacketReader({
    onPacket: (p: Packet) => {
      got.push(p.cmd === 'publish' ? p.topic : p.cmd)
      if (got.length % 2 === 1) accepting = false
    },
    onParseError: (e) => assert.fail(e.message),
    get accepting() {
      return accepting
    },
  })
  const chunk = Buffer.concat([publish('a', '1'), publish('b', '2'), Buffer.from([0xc0, 0]), publish('c', '3')])
  r.read(chunk)
  assert.deepEqual(got, ['a']) // held after the first
  assert.equal(r.holding, true)
  const other = reader() // another connection reads whole chunks meanwhile (the shared parser is not this one's any more)
  other.r.read(publish('x', 'y'))
  assert.deepEqual(other.got, ['publish:x:y'])
  r.read(publish('d', '4')) // arrives while held: queued behind the held bytes
  assert.deepEqual(got, ['a'])
  accepting = true
  r.resume()
  assert.deepEqual(got, ['a', 'b', 'pingreq'])
  accepting = true
  r.resume()
  assert.deepEqual(got, ['a', 'b', 'pingreq', 'c', 'd'])
  assert.equal(r.holding, false)
  accepting = true
  r.read(publish('e', '5'))
  assert.deepEqual(got, ['a', 'b', 'pingreq', 'c', 'd', 'e'])
})
