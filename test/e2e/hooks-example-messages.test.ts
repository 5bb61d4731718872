import assert from 'node:assert/strict'
import { test } from 'node:test'
import { Redis } from 'ioredis'
import mqtt from 'mqtt'
import { brokerProcess, collect, connect, defer, exampleFolder, pingRoundTrip, publishCode, RawClient, startBroker, startRedis } from '../helpers.js'

// hooks.example/rate-limit.ts, rewrite.ts and delayed.ts loaded from a hooks
// folder by a real broker, with MQTT.js and raw MQTT 3.1.1 clients; delayed.ts
// with a real redis-server across a killed broker process and across two nodes.

test('hooks.example/rate-limit.ts: over its burst an MQTT 5 publisher gets PUBACK 0x97, a 3.1.1 one is disconnected, QoS 0 is dropped', async (t) => {
  const broker = await startBroker(t, {
    hooksDir: exampleFolder(t, ['rate-limit.ts']),
    hooks: { 'rate-limit': { default: { messagesPerSecond: 0.1, burstMessages: 3 }, users: { bridge: {} } } },
  })
  const v5 = await connect(t, broker, { protocolVersion: 5 })
  const codes = []
  for (let i = 0; i < 5; i++) codes.push(await publishCode(v5, 'a'))
  assert.deepEqual(codes, [0x10, 0x10, 0x10, 0x97, 0x97])
  // QoS 0: three of ten reach a subscriber
  const sub = await connect(t, broker, { protocolVersion: 5, username: 'bridge' })
  await sub.subscribeAsync('q0')
  const pub = await connect(t, broker, { protocolVersion: 5 })
  for (let i = 0; i < 10; i++) pub.publish('q0', String(i), { qos: 0 })
  await collect(sub).count(3)
  await pingRoundTrip(pub)
  await pingRoundTrip(sub)
  assert.deepEqual(
    collect(sub).messages.map((m) => m.payload.toString()),
    ['0', '1', '2'],
  )
  // an unlimited user
  for (let i = 0; i < 10; i++) assert.equal(await publishCode(sub, 'b'), 0x10)
  // MQTT 3.1.1 cannot be told: the broker closes the connection without a PUBACK (the client sends it again later)
  const v4 = await RawClient.open(t, broker, 4)
  await v4.connect({ clientId: 'old-device' }, 4)
  for (let id = 1; id <= 3; id++) {
    v4.send({ cmd: 'publish', topic: 'a', payload: Buffer.from('x'), qos: 1, messageId: id, retain: false, dup: false })
    await v4.expect('puback')
  }
  v4.send({ cmd: 'publish', topic: 'a', payload: Buffer.from('x'), qos: 1, messageId: 4, retain: false, dup: false })
  await v4.expectClosed()
  assert.ok(!v4.packets.some((p) => p.cmd === 'puback'))
})

test('hooks.example/rewrite.ts: a message on a legacy topic reaches the new topic only', async (t) => {
  const broker = await startBroker(t, {
    hooksDir: exampleFolder(t, ['rewrite.ts']),
    hooks: { rewrite: { rules: [{ from: 'legacy/+/temp', to: 'sensors/{1}/temperature' }] } },
  })
  const sub = await connect(t, broker, { protocolVersion: 5 })
  await sub.subscribeAsync(['sensors/#', 'legacy/#'])
  const pub = await connect(t, broker, { protocolVersion: 5 })
  await pub.publishAsync('legacy/kitchen/temp', '21.5', { qos: 1, properties: { contentType: 'text/plain' } })
  await pub.publishAsync('legacy/kitchen/humidity', '40', { qos: 1 })
  await collect(sub).count(2)
  await pingRoundTrip(sub)
  assert.deepEqual(
    collect(sub).messages.map((m) => [m.topic, m.payload.toString(), m.packet.properties?.contentType]),
    [
      ['sensors/kitchen/temperature', '21.5', 'text/plain'],
      ['legacy/kitchen/humidity', '40', undefined],
    ],
  )
})

test('hooks.example/delayed.ts with acl.ts: $delayed/<s>/<topic> arrives on <topic> after the delay, for the topics the ACL allows under $delayed/+/', async (t) => {
  const broker = await startBroker(t, {
    hooksDir: exampleFolder(t, ['delayed.ts', 'acl.ts']),
    hooks: {
      delayed: { maxDelaySeconds: 60 },
      acl: { rules: [{ user: '*', allow: 'both', topics: ['public/#', '$delayed/+/public/#'] }] },
    },
  })
  const sub = await connect(t, broker, { protocolVersion: 5 })
  await sub.subscribeAsync('public/#', { qos: 1 })
  const pub = await connect(t, broker, { protocolVersion: 5 })
  const sent = Date.now()
  assert.equal(await publishCode(pub, '$delayed/1/public/news', 'later'), 0)
  await pingRoundTrip(sub)
  assert.equal(collect(sub).messages.length, 0)
  const m = await collect(sub).next(5000)
  assert.ok(Date.now() - sent >= 950, `arrived after ${Date.now() - sent} ms`)
  assert.deepEqual([m.topic, m.payload.toString(), m.packet.qos], ['public/news', 'later', 1])
  // not a topic the ACL allows under $delayed/+/; over the maximum delay; malformed
  assert.equal(await publishCode(pub, '$delayed/1/private/x'), 0x87)
  assert.equal(await publishCode(pub, '$delayed/61/public/x'), 0x97)
  assert.equal(await publishCode(pub, '$delayed/soon/public/x'), 0x90)
})

test('hooks.example/delayed.ts with Redis: a message accepted before the broker process is killed is published by the next broker, once', async (t) => {
  const redis = await startRedis(t)
  const dir = exampleFolder(t, ['delayed.ts'])
  const hooks = { delayed: { redisUrl: redis.url, key: 'test:delayed', pollMs: 200 } }
  const first = await brokerProcess(t, { port: 0, ws: false, sys: { enabled: false }, hooksDir: dir, hooks })
  const pub = await mqtt.connectAsync(first.url, { reconnectPeriod: 0, protocolVersion: 5 })
  const sent = Date.now()
  await pub.publishAsync('$delayed/3/jobs/report', 'run', { qos: 1, retain: false, properties: { correlationData: Buffer.from('c-1') } }) // PUBACK: in Redis
  const db = new Redis(redis.url)
  defer(t, () => db.quit())
  assert.equal(await db.zcard('test:delayed'), 1)
  await first.kill()
  pub.end(true)

  const second = await startBroker(t, { hooksDir: dir, hooks })
  const sub = await connect(t, second, { protocolVersion: 5 })
  await sub.subscribeAsync('jobs/#', { qos: 1 })
  const m = await collect(sub).next(10000)
  assert.ok(Date.now() - sent >= 2950, `published ${Date.now() - sent} ms after it was sent`)
  assert.deepEqual([m.topic, m.payload.toString(), m.packet.properties?.correlationData?.toString()], ['jobs/report', 'run', 'c-1'])
  assert.equal(await db.zcard('test:delayed'), 0)
})

test('hooks.example/delayed.ts with Redis: two nodes sharing the sorted set publish each message once', async (t) => {
  const redis = await startRedis(t)
  const hooks = { delayed: { redisUrl: redis.url, pollMs: 50 } }
  const a = await startBroker(t, { hooksDir: exampleFolder(t, ['delayed.ts']), hooks })
  const b = await startBroker(t, { hooksDir: exampleFolder(t, ['delayed.ts']), hooks })
  // (two brokers that do not share their subscribers: a message published by both would reach both)
  const subA = await connect(t, a, { protocolVersion: 5 })
  const subB = await connect(t, b, { protocolVersion: 5 })
  await subA.subscribeAsync('jobs/#', { qos: 1 })
  await subB.subscribeAsync('jobs/#', { qos: 1 })
  const pubA = await connect(t, a, { protocolVersion: 5 })
  const pubB = await connect(t, b, { protocolVersion: 5 })
  const sends = []
  for (let i = 0; i < 20; i++) sends.push((i % 2 === 0 ? pubA : pubB).publishAsync('$delayed/1/jobs/n', String(i), { qos: 1 }))
  await Promise.all(sends)
  const all = (): string[] => [...collect(subA).messages, ...collect(subB).messages].map((m) => m.payload.toString())
  const end = Date.now() + 10000
  while (all().length < 20 && Date.now() < end) await new Promise((r) => setTimeout(r, 20))
  // both nodes' pollers have run several times since: a second copy would have come
  await new Promise((r) => setTimeout(r, 300))
  await pingRoundTrip(subA)
  await pingRoundTrip(subB)
  assert.deepEqual(
    all().sort((x, y) => Number(x) - Number(y)),
    Array.from({ length: 20 }, (_, i) => String(i)),
  )
  t.diagnostic(`node a published ${collect(subA).messages.length}, node b ${collect(subB).messages.length}`)
})
