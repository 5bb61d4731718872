import assert from 'node:assert/strict'
import net from 'node:net'
import { test, type TestContext } from 'node:test'
import mqtt, { type MqttClient } from 'mqtt'
import mqttPacket, { type Packet } from 'mqtt-packet'
import { parseConfig, type Broker } from '../../core/index.js'
import { brokerProcess, collect, connect, defer, freePort, once, pingRoundTrip, publishCode, RawClient, startBroker, startRedis, until } from '../helpers.js'

// Every client's cost is bounded: subscriptions, retained messages (broker-wide
// and per client), offline queues (messages and bytes), how long a 3.1.1
// persistent session outlives its connection. What a quota refuses is counted.

/** A client of its own subscribes and gets its own publish back, promptly: the attack harmed nobody else. */
async function bystander(t: TestContext, broker: Broker | string): Promise<void> {
  const c = typeof broker === 'string' ? await mqtt.connectAsync(broker, { reconnectPeriod: 0 }) : await connect(t, broker)
  defer(t, () => c.endAsync(true))
  await c.subscribeAsync('bystander/t', { qos: 1 })
  const got = new Promise<string>((resolve) => c.once('message', (_topic, payload) => resolve(payload.toString())))
  await c.publishAsync('bystander/t', 'still here', { qos: 1 })
  assert.equal(await Promise.race([got, new Promise((resolve) => setTimeout(() => resolve('too slow'), 2000))]), 'still here')
}

async function suback(raw: RawClient, messageId: number, filters: string[], v: 4 | 5, qos: 0 | 1 = 0): Promise<number[]> {
  raw.send({ cmd: 'subscribe', messageId, subscriptions: filters.map((topic) => ({ topic, qos })) }, v)
  const p = await raw.expect('suback')
  assert.equal(p.messageId, messageId)
  return p.granted as number[]
}

test('[MQTT-3.9.3-1] subscriptions per client: each new filter beyond maxSubscriptionsPerClient gets SUBACK 0x97 (MQTT 5) / 0x80 (3.1.1) in its place; replacing one is free, unsubscribing frees one', async (t) => {
  const broker = await startBroker(t, { limits: { maxSubscriptionsPerClient: 3 } })
  const v5 = await RawClient.open(t, broker, 5)
  await v5.connect({ clientId: 'sq5' }, 5)
  assert.deepEqual(await suback(v5, 1, ['s/a', 's/b', 's/c', 's/d', 's/e'], 5), [0, 0, 0, 0x97, 0x97])
  assert.deepEqual(await suback(v5, 2, ['s/a', 's/f'], 5, 1), [1, 0x97]) // s/a replaced at QoS 1: no extra cost
  v5.send({ cmd: 'unsubscribe', messageId: 3, unsubscriptions: ['s/b'] }, 5)
  await v5.expect('unsuback')
  assert.deepEqual(await suback(v5, 4, ['s/f'], 5), [0])
  assert.deepEqual(broker.sessions.sessions.get('sq5')!.subscriptions.keys().sort(), ['s/a', 's/c', 's/f'])
  await broker.publish({ topic: 's/d', payload: 'refused filter', qos: 1 }) // a refused filter routes nothing
  await broker.publish({ topic: 's/f', payload: 'granted', qos: 0 })
  assert.equal((await v5.expect('publish')).topic, 's/f')
  assert.equal(v5.packets.filter((p) => p.cmd === 'publish').length, 0)

  const v4 = await RawClient.open(t, broker, 4)
  await v4.connect({ clientId: 'sq4' }, 4)
  assert.deepEqual(await suback(v4, 1, ['s/1', 's/2', 's/3', 's/4'], 4), [0, 0, 0, 0x80])
  assert.equal(broker.stats.quota.subscriptions, 4)
  await bystander(t, broker)
})

test('subscription bytes per client: a new filter past maxSubscriptionBytesPerClient gets SUBACK 0x97; replacing one is free, unsubscribing frees its bytes', async (t) => {
  const broker = await startBroker(t, { limits: { maxSubscriptionBytesPerClient: 1024 } })
  const raw = await RawClient.open(t, broker, 5)
  await raw.connect({ clientId: 'wide' }, 5)
  const f = (c: string): string => `${c}/${'x'.repeat(398)}` // 400 characters
  assert.deepEqual(await suback(raw, 1, [f('a'), f('b'), f('c')], 5), [0, 0, 0x97])
  assert.deepEqual(await suback(raw, 2, [f('a')], 5, 1), [1]) // a replacement
  raw.send({ cmd: 'unsubscribe', messageId: 3, unsubscriptions: [f('b')] }, 5)
  await raw.expect('unsuback')
  assert.deepEqual(await suback(raw, 4, [f('c')], 5), [0])
  assert.equal(broker.stats.quota.subscriptions, 1)
  await bystander(t, broker)
})

test('one SUBSCRIBE repeating a filter: one SUBACK code per copy, the last copy stands, its retained messages sent once; past 10,000 filters in one packet (or maxSubscriptionsPerClient if larger) the connection is closed with 0x97', async (t) => {
  const broker = await startBroker(t)
  for (let i = 0; i < 3; i++) await broker.publish({ topic: `r/${i}`, payload: `kept ${i}`, qos: 1, retain: true })
  const raw = await RawClient.open(t, broker, 5)
  await raw.connect({ clientId: 'repeats' }, 5)
  raw.send({ cmd: 'subscribe', messageId: 1, subscriptions: [0, 1, 0, 1, 1].map((qos) => ({ topic: 'r/#', qos: qos as 0 | 1, rh: 0 })) }, 5)
  assert.deepEqual((await raw.expect('suback')).granted, [0, 1, 0, 1, 1])
  for (let i = 0; i < 3; i++) assert.equal((await raw.expect('publish')).qos, 1) // the last copy's QoS
  await new Promise((r) => setTimeout(r, 200))
  assert.equal(raw.packets.filter((p) => p.cmd === 'publish').length, 0, 'retained messages sent once, not once per copy')
  assert.equal(broker.sessions.sessions.get('repeats')!.subscriptions.get('r/#')!.qos, 1)

  const flood = await RawClient.open(t, broker, 5)
  await flood.connect({ clientId: 'flood' }, 5)
  flood.send({ cmd: 'subscribe', messageId: 1, subscriptions: Array.from({ length: 10001 }, () => ({ topic: '#', qos: 0 as const })) }, 5)
  const d = await flood.expect('disconnect')
  assert.equal(d.reasonCode, 0x97)
  await flood.expectClosed()
  assert.equal(broker.sessions.sessions.get('flood')?.subscriptions.size ?? 0, 0)
  await bystander(t, broker)
})

/** Sends `packets` SUBSCRIBEs of `per` filters each as fast as the socket takes them; answers the SUBACK codes by value (the connection stays open). */
async function subscribeFlood(t: TestContext, url: string, packets: number, per: number): Promise<Map<number, number>> {
  const { hostname, port } = new URL(url)
  const socket = net.connect(Number(port), hostname)
  defer(t, () => socket.destroy())
  await once(socket, 'connect')
  const parser = mqttPacket.parser({ protocolVersion: 5 })
  const codes = new Map<number, number>()
  let subacks = 0
  let connack: () => void = () => {}
  const connected = new Promise<void>((resolve) => {
    connack = resolve
  })
  const done = new Promise<void>((resolve, reject) => {
    parser.on('packet', (p: Packet) => {
      if (p.cmd === 'connack') connack()
      if (p.cmd !== 'suback') return
      for (const g of p.granted as number[]) codes.set(g, (codes.get(g) ?? 0) + 1)
      if (++subacks === packets) resolve()
    })
    socket.on('close', () => reject(new Error(`closed after ${subacks} SUBACKs`)))
  })
  socket.on('data', (b: Buffer) => parser.parse(b))
  socket.write(
    mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId: 'flood', clean: true, keepalive: 60 }, { protocolVersion: 5 }),
  )
  await connected
  for (let p = 0; p < packets; p++) {
    const subscriptions = []
    for (let i = 0; i < per; i++) subscriptions.push({ topic: `flood/${p}/${i}`, qos: 0 as const })
    if (!socket.write(mqttPacket.generate({ cmd: 'subscribe', messageId: p + 1, subscriptions }, { protocolVersion: 5 }))) await once(socket, 'drain', 30000)
  }
  await done
  return codes
}

test("a flood of 1,000,000 SUBSCRIBE filters from one client: the default quota holds 10,000, refuses the rest with 0x97, and the broker's RSS stays bounded", async (t) => {
  const httpPort = await freePort()
  const proc = await brokerProcess(t, { port: 0, ws: false, sys: { enabled: false }, http: { port: httpPort } })
  const rss = async (): Promise<number> => {
    const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text()
    return Number(/^process_resident_memory_bytes (\d+)/m.exec(text)![1])
  }
  const before = await rss()
  const started = Date.now()
  const codes = await subscribeFlood(t, proc.url, 1000, 1000)
  const seconds = (Date.now() - started) / 1000
  const after = await rss()
  const metrics = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text()
  t.diagnostic(
    `RSS before ${(before / 1048576).toFixed(0)} MB, after ${(after / 1048576).toFixed(0)} MB (+${((after - before) / 1048576).toFixed(0)} MB) for 1,000,000 filters in ${seconds.toFixed(1)} s`,
  )
  assert.deepEqual([...codes.entries()].sort(), [
    [0, 10000],
    [0x97, 990000],
  ])
  assert.match(metrics, /^hookmq_quota_refused_total\{quota="subscriptions"\} 990000$/m)
  assert.match(metrics, /^hookmq_subscriptions 10000$/m)
  assert.ok(after - before < 150 * 1048576, `RSS grew by ${((after - before) / 1048576).toFixed(0)} MB`)
  await bystander(t, proc.url)
})

/** A v5 client publishing retained QoS 1 messages; answers the PUBACK reason code (0x10: stored, nobody subscribed). */
function retainCode(client: MqttClient, topic: string, payload: string): Promise<number> {
  return publishCode(client, topic, payload, { retain: true })
}

async function retainedTopics(broker: Broker, filter = '#'): Promise<string[]> {
  return (await broker.stores.retained.match(filter)).map((m) => `${m.topic}=${m.payload.toString()}`).sort()
}

const OK = 0x10 // accepted; no subscriber matched

test('retained messages broker-wide: beyond maxRetainedMessages PUBACK 0x97 and nothing stored or delivered; replacing a topic is free, clearing one frees it', async (t) => {
  const broker = await startBroker(t, { limits: { maxRetainedMessages: 3 }, sys: { enabled: false } })
  const a = await connect(t, broker, { protocolVersion: 5, clientId: 'ra' })
  const b = await connect(t, broker, { protocolVersion: 5, clientId: 'rb' })
  assert.equal(await retainCode(a, 'r/1', 'one'), OK)
  assert.equal(await retainCode(a, 'r/2', 'two'), OK)
  assert.equal(await retainCode(b, 'r/3', 'three'), OK)
  const watcher = await connect(t, broker, { protocolVersion: 5 })
  await watcher.subscribeAsync('r/4', { qos: 1 })
  assert.equal(await retainCode(b, 'r/4', 'four'), 0x97)
  assert.equal(await retainCode(a, 'r/1', 'one again'), OK) // replaces: no new topic
  assert.equal(await retainCode(b, 'r/2', 'two by b'), OK) // another client's topic: replaces too
  await pingRoundTrip(watcher)
  assert.equal(collect(watcher).messages.length, 0) // the refused message went nowhere
  assert.deepEqual(await retainedTopics(broker), ['r/1=one again', 'r/2=two by b', 'r/3=three'])
  assert.equal(await retainCode(a, 'r/1', ''), OK) // clears
  assert.equal(await retainCode(b, 'r/4', 'four'), 0)
  assert.equal((await collect(watcher).next()).payload.toString(), 'four')
  assert.deepEqual(await retainedTopics(broker), ['r/2=two by b', 'r/3=three', 'r/4=four'])
  assert.equal(broker.stats.quota.retained_messages, 1)
  await bystander(t, broker)
})

test('retained bytes broker-wide: a message that would take the total past maxRetainedBytes is refused with 0x97; a smaller replacement frees the difference', async (t) => {
  const broker = await startBroker(t, { limits: { maxRetainedBytes: 100 }, sys: { enabled: false } })
  const c = await connect(t, broker, { protocolVersion: 5, clientId: 'bytes' })
  assert.equal(await retainCode(c, 'b/1', 'x'.repeat(47)), OK) // 3 + 47 = 50 bytes
  assert.equal(await retainCode(c, 'b/2', 'x'.repeat(37)), OK) // 90
  assert.equal(await retainCode(c, 'b/3', 'x'.repeat(8)), 0x97) // 101
  assert.equal(await retainCode(c, 'b/1', 'x'.repeat(7)), OK) // 50 → 10: total 50
  assert.equal(await retainCode(c, 'b/3', 'x'.repeat(8)), OK) // 61
  assert.equal(await retainCode(c, 'b/2', 'x'.repeat(87)), 0x97) // 40 → 90 would make 111
  assert.equal(broker.pipeline.retainedQuota.bytes, 61)
  assert.equal(broker.stats.quota.retained_bytes, 2)
  assert.deepEqual(
    (await retainedTopics(broker)).map((s) => s.length),
    [3 + 1 + 7, 3 + 1 + 37, 3 + 1 + 8],
  )
})

test('retained messages per client: one client reaching maxRetainedMessagesPerClient / maxRetainedBytesPerClient is refused with 0x97 while others go on; its own replacements and clears free its quota', async (t) => {
  const broker = await startBroker(t, { limits: { maxRetainedMessagesPerClient: 2, maxRetainedBytesPerClient: 60 }, sys: { enabled: false } })
  const greedy = await connect(t, broker, { protocolVersion: 5, clientId: 'greedy' })
  const other = await connect(t, broker, { protocolVersion: 5, clientId: 'other' })
  assert.equal(await retainCode(greedy, 'g/1', 'a'), OK)
  assert.equal(await retainCode(greedy, 'g/2', 'b'), OK)
  assert.equal(await retainCode(greedy, 'g/3', 'c'), 0x97) // client_retained_messages
  assert.equal(await retainCode(other, 'o/1', 'fine'), OK)
  assert.equal(await retainCode(greedy, 'g/2', 'x'.repeat(60)), 0x97) // client_retained_bytes: 4 + 63 > 60
  assert.equal(await retainCode(greedy, 'g/2', 'x'.repeat(40)), OK) // 4 + 43
  assert.equal(await retainCode(greedy, 'g/1', ''), OK)
  assert.equal(await retainCode(greedy, 'g/3', 'c'), OK)
  assert.equal(await retainCode(other, 'g/3', 'taken over'), OK) // the topic is now other's: greedy has one left
  assert.deepEqual(broker.pipeline.retainedQuota.usageOf('greedy'), { count: 1, bytes: 43 })
  assert.equal(await retainCode(greedy, 'g/4', 'd'), OK)
  assert.deepEqual([broker.stats.quota.client_retained_messages, broker.stats.quota.client_retained_bytes], [1, 1])
  await bystander(t, broker)
})

test('over a retained quota, a publisher that cannot be told (MQTT 3.1.1 QoS 1, QoS 0) has its message delivered but not retained, and stays connected', async (t) => {
  const broker = await startBroker(t, { limits: { maxRetainedMessagesPerClient: 1 }, sys: { enabled: false } })
  const sub = await connect(t, broker)
  await sub.subscribeAsync('v3/#', { qos: 1 })
  const v3 = await connect(t, broker, { protocolVersion: 4, clientId: 'v3pub' })
  await v3.publishAsync('v3/1', 'kept', { qos: 1, retain: true })
  await v3.publishAsync('v3/2', 'not kept', { qos: 1, retain: true }) // PUBACK as usual: 3.1.1 has no refusal
  const v5 = await connect(t, broker, { protocolVersion: 5, clientId: 'v5pub' })
  await v5.publishAsync('v3/3', 'kept too', { qos: 0, retain: true })
  await v5.publishAsync('v3/4', 'qos 0, not kept', { qos: 0, retain: true })
  const got = (await collect(sub).count(4)).map((m) => m.payload.toString())
  assert.deepEqual(got, ['kept', 'not kept', 'kept too', 'qos 0, not kept'])
  assert.deepEqual(await retainedTopics(broker, 'v3/#'), ['v3/1=kept', 'v3/3=kept too'])
  assert.equal(broker.stats.quota.client_retained_messages, 2)
  assert.ok(v3.connected)
  await bystander(t, broker)
})

test("retained quotas with Redis: counted across nodes and across a restart (the store's usage is read at start-up); clearing frees", async (t) => {
  const redis = await startRedis(t)
  const base = {
    ws: false as const,
    sys: { enabled: false },
    redis: { url: redis.url, heartbeatMs: 100, nodeTimeoutMs: 500 },
    limits: { maxRetainedMessages: 3, maxRetainedMessagesPerClient: 2 },
  }
  const a = await startBroker(t, { ...base, id: 'qa' })
  const b = await startBroker(t, { ...base, id: 'qb' })
  const onA = await connect(t, a, { protocolVersion: 5, clientId: 'ca' })
  const onB = await connect(t, b, { protocolVersion: 5, clientId: 'cb' })
  assert.equal(await retainCode(onA, 'q/1', 'one'), OK)
  assert.equal(await retainCode(onA, 'q/2', 'two'), OK)
  assert.equal(await retainCode(onA, 'q/3', 'three'), 0x97) // ca's own quota
  await until(() => b.pipeline.retainedQuota.count === 2, 5000, "node b to count node a's retained messages")
  assert.equal(await retainCode(onB, 'q/3', 'three'), OK)
  await until(() => a.pipeline.retainedQuota.count === 3, 5000, "node a to count node b's")
  const late = await startBroker(t, { ...base, id: 'qc' })
  await until(() => late.pipeline.retainedQuota.count === 3, 5000, 'a node started later to read the usage')
  const onLate = await connect(t, late, { protocolVersion: 5, clientId: 'cc' })
  assert.equal(await retainCode(onLate, 'q/4', 'four'), 0x97) // broker-wide: 3
  assert.deepEqual(late.pipeline.retainedQuota.usageOf('ca'), { count: 2, bytes: 6 + 6 })
  assert.equal(await retainCode(onA, 'q/1', ''), OK)
  await until(() => late.pipeline.retainedQuota.count === 2, 5000, 'the clear to be counted on the late node')
  assert.equal(await retainCode(onLate, 'q/4', 'four'), OK)
  assert.deepEqual(await retainedTopics(late), ['q/2=two', 'q/3=three', 'q/4=four'])
  await bystander(t, late)
})

for (const policy of ['dropOldest', 'dropNewest'] as const) {
  test(`offline queue bytes: beyond maxQueuedBytes ${policy} decides which message goes; the stored queue matches and the drops are counted`, async (t) => {
    const broker = await startBroker(t, { limits: { maxQueuedBytes: 100, queueOverflow: policy } })
    const opts = { clientId: 'qbytes', clean: false }
    const c = await connect(t, broker, opts)
    await c.subscribeAsync('qb/t', { qos: 1 })
    const gone = once(broker, 'clientDisconnected')
    await c.endAsync()
    await gone
    for (let i = 0; i < 5; i++) await broker.publish({ topic: 'qb/t', payload: `${i}`.repeat(26), qos: 1 }) // 4 + 26 = 30 bytes each
    assert.equal(broker.stats.quota.queued_bytes, 2)
    const kept = policy === 'dropOldest' ? ['2', '3', '4'] : ['0', '1', '2']
    const stored = await broker.stores.sessions.load('qbytes')
    assert.deepEqual(
      stored!.queue.map((q) => q.message.payload.toString()[0]),
      kept,
    )
    await broker.publish({ topic: 'qb/t', payload: 'x'.repeat(200), qos: 1 }) // larger than the whole queue: never queued
    assert.equal(broker.stats.quota.queued_bytes, 3)
    const back = await connect(t, broker, opts)
    const got = (await collect(back).count(3)).map((m) => m.payload.toString()[0])
    assert.deepEqual(got, kept)
    await pingRoundTrip(back)
    assert.equal(collect(back).messages.length, 3)
    await bystander(t, broker)
  })
}

test('MQTT 3.1.1 persistent sessions expire: 2 hours by default (limits.persistentSessionExpiry), and a configured value ends them with their subscriptions', async (t) => {
  assert.equal(parseConfig({}).limits.persistentSessionExpiry, 7200)
  assert.equal(parseConfig({}).limits.maxSessionExpiryInterval, 0xffffffff)
  const broker = await startBroker(t, { limits: { persistentSessionExpiry: 1 } })
  for (let i = 0; i < 20; i++) {
    const raw = await RawClient.open(t, broker, 4)
    await raw.connect({ clientId: `keep-${i}`, clean: false }, 4)
    await suback(raw, 1, [`keep/${i}/a`, `keep/${i}/b`], 4)
    raw.send({ cmd: 'disconnect' })
    await raw.expectClosed()
  }
  assert.equal(broker.router.tree.size, 40)
  await until(() => broker.sessions.sessions.size === 0, 5000, 'the offline sessions to expire')
  assert.equal(broker.router.tree.size, 0)
  const back = await RawClient.open(t, broker, 4)
  assert.equal((await back.connect({ clientId: 'keep-0', clean: false }, 4)).sessionPresent, false)
  await bystander(t, broker)
})

test("/metrics: hookmq_quota_refused_total counts each quota's refusals (every quota listed, 0 when none)", async (t) => {
  const broker = await startBroker(t, { http: { port: 0 }, limits: { maxSubscriptionsPerClient: 1, maxRetainedMessages: 0 }, sys: { enabled: false } })
  const raw = await RawClient.open(t, broker, 5)
  await raw.connect({}, 5)
  assert.deepEqual(await suback(raw, 1, ['m/1', 'm/2', 'm/3'], 5), [0, 0x97, 0x97])
  const c = await connect(t, broker, { protocolVersion: 5 })
  assert.equal(await publishCode(c, 'plain'), OK)
  assert.equal(await retainCode(c, 'm/r', 'no room'), 0x97)
  const text = await (await fetch(broker.httpUrl() + '/metrics')).text()
  const value = (quota: string): number => Number(new RegExp(`^hookmq_quota_refused_total\\{quota="${quota}"\\} (\\d+)$`, 'm').exec(text)?.[1])
  assert.deepEqual(
    ['subscriptions', 'retained_messages', 'retained_bytes', 'client_retained_messages', 'client_retained_bytes', 'queued_messages', 'queued_bytes'].map(value),
    [2, 1, 0, 0, 0, 0, 0],
  )
  assert.match(text, /^# TYPE hookmq_quota_refused_total counter$/m)
  assert.match(text, /^hookmq_retained_bytes 0$/m)
})
