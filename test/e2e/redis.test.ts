import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import mqtt from 'mqtt'
import { Redis } from 'ioredis'
import { brokerProcess, defer, freePort, startBroker, startRedis, startSink, until } from '../helpers.js'

const bin = fileURLToPath(new URL('../../../bin/hookmq.js', import.meta.url))

test('with Redis: killed with SIGKILL while messages wait for a dead sink, the restarted broker delivers every accepted message', async (t) => {
  const redis = await startRedis(t)
  const sinkPort = await freePort()
  const config = {
    port: 0,
    ws: false,
    sys: { enabled: false },
    id: 'node-a',
    hooksDir: './hooks',
    redis: { url: redis.url },
    webhooks: [
      {
        name: 'durable',
        url: `http://127.0.0.1:${sinkPort}/in`,
        topics: ['d/#'],
        batch: { maxSize: 50, maxWaitMs: 10 },
        retry: { maxAttempts: 50, minDelayMs: 20, maxDelayMs: 300 },
      },
    ],
  }
  const first = await brokerProcess(t, config)
  const pub = await mqtt.connectAsync(first.url, { reconnectPeriod: 0 })
  const acked: Promise<unknown>[] = []
  for (let i = 0; i < 1000; i++) acked.push(pub.publishAsync('d/x', String(i), { qos: 1 }))
  await Promise.all(acked) // every one acknowledged: each is in the Redis outbox
  await first.kill()
  pub.end(true)
  const sink = await startSink(t, sinkPort)
  await brokerProcess(t, config)
  await sink.waitForIds(1000, 30000)
  const payloads = new Set(sink.requests.flatMap((r) => r.body.deliveries.map((d) => Buffer.from(String(d.payload), 'base64').toString())))
  assert.equal(payloads.size, 1000)
  const deliveries = sink.requests.flatMap((r) => r.body.deliveries).length
  t.diagnostic(`deliveries ${deliveries} for 1000 messages (${deliveries - 1000} duplicates)`)
})

test('with Redis: delivered entries leave the stream; dead letters live in Redis and replay from there', async (t) => {
  const redis = await startRedis(t)
  const sink = await startSink(t)
  sink.respond = (req, res) =>
    res.writeHead(req.body.deliveries.some((d) => Buffer.from(String(d.payload), 'base64').toString() === 'poison') ? 422 : 204).end()
  const broker = await startBroker(t, {
    redis: { url: redis.url, keyPrefix: 'test:' },
    webhooks: [{ name: 'r', url: sink.url, topics: ['r/#'], batch: { maxSize: 1, maxWaitMs: 0 }, retry: { minDelayMs: 10, maxDelayMs: 50 } }],
  })
  const pub = await mqtt.connectAsync(broker.addresses[0]!.url, { reconnectPeriod: 0 })
  defer(t, () => pub.endAsync(true))
  for (const m of ['a', 'b', 'poison', 'c']) await pub.publishAsync('r/x', m, { qos: 1 })
  await sink.waitForIds(3)
  await until(async () => (await broker.webhooks.deadLetters('r')).length > 0, 5000, 'a dead letter')
  const client = new Redis(redis.url)
  client.on('error', () => {})
  defer(t, () => client.quit())
  assert.equal(await client.llen('test:webhook:r:dead'), 1)
  await until(async () => (await client.xlen('test:webhook:r')) === 0, 5000, 'the stream to empty')
  sink.respond = (_req, res) => res.writeHead(204).end()
  assert.equal(await broker.webhooks.replay('r'), 1)
  await sink.waitForIds(4)
  assert.equal(await client.llen('test:webhook:r:dead'), 0)
})

test('hookmq webhooks dead-letters lists the dead letters in Redis; --replay queues them again', async (t) => {
  const redis = await startRedis(t)
  const sink = await startSink(t)
  sink.respond = (_req, res) => res.writeHead(410).end()
  const webhooks = [{ name: 'gone', url: sink.url, topics: ['g/#'], batch: { maxSize: 2, maxWaitMs: 0 } }]
  const broker = await startBroker(t, { redis: { url: redis.url }, webhooks })
  const pub = await mqtt.connectAsync(broker.addresses[0]!.url, { reconnectPeriod: 0 })
  defer(t, () => pub.endAsync(true))
  await pub.publishAsync('g/1', 'one', { qos: 1 })
  await until(async () => (await broker.webhooks.deadLetters()).length > 0, 5000, 'a dead letter')
  const dir = mkdtempSync(join(tmpdir(), 'hookmq-cli-'))
  writeFileSync(join(dir, 'hookmq.config.json'), JSON.stringify({ redis: { url: redis.url }, webhooks }))
  const run = (args: string[]): Promise<{ code: number | null; stdout: string }> =>
    new Promise((resolve) => {
      const child = spawn(process.execPath, [bin, 'webhooks', 'dead-letters', ...args], { cwd: dir })
      let stdout = ''
      child.stdout.on('data', (b: Buffer) => {
        stdout += b.toString()
      })
      child.on('exit', (code) => resolve({ code, stdout }))
    })
  const listed = await run([])
  assert.equal(listed.code, 0)
  assert.match(listed.stdout, /^gone\t[0-9a-f-]{36}\t1 deliveries\t1 attempts\t.*\tHTTP 410$/m)
  sink.respond = (_req, res) => res.writeHead(204).end()
  const replayed = await run(['--replay'])
  assert.match(replayed.stdout, /queued 1 deliveries again/)
  await sink.waitForIds(1, 10000) // the running broker notices the replayed entry
})

test('with Redis: a persistent session and retained messages survive SIGKILL; 1,000 QoS 1 and 1,000 QoS 2 sent while it was away arrive, QoS 2 once', async (t) => {
  const redis = await startRedis(t)
  const config = { port: 0, ws: false, sys: { enabled: false }, id: 'node-p', redis: { url: redis.url }, limits: { maxQueuedMessages: 5000 } }
  const first = await brokerProcess(t, config)
  const sub = await mqtt.connectAsync(first.url, {
    clientId: 'keeper',
    clean: false,
    protocolVersion: 5,
    properties: { sessionExpiryInterval: 3600 },
    reconnectPeriod: 0,
  })
  await sub.subscribeAsync('p/#', { qos: 2 })
  await sub.endAsync()
  const pub = await mqtt.connectAsync(first.url, { reconnectPeriod: 0 })
  const acks: Promise<unknown>[] = []
  for (let i = 0; i < 1000; i++) acks.push(pub.publishAsync('p/one', `q1-${i}`, { qos: 1 }), pub.publishAsync('p/two', `q2-${i}`, { qos: 2 }))
  acks.push(pub.publishAsync('p/kept', 'retained', { qos: 1, retain: true }))
  await Promise.all(acks) // acknowledged: stored for the offline session
  await first.kill()
  pub.end(true)
  const second = await brokerProcess(t, config)
  const got: string[] = []
  const back = mqtt.connect(second.url, {
    clientId: 'keeper',
    clean: false,
    protocolVersion: 5,
    properties: { sessionExpiryInterval: 3600 },
    reconnectPeriod: 0,
  })
  defer(t, () => back.endAsync(true))
  back.on('message', (_topic, payload) => got.push(payload.toString()))
  await until(() => got.length >= 2001, 30000, `2001 messages (have ${got.length})`)
  const q1 = got.filter((m) => m.startsWith('q1-'))
  const q2 = got.filter((m) => m.startsWith('q2-'))
  assert.equal(new Set(q1).size, 1000) // at least once
  assert.equal(q2.length, 1000) // exactly once
  assert.equal(new Set(q2).size, 1000)
  const late = await mqtt.connectAsync(second.url, { reconnectPeriod: 0 })
  defer(t, () => late.endAsync(true))
  const retained = new Promise<string>((resolve) => late.on('message', (_t, p) => resolve(p.toString())))
  await late.subscribeAsync('p/kept')
  assert.equal(await retained, 'retained')
})

test('with Redis: a will delay and a session expiry running when the broker is killed still run after the restart', async (t) => {
  const redis = await startRedis(t)
  const config = { port: 0, ws: false, sys: { enabled: false }, id: 'node-w', redis: { url: redis.url } }
  const first = await brokerProcess(t, config)
  // connected when the broker dies: its will (delay 2 s) must still be published, once, about 2 s after
  await mqtt.connectAsync(first.url, {
    clientId: 'delayed',
    protocolVersion: 5,
    properties: { sessionExpiryInterval: 60 },
    reconnectPeriod: 0,
    will: { topic: 'w/delayed', payload: Buffer.from('late'), qos: 1, retain: false, properties: { willDelayInterval: 2 } },
  })
  // offline, expiring 2 s after it left: gone after the restart too
  const brief = await mqtt.connectAsync(first.url, {
    clientId: 'brief',
    clean: false,
    protocolVersion: 5,
    properties: { sessionExpiryInterval: 2 },
    reconnectPeriod: 0,
  })
  await brief.subscribeAsync('b/#', { qos: 1 })
  await brief.endAsync()
  await first.kill()
  const killedAt = Date.now()
  const second = await brokerProcess(t, config)
  const watcher = await mqtt.connectAsync(second.url, { reconnectPeriod: 0 })
  defer(t, () => watcher.endAsync(true))
  const wills: Array<{ payload: string; at: number }> = []
  watcher.on('message', (_t, p) => wills.push({ payload: p.toString(), at: Date.now() }))
  await watcher.subscribeAsync('w/#', { qos: 1 })
  await until(() => wills.length > 0, 10000, 'the delayed will')
  assert.equal(wills[0]!.payload, 'late')
  assert.ok(wills[0]!.at - killedAt >= 1500, `published after its delay (${wills[0]!.at - killedAt} ms after the kill)`)
  await new Promise((r) => setTimeout(r, Math.max(0, killedAt + 3000 - Date.now())))
  assert.equal(wills.length, 1)
  const back = mqtt.connect(second.url, { clientId: 'brief', clean: false, protocolVersion: 5, properties: { sessionExpiryInterval: 2 }, reconnectPeriod: 0 })
  defer(t, () => back.endAsync(true).catch(() => {}))
  const [ack] = await new Promise<[mqtt.IConnackPacket]>((resolve) => back.once('connect', (p) => resolve([p])))
  assert.equal(ack.sessionPresent, false) // it expired while the broker was down and restarting
})

test('with Redis: a persistent session subscribing and unsubscribing one filter at a time keeps exactly what is left across SIGKILL', async (t) => {
  const redis = await startRedis(t)
  const config = { port: 0, ws: false, sys: { enabled: false }, id: 'node-s', redis: { url: redis.url } }
  const first = await brokerProcess(t, config)
  const opts = { clientId: 'one-by-one', clean: false, protocolVersion: 5 as const, properties: { sessionExpiryInterval: 3600 }, reconnectPeriod: 0 }
  const sub = await mqtt.connectAsync(first.url, opts)
  for (const f of ['s/a', 's/b', 's/c']) await sub.subscribeAsync(f, { qos: 1 }) // (each SUBSCRIBE writes its own filter: plugins/redis/stores.ts)
  await sub.subscribeAsync('s/b', { qos: 0 }) // replaces s/b's
  await sub.unsubscribeAsync('s/a')
  await sub.endAsync()
  await first.kill()
  const second = await brokerProcess(t, config)
  const got: string[] = []
  const back = mqtt.connect(second.url, opts)
  defer(t, () => back.endAsync(true))
  back.on('message', (topic, _p, packet) => got.push(`${topic}:${packet.qos}`))
  await new Promise((resolve) => back.once('connect', resolve))
  const pub = await mqtt.connectAsync(second.url, { reconnectPeriod: 0 })
  defer(t, () => pub.endAsync(true))
  for (const topic of ['s/a', 's/b', 's/c']) await pub.publishAsync(topic, 'x', { qos: 1 })
  await until(() => got.length >= 2, 5000, `2 messages (have ${got.join()})`)
  await new Promise((r) => setTimeout(r, 200)) // (s/a would have come by now)
  assert.deepEqual(got.sort(), ['s/b:0', 's/c:1'])
})
