import assert from 'node:assert/strict'
import { test } from 'node:test'
import mqtt from 'mqtt'
import { connect, defer, startBroker, startRedis, until, urlOf } from '../helpers.js'

// The same broker on Redis Cluster and behind Sentinel, through ioredis' own support.

const persistent = { clientId: 'roamer', clean: false, protocolVersion: 5 as const, properties: { sessionExpiryInterval: 600 }, reconnectPeriod: 0 }

test('Redis Cluster: two nodes share sessions and messages (keys in one hash slot)', async (t) => {
  const redis = await startRedis(t, { cluster: true })
  const fast = { heartbeatMs: 100, nodeTimeoutMs: 600 }
  const a = await startBroker(t, { id: 'a', ws: false, sys: { enabled: false }, redis: { cluster: [redis.url], ...fast } })
  const b = await startBroker(t, { id: 'b', ws: false, sys: { enabled: false }, redis: { cluster: [redis.url], ...fast } })
  const first = await mqtt.connectAsync(urlOf(a), persistent)
  await first.subscribeAsync('rc/#', { qos: 1 })
  await first.endAsync()
  const pub = await connect(t, b)
  for (let i = 0; i < 50; i++) await pub.publishAsync('rc/x', `m${i}`, { qos: 1 })
  const again = mqtt.connect(urlOf(b), persistent)
  defer(t, () => again.endAsync(true).catch(() => {}))
  const got: string[] = []
  again.on('message', (_t, p) => got.push(p.toString()))
  await until(() => got.length >= 50, 10000, `50 messages on the other node (have ${got.length})`)
  assert.deepEqual(
    got,
    Array.from({ length: 50 }, (_, i) => `m${i}`),
  )
})

test('Sentinel: the broker finds its master through the sentinel; a stored session outlives the broker', async (t) => {
  const master = await startRedis(t)
  const sentinel = await startRedis(t, { sentinelFor: master.port })
  const config = { id: 'solo', ws: false as const, sys: { enabled: false }, redis: { url: 'redis://127.0.0.1/0', sentinels: [sentinel.url] } }
  const one = await startBroker(t, config)
  const sub = await mqtt.connectAsync(urlOf(one), persistent)
  await sub.subscribeAsync('st/#', { qos: 1 })
  await sub.endAsync()
  const pub = await connect(t, one)
  await pub.publishAsync('st/1', 'kept', { qos: 1 })
  await one.close()
  const two = await startBroker(t, config)
  const back = mqtt.connect(urlOf(two), persistent)
  defer(t, () => back.endAsync(true).catch(() => {}))
  const got = await new Promise<string>((resolve) => back.on('message', (_t, p) => resolve(p.toString())))
  assert.equal(got, 'kept')
})
