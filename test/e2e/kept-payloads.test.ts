import assert from 'node:assert/strict'
import { test } from 'node:test'
import mqttPacket from 'mqtt-packet'
import { RawClient, connect, startBroker, until } from '../helpers.js'

// A payload is parsed as a view of the socket read it came in. A message kept
// beyond that read (retained, queued for a session, in flight, a will) must not
// keep the read's other bytes alive: every limit counts the payload, not the
// read, so 16-byte messages sent beside 60 KB of junk each grew the broker by
// 60 KB (5,000 retained ones: +306 MB). Each kept payload is checked to hold a
// buffer of about its own size.

const junk = mqttPacket.generate({ cmd: 'publish', topic: 'junk', payload: Buffer.alloc(60000, 1), qos: 0, retain: false, dup: false })
/** the same junk, as MQTT 5 */
const junk5 = mqttPacket.generate({ cmd: 'publish', topic: 'junk', payload: Buffer.alloc(60000, 1), qos: 0, retain: false, dup: false }, { protocolVersion: 5 })
const small = (topic: string, qos: 0 | 1, retain: boolean, messageId?: number): Buffer =>
  mqttPacket.generate({ cmd: 'publish', topic, payload: Buffer.alloc(16, 2), qos, retain, dup: false, messageId })

/** at most its own bytes and a little more */
function ownSized(payload: Buffer): boolean {
  return payload.buffer.byteLength <= payload.length + 1024
}

test('a retained message, a queued one, one in flight and a will that came in one read with 60 KB of other packets keep only their own bytes', async (t) => {
  const broker = await startBroker(t)
  // a persistent session gone offline (queue), and one that never acknowledges (in flight)
  const offline = await connect(t, broker, { clientId: 'offline', clean: false })
  await offline.subscribeAsync('k/#', { qos: 1 })
  await offline.endAsync()
  const lazy = await RawClient.open(t, broker)
  await lazy.connect({ clientId: 'lazy' })
  lazy.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'k/#', qos: 1 }] })
  await lazy.expect('suback')

  const raw = await RawClient.open(t, broker)
  // the will: the CONNECT and 60 KB of packets after it in one write
  raw.sendBytes(
    Buffer.concat([
      mqttPacket.generate({
        cmd: 'connect',
        protocolId: 'MQTT',
        protocolVersion: 4,
        clientId: 'pub',
        clean: true,
        keepalive: 30,
        will: { topic: 'k/will', payload: Buffer.alloc(16, 3), qos: 1, retain: false },
      }),
      junk,
    ]),
  )
  await raw.expect('connack')
  raw.sendBytes(Buffer.concat([junk, small('k/retained', 0, true)]))
  raw.sendBytes(Buffer.concat([junk, small('k/queued', 1, false, 7)]))
  await raw.expect('puback')

  await until(async () => (await broker.stores.retained.match('k/retained')).length === 1)
  const [retained] = await broker.stores.retained.match('k/retained')
  assert.equal(retained!.payload.length, 16)
  assert.ok(ownSized(retained!.payload), `the retained payload holds a buffer of ${retained!.payload.buffer.byteLength} bytes`)

  const queued = (await broker.stores.sessions.load('offline'))!.queue.map((q) => q.message)
  assert.deepEqual(
    queued.map((m) => m.topic),
    ['k/queued'], // (the retained one was published at QoS 0: not queued)
  )
  assert.ok(ownSized(queued[0]!.payload), `the queued payload holds a buffer of ${queued[0]!.payload.buffer.byteLength} bytes`)

  const inflight = [...broker.sessions.sessions.get('lazy')!.inflight.values()].map((e) => e.message)
  assert.deepEqual(
    inflight.map((m) => m.topic),
    ['k/queued'],
  )
  assert.ok(ownSized(inflight[0]!.payload), `the in-flight payload holds a buffer of ${inflight[0]!.payload.buffer.byteLength} bytes`)

  const will = broker.sessions.sessions.get('pub')!.will!
  assert.equal(will.payload.length, 16)
  assert.ok(ownSized(will.payload), `the will payload holds a buffer of ${will.payload.buffer.byteLength} bytes`)
})

test('MQTT 5: a kept message holds no view of its read in its Correlation Data, and neither its property block nor its encoded copies sit in shared slabs', async (t) => {
  const broker = await startBroker(t)
  // one subscriber at QoS 0 (the fan-out caches the bytes it is sent), one at QoS 1 that never acknowledges (keeps the message in flight)
  const live = await connect(t, broker, { clientId: 'live5', protocolVersion: 5 })
  await live.subscribeAsync('k5/#', { qos: 0 })
  const lazy = await RawClient.open(t, broker, 5)
  await lazy.connect({ clientId: 'lazy5' }, 5)
  lazy.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'k5/#', qos: 1 }] }, 5)
  await lazy.expect('suback')
  const raw = await RawClient.open(t, broker, 5)
  await raw.connect({ clientId: 'pub5' }, 5)
  const withProps = mqttPacket.generate(
    {
      cmd: 'publish',
      topic: 'k5/t',
      payload: Buffer.alloc(16, 2),
      qos: 1,
      messageId: 3,
      retain: false,
      dup: false,
      properties: { correlationData: Buffer.alloc(8, 4), userProperties: { a: 'b' } },
    },
    { protocolVersion: 5 },
  )
  raw.sendBytes(Buffer.concat([junk5, withProps]))
  await raw.expect('puback')
  await until(() => broker.sessions.sessions.get('lazy5')!.inflight.size === 1)
  const [entry] = [...broker.sessions.sessions.get('lazy5')!.inflight.values()]
  const m = entry!.message
  assert.ok(ownSized(m.payload), `payload: ${m.payload.buffer.byteLength} bytes`)
  const cd = m.properties!.correlationData!
  assert.equal(cd.length, 8)
  assert.ok(ownSized(cd), `correlation data: ${cd.buffer.byteLength} bytes`)
  assert.ok(m.propertyBlock, 'the property block was encoded for the MQTT 5 subscribers')
  assert.ok(ownSized(m.propertyBlock), `property block: ${m.propertyBlock.buffer.byteLength} bytes`)
  assert.equal(m.encoded, undefined) // the fan-out's cache is not kept
})

test("MQTT 5: a will's Correlation Data, kept for the connection's life, holds no view of the read its CONNECT came in", async (t) => {
  const broker = await startBroker(t)
  const raw = await RawClient.open(t, broker, 5)
  const connectPacket = mqttPacket.generate(
    {
      cmd: 'connect',
      protocolId: 'MQTT',
      protocolVersion: 5,
      clientId: 'will5',
      clean: true,
      keepalive: 30,
      will: { topic: 'k5/will', payload: Buffer.alloc(16, 3), qos: 1, retain: false, properties: { correlationData: Buffer.alloc(8, 5) } },
    },
    { protocolVersion: 5 },
  )
  raw.sendBytes(Buffer.concat([connectPacket, junk5]))
  await raw.expect('connack')
  const will = broker.sessions.sessions.get('will5')!.will!
  assert.ok(ownSized(will.payload), `will payload: ${will.payload.buffer.byteLength} bytes`)
  const cd = will.properties!.correlationData!
  assert.deepEqual(cd, Buffer.alloc(8, 5))
  assert.ok(ownSized(cd), `will correlation data: ${cd.buffer.byteLength} bytes`)
})

test("broker.publish: the caller's properties object is neither changed nor needed writable when the message is kept", async (t) => {
  const broker = await startBroker(t)
  const sub = await connect(t, broker, { clientId: 'frozen-sub', protocolVersion: 5 })
  const got: string[] = []
  sub.on('message', (topic, _payload, packet) => got.push(`${topic} ${packet.properties?.correlationData?.toString()}`))
  await sub.subscribeAsync('f/#', { qos: 1 })
  // a short Buffer.from() is a slice of Node's shared pool: far larger than itself, so keeping it copies it
  const properties = Object.freeze({ contentType: 'json', correlationData: Buffer.from('req-1') })
  assert.ok(!ownSized(properties.correlationData))
  await broker.publish({ topic: 'f/retained', payload: 'r', qos: 1, retain: true, properties })
  await broker.publish({ topic: 'f/queued', payload: 'q', qos: 1, properties })
  await until(() => got.length === 2)
  assert.deepEqual(got.sort(), ['f/queued req-1', 'f/retained req-1'])
  assert.equal(properties.correlationData.toString(), 'req-1')
  const [retained] = await broker.stores.retained.match('f/retained')
  assert.ok(ownSized(retained!.properties!.correlationData!))
})
