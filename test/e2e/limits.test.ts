import assert from 'node:assert/strict'
import { test } from 'node:test'
import { defineHook } from '../../plugins/index.js'
import { collect, connect, once, pingRoundTrip, RawClient, startBroker, until } from '../helpers.js'

test('MQTT 3.1 (MQIsdp) clients connect and exchange messages', async (t) => {
  const broker = await startBroker(t)
  const sub = await connect(t, broker, { protocolVersion: 3, protocolId: 'MQIsdp' })
  await sub.subscribeAsync('v31/#', { qos: 2 })
  const pub = await connect(t, broker, { protocolVersion: 3, protocolId: 'MQIsdp' })
  await pub.publishAsync('v31/a', 'old but gold', { qos: 2 })
  const m = await collect(sub).next()
  assert.equal(m.payload.toString(), 'old but gold')
  assert.equal(m.packet.qos, 2)
})

test('[MQTT-4.3.3-10] an inbound QoS 2 message resent before PUBREL is routed once', async (t) => {
  const broker = await startBroker(t)
  const sub = await connect(t, broker)
  await sub.subscribeAsync('eo/t', { qos: 2 })
  const raw = await RawClient.open(t, broker, 4)
  await raw.connect({}, 4)
  const publish = { cmd: 'publish' as const, topic: 'eo/t', payload: Buffer.from('once'), qos: 2 as const, retain: false, dup: false, messageId: 5 }
  raw.send(publish)
  assert.equal((await raw.expect('pubrec')).messageId, 5)
  raw.send({ ...publish, dup: true })
  assert.equal((await raw.expect('pubrec')).messageId, 5)
  raw.send({ cmd: 'pubrel', messageId: 5 })
  assert.equal((await raw.expect('pubcomp')).messageId, 5)
  raw.send({ ...publish, dup: false }) // after PUBCOMP the id is free: a new message
  await raw.expect('pubrec')
  const inbox = collect(sub)
  await inbox.count(2)
  await pingRoundTrip(sub)
  assert.equal(inbox.messages.length, 2)
})

for (const policy of ['dropOldest', 'dropNewest'] as const) {
  test(`offline queue limit: ${policy} keeps ${policy === 'dropOldest' ? 'the newest' : 'the oldest'} messages and counts the drops`, async (t) => {
    const broker = await startBroker(t, { limits: { maxQueuedMessages: 3, queueOverflow: policy } })
    const opts = { clientId: 'ql', clean: false }
    const c = await connect(t, broker, opts)
    await c.subscribeAsync('ql/t', { qos: 1 })
    const gone = once(broker, 'clientDisconnected')
    await c.endAsync()
    await gone
    for (let i = 0; i < 5; i++) await broker.publish({ topic: 'ql/t', payload: String(i), qos: 1 })
    assert.equal(broker.stats.dropped, 2)
    const back = await connect(t, broker, opts)
    const got = (await collect(back).count(3)).map((m) => m.payload.toString())
    assert.deepEqual(got, policy === 'dropOldest' ? ['2', '3', '4'] : ['0', '1', '2'])
  })
}

test('maxInflightMessages caps unacknowledged messages to a v3.1.1 client', async (t) => {
  const broker = await startBroker(t, { limits: { maxInflightMessages: 3 } })
  const raw = await RawClient.open(t, broker, 4)
  await raw.connect({}, 4)
  raw.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'win', qos: 1 }] })
  await raw.expect('suback')
  for (let i = 0; i < 6; i++) await broker.publish({ topic: 'win', payload: String(i), qos: 1 })
  raw.send({ cmd: 'pingreq' })
  await raw.expect('pingresp')
  assert.equal(raw.packets.filter((p) => p.cmd === 'publish').length, 3)
})

test('maxConnections: one more socket is closed at accept, before CONNECT, and counted', async (t) => {
  const broker = await startBroker(t, { limits: { maxConnections: 2 } })
  await connect(t, broker)
  await connect(t, broker)
  const raw5 = await RawClient.open(t, broker, 5)
  await raw5.expectClosed()
  assert.equal(raw5.packets.length, 0)
  assert.equal(broker.stats.refused.maxConnections, 1)
})

test('topic limits: too many levels or too long is refused (PUBLISH 0x90, SUBSCRIBE 0x8F)', async (t) => {
  const broker = await startBroker(t, { limits: { maxTopicLevels: 3, maxTopicLength: 20 } })
  const raw = await RawClient.open(t, broker, 5)
  await raw.connect({}, 5)
  raw.send(
    {
      cmd: 'subscribe',
      messageId: 1,
      subscriptions: [
        { topic: 'a/b/c/d', qos: 0 },
        { topic: 'x'.repeat(21), qos: 0 },
        { topic: 'a/b/c', qos: 0 },
      ],
    },
    5,
  )
  assert.deepEqual((await raw.expect('suback')).granted, [0x8f, 0x8f, 0])
  raw.send({ cmd: 'publish', topic: 'a/b/c/d', payload: Buffer.from('x'), qos: 0, retain: false, dup: false }, 5)
  assert.equal((await raw.expect('disconnect')).reasonCode, 0x90)
})

test('a slow async hook holds later packets of that connection in order', async (t) => {
  let release: () => void = () => {}
  let asked: () => void = () => {}
  const gate = new Promise<void>((r) => {
    release = r
  })
  const slowAsked = new Promise<void>((r) => {
    asked = r
  })
  const broker = await startBroker(t, {
    hookRunner: {
      authenticate: () => ({ result: 'pass' }),
      authorizePublish: (_c, m) => {
        if (m.topic !== 'slow') return { result: 'pass' }
        asked()
        return gate.then(() => ({ result: 'allow' as const }))
      },
      authorizeSubscribe: (_c, s) => (s.filter === 'deny/#' ? { result: 'deny' } : s.filter === 'cap/#' ? { result: 'allow', qos: 0 } : { result: 'pass' }),
      transform: (_c, m) => (m.topic === 'drop' ? null : m.topic === 'up' ? { ...m, payload: Buffer.from(m.payload.toString().toUpperCase()) } : m),
      appliesToPublish: (topic) => topic === 'slow' || topic === 'drop' || topic === 'up',
    },
  })
  const sub = await connect(t, broker, { protocolVersion: 5 })
  const granted = await sub.subscribeAsync(['slow', 'fast', 'drop', 'up', 'cap/#'], { qos: 1 })
  assert.deepEqual(
    granted.map((g) => g.qos),
    [1, 1, 1, 1, 0],
  ) // cap/#: the hook granted a lower QoS
  await assert.rejects(sub.subscribeAsync('deny/#', { qos: 1 }), /Not authorized/)
  const pub = await connect(t, broker, { protocolVersion: 5 })
  const acks = [
    pub.publishAsync('slow', '1', { qos: 1 }),
    pub.publishAsync('fast', '2', { qos: 1 }),
    pub.publishAsync('drop', 'gone', { qos: 1 }),
    pub.publishAsync('up', 'shout', { qos: 1 }),
  ]
  await slowAsked
  await pub.publishAsync('fast', 'too', { qos: 0 }) // also held behind 'slow'
  await pingRoundTrip(sub)
  assert.equal(collect(sub).messages.length, 0)
  release()
  await Promise.all(acks)
  const got = (await collect(sub).count(4)).map((m) => `${m.topic}=${m.payload}`)
  assert.deepEqual(got, ['slow=1', 'fast=2', 'up=SHOUT', 'fast=too'])
})

test('authenticate deny: CONNACK with the reason code (v5) or "not authorized" (v3.1.1)', async (t) => {
  const broker = await startBroker(t, {
    hookRunner: {
      authenticate: async (i) =>
        i.username === 'ok' ? { result: 'allow', user: { role: 'admin' } } : { result: 'deny', reasonCode: 0x86, reason: 'bad password' },
      authorizePublish: () => ({ result: 'pass' }),
      authorizeSubscribe: () => ({ result: 'pass' }),
      transform: (_c, m) => m,
      appliesToPublish: () => false,
    },
  })
  let user: unknown
  broker.on('clientConnected', (c) => {
    user = c.user
  })
  const raw5 = await RawClient.open(t, broker, 5)
  const ack = await raw5.connect({ username: 'nope' }, 5)
  assert.equal(ack.reasonCode, 0x86)
  assert.equal(ack.properties?.reasonString, 'bad password')
  const raw4 = await RawClient.open(t, broker, 4)
  assert.equal((await raw4.connect({ username: 'nope' }, 4)).returnCode, 4)
  await connect(t, broker, { username: 'ok' })
  assert.deepEqual(user, { role: 'admin' })
})

test('a subscriber that stops reading holds publishers back only briefly, then its QoS 0 messages are dropped; others get everything', async (t) => {
  const broker = await startBroker(t, { limits: { maxClientBufferBytes: 256 * 1024 } })
  const stuck = await RawClient.open(t, broker, 4)
  await stuck.connect({}, 4)
  stuck.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'flood', qos: 0 }] })
  await stuck.expect('suback')
  stuck.socket.pause() // never reads again
  const healthy = await connect(t, broker)
  await healthy.subscribeAsync('flood')
  const pub = await connect(t, broker)
  const payload = Buffer.alloc(64 * 1024, 7)
  for (let i = 0; i < 300; i++) await pub.publishAsync('flood', payload, { qos: 0 })
  const got = await collect(healthy).count(300, 20000)
  assert.equal(got.length, 300)
  assert.ok(broker.stats.dropped > 0, 'nothing was dropped for the stuck subscriber')
})

test('flow control holds back the publisher whose message a subscriber could not take, also when an async hook decided it later (the publisher travels with the message)', async (t) => {
  const later = defineHook({ name: 'later', authorizePublish: () => new Promise<boolean>((resolve) => setImmediate(resolve, true)) })
  const broker = await startBroker(t, { hooks: [later] })
  const stuck = await RawClient.open(t, broker, 4)
  await stuck.connect({ clientId: 'stuck' }, 4)
  stuck.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'flood', qos: 0 }] })
  await stuck.expect('suback')
  stuck.socket.pause() // never reads again
  const pub = await connect(t, broker, { clientId: 'pub' })
  const other = await connect(t, broker, { clientId: 'other' })
  // who is held back, watched from outside (a hold lasts until the subscriber catches up, or 1 s)
  const flowOf = (id: string): { congestion: number } | null | undefined =>
    (broker.sessions.sessions.get(id)?.outlet as unknown as { flowState: { congestion: number } | null } | null | undefined)?.flowState
  const held = new Set<string>()
  const watch = setInterval(() => {
    for (const id of ['pub', 'other']) if ((flowOf(id)?.congestion ?? 0) > 0) held.add(id)
  }, 2)
  t.after(() => clearInterval(watch))
  const payload = Buffer.alloc(64 * 1024, 7)
  for (let i = 0; i < 300 && !held.has('pub'); i++) {
    pub.publish('flood', payload, { qos: 0 })
    other.publish('elsewhere', 'x', { qos: 0 }) // a publisher whose messages go nowhere near the stuck subscriber
    await new Promise((resolve) => setTimeout(resolve, 1))
  }
  await until(() => held.has('pub'), 5000, 'the publisher of the flood to be held back')
  assert.equal(held.has('other'), false, 'a publisher that sent the stuck subscriber nothing was held back')
})
