import assert from 'node:assert/strict'
import { test } from 'node:test'
import { encodePacket, encodePublish, mqtt } from '../../core/codec.js'

// The hand-written PUBLISH encoder must write exactly what mqtt-packet writes.

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
  parser.on('packet', (p) => { parsed = p as { topic?: string; payload?: Buffer } })
  parser.parse(encodePublish('ü/x', Buffer.from('hi'), 1, false, false, 9, true))
  assert.equal(parsed.topic, 'ü/x')
  assert.equal(parsed.payload?.toString(), 'hi')
  assert.equal(checked, 2 * topics.length * sizes.length * 3)
})
