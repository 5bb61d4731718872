import assert from 'node:assert/strict'
import { test } from 'node:test'
import { collect, connect, once, pingRoundTrip, RawClient, startBroker } from '../helpers.js'

test('topic alias inbound: [MQTT-3.3.2-12] an alias set with a topic stands for it later', async (t) => {
  const broker = await startBroker(t)
  const sub = await connect(t, broker)
  const inbox = collect(sub)
  await sub.subscribeAsync('ta/#')
  const raw = await RawClient.open(t, broker, 5)
  const ack = await raw.connect({}, 5)
  assert.equal(ack.properties?.topicAliasMaximum, 100)
  raw.send({ cmd: 'publish', topic: 'ta/x', payload: Buffer.from('1'), qos: 0, retain: false, dup: false, properties: { topicAlias: 3 } }, 5)
  raw.send({ cmd: 'publish', topic: '', payload: Buffer.from('2'), qos: 0, retain: false, dup: false, properties: { topicAlias: 3 } }, 5)
  const got = await inbox.count(2)
  assert.deepEqual(
    got.map((m) => `${m.topic}=${m.payload}`),
    ['ta/x=1', 'ta/x=2'],
  )
})

test('[MQTT-3.3.2-9] topic alias 0 or above the maximum gets DISCONNECT 0x94; an unknown alias 0x82', async (t) => {
  const broker = await startBroker(t, { limits: { topicAliasMaximum: 5 } })
  const raw = await RawClient.open(t, broker, 5)
  await raw.connect({}, 5)
  raw.send({ cmd: 'publish', topic: 'x', payload: Buffer.from('1'), qos: 0, retain: false, dup: false, properties: { topicAlias: 6 } }, 5)
  assert.equal((await raw.expect('disconnect')).reasonCode, 0x94)
  await raw.expectClosed()
  const raw2 = await RawClient.open(t, broker, 5)
  await raw2.connect({}, 5)
  raw2.send({ cmd: 'publish', topic: '', payload: Buffer.from('1'), qos: 0, retain: false, dup: false, properties: { topicAlias: 2 } }, 5)
  assert.equal((await raw2.expect('disconnect')).reasonCode, 0x82)
})

test('topic alias outbound: the broker uses aliases when the client allows them', async (t) => {
  const broker = await startBroker(t)
  const raw = await RawClient.open(t, broker, 5)
  await raw.connect({ properties: { topicAliasMaximum: 2 } }, 5)
  raw.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'out/#', qos: 0 }] }, 5)
  await raw.expect('suback')
  await broker.publish({ topic: 'out/a', payload: 'a1' })
  await broker.publish({ topic: 'out/a', payload: 'a2' })
  const p1 = await raw.expect('publish')
  const p2 = await raw.expect('publish')
  assert.equal(p1.topic, 'out/a')
  assert.equal(p1.properties?.topicAlias, 1)
  assert.equal(p2.topic, '')
  assert.equal(p2.properties?.topicAlias, 1)
  // MQTT.js resolves the aliases back to topics
  const c = await connect(t, broker, { protocolVersion: 5, properties: { topicAliasMaximum: 10 } })
  const inbox = collect(c)
  await c.subscribeAsync('out/#')
  await broker.publish({ topic: 'out/b', payload: 'b1' })
  await broker.publish({ topic: 'out/b', payload: 'b2' })
  assert.deepEqual(
    (await inbox.count(2)).map((m) => `${m.topic}=${m.payload}`),
    ['out/b=b1', 'out/b=b2'],
  )
})

test('shared subscription spreads one stream across members with no duplicates or loss', async (t) => {
  const broker = await startBroker(t)
  const a = await connect(t, broker, { protocolVersion: 5 })
  const b = await connect(t, broker, { protocolVersion: 5 })
  const plain = await connect(t, broker, { protocolVersion: 5 })
  await a.subscribeAsync('$share/workers/jobs/#', { qos: 1 })
  await b.subscribeAsync('$share/workers/jobs/#', { qos: 1 })
  await plain.subscribeAsync('jobs/#', { qos: 1 })
  const pub = await connect(t, broker, { protocolVersion: 5 })
  for (let i = 0; i < 20; i++) await pub.publishAsync(`jobs/${i}`, String(i), { qos: 1 })
  await collect(plain).count(20)
  await pingRoundTrip(a)
  await pingRoundTrip(b)
  const ia = collect(a).messages.map((m) => m.payload.toString())
  const ib = collect(b).messages.map((m) => m.payload.toString())
  assert.equal(ia.length + ib.length, 20)
  assert.deepEqual(
    [...ia, ...ib].map(Number).sort((x, y) => x - y),
    [...Array(20).keys()],
  )
  assert.ok(ia.length > 0 && ib.length > 0, `one member got everything (${ia.length}/${ib.length})`)
})

test('[MQTT-3.8.3-3] No Local: a client does not get its own messages back', async (t) => {
  const broker = await startBroker(t)
  const c = await connect(t, broker, { protocolVersion: 5 })
  const other = await connect(t, broker, { protocolVersion: 5 })
  const inbox = collect(c)
  await c.subscribeAsync('nl/t', { qos: 1, nl: true })
  await c.publishAsync('nl/t', 'mine', { qos: 1 })
  await other.publishAsync('nl/t', 'theirs', { qos: 1 })
  const m = await inbox.next()
  assert.equal(m.payload.toString(), 'theirs')
  await pingRoundTrip(c)
  assert.equal(inbox.messages.length, 1)
})

test('[MQTT-3.3.1-12] [MQTT-3.3.1-13] Retain As Published keeps the retain flag on live delivery', async (t) => {
  const broker = await startBroker(t)
  const rap = await connect(t, broker, { protocolVersion: 5 })
  const plain = await connect(t, broker, { protocolVersion: 5 })
  await rap.subscribeAsync('rap/t', { qos: 0, rap: true })
  await plain.subscribeAsync('rap/t', { qos: 0 })
  await broker.publish({ topic: 'rap/t', payload: 'r', retain: true })
  assert.equal((await collect(rap).next()).packet.retain, true)
  assert.equal((await collect(plain).next()).packet.retain, false)
})

test('[MQTT-3.3.1-9] [MQTT-3.3.1-10] [MQTT-3.3.1-11] Retain Handling 0, 1 and 2', async (t) => {
  const broker = await startBroker(t)
  await broker.publish({ topic: 'rh/t', payload: 'kept', retain: true })
  const c = await connect(t, broker, { protocolVersion: 5 })
  const inbox = collect(c)
  await c.subscribeAsync('rh/t', { qos: 0, rh: 0 })
  await inbox.next()
  await c.subscribeAsync('rh/t', { qos: 0, rh: 0 }) // again: rh 0 sends again
  await inbox.next()
  await c.subscribeAsync('rh/t', { qos: 0, rh: 1 }) // existing subscription: nothing
  await c.subscribeAsync('rh/+', { qos: 0, rh: 2 }) // never
  await pingRoundTrip(c)
  assert.equal(inbox.messages.length, 2)
  const d = await connect(t, broker, { protocolVersion: 5 })
  await d.subscribeAsync('rh/t', { qos: 0, rh: 1 }) // new subscription: sent
  assert.equal((await collect(d).next()).payload.toString(), 'kept')
})

test('[MQTT-3.3.4-3] overlapping subscriptions: one copy at the highest QoS with every subscription identifier', async (t) => {
  const broker = await startBroker(t)
  const c = await connect(t, broker, { protocolVersion: 5 })
  const inbox = collect(c)
  await c.subscribeAsync('si/#', { qos: 0, properties: { subscriptionIdentifier: 1 } })
  await c.subscribeAsync('si/+', { qos: 2, properties: { subscriptionIdentifier: 2 } })
  await c.subscribeAsync('si/x', { qos: 1 })
  await broker.publish({ topic: 'si/x', payload: 'p', qos: 2 })
  const m = await inbox.next()
  assert.equal(m.packet.qos, 2)
  const ids = m.packet.properties?.subscriptionIdentifier
  assert.deepEqual((Array.isArray(ids) ? ids : [ids]).sort(), [1, 2])
  await pingRoundTrip(c)
  assert.equal(inbox.messages.length, 1)
})

test('receive maximum: never more unacknowledged messages sent than the client allowed', async (t) => {
  const broker = await startBroker(t)
  const raw = await RawClient.open(t, broker, 5)
  await raw.connect({ properties: { receiveMaximum: 2 } }, 5)
  raw.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'rm', qos: 1 }] }, 5)
  await raw.expect('suback')
  for (let i = 0; i < 5; i++) await broker.publish({ topic: 'rm', payload: String(i), qos: 1 })
  raw.send({ cmd: 'pingreq' }, 5)
  await raw.expect('pingresp')
  const first = raw.packets.filter((p) => p.cmd === 'publish')
  assert.equal(first.length, 2)
  const a = await raw.expect('publish')
  await raw.expect('publish')
  raw.send({ cmd: 'puback', messageId: a.messageId! }, 5)
  const third = await raw.expect('publish')
  assert.equal(third.payload.toString(), '2')
  raw.send({ cmd: 'pingreq' }, 5)
  await raw.expect('pingresp')
  assert.equal(raw.packets.filter((p) => p.cmd === 'publish').length, 0)
})

test('[MQTT-3.3.4-9] a client exceeding the broker Receive Maximum gets DISCONNECT 0x93', async (t) => {
  const broker = await startBroker(t, { limits: { receiveMaximum: 2 } })
  const raw = await RawClient.open(t, broker, 5)
  const ack = await raw.connect({}, 5)
  assert.equal(ack.properties?.receiveMaximum, 2)
  for (let i = 1; i <= 3; i++) raw.send({ cmd: 'publish', topic: 'q2', payload: Buffer.from('x'), qos: 2, retain: false, dup: false, messageId: i }, 5)
  assert.equal((await raw.expect('disconnect')).reasonCode, 0x93)
  await raw.expectClosed()
})

test('maximum packet size inbound: an over-sized PUBLISH gets DISCONNECT 0x95, other clients carry on', async (t) => {
  const broker = await startBroker(t, { limits: { maxPacketSize: 1024 } })
  const bystander = await connect(t, broker, { protocolVersion: 5 })
  await bystander.subscribeAsync('mp/#')
  const raw = await RawClient.open(t, broker, 5)
  const ack = await raw.connect({}, 5)
  assert.equal(ack.properties?.maximumPacketSize, 1024)
  raw.send({ cmd: 'publish', topic: 'mp/big', payload: Buffer.alloc(2000), qos: 0, retain: false, dup: false }, 5)
  assert.equal((await raw.expect('disconnect')).reasonCode, 0x95)
  await raw.expectClosed()
  await broker.publish({ topic: 'mp/small', payload: 'ok' })
  assert.equal((await collect(bystander).next()).topic, 'mp/small')
})

test('[MQTT-3.1.2-25] maximum packet size outbound: a message too large for the client is not sent to it', async (t) => {
  const broker = await startBroker(t)
  const raw = await RawClient.open(t, broker, 5)
  await raw.connect({ properties: { maximumPacketSize: 200 } }, 5)
  raw.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'os/#', qos: 1 }] }, 5)
  await raw.expect('suback')
  await broker.publish({ topic: 'os/big', payload: Buffer.alloc(500), qos: 1 })
  await broker.publish({ topic: 'os/small', payload: 'fits', qos: 1 })
  const p = await raw.expect('publish')
  assert.equal(p.topic, 'os/small')
  raw.send({ cmd: 'pingreq' }, 5)
  await raw.expect('pingresp')
  assert.equal(raw.packets.filter((x) => x.cmd === 'publish').length, 0)
})

test('[MQTT-3.2.2-21] server keep-alive: a client asking for more is told the maximum', async (t) => {
  const broker = await startBroker(t, { limits: { maxKeepalive: 10 } })
  const raw = await RawClient.open(t, broker, 5)
  const ack = await raw.connect({ keepalive: 60 }, 5)
  assert.equal(ack.properties?.serverKeepAlive, 10)
})

test('user properties and request/response properties pass through', async (t) => {
  const broker = await startBroker(t)
  const sub = await connect(t, broker, { protocolVersion: 5 })
  await sub.subscribeAsync('req/#', { qos: 1 })
  const pub = await connect(t, broker, { protocolVersion: 5 })
  await pub.publishAsync('req/1', '{}', {
    qos: 1,
    properties: {
      userProperties: { trace: 'abc', tags: ['x', 'y'] },
      responseTopic: 'resp/1',
      correlationData: Buffer.from('c0rr'),
      contentType: 'application/json',
      payloadFormatIndicator: true,
    },
  })
  const p = (await collect(sub).next()).packet.properties!
  assert.deepEqual({ ...p.userProperties }, { trace: 'abc', tags: ['x', 'y'] })
  assert.equal(p.responseTopic, 'resp/1')
  assert.equal(p.correlationData?.toString(), 'c0rr')
  assert.equal(p.contentType, 'application/json')
  assert.equal(p.payloadFormatIndicator, true)
})

test('reason codes: PUBACK 0x10 with no subscribers, 0x87 for $SYS; SUBACK 0x8F for a bad filter; UNSUBACK 0x11', async (t) => {
  const broker = await startBroker(t)
  const raw = await RawClient.open(t, broker, 5)
  await raw.connect({}, 5)
  raw.send({ cmd: 'publish', topic: 'nobody/here', payload: Buffer.from('x'), qos: 1, retain: false, dup: false, messageId: 7 }, 5)
  assert.equal((await raw.expect('puback')).reasonCode, 0x10)
  raw.send({ cmd: 'publish', topic: '$SYS/broker/uptime', payload: Buffer.from('0'), qos: 1, retain: false, dup: false, messageId: 8 }, 5)
  assert.equal((await raw.expect('puback')).reasonCode, 0x87)
  raw.send(
    {
      cmd: 'subscribe',
      messageId: 9,
      subscriptions: [
        { topic: 'ok/+', qos: 1 },
        { topic: 'bad/#/x', qos: 1 },
        { topic: '$share/g', qos: 0 },
      ],
    },
    5,
  )
  assert.deepEqual((await raw.expect('suback')).granted, [1, 0x8f, 0x8f])
  raw.send({ cmd: 'unsubscribe', messageId: 10, unsubscriptions: ['ok/+', 'never'] }, 5)
  assert.deepEqual((await raw.expect('unsuback')).granted, [0, 0x11])
})

test('[MQTT-4.7.2-1] $SYS topics: not matched by "#", not writable by clients, readable explicitly', async (t) => {
  const broker = await startBroker(t, { sys: { intervalMs: 100 } })
  const all = await connect(t, broker)
  const sys = await connect(t, broker)
  await all.subscribeAsync('#')
  await sys.subscribeAsync('$SYS/broker/uptime')
  const m = await collect(sys).next()
  assert.match(m.payload.toString(), /^\d+$/)
  const pub = await connect(t, broker)
  await pub.publishAsync('$SYS/broker/uptime', 'forged', { qos: 1 })
  await pub.publishAsync('normal', 'n', { qos: 1 })
  await collect(all).next()
  assert.ok(collect(all).messages.every((x) => !x.topic.startsWith('$')))
  await pingRoundTrip(sys)
  assert.ok(collect(sys).messages.every((x) => x.payload.toString() !== 'forged'))
  const closed = once(broker, 'closed')
  await broker.close()
  await closed
})
