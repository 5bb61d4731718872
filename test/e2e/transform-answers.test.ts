import assert from 'node:assert/strict'
import { test, type TestContext } from 'node:test'
import type { MqttClient } from 'mqtt'
import { defineHook, type HookmqBroker, type TransformAnswer } from '../../plugins/index.js'
import { collect, connect, pingRoundTrip, startBroker } from '../helpers.js'

// A transform's answer goes out to subscribers as if a client had published
// it, so it is held to the same rules as a client's PUBLISH: a valid topic
// within the broker's limits, only the properties a publisher may set, with
// their MQTT types and sizes. An answer that breaks them is a failed transform:
// the original message goes on, the hook's error is counted, nobody is harmed.

const bad: Array<[string, unknown, { maxTopicLength?: number }?]> = [
  ['(MQTT 1.5.4) a topic of 70,000 bytes (its length field holds 65,535)', { topic: 'x'.repeat(70000) }],
  ['a topic longer than limits.maxTopicLength', { topic: 'y'.repeat(2000) }, { maxTopicLength: 1000 }],
  ['a topic of 1,001 levels (limits.maxTopicLevels 128)', { topic: Array(1001).fill('l').join('/') }],
  ['[MQTT-3.3.2-2] a wildcard in the topic', { topic: 'a/+/b' }],
  ['[MQTT-4.7.3-1] an empty topic', { topic: '' }],
  ['a $SYS topic', { topic: '$SYS/broker/uptime' }],
  ['[MQTT-4.7.3-2] a null character in the topic', { topic: 'a\u0000b' }],
  ['[MQTT-1.5.4-1] an unpaired surrogate in the topic', { topic: 'a/\uD800' }],
  ["a Topic Alias property (the broker's, per connection)", { properties: { topicAlias: 7 } }],
  ['[MQTT-3.3.4-6] a Subscription Identifier property', { properties: { subscriptionIdentifier: 3 } }],
  ['a property that does not exist', { properties: { reasonString: 'hi' } }],
  ['a Content Type that is not a string', { properties: { contentType: 5 } }],
  ['a Payload Format Indicator that is not a boolean', { properties: { payloadFormatIndicator: 1 } }],
  ['a Message Expiry Interval out of range', { properties: { messageExpiryInterval: 2 ** 32 } }],
  ['Correlation Data that is not binary', { properties: { correlationData: 'text' } }],
  ['a User Property value that is not a string', { properties: { userProperties: { a: 1 } } }],
  ['(MQTT 1.5.4) a User Property of 70,000 bytes', { properties: { userProperties: { k: 'v'.repeat(70000) } } }],
  ['more User Properties than limits.maxUserProperties', { properties: { userProperties: { k: Array(257).fill('v') } } }],
  ['properties larger than limits.maxPropertyBytes', { properties: { userProperties: { a: 'a'.repeat(40000), b: 'b'.repeat(40000) } } }],
  ['[MQTT-3.3.2-14] a Response Topic with a wildcard', { properties: { responseTopic: 'reply/#' } }],
  ['a payload larger than limits.maxPacketSize', { payload: 'p'.repeat(2000000) }],
]

interface Setup {
  broker: HookmqBroker
  subscribers: MqttClient[]
  pub: MqttClient
  errors(): number
}

async function setup(t: TestContext, answer: unknown, limits: { maxTopicLength?: number } = {}): Promise<Setup> {
  const broker = await startBroker(t, {
    limits,
    hooks: [defineHook({ name: 'rewrite', transform: ({ topic }) => (topic.startsWith('in/') ? (answer as TransformAnswer) : undefined) })],
  })
  const subscribers = [
    await connect(t, broker, { protocolVersion: 5 }),
    await connect(t, broker, { protocolVersion: 5, properties: { topicAliasMaximum: 10 } }),
    await connect(t, broker, { protocolVersion: 4 }),
  ]
  for (const s of subscribers) await s.subscribeAsync('#', { qos: 1 })
  const pub = await connect(t, broker, { protocolVersion: 5 })
  return { broker, subscribers, pub, errors: () => broker.hookStatus().find((h) => h.name === 'rewrite')!.errors }
}

for (const [what, answer, limits] of bad) {
  test(`a transform answering ${what} fails open: the original message is delivered, the hook error counted, no subscriber disconnected`, async (t) => {
    const { subscribers, pub, errors } = await setup(t, answer, limits)
    await pub.publishAsync('in/original', 'as published', { qos: 1, properties: { userProperties: { from: 'publisher' } } })
    for (const [i, s] of subscribers.entries()) {
      const m = await collect(s).next()
      assert.deepEqual([m.topic, m.payload.toString()], ['in/original', 'as published'])
      if (i < 2) assert.deepEqual({ ...m.packet.properties?.userProperties }, { from: 'publisher' })
    }
    assert.equal(errors(), 1)
    // nobody was harmed: every subscriber still connected and served (a bystander's round trip)
    await pub.publishAsync('other/after', 'still here', { qos: 1 })
    for (const s of subscribers) {
      assert.equal((await collect(s).next()).payload.toString(), 'still here')
      await pingRoundTrip(s)
      assert.ok(s.connected)
    }
  })
}

test('a transform answer within the rules changes the message (the check does not refuse good answers)', async (t) => {
  const answer = {
    topic: 'out/ü/' + 'l/'.repeat(100) + 'end',
    payload: 'changed',
    properties: {
      contentType: 'text/plain',
      responseTopic: 'reply/me',
      correlationData: new Uint8Array([1, 2]),
      messageExpiryInterval: 60,
      payloadFormatIndicator: true,
      userProperties: { k: Array(256).fill('v') },
    },
  }
  const { subscribers, pub, errors } = await setup(t, answer)
  await pub.publishAsync('in/original', 'as published', { qos: 1 })
  for (const [i, s] of subscribers.entries()) {
    const m = await collect(s).next()
    assert.deepEqual([m.topic, m.payload.toString()], [answer.topic, 'changed'])
    if (i < 2) {
      const { userProperties, correlationData, messageExpiryInterval, ...rest } = m.packet.properties!
      assert.deepEqual(rest, { contentType: 'text/plain', responseTopic: 'reply/me', payloadFormatIndicator: true, ...(i === 1 ? { topicAlias: 1 } : {}) })
      assert.deepEqual([...correlationData!], [1, 2])
      assert.ok(messageExpiryInterval! >= 59 && messageExpiryInterval! <= 60)
      assert.equal(userProperties!.k!.length, 256)
    }
  }
  assert.equal(errors(), 0)
})
