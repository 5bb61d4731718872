import assert from 'node:assert/strict'
import { test } from 'node:test'
import mqtt from 'mqtt'
import { Redis } from 'ioredis'
import type { HookmqBroker } from '../../plugins/index.js'
import { connect, defer, startBroker, startRedis, until, urlOf } from '../helpers.js'
import { fast, nodes, raw, received } from '../support/cluster.js'

// Several nodes on one real redis-server: Redis going away, expiry, and nodes that read the cluster's stream late or were taken for dead.

test('Redis stopped mid-traffic: no node crashes, QoS >= 1 and persistent sessions are refused while it is down, then all resumes', async (t) => {
  const redis = await startRedis(t)
  const [a, b] = await nodes(t, redis.url, ['a', 'b'])
  const local = await connect(t, a!)
  const localGot = received(local)
  await local.subscribeAsync('live/#', { qos: 0 })
  const pub5 = await raw(t, urlOf(a!), { protocolVersion: 5 })
  const remoteSub = await connect(t, b!)
  const remoteGot = received(remoteSub)
  await remoteSub.subscribeAsync('live/#', { qos: 1 })
  await pub5.publishAsync('live/1', 'before', { qos: 1 })
  await until(() => remoteGot.includes('before'), 5000, 'cross-node delivery before the outage')
  await redis.stop()
  await until(() => !a!.cluster!.available, 5000, 'node A to notice')
  // QoS 0 on one node still works
  await pub5.publishAsync('live/1', 'qos0-during', { qos: 0 })
  await until(() => localGot.includes('qos0-during'), 5000, 'local QoS 0 during the outage')
  // QoS 1 is refused (PUBACK 0x97), not acknowledged and lost
  await assert.rejects(pub5.publishAsync('live/1', 'qos1-during', { qos: 1 }), (err: Error & { code?: number }) => err.code === 0x97)
  // a persistent session is refused (CONNACK 0x88); a clean one is accepted
  const refused = mqtt.connect(urlOf(a!), {
    clientId: 'keeper',
    clean: false,
    protocolVersion: 5,
    properties: { sessionExpiryInterval: 60 },
    reconnectPeriod: 0,
  })
  defer(t, () => refused.endAsync(true).catch(() => {}))
  const err = await new Promise<Error & { code?: number }>((resolve) => refused.once('error', resolve))
  assert.equal(err.code, 0x88)
  await raw(t, urlOf(a!), { clean: true })
  await redis.start()
  await until(() => a!.cluster!.available && b!.cluster!.available, 10000, 'both nodes back on Redis')
  await until(
    async () => {
      try {
        await pub5.publishAsync('live/2', 'after', { qos: 1 })
        return true
      } catch {
        return false
      }
    },
    10000,
    'QoS 1 accepted again',
  )
  await until(() => remoteGot.includes('after'), 10000, 'cross-node delivery after the outage')
  assert.ok(!remoteGot.includes('qos1-during'))
  const keeper = await raw(t, urlOf(a!), { clientId: 'keeper', clean: false, protocolVersion: 5, properties: { sessionExpiryInterval: 60 } })
  assert.ok(keeper.connected)
})

test('TTLs: an offline 3.1.1 session and its queued messages expire; an MQTT 5 session expiry takes precedence', async (t) => {
  const redis = await startRedis(t)
  const broker = await startBroker(t, {
    ws: false,
    sys: { enabled: false },
    redis: { url: redis.url, keyPrefix: 'ttl:', ttl: { subscriptions: 3, packets: 1 } },
  })
  const url = urlOf(broker)
  const v3 = await raw(t, url, { clientId: 'old', clean: false, protocolVersion: 4 })
  await v3.subscribeAsync('ttl/#', { qos: 1 })
  const v5 = await raw(t, url, { clientId: 'new', clean: false, protocolVersion: 5, properties: { sessionExpiryInterval: 3600 } })
  await v5.subscribeAsync('ttl/#', { qos: 1 })
  await v3.endAsync()
  await v5.endAsync()
  const pub = await connect(t, broker)
  await pub.publishAsync('ttl/a', 'stale', { qos: 1 })
  await new Promise((r) => setTimeout(r, 1200))
  await pub.publishAsync('ttl/a', 'fresh', { qos: 1 })
  const again = mqtt.connect(url, { clientId: 'old', clean: false, protocolVersion: 4, reconnectPeriod: 0 })
  const got = received(again)
  const [connack] = await new Promise<[mqtt.IConnackPacket]>((resolve) => again.once('connect', (p) => resolve([p])))
  assert.equal(connack.sessionPresent, true)
  await until(() => got.length >= 1, 5000, 'the fresh message')
  await new Promise((r) => setTimeout(r, 200))
  assert.deepEqual(got, ['fresh']) // the one older than ttl.packets was dropped
  await again.endAsync()
  const client = new Redis(redis.url)
  client.on('error', () => {})
  defer(t, () => client.quit())
  assert.equal(await client.exists('ttl:session:old'), 1)
  await until(async () => (await client.exists('ttl:session:old')) === 0, 6000, 'the 3.1.1 session to expire after ttl.subscriptions')
  const late = mqtt.connect(url, { clientId: 'old', clean: false, protocolVersion: 4, reconnectPeriod: 0 })
  defer(t, () => late.endAsync(true).catch(() => {}))
  const [lateAck] = await new Promise<[mqtt.IConnackPacket]>((resolve) => late.once('connect', (p) => resolve([p])))
  assert.equal(lateAck.sessionPresent, false)
  assert.equal(await client.exists('ttl:session:new'), 1) // its own expiry (an hour) wins
  const v5again = await raw(t, url, { clientId: 'new', clean: false, protocolVersion: 5, properties: { sessionExpiryInterval: 3600 } })
  assert.ok(v5again.connected)
})

for (const publisherOn of ['a', 'c'] as const) {
  test(`a session moving from A to B while ${publisherOn.toUpperCase()} keeps publishing to it loses nothing that was acknowledged`, async (t) => {
    const redis = await startRedis(t)
    const [a, b, c] = await nodes(t, redis.url, ['a', 'b', 'c'])
    const opts = { clientId: 'moving', clean: false, protocolVersion: 5 as const, properties: { sessionExpiryInterval: 600 } }
    const first = await raw(t, urlOf(a!), opts)
    const got = new Set<string>()
    first.on('message', (_t, p) => got.add(p.toString()))
    await first.subscribeAsync('mv/#', { qos: 1 })
    const pub = await connect(t, publisherOn === 'a' ? a! : c!)
    const acked: string[] = []
    let stop = false
    const publishing = (async () => {
      for (let i = 0; !stop; i++) {
        await pub.publishAsync('mv/x', `m${i}`, { qos: 1 })
        acked.push(`m${i}`)
      }
    })()
    await until(() => acked.length >= 50, 5000, 'some traffic first')
    await first.endAsync()
    await until(() => acked.length >= 100, 5000, 'traffic while it is offline')
    const second = mqtt.connect(urlOf(b!), { ...opts, reconnectPeriod: 0 })
    defer(t, () => second.endAsync(true).catch(() => {}))
    second.on('message', (_t, p) => got.add(p.toString()))
    await new Promise((resolve) => second.once('connect', resolve))
    const at = acked.length
    await until(() => acked.length >= at + 100, 5000, 'traffic after the move')
    stop = true
    await publishing
    await until(
      () => acked.every((m) => got.has(m)),
      10000,
      `every acknowledged message (missing ${acked
        .filter((m) => !got.has(m))
        .slice(0, 5)
        .join(',')})`,
    )
    assert.equal(a!.sessions.sessions.has('moving'), false)
  })
}

test('a node that learns of a new node late still reads everything the new one wrote (a takeover asked before it noticed)', async (t) => {
  const redis = await startRedis(t)
  // A looks for new nodes only every 2.5 s; B waits for A less than that before it serves clients
  const a = await startBroker(t, { id: 'a', ws: false, sys: { enabled: false }, redis: { url: redis.url, heartbeatMs: 2500, nodeTimeoutMs: 10000 } })
  const opts = { clientId: 'early', clean: false, protocolVersion: 5 as const, properties: { sessionExpiryInterval: 600 } }
  const first = await raw(t, urlOf(a), opts)
  await first.subscribeAsync('e/#', { qos: 1 })
  await first.endAsync()
  const b = await startBroker(t, { id: 'b', ws: false, sys: { enabled: false }, redis: { url: redis.url, heartbeatMs: 100, nodeTimeoutMs: 10000 } })
  const started = Date.now()
  const again = mqtt.connect(urlOf(b), { ...opts, reconnectPeriod: 0 })
  defer(t, () => again.endAsync(true).catch(() => {}))
  const [ack] = await new Promise<[mqtt.IConnackPacket]>((resolve) => again.once('connect', (p) => resolve([p])))
  assert.equal(ack.sessionPresent, true)
  // A answered the takeover it read from B's stream (a claim that times out waits 3 s and leaves A holding the session)
  assert.equal(a.sessions.sessions.has('early'), false)
  assert.ok(Date.now() - started < 3000, `handed over in ${Date.now() - started} ms`)
})

test('a session moves to a node that has not read the stream its queued messages came from yet: each arrives once', async (t) => {
  const redis = await startRedis(t)
  // B looks for new nodes only every 2 s: it finds C (where the messages are published) after the move
  const a = await startBroker(t, { id: 'a', ws: false, sys: { enabled: false }, redis: { url: redis.url, ...fast } })
  const b = await startBroker(t, { id: 'b', ws: false, sys: { enabled: false }, redis: { url: redis.url, heartbeatMs: 2000, nodeTimeoutMs: 10000 } })
  const c = await startBroker(t, { id: 'c', ws: false, sys: { enabled: false }, redis: { url: redis.url, ...fast } })
  const opts = { clientId: 'lagging', clean: false, protocolVersion: 5 as const, properties: { sessionExpiryInterval: 600 } }
  const first = await raw(t, urlOf(a), opts)
  await first.subscribeAsync('lag/#', { qos: 1 })
  await first.endAsync()
  const pub = await connect(t, c)
  for (let i = 0; i < 50; i++) await pub.publishAsync('lag/x', `queued-${i}`, { qos: 1 }) // queued on A
  assert.equal(b.sessions.sessions.has('lagging'), false)
  const again = mqtt.connect(urlOf(b), { ...opts, reconnectPeriod: 0 })
  defer(t, () => again.endAsync(true).catch(() => {}))
  const got = received(again)
  const [ack] = await new Promise<[mqtt.IConnackPacket]>((resolve) => again.once('connect', (p) => resolve([p])))
  assert.equal(ack.sessionPresent, true)
  await until(() => got.length >= 50, 5000, `50 queued messages (have ${got.length})`)
  await pub.publishAsync('lag/x', 'after-move', { qos: 1 }) // reaches B only through C's stream, behind the 50
  await until(() => got.includes('after-move'), 8000, 'a message published after the move')
  assert.deepEqual(got, [...Array.from({ length: 50 }, (_, i) => `queued-${i}`), 'after-move'])
})

test('a node only taken for dead (its heartbeat key lost) is read on from where the others were: what it acknowledged meanwhile arrives, once', async (t) => {
  const redis = await startRedis(t)
  const a = await startBroker(t, { id: 'a', ws: false, sys: { enabled: false }, redis: { url: redis.url, ...fast } })
  // C renews its heartbeat only every 3 s: deleting its key right after a renewal makes it look dead to A until the next
  const c = await startBroker(t, { id: 'c', ws: false, sys: { enabled: false }, redis: { url: redis.url, heartbeatMs: 3000, nodeTimeoutMs: 10000 } })
  const peersOf = (n: HookmqBroker): string[] => (n.cluster as unknown as { peerIds: string[] }).peerIds
  await until(() => peersOf(a).includes('c'), 5000, 'A to find C')
  const sub = await connect(t, a)
  const got = received(sub)
  await sub.subscribeAsync('fd/#', { qos: 1 })
  const pub = await raw(t, urlOf(c), { clientId: 'fd-pub' })
  for (let i = 0; i < 20; i++) await pub.publishAsync('fd/x', `m${i}`, { qos: 1 })
  await until(() => got.length >= 20, 5000, '20 messages')
  const client = new Redis(redis.url)
  defer(t, () => client.quit())
  await until(async () => (await client.pttl('hookmq:node:c')) > 9800, 5000, 'C to renew its heartbeat') // its next is ~3 s away
  await client.del('hookmq:node:c')
  await until(() => !peersOf(a).includes('c'), 2000, 'A to take C for dead')
  await pub.publishAsync('fd/x', 'meanwhile', { qos: 1 }) // acknowledged by C while A does not read its stream
  await until(() => peersOf(a).includes('c'), 8000, 'A to find C again')
  const pub2 = await raw(t, urlOf(c), { clientId: 'fd-pub2' }) // C dropped its connections when it learnt it was taken for dead
  await pub2.publishAsync('fd/x', 'after', { qos: 1 })
  await until(() => got.includes('after'), 5000, 'a message published after C is back')
  assert.deepEqual(got, [...Array.from({ length: 20 }, (_, i) => `m${i}`), 'meanwhile', 'after'])
})
