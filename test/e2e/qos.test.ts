import assert from 'node:assert/strict'
import { test } from 'node:test'
import { defineHook } from '../../plugins/index.js'
import { collect, connect, pingRoundTrip, RawClient, startBroker } from '../helpers.js'

for (const protocolVersion of [4, 5] as const) {
  for (const qos of [0, 1, 2] as const) {
    test(`v${protocolVersion}: QoS ${qos} publisher → broker → subscriber`, async (t) => {
      const broker = await startBroker(t)
      const sub = await connect(t, broker, { protocolVersion })
      const inbox = collect(sub)
      await sub.subscribeAsync('q/#', { qos: 2 })
      const pub = await connect(t, broker, { protocolVersion })
      await pub.publishAsync('q/a', 'one', { qos })
      await pub.publishAsync('q/b', Buffer.from([0, 1, 2, 255]), { qos })
      const [a, b] = await inbox.count(2)
      assert.equal(a!.topic, 'q/a')
      assert.equal(a!.payload.toString(), 'one')
      assert.equal(a!.packet.qos, qos) // granted 2, published at qos: delivered at qos
      assert.deepEqual([...b!.payload], [0, 1, 2, 255])
    })
  }
  test(`v${protocolVersion}: delivery QoS is the minimum of published and granted`, async (t) => {
    const broker = await startBroker(t)
    const sub = await connect(t, broker, { protocolVersion })
    const inbox = collect(sub)
    await sub.subscribeAsync('m', { qos: 1 })
    const pub = await connect(t, broker, { protocolVersion })
    await pub.publishAsync('m', 'x', { qos: 2 })
    assert.equal((await inbox.next()).packet.qos, 1)
  })
}

test('delivered event fires when a subscriber acknowledges QoS 1 and QoS 2', async (t) => {
  const broker = await startBroker(t)
  const delivered: string[] = []
  broker.on('delivered', (m, c) => delivered.push(`${c.id}:${m.topic}`))
  const sub = await connect(t, broker, { clientId: 'd-sub' })
  const inbox = collect(sub)
  await sub.subscribeAsync('d/#', { qos: 2 })
  const pub = await connect(t, broker)
  await pub.publishAsync('d/1', 'a', { qos: 1 })
  await pub.publishAsync('d/2', 'b', { qos: 2 })
  await pub.publishAsync('d/0', 'c', { qos: 0 })
  await inbox.count(3)
  await pingRoundTrip(sub)
  assert.deepEqual(delivered.sort(), ['d-sub:d/1', 'd-sub:d/2'])
})

test('lifecycle events: clientConnected, subscribed, published, unsubscribed, clientDisconnected', async (t) => {
  const broker = await startBroker(t)
  const events: string[] = []
  broker.on('clientConnected', (c) => events.push(`connected:${c.id}`))
  broker.on('subscribed', (s, c) => events.push(`subscribed:${c.id}:${s.filter}`))
  broker.on('published', (m, c) => {
    if (!m.topic.startsWith('$SYS')) events.push(`published:${c?.id}:${m.topic}`)
  })
  broker.on('unsubscribed', (f, c) => events.push(`unsubscribed:${c.id}:${f}`))
  const gone = new Promise<void>((resolve) =>
    broker.on('clientDisconnected', (c) => {
      events.push(`disconnected:${c.id}`)
      resolve()
    }),
  )
  broker.on('published', () => {
    throw new Error('a listener that throws must not harm the broker')
  })
  const c = await connect(t, broker, { clientId: 'ev' })
  await c.subscribeAsync('e/1')
  await c.publishAsync('e/1', 'x', { qos: 1 })
  await c.unsubscribeAsync('e/1')
  await c.endAsync()
  await gone
  assert.deepEqual(events, ['connected:ev', 'subscribed:ev:e/1', 'published:ev:e/1', 'unsubscribed:ev:e/1', 'disconnected:ev'])
})

test('embedding: broker.publish reaches subscribers', async (t) => {
  const broker = await startBroker(t)
  const sub = await connect(t, broker)
  const inbox = collect(sub)
  await sub.subscribeAsync('from/code', { qos: 1 })
  await broker.publish({ topic: 'from/code', payload: 'hi', qos: 1 })
  const m = await inbox.next()
  assert.equal(m.payload.toString(), 'hi')
  assert.equal(m.packet.qos, 1)
})

test('retained: set, replace, clear with an empty payload, delivered on wildcard subscribe', async (t) => {
  const broker = await startBroker(t)
  const pub = await connect(t, broker)
  await pub.publishAsync('r/a', 'first', { qos: 1, retain: true })
  await pub.publishAsync('r/a', 'second', { qos: 1, retain: true })
  await pub.publishAsync('r/b', 'other', { qos: 1, retain: true })
  const s1 = await connect(t, broker)
  const in1 = collect(s1)
  await s1.subscribeAsync('r/+', { qos: 1 })
  const got = (await in1.count(2)).map((m) => `${m.topic}=${m.payload}:${m.packet.retain}`).sort()
  assert.deepEqual(got, ['r/a=second:true', 'r/b=other:true']) // [MQTT-3.3.1-9]
  await pub.publishAsync('r/a', '', { qos: 1, retain: true }) // [MQTT-3.3.1-6] clears
  const cleared = await in1.next()
  assert.equal(cleared.payload.length, 0)
  assert.equal(cleared.packet.retain, false) // [MQTT-3.3.1-12] live delivery: retain flag cleared for v3
  const s2 = await connect(t, broker)
  const in2 = collect(s2)
  await s2.subscribeAsync('r/#', { qos: 1 })
  const after = await in2.next()
  assert.equal(after.topic, 'r/b')
  await pingRoundTrip(s2)
  assert.equal(in2.messages.length, 1)
})

test('[MQTT-3.3.1-7] a retained message with QoS 0 is stored too', async (t) => {
  const broker = await startBroker(t)
  await broker.publish({ topic: 'r0', payload: 'zero', retain: true })
  const s = await connect(t, broker)
  const inbox = collect(s)
  await s.subscribeAsync('r0')
  assert.equal((await inbox.next()).payload.toString(), 'zero')
})

test('a QoS 2 PUBLISH sent again while its first copy is still being decided (an async hook) is routed once', async (t) => {
  const broker = await startBroker(t, {
    hooks: [
      defineHook({
        name: 'slow',
        authorizePublish: async () => {
          await new Promise((r) => setTimeout(r, 200))
          return true
        },
      }),
    ],
  })
  const sub = await connect(t, broker)
  await sub.subscribeAsync('dup/#', { qos: 2 })
  const inbox = collect(sub)
  const raw = await RawClient.open(t, broker, 5)
  await raw.connect({}, 5)
  const publish = { cmd: 'publish' as const, topic: 'dup/x', payload: Buffer.from('once'), qos: 2 as const, messageId: 5, retain: false, dup: false }
  raw.send(publish, 5)
  raw.send({ ...publish, dup: true }, 5)
  await raw.expect('pubrec')
  raw.send({ cmd: 'pubrel', messageId: 5 }, 5)
  await raw.expect('pubcomp')
  await pingRoundTrip(sub)
  assert.deepEqual(
    inbox.messages.map((m) => m.payload.toString()),
    ['once'],
  )
})
