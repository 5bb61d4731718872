import assert from 'node:assert/strict'
import { createHmac } from 'node:crypto'
import { test } from 'node:test'
import { collect, connect, freePort, startBroker, startSink, until } from '../helpers.js'
import { defineHook } from '../../plugins/index.js'

const quick = { minDelayMs: 20, maxDelayMs: 200 }

test('10,000 QoS 1 messages reach the sink once each, signed; other topics are not forwarded', async (t) => {
  const sink = await startSink(t)
  const broker = await startBroker(t, {
    webhooks: [{ name: 'ingest', url: sink.url, topics: ['sensors/#'], secret: 's3cret', batch: { maxSize: 200, maxWaitMs: 20 } }],
  })
  const pub = await connect(t, broker)
  const sent: Promise<unknown>[] = []
  for (let i = 0; i < 10000; i++) {
    sent.push(pub.publishAsync(`sensors/${i % 10}`, String(i), { qos: 1 }))
    if (i % 500 === 499) await Promise.all(sent.splice(0))
  }
  await pub.publishAsync('other/topic', 'no', { qos: 1 })
  await Promise.all(sent)
  await sink.waitForIds(10000)
  const deliveries = sink.requests.flatMap((r) => r.body.deliveries)
  assert.equal(deliveries.length, 10000) // no duplicates without faults
  assert.equal(new Set(deliveries.map((d) => d.id)).size, 10000)
  assert.ok(deliveries.every((d) => String(d.topic).startsWith('sensors/')))
  const payloads = new Set(deliveries.map((d) => Buffer.from(String(d.payload), 'base64').toString()))
  assert.equal(payloads.size, 10000)
  for (const r of sink.requests) {
    const expected = 'sha256=' + createHmac('sha256', 's3cret').update(r.raw).digest('hex')
    assert.equal(r.headers['x-hookmq-signature'], expected)
    assert.match(String(r.headers['user-agent']), /^hookmq\//)
    assert.match(String(r.headers['x-hookmq-delivery']), /^[0-9a-f-]{36}$/)
    assert.equal(r.body.webhook, 'ingest')
  }
  const d0 = deliveries[0]!
  assert.equal(d0.event, 'published')
  assert.equal(d0.qos, 1)
  assert.ok(typeof d0.timestamp === 'string' && typeof d0.clientId === 'string')
  await until(() => broker.webhooks.status()[0]!.delivered === 10000, 5000, 'the broker to count 10,000 delivered') // the last response may still be in flight
})

test('a failing sink (500, dropped connections, down) then recovering: every message arrives, with backoff and Retry-After', async (t) => {
  const port = await freePort()
  const broker = await startBroker(t, {
    webhooks: [
      { name: 'flaky', url: `http://127.0.0.1:${port}/in`, topics: ['f/#'], batch: { maxSize: 10, maxWaitMs: 10 }, retry: { maxAttempts: 30, ...quick } },
    ],
  })
  const pub = await connect(t, broker)
  for (let i = 0; i < 50; i++) await pub.publishAsync('f/x', String(i), { qos: 1 }) // sink is down: queued
  const sink = await startSink(t, port)
  let n = 0
  sink.respond = (_req, res) => {
    n++
    if (n <= 3) res.writeHead(500).end()
    else if (n <= 5) res.socket?.destroy()
    else if (n === 6) res.writeHead(429, { 'retry-after': '1' }).end()
    else res.writeHead(200).end('ok')
  }
  await sink.waitForIds(50, 30000)
  const ids = sink.requests.flatMap((r) => r.body.deliveries.map((d) => d.id))
  assert.equal(new Set(ids).size, 50)
  const duplicates = ids.length - new Set(ids).size
  t.diagnostic(`duplicates: ${duplicates}`)
  const tooMany = sink.all[5]!
  const retried = sink.all.find((r, i) => i > 5 && r.headers['x-hookmq-delivery'] === tooMany.headers['x-hookmq-delivery'])
  assert.ok(retried, 'the batch answered 429 was not retried')
  assert.ok(retried.at - tooMany.at >= 950, `Retry-After: 1 not honoured (${retried.at - tooMany.at} ms)`)
  assert.ok(broker.webhooks.status()[0]!.retried > 0)
})

test('a 400 answer sends the batch to the dead letters at once; replay delivers it', async (t) => {
  const sink = await startSink(t)
  sink.respond = (_req, res) => res.writeHead(400).end('bad')
  const broker = await startBroker(t, { webhooks: [{ name: 'strict', url: sink.url, topics: ['d/#'], batch: { maxSize: 5, maxWaitMs: 200 }, retry: quick }] })
  const pub = await connect(t, broker)
  await Promise.all(Array.from({ length: 5 }, (_, i) => pub.publishAsync('d/x', String(i), { qos: 1 })))
  const deadCount = async (): Promise<number> => (await broker.webhooks.deadLetters()).reduce((n, b) => n + b.deliveries.length, 0)
  await until(async () => (await deadCount()) === 5, 5000, 'all five in the dead letters')
  const dead = await broker.webhooks.deadLetters()
  assert.equal(sink.all.length, dead.length) // one attempt per batch: no retries for a 400
  assert.ok(dead.every((b) => b.reason === 'HTTP 400'))
  sink.respond = (_req, res) => res.writeHead(204).end()
  assert.equal(await broker.webhooks.replay('strict'), 5)
  await sink.waitForIds(5)
  assert.deepEqual(sink.ids().sort(), dead.flatMap((b) => b.deliveries.map((d) => d.id)).sort()) // same ids: receivers can deduplicate
  assert.equal((await broker.webhooks.deadLetters()).length, 0)
})

test('in memory, an overflowing outbox drops the oldest deliveries and counts them', async (t) => {
  const port = await freePort() // nothing listens: every attempt fails
  const broker = await startBroker(t, {
    webhooks: [
      {
        name: 'small',
        url: `http://127.0.0.1:${port}/`,
        topics: ['o/#'],
        maxQueue: 10,
        concurrency: 1,
        batch: { maxSize: 1, maxWaitMs: 0 },
        retry: { maxAttempts: 100, minDelayMs: 10000, maxDelayMs: 10000 },
      },
    ],
  })
  const pub = await connect(t, broker)
  for (let i = 0; i < 30; i++) await pub.publishAsync('o/x', String(i), { qos: 1 })
  const s = broker.webhooks.status()[0]!
  assert.equal(s.queued, 10)
  assert.equal(s.dropped, 19) // one batch is in flight, ten wait, the rest went
})

test('lifecycle events and ctx.forward from a hook go through the same outbox', async (t) => {
  const sink = await startSink(t)
  const broker = await startBroker(t, {
    webhooks: [{ name: 'ops', url: sink.url, events: ['clientConnected', 'clientDisconnected'], batch: { maxSize: 1, maxWaitMs: 0 } }],
    hooks: [
      defineHook({
        name: 'alarm',
        authorizePublish: ({ topic }, ctx) => {
          if (topic === 'alarm') void ctx.forward('ops', { alarm: true })
        },
      }),
    ],
  })
  const c = await connect(t, broker, { clientId: 'ev-client' })
  await c.publishAsync('alarm', 'x', { qos: 1 })
  await c.endAsync()
  await sink.waitForIds(3)
  const events = sink.requests.flatMap((r) => r.body.deliveries).map((d) => `${d.event}:${d.clientId ?? (d.body as { alarm?: boolean })?.alarm}`)
  assert.deepEqual(events.sort(), ['clientConnected:ev-client', 'clientDisconnected:ev-client', 'custom:true'])
})

test('concurrency 1: batches leave strictly in publish order', async (t) => {
  const sink = await startSink(t)
  const broker = await startBroker(t, { webhooks: [{ name: 'ordered', url: sink.url, topics: ['o/#'], concurrency: 1, batch: { maxSize: 7, maxWaitMs: 1 } }] })
  const pub = await connect(t, broker)
  for (let i = 0; i < 100; i++) await pub.publishAsync('o/x', String(i), { qos: 1 })
  await sink.waitForIds(100)
  const order = sink.requests.flatMap((r) => r.body.deliveries).map((d) => Number(Buffer.from(String(d.payload), 'base64').toString()))
  assert.deepEqual(order, [...Array(100).keys()])
})

test('a slow sink (2 s per request) does not slow MQTT publishing', async (t) => {
  const sink = await startSink(t)
  sink.respond = (_req, res) => {
    setTimeout(() => res.writeHead(204).end(), 2000).unref()
  }
  const broker = await startBroker(t, { webhooks: [{ name: 'slow', url: sink.url, topics: ['s/#'], timeoutMs: 10000, batch: { maxSize: 10, maxWaitMs: 5 } }] })
  const pub = await connect(t, broker)
  const sub = await connect(t, broker)
  await sub.subscribeAsync('s/#', { qos: 1 })
  const latencies: number[] = []
  for (let i = 0; i < 200; i++) {
    const t0 = performance.now()
    await pub.publishAsync('s/x', String(i), { qos: 1 })
    latencies.push(performance.now() - t0)
  }
  latencies.sort((a, b) => a - b)
  const p99 = latencies[197]!
  t.diagnostic(`publish p50 ${latencies[100]!.toFixed(2)} ms, p99 ${p99.toFixed(2)} ms with a 2 s sink`)
  assert.ok(p99 < 100, `publishing waited for the sink (p99 ${p99} ms)`)
  await collect(sub).count(200)
  assert.ok(broker.webhooks.status()[0]!.queued + broker.webhooks.status()[0]!.inFlight > 0)
})

test('a webhook whose topic filters overlap gets a message once, not once per matching filter', async (t) => {
  const sink = await startSink(t)
  const broker = await startBroker(t, { webhooks: [{ name: 'w', url: sink.url, topics: ['s/#', 's/+/t', 's/a/t'], batch: { maxSize: 10, maxWaitMs: 10 } }] })
  const pub = await connect(t, broker)
  await pub.publishAsync('s/a/t', 'three filters', { qos: 1 })
  await pub.publishAsync('s/b', 'one filter', { qos: 1 })
  await sink.waitForIds(2)
  const deliveries = sink.requests.flatMap((r) => r.body.deliveries)
  assert.deepEqual(deliveries.map((d) => d.topic).sort(), ['s/a/t', 's/b'])
})
