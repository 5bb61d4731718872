import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { IPublishPacket } from 'mqtt-packet'
import { encodePacket, encodePublish, type PublishProperties } from '../../core/codec.js'
import { mqtt } from '../../core/mqtt-packet.js'
import { HookmqError } from '../../core/errors.js'
import { encodeMessageProperties } from '../../core/properties.js'
import type { MessageProperties } from '../../core/types.js'

// The hand-written PUBLISH encoder must write exactly what mqtt-packet writes,
// and refuse what MQTT cannot represent.

test('encodePublish is byte for byte mqtt-packet, for every QoS, flag, protocol, topic and payload length boundary', () => {
  const topics = ['a', 'bench/0', 'ünï/温度/🌡', 'x'.repeat(128), 'y'.repeat(129), 'z/'.repeat(400)]
  const sizes = [0, 1, 100, 121, 122, 127, 128, 16370, 16383, 16384, 2097140, 2097152]
  let checked = 0
  for (const protocolVersion of [4, 5] as const) {
    for (const topic of topics) {
      for (const size of sizes) {
        for (const qos of [0, 1, 2] as const) {
          const payload = Buffer.alloc(size, size & 255)
          const retain = (size + qos) % 2 === 0
          const dup = qos > 0 && size % 3 === 0
          const messageId = qos > 0 ? 1 + ((size * 7) % 65535) : undefined
          const expected = encodePacket({ cmd: 'publish', topic, payload, qos, retain, dup, messageId }, { protocolVersion })
          const actual = encodePublish(topic, payload, qos, retain, dup, messageId ?? 0, protocolVersion === 5)
          assert.ok(actual.equals(expected), `v${protocolVersion} qos ${qos} topic ${topic.slice(0, 10)} payload ${size}`)
          checked++
        }
      }
    }
  }
  // and a parser reads it back
  const parser = mqtt.parser({ protocolVersion: 5 })
  let parsed: { topic?: string; payload?: Buffer } = {}
  parser.on('packet', (p) => {
    parsed = p as { topic?: string; payload?: Buffer }
  })
  parser.parse(encodePublish('ü/x', Buffer.from('hi'), 1, false, false, 9, true))
  assert.equal(parsed.topic, 'ü/x')
  assert.equal(parsed.payload?.toString(), 'hi')
  assert.equal(checked, 2 * topics.length * sizes.length * 3)
})

/** The message's own properties a subscriber may get: every kind, boundaries, non-ASCII, repeated names. */
const propertySets: MessageProperties[] = [
  {},
  { payloadFormatIndicator: true },
  { payloadFormatIndicator: false, contentType: '' },
  { contentType: 'application/json', responseTopic: 'reply/ü/温度', correlationData: Buffer.from([0, 1, 2, 255]) },
  { correlationData: Buffer.alloc(0), userProperties: { a: '1' } },
  { userProperties: { a: ['1', '2', 'ü'], ключ: 'значение', '': '', long: 'v'.repeat(65535) } },
  {
    payloadFormatIndicator: true,
    contentType: 'c'.repeat(200),
    responseTopic: 'r',
    correlationData: Buffer.alloc(65535, 7),
    userProperties: { ['x'.repeat(65535)]: 'y', z: ['🌡', ''] },
  },
  { userProperties: Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`name-${i}`, i % 2 ? `value-${i}` : ['a', 'b']])) },
]

/** This client's own properties: none, each alone, all together, several subscription identifiers. */
const ownSets: Array<Omit<PublishProperties, 'shared'>> = [
  { expiry: -1, alias: 0, ids: undefined },
  { expiry: 0, alias: 0, ids: undefined },
  { expiry: 0xffffffff, alias: 0, ids: undefined },
  { expiry: -1, alias: 1, ids: undefined },
  { expiry: -1, alias: 65535, ids: [1] },
  { expiry: 3600, alias: 7, ids: [1, 127, 128, 16383, 16384, 2097151, 2097152, 268435455] },
]

/** mqtt-packet's packet for the same delivery, its properties in the order encodePublish writes them. */
function reference(
  topic: string,
  payload: Buffer,
  qos: 0 | 1 | 2,
  messageId: number,
  own: Omit<PublishProperties, 'shared'>,
  shared: MessageProperties,
): IPublishPacket {
  const properties: NonNullable<IPublishPacket['properties']> = {}
  if (own.expiry >= 0) properties.messageExpiryInterval = own.expiry
  if (own.alias !== 0) properties.topicAlias = own.alias
  if (own.ids !== undefined) properties.subscriptionIdentifier = own.ids.length === 1 ? own.ids[0]! : own.ids
  for (const key of ['payloadFormatIndicator', 'contentType', 'responseTopic', 'correlationData', 'userProperties'] as const) {
    if (shared[key] !== undefined) (properties as Record<string, unknown>)[key] = shared[key]
  }
  return { cmd: 'publish', topic, payload, qos, retain: qos === 1, dup: qos === 2, messageId: qos > 0 ? messageId : undefined, properties }
}

test("encodePublish with MQTT 5 properties (the shared block and each client's own) is byte for byte mqtt-packet", () => {
  let checked = 0
  for (const shared of propertySets) {
    const block = encodeMessageProperties(shared)
    for (const own of ownSets) {
      for (const [topic, size] of [
        ['t/ü', 0],
        ['', 10],
        ['x'.repeat(300), 16300],
        ['a/b', 2097000],
      ] as const) {
        for (const qos of [0, 1, 2] as const) {
          const payload = Buffer.alloc(size, 0x5a)
          const expected = encodePacket(reference(topic, payload, qos, 4242, own, shared), { protocolVersion: 5 })
          const actual = encodePublish(topic, payload, qos, qos === 1, qos === 2, 4242, true, { shared: block, ...own })
          assert.ok(
            actual.equals(expected),
            `props ${Object.keys(shared).join(',')} own ${JSON.stringify(own)} topic ${topic.slice(0, 5)} payload ${size} qos ${qos}`,
          )
          checked++
        }
      }
    }
  }
  assert.equal(checked, propertySets.length * ownSets.length * 4 * 3)
})

test("the shared property block is mqtt-packet's property bytes; other keys on the object are not written", () => {
  const shared: MessageProperties = { contentType: 'text/plain', userProperties: { k: 'v' } }
  const block = encodeMessageProperties({ ...shared, messageExpiryInterval: 60, topicAlias: 3, subscriptionIdentifier: 9 } as MessageProperties)
  const packet = encodePacket(
    { cmd: 'publish', topic: 't', payload: Buffer.alloc(0), qos: 0, retain: false, dup: false, properties: shared },
    { protocolVersion: 5 },
  )
  // header (2) + topic (3) + property length (1): then the properties
  assert.ok(block.equals(packet.subarray(6)))
  // an empty userProperties object writes nothing (mqtt-packet cannot encode it at all)
  assert.equal(encodeMessageProperties({ userProperties: {} }).length, 0)
})

function assertNotEncodable(fn: () => unknown, what: RegExp): void {
  assert.throws(fn, (err: unknown) => err instanceof HookmqError && err.code === 'HOOKMQ_ERR_NOT_ENCODABLE' && what.test(err.message))
}

test('(MQTT 1.5.4) encodePublish refuses a topic over 65,535 bytes instead of writing its length modulo 65,536', () => {
  assertNotEncodable(() => encodePublish('x'.repeat(70000), Buffer.alloc(1), 0, false, false, 0, false), /topic of 70000 bytes/)
  assertNotEncodable(() => encodePublish('ü'.repeat(32768), Buffer.alloc(1), 1, false, false, 1, true), /topic of 65536 bytes/)
  const longest = encodePublish('x'.repeat(65535), Buffer.alloc(1), 0, false, false, 0, false)
  assert.ok(
    longest.equals(
      encodePacket({ cmd: 'publish', topic: 'x'.repeat(65535), payload: Buffer.alloc(1), qos: 0, retain: false, dup: false }, { protocolVersion: 4 }),
    ),
  )
})

test('(MQTT 1.5.5) encodePublish refuses a remaining length over 268,435,455 (the variable byte integer cannot carry it)', () => {
  // not zero-filled and never written: the encoder refuses before it allocates its output
  const huge = Buffer.allocUnsafe(268435455 - 2)
  assertNotEncodable(() => encodePublish('ab', huge, 0, false, false, 0, false), /PUBLISH of 268435457 bytes/)
  assertNotEncodable(
    () => encodePublish('a', huge.subarray(0, 268435455 - 10), 1, false, false, 1, true, { shared: Buffer.alloc(10), expiry: -1, alias: 0, ids: undefined }),
    /PUBLISH of/,
  )
})

test('(MQTT 1.5.4, 1.5.6) the property encoder refuses a string or binary over 65,535 bytes and values of the wrong type', () => {
  assertNotEncodable(() => encodeMessageProperties({ userProperties: { k: 'v'.repeat(65536) } }), /user property value of 65536 bytes/)
  assertNotEncodable(() => encodeMessageProperties({ userProperties: { ['ü'.repeat(32768)]: 'v' } }), /user property name of 65536 bytes/)
  assertNotEncodable(() => encodeMessageProperties({ contentType: 'c'.repeat(70000) }), /contentType of 70000 bytes/)
  assertNotEncodable(() => encodeMessageProperties({ correlationData: Buffer.alloc(65536) }), /correlationData of 65536 bytes/)
  assertNotEncodable(() => encodeMessageProperties({ contentType: 5 } as unknown as MessageProperties), /contentType: not a string/)
  assertNotEncodable(() => encodeMessageProperties({ payloadFormatIndicator: 1 } as unknown as MessageProperties), /payloadFormatIndicator/)
  assertNotEncodable(
    () => encodePublish('t', Buffer.alloc(0), 0, false, false, 0, true, { shared: Buffer.alloc(0), expiry: -1, alias: 0, ids: [0] }),
    /subscription identifier 0/,
  )
  assertNotEncodable(
    () => encodePublish('t', Buffer.alloc(0), 0, false, false, 0, true, { shared: Buffer.alloc(0), expiry: -1, alias: 70000, ids: undefined }),
    /topic alias/,
  )
  // after a refusal the encoder is fine
  assert.equal(encodeMessageProperties({ contentType: 'ok' }).toString('latin1'), '\x03\x00\x02ok')
})
