import assert from 'node:assert/strict'
import { test } from 'node:test'
import mqttPacket, { type IPublishPacket, type Packet } from 'mqtt-packet'
import { PacketReader, type RefusablePublish } from '../../core/packet-reader.js'
import { scanProperties } from '../../core/properties.js'

// A PUBLISH's property block is measured and walked on its bytes before
// mqtt-packet parses it; one over the limits is not parsed at all.

const limits = { maxUserProperties: 256, maxPropertyBytes: 65536 }

function userProperties(n: number, name = 'u'): Record<string, string[]> {
  return { [name]: Array.from({ length: n }, (_, i) => String(i % 10)) }
}

function publish(properties: IPublishPacket['properties'], qos: 0 | 1 = 1, topic = 't'): Buffer {
  return mqttPacket.generate(
    { cmd: 'publish', topic, payload: Buffer.from('payload'), qos, retain: false, dup: false, messageId: qos ? 7 : undefined, properties },
    { protocolVersion: 5 },
  )
}

/** Property bytes of an encoded PUBLISH with topic 't' and QoS 1 (after the header, topic, id and length). */
function block(packet: Buffer): Buffer {
  let i = 1
  while (packet[i]! & 0x80) i++
  i += 1 + 2 + 1 + 2 // remaining length's last byte, topic, packet id
  let len = 0
  let mul = 1
  for (;;) {
    const b = packet[i++]!
    len += (b & 0x7f) * mul
    mul *= 128
    if ((b & 0x80) === 0) break
  }
  return packet.subarray(i, i + len)
}

function read(chunks: Buffer[], withLimits: typeof limits | null = limits): { packets: RefusablePublish[]; errors: string[] } {
  const packets: RefusablePublish[] = []
  const errors: string[] = []
  const r = new PacketReader({ onPacket: (p: Packet) => packets.push(p as RefusablePublish), onParseError: (e) => errors.push(e.message) }, withLimits)
  r.setVersion(5)
  for (const c of chunks) r.read(c)
  return { packets, errors }
}

test('scanProperties counts User Properties and finds the Topic Alias without parsing', () => {
  const b = block(
    publish({
      payloadFormatIndicator: true,
      messageExpiryInterval: 9,
      contentType: 'c',
      responseTopic: 'r',
      correlationData: Buffer.from('cd'),
      topicAlias: 300,
      userProperties: { a: ['1', '2'], b: 'x' },
    }),
  )
  assert.deepEqual(scanProperties(b), { userProperties: 3, topicAlias: 300, malformed: false })
  assert.equal(scanProperties(block(publish({ userProperties: userProperties(150000) }))).userProperties, 150000)
  assert.equal(scanProperties(b.subarray(0, b.length - 1)).malformed, true) // cut inside a string
  assert.equal(scanProperties(Buffer.from([0x7f, 0, 0])).malformed, true) // no such property
  assert.equal(scanProperties(Buffer.from([0x0b, 0x80, 0x80, 0x80, 0x80, 0x01])).malformed, true) // a variable byte integer of five bytes
  assert.deepEqual(scanProperties(Buffer.alloc(0)), { userProperties: 0, topicAlias: undefined, malformed: false })
  // every way a block can end early or hold what is not a property
  const cases: Array<[number[], boolean]> = [
    [[0x26], true],
    [[0x26, 0, 0], true],
    [[0x26, 0, 0, 0, 0], false],
    [[0x03, 0, 2, 0x61], true],
    [[0x03, 0, 1, 0x61], false],
    [[0x0b], true],
    [[0x0b, 0x80], true],
    [[0x0b, 0x7f], false],
    [[0x0b, 0xff, 0xff, 0xff, 0x7f], false],
    [[0x0b, 0xff, 0xff, 0xff, 0xff, 0x01], true],
    [[0x23, 0], true],
    [[0x23, 0, 5], false],
    [[0x00], true],
    [[0x02, 0, 0, 0], true],
  ]
  for (const [bytes, malformed] of cases) assert.equal(scanProperties(Buffer.from(bytes)).malformed, malformed, bytes.join(','))
})

test('a PUBLISH with more User Properties than allowed is refused unparsed, whole or split across chunks', () => {
  const packet = publish({ topicAlias: 3, userProperties: userProperties(257) })
  for (const chunks of [[packet], [packet.subarray(0, 10), packet.subarray(10, 2000), packet.subarray(2000)]]) {
    const { packets, errors } = read([...chunks, Buffer.from([0xc0, 0])])
    assert.deepEqual(errors, [])
    assert.equal(packets.length, 2) // and the next packet is read
    const p = packets[0]!
    assert.equal(p.refusedProperties, '257 user properties, more than the 256 allowed')
    assert.deepEqual(p.properties, { topicAlias: 3 }) // the alias still maps its topic; nothing else was parsed
    assert.equal(p.payload.toString(), 'payload')
    assert.equal(p.messageId, 7)
    assert.equal(packets[1]!.cmd, 'pingreq')
  }
})

test('a property block over maxPropertyBytes is refused even with few User Properties', () => {
  const { packets } = read([publish({ userProperties: { a: 'x'.repeat(40000), b: 'y'.repeat(40000) } })])
  assert.equal(packets[0]!.refusedProperties, 'properties of 80012 bytes, more than the 65536 allowed')
  assert.equal(packets[0]!.properties, undefined)
})

test('within the limits the properties are parsed as mqtt-packet parses them', () => {
  const properties = { contentType: 'c', topicAlias: 2, userProperties: { ...userProperties(255), v: 'w'.repeat(60000) } }
  const { packets } = read([publish(properties)])
  assert.equal(packets[0]!.refusedProperties, undefined)
  const got = packets[0]!.properties!
  assert.deepEqual({ ...got, userProperties: { ...got.userProperties } }, properties)
  // without limits (a reader that was given none) nothing is refused
  assert.equal(read([publish({ userProperties: userProperties(1000) })], null).packets[0]!.properties?.userProperties?.u?.length, 1000)
})

test('a property block longer than its packet, or that cannot be walked, is a malformed packet', () => {
  const packet = publish({ userProperties: userProperties(300) })
  const b = block(packet)
  const at = packet.indexOf(b)
  // cut the last property in half, keeping every length field as it was: the walk runs off the block
  const broken = Buffer.concat([packet.subarray(0, at + b.length - 3), Buffer.from([0x26, 0x00, 0x09]), packet.subarray(at + b.length)])
  assert.deepEqual(read([broken]).errors, ['Malformed properties'])
  // a Property Length beyond the packet
  const long = Buffer.from(packet)
  long[at - 3] = 0xff
  long[at - 2] = 0xff
  long[at - 1] = 0x7f
  assert.match(read([long]).errors[0] ?? '', /Malformed properties: longer than the packet/)
})
