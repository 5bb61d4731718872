import assert from 'node:assert/strict'
import { test } from 'node:test'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { WARMUP_MESSAGES } from '../../core/warmup.js'
import net from 'node:net'
import { Broker, createLogger } from '../../core/index.js'
import { createBroker, defineHook } from '../../plugins/index.js'
import { collect, connect, hooksFolder, startBroker, startSink, until } from '../helpers.js'
import { captureLog } from '../log-capture.js'

// The start-up warm-up (core/warmup.ts) runs a throwaway twin broker of the same
// class and config keys: nothing of it reaches the real broker's hooks, hook
// files, webhooks, events, counters or stores.

test('with warmup on, the broker starts and serves, and its hooks, events, counters and retained store saw nothing of the warm-up', async (t) => {
  const calls: string[] = []
  const events: string[] = []
  const spy = defineHook({
    name: 'spy',
    authenticate: () => {
      calls.push('authenticate')
      return undefined
    },
    authorizePublish: ({ topic }) => {
      calls.push(`publish ${topic}`)
      return undefined
    },
    authorizeSubscribe: ({ filter }) => {
      calls.push(`subscribe ${filter}`)
      return undefined
    },
  })
  const t0 = performance.now()
  const log = captureLog()
  const broker = await startBroker(t, { warmup: true, hooks: [spy], logger: log.logger })
  const warmed = await log.find((r) => r.msg === 'publish path warmed up')
  assert.equal(warmed.messages, WARMUP_MESSAGES) // every phase went through the throwaway broker
  assert.ok(WARMUP_MESSAGES > 10000)
  const startMs = performance.now() - t0
  broker.on('clientConnected', (c) => events.push(c.id))
  assert.equal(calls.length, 0, calls.join())
  assert.deepEqual(broker.stats.received, [0, 0, 0])
  assert.deepEqual(broker.stats.sent, [0, 0, 0])
  assert.deepEqual(await broker.stores.retained.match('warmup/#'), []) // ($SYS topics are the broker's own)
  assert.equal(broker.sessions.sessions.size, 0)
  // and it serves
  const sub = await connect(t, broker, { clientId: 'real-sub' })
  const inbox = collect(sub)
  await sub.subscribeAsync('warmup/#')
  const pub = await connect(t, broker, { clientId: 'real-pub' })
  await pub.publishAsync('warmup/1', 'x', { qos: 1 })
  assert.equal((await inbox.next()).payload.toString(), 'x')
  assert.deepEqual(events.sort(), ['real-pub', 'real-sub'])
  assert.ok(calls.includes('subscribe warmup/#') && calls.includes('publish warmup/1'))
  assert.equal(calls.filter((c) => c === 'authenticate').length, 2)
  assert.ok(startMs < 5000, `start-up took ${startMs} ms`)
})

test("the warm-up twin runs none of the real broker's hook files and forwards nothing to its webhooks", async (t) => {
  const sink = await startSink(t)
  const dir = hooksFolder(t)
  writeFileSync(
    join(dir, 'acl.ts'),
    `import { defineHook } from 'hookmq'
export default defineHook({ name: 'acl', authorizePublish: () => undefined, authorizeSubscribe: () => undefined })
`,
  )
  const log = captureLog()
  const broker = await startBroker(t, {
    warmup: true,
    hooksDir: dir,
    webhooks: [{ name: 'all', url: sink.url, topics: ['#'], batch: { maxSize: 1, maxWaitMs: 1 } }],
    logger: log.logger,
  })
  const warmed = await log.find((r) => r.msg === 'publish path warmed up')
  assert.equal(warmed.messages, WARMUP_MESSAGES)
  const acl = () => broker.hookStatus().find((h) => h.name === 'acl')
  assert.equal(acl()?.state, 'loaded') // it was loaded while the twin ran
  assert.equal(acl()!.calls, 0)
  await new Promise((r) => setTimeout(r, 200))
  assert.equal(sink.all.length, 0)
  // the real broker's own traffic goes through both
  const c = await connect(t, broker, { clientId: 'real' })
  await c.publishAsync('real/t', 'x', { qos: 1 })
  await until(() => sink.requests.length === 1)
  assert.deepEqual(
    sink.requests[0]!.body.deliveries.map((d) => d.topic),
    ['real/t'],
  )
  assert.ok(acl()!.calls >= 1)
})

test("a broker whose policy would refuse the warm-up's clients (no anonymous clients, deny by default, tight limits) is warmed up in full, and its policy holds for real clients", async (t) => {
  const log = captureLog()
  const broker = await startBroker(t, {
    warmup: true,
    allowAnonymous: false,
    defaults: { authenticate: 'deny', publish: 'deny', subscribe: 'deny' },
    limits: { maxConnections: 3, maxTopicLevels: 2, flapping: { connects: 2, windowSeconds: 60, banSeconds: 60 } },
    bans: [{ address: '127.0.0.1' }],
    logger: log.logger,
  })
  const warmed = await log.find((r) => r.msg === 'publish path warmed up')
  assert.equal(warmed.messages, WARMUP_MESSAGES)
  assert.equal(log.records.filter((r) => /warm-up cut short/.test(String(r.msg))).length, 0)
  await assert.rejects(connect(t, broker, { clientId: 'anon', reconnectPeriod: 0 }))
})

test('close() while the warm-up runs: listen() then opens no listener', async () => {
  const broker = createBroker({ port: 0, ws: false, warmup: true, logger: createLogger('silent') })
  const listening = broker.listen()
  await new Promise((r) => setTimeout(r, 50))
  await broker.close()
  await listening
  assert.deepEqual(broker.addresses, [])
})

test('every twin the warm-up starts (one per pass: the first is closed between them) is closed, with its port, before listen() resolves', async (t) => {
  const twins: Broker[] = []
  class Watched extends Broker {
    protected override warmupTwin(): Broker {
      const twin = super.warmupTwin()
      twins.push(twin)
      return twin
    }
  }
  const broker = new Watched({ port: 0, ws: false, warmup: true, logger: createLogger('silent') })
  t.after(() => broker.close())
  const ports: number[] = []
  const listening = broker.listen()
  // each twin's port, read while it serves
  for (let i = 0; i < 2; i++) {
    await until(() => twins.length > i && twins[i]!.addresses.length > 0, 5000)
    ports.push(twins[i]!.addresses[0]!.port)
  }
  await listening
  assert.equal(twins.length, 2)
  assert.deepEqual(
    twins.map((b) => b.phase),
    ['closed', 'closed'],
  )
  for (const port of ports) {
    const refused = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1')
      s.once('connect', () => resolve(s.destroy() && false))
      s.once('error', () => resolve(true))
    })
    assert.ok(refused, `a twin's port ${port} still accepts`)
  }
})
