import assert from 'node:assert/strict'
import { describe, test, type TestContext } from 'node:test'
import { Redis } from 'ioredis'
import { newMessage, type Message } from '../../core/index.js'
import type { DeadBatch, Delivery } from '../../plugins/webhook/delivery.js'
import { MemoryOutbox, type Batch, type Outbox } from '../../plugins/webhook/outbox.js'
import { RedisOutbox } from '../../plugins/webhook/redis-outbox.js'
import { defer, silent, startRedis, until } from '../helpers.js'

// One contract, both outboxes: the in-memory outbox and the Redis one must
// answer the same way, except where a capability says otherwise (durable:
// what waits survives a restart and what a gone node took comes back; bounded:
// the oldest delivery goes when full).

const W = 'hook'
const OTHER = 'other'

/** opens an outbox on the backend's storage (in memory, each outbox has its own), bounding W to `limit` where the outbox bounds */
type Open = (node: string, limit?: number) => Outbox

interface Backend {
  name: string
  durable: boolean
  bounded: boolean
  make(t: TestContext, drops: Array<[string, number]>): Promise<Open>
}

const backends: Backend[] = [
  {
    name: 'memory',
    durable: false,
    bounded: true,
    make: async (_t, drops) => (node, limit) =>
      new MemoryOutbox(new Map(limit === undefined ? [] : [[W, { count: limit, bytes: Infinity }]]), (w, total) => drops.push([w, total]), node),
  },
  {
    name: 'redis',
    durable: true,
    bounded: false,
    make: async (t) => {
      const server = await startRedis(t)
      const redis = new Redis(server.url)
      redis.on('error', () => {})
      defer(t, () => redis.quit())
      return (node) => new RedisOutbox(redis, 'o:', node, silent)
    },
  },
]

const event = (id: string): Delivery => ({ id, event: 'clientConnected', timestamp: '2024-01-01T00:00:00.000Z', clientId: id })
const message = (payload: string): Message => newMessage('t/x', Buffer.from(payload), 1, false, 'pub')

/** the deliveries of a body taken with prefix '[' and suffix ']' */
const deliveries = (batch: Batch | undefined): Delivery[] => (batch === undefined ? [] : (JSON.parse(String(batch.body)) as Delivery[]))
/** the payloads of a batch's messages ('' for an event) */
const payloads = (batch: Batch | undefined): string[] =>
  deliveries(batch).map((d) => (d.payload === undefined ? '' : Buffer.from(d.payload, 'base64').toString()))
const take = (o: Outbox, max = 100): Promise<Batch | undefined> => o.take(W, max, '[', ']')

for (const b of backends) {
  describe(`outbox contract: ${b.name}`, () => {
    /** a started outbox, closed after the test */
    const started = async (t: TestContext, open: Open, node: string, limit?: number, onWaiting?: (w: string) => void): Promise<Outbox> => {
      const o = open(node, limit)
      if (onWaiting) o.onWaiting(onWaiting)
      await o.start([W, OTHER])
      defer(t, () => o.close())
      return o
    }

    test('push and take: oldest first, at most `max`, one body between prefix and suffix; nothing waiting takes undefined', async (t) => {
      const o = await started(t, await b.make(t, []), 'n')
      assert.equal(await take(o), undefined)
      await o.push(W, event('e1'))
      const added = o.inlet(W).pushMessage(newMessage('t/m', Buffer.from('m'), 1, true, 'pub'), 'c1', Date.UTC(2024, 0, 2))
      if (typeof added === 'number')
        assert.equal(added, 2) // added at once: answers how many wait
      else await added
      await o.push(W, event('e3'))
      await o.push(OTHER, event('o1'))
      assert.deepEqual([o.waiting(W), o.waiting(OTHER)], [3, 1])
      const first = (await take(o, 2))!
      assert.deepEqual([first.webhook, first.count], [W, 2])
      const [e1, m] = deliveries(first)
      assert.deepEqual(e1, event('e1'))
      assert.deepEqual(
        { ...m, id: 'x' },
        { id: 'x', event: 'published', timestamp: '2024-01-02T00:00:00.000Z', clientId: 'c1', topic: 't/m', qos: 1, retain: true, payload: 'bQ==' },
      )
      assert.equal(o.waiting(W), 1)
      const second = await take(o)
      assert.deepEqual(
        deliveries(second).map((d) => d.id),
        ['e3'],
      )
      assert.equal(await take(o), undefined)
      assert.equal(o.waiting(W), 0)
      await o.done(first)
      await o.done(second!)
      assert.deepEqual(
        deliveries(await o.take(OTHER, 100, '[', ']')).map((d) => d.id),
        ['o1'],
      )
    })

    test('done: a delivered batch is gone for good, also for the next start', async (t) => {
      const open = await b.make(t, [])
      const o = await started(t, open, 'n')
      for (const p of ['a', 'b']) await o.inlet(W).pushMessage(message(p), 'c', Date.now())
      await o.done((await take(o))!)
      await o.close()
      const again = await started(t, open, 'n')
      assert.equal(again.waiting(W), 0)
      assert.equal(await take(again), undefined)
    })

    test("dead: the batch goes to its webhook's dead letters; replay puts the same deliveries back in order and announces them", async (t) => {
      const announced: string[] = []
      const o = await started(t, await b.make(t, []), 'n', undefined, (w) => announced.push(w))
      for (const p of ['1', '2', '3']) await o.inlet(W).pushMessage(message(p), 'c', Date.now())
      const batch = (await take(o))!
      const dead: DeadBatch = { id: 'b1', webhook: W, deliveries: deliveries(batch), reason: 'HTTP 400', attempts: 1, at: new Date().toISOString() }
      await o.dead(dead, batch)
      assert.deepEqual(await o.deadLetters(W), [dead])
      assert.deepEqual(await o.deadLetters(), [dead])
      assert.deepEqual(await o.deadLetters(OTHER), [])
      assert.deepEqual([o.waiting(W), await take(o)], [0, undefined])
      assert.equal(await o.replay(OTHER), 0)
      assert.equal(await o.replay(W), 3)
      assert.ok(announced.includes(W), 'replay announced the deliveries')
      assert.deepEqual(await o.deadLetters(), [])
      assert.equal(o.waiting(W), 3)
      const again = (await take(o))!
      assert.deepEqual(deliveries(again), dead.deliveries) // same ids: receivers can deduplicate
      await o.done(again)
      assert.equal(await o.replay(), 0)
    })

    test(`waiting and dropped: ${b.bounded ? 'full, the oldest goes and is counted' : 'no count bound, nothing is dropped'}`, async (t) => {
      const drops: Array<[string, number]> = []
      const o = await started(t, await b.make(t, drops), 'n', 3)
      for (const p of ['0', '1', '2', '3', '4']) await o.inlet(W).pushMessage(message(p), 'c', Date.now())
      await o.push(W, event('e'))
      const kept = b.bounded ? ['3', '4', ''] : ['0', '1', '2', '3', '4', '']
      assert.equal(o.waiting(W), kept.length)
      assert.equal(o.dropped(W), b.bounded ? 3 : 0)
      assert.deepEqual(
        drops,
        b.bounded
          ? [
              [W, 1],
              [W, 2],
              [W, 3],
            ]
          : [],
      )
      assert.equal(o.dropped(OTHER), 0)
      const batch = (await take(o))!
      assert.deepEqual(payloads(batch), kept) // the event has no payload
      assert.equal(batch.count, kept.length)
      await o.done(batch)
    })

    test(`start and close: what waits at close is ${b.durable ? 'there again after a restart' : 'gone with the outbox'}`, async (t) => {
      const open = await b.make(t, [])
      const o = await started(t, open, 'n')
      for (const p of ['a', 'b']) await o.inlet(W).pushMessage(message(p), 'c', Date.now())
      await o.close()
      const again = await started(t, open, 'n')
      assert.equal(again.waiting(W), b.durable ? 2 : 0)
      assert.deepEqual(payloads(await take(again)), b.durable ? ['a', 'b'] : [])
    })

    test(`recovery: deliveries taken and never settled ${b.durable ? 'come back, to the same node after a restart and to another node announced through onWaiting' : 'are not recovered (nothing to recover from)'}`, async (t) => {
      const open = await b.make(t, [])
      const a = await started(t, open, 'a')
      for (const p of ['1', '2']) await a.inlet(W).pushMessage(message(p), 'c', Date.now())
      const ids = deliveries(await take(a)).map((d) => d.id)
      assert.equal(ids.length, 2)
      await a.close()
      const restarted = await started(t, open, 'a')
      assert.equal(restarted.waiting(W) > 0, b.durable)
      assert.deepEqual(
        deliveries(await take(restarted)).map((d) => d.id),
        b.durable ? ids : [],
      )
      await restarted.close() // taken again and still not settled: the next node claims them
      const announced: string[] = []
      const other = await started(t, open, 'b', undefined, (w) => announced.push(w))
      assert.deepEqual(announced, b.durable ? [W] : [])
      assert.equal(other.waiting(W) > 0, b.durable)
      const recovered = await take(other)
      assert.deepEqual(
        deliveries(recovered).map((d) => d.id),
        b.durable ? ids : [],
      )
      if (recovered) await other.done(recovered)
      assert.equal(await take(other), undefined)
    })

    if (b.durable)
      test("claiming a gone node's deliveries does not take this node's own batch in flight again", async (t) => {
        const open = await b.make(t, [])
        const announced: string[] = []
        const mine = await started(t, open, 'b', undefined, (w) => announced.push(w))
        await mine.inlet(W).pushMessage(message('mine'), 'c', Date.now())
        const sending = await take(mine) // in flight: neither done nor dead yet
        assert.deepEqual(payloads(sending), ['mine'])
        const gone = await started(t, open, 'a')
        await gone.inlet(W).pushMessage(message('orphan'), 'c', Date.now())
        assert.deepEqual(payloads(await take(gone)), ['orphan'])
        await gone.close() // never settled: b's upkeep claims it
        await until(() => announced.length > 0, 10000, 'the claim')
        assert.deepEqual(payloads(await take(mine)), ['orphan'])
        await mine.done(sending!)
        assert.equal(await take(mine), undefined)
      })

    test('a config reload: a webhook prepared after the start takes deliveries; a removed one drops what waits (a durable outbox keeps it for a node that comes back)', async (t) => {
      const open = await b.make(t, [])
      const o = open('n')
      await o.start([]) // none at start
      defer(t, () => o.close())
      const LATER = 'later'
      await o.prepare(LATER, 10)
      await o.push(LATER, event('l1'))
      await o.push(LATER, event('l2'))
      assert.equal(o.waiting(LATER), 2)
      const first = await o.take(LATER, 1, '[', ']')
      assert.deepEqual(
        deliveries(first).map((d) => d.id),
        ['l1'],
      )
      await o.done(first!)
      assert.equal(o.remove(LATER), b.durable ? 0 : 1)
      assert.equal(o.waiting(LATER), 0)
      await o.close()
      const again = open('n')
      await again.start([LATER])
      defer(t, () => again.close())
      assert.deepEqual(
        deliveries(await again.take(LATER, 10, '[', ']')).map((d) => d.id),
        b.durable ? ['l2'] : [],
      )
    })

    if (b.bounded)
      test("a config reload's lower bound drops the oldest beyond it at once, counted", async (t) => {
        const drops: Array<[string, number]> = []
        const o = await started(t, await b.make(t, drops), 'n', 5)
        for (const id of ['a', 'b', 'c', 'd']) await o.push(W, event(id))
        await o.prepare(W, 2)
        assert.deepEqual(drops, [[W, 2]])
        assert.deepEqual(
          deliveries(await take(o)).map((d) => d.id),
          ['c', 'd'],
        )
      })
  })
}

test("a published message's delivery: the in-memory outbox's bytes parse to exactly what the Redis outbox writes", async (t) => {
  const [memory, redis] = await Promise.all(
    backends.map(async (b) => {
      const o = (await b.make(t, []))('n')
      await o.start([W])
      defer(t, () => o.close())
      return o
    }),
  )
  const binary = Buffer.from([0, 1, 0x7f, 0x80, 0xfe, 0xff, 0x22, 0x5c, 0x0a])
  const cases: Array<[Message, string | null]> = [
    [newMessage('plain', Buffer.from('hello'), 0, false, 'p'), 'client-1'],
    [newMessage('bin/ü/温度', binary, 1, true, 'p'), null],
    [
      newMessage('props/"q"\\', Buffer.alloc(0), 2, false, 'p', {
        contentType: 'text/"plain"',
        correlationData: Buffer.from([0xff, 0, 1]),
        responseTopic: 'r/t',
        payloadFormatIndicator: true,
        messageExpiryInterval: 60,
        userProperties: { k: 'v\u0002', many: ['a', 'b'] },
      }),
      'cl"ient\n',
    ],
  ]
  const at = Date.UTC(2024, 4, 5, 6, 7, 8, 9)
  const written: Delivery[][] = []
  for (const o of [memory!, redis!]) {
    for (const [m, clientId] of cases) await o.inlet(W).pushMessage(m, clientId, at)
    const batch = (await take(o))!
    await o.done(batch)
    written.push(deliveries(batch))
  }
  const [fromBytes, fromRedis] = written.map((list) =>
    list.map(({ id, ...rest }) => {
      assert.match(id, /^n-/)
      return rest
    }),
  )
  assert.equal(fromBytes!.length, cases.length)
  assert.deepEqual(fromBytes, fromRedis)
  const [plain, bin, props] = fromRedis!
  assert.deepEqual(plain, {
    event: 'published',
    timestamp: '2024-05-05T06:07:08.009Z',
    clientId: 'client-1',
    topic: 'plain',
    qos: 0,
    retain: false,
    payload: 'aGVsbG8=',
  })
  assert.equal(bin!.clientId, null)
  assert.deepEqual(Buffer.from(String(bin!.payload), 'base64'), binary)
  assert.deepEqual(props!.properties, {
    contentType: 'text/"plain"',
    correlationData: Buffer.from([0xff, 0, 1]).toString('base64'),
    responseTopic: 'r/t',
    payloadFormatIndicator: true,
    messageExpiryInterval: 60,
    userProperties: { k: 'v\u0002', many: ['a', 'b'] },
  })
})

test('the in-memory outbox is bounded in bytes too (maxQueueBytes): the oldest deliveries go, counted; the newest always stays; what it holds is counted back to 0 as they leave', async () => {
  const drops: Array<[string, number]> = []
  const o = new MemoryOutbox(new Map([['big', { count: 1000, bytes: 100000 }]]), (w, total) => drops.push([w, total]), 'n')
  const inlet = o.inlet('big')
  const payload = Buffer.alloc(20000, 0x61)
  for (let i = 0; i < 10; i++) inlet.pushMessage(newMessage(`t/${i}`, payload, 1, false, 'c'), 'c', Date.now())
  assert.ok(o.waiting('big') >= 4 && o.waiting('big') <= 5, `${o.waiting('big')} kept of 10 deliveries of 20 KB under 100,000 bytes`)
  assert.equal(o.dropped('big'), 10 - o.waiting('big'))
  assert.equal(drops.at(-1)![1], o.dropped('big'))
  const batch = (await o.take('big', 100, '[', ']'))!
  const kept = (JSON.parse(batch.body.toString()) as Array<{ topic: string }>).map((d) => d.topic)
  assert.deepEqual(
    kept,
    Array.from({ length: kept.length }, (_, i) => `t/${10 - kept.length + i}`),
  ) // the newest
  const reported = drops.length
  inlet.pushMessage(newMessage('huge', Buffer.alloc(300000), 1, false, 'c'), 'c', Date.now())
  assert.equal(o.waiting('big'), 1) // larger than the bound alone: it stays, the only one
  assert.equal(drops.length, reported) // and nothing was dropped, so no drop is reported
  await o.prepare('big', 1000, 1000000)
  for (let i = 0; i < 3; i++) inlet.pushMessage(newMessage(`u/${i}`, payload, 1, false, 'c'), 'c', Date.now())
  assert.equal(o.waiting('big'), 4) // a raised bound, at once
})
