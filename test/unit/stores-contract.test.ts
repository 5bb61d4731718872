import assert from 'node:assert/strict'
import { describe, test, type TestContext } from 'node:test'
import { Redis } from 'ioredis'
import { MemoryRetainedStore, MemorySessionStore, newMessage, type RetainedStore, type SessionStore } from '../../core/index.js'
import { RedisRetainedStore } from '../../plugins/redis/retained.js'
import { RedisSessionStore } from '../../plugins/redis/stores.js'
import { defer, startRedis } from '../helpers.js'

// One contract, every backend: the memory stores and the Redis stores must
// answer the same way.

type Backend = { name: string; make(t: TestContext): Promise<{ sessions: SessionStore; retained: RetainedStore }> }

const backends: Backend[] = [
  { name: 'memory', make: async () => ({ sessions: new MemorySessionStore(), retained: new MemoryRetainedStore() }) },
  {
    name: 'redis',
    make: async (t) => {
      const server = await startRedis(t)
      const redis = new Redis(server.url)
      redis.on('error', () => {})
      defer(t, () => redis.quit())
      return { sessions: new RedisSessionStore(redis, 'c:'), retained: new RedisRetainedStore(redis, 'c:') }
    },
  },
]

const msg = (topic: string, payload: string, qos: 0 | 1 | 2 = 1) => newMessage(topic, Buffer.from(payload), qos, false, 'pub')

for (const b of backends) {
  describe(`store contract: ${b.name}`, () => {
    test('sessions: save, list, load with queue, in-flight and incoming; delete forgets all', async (t) => {
      const { sessions } = await b.make(t)
      assert.equal(await sessions.load('nobody'), undefined)
      await sessions.save({
        clientId: 'c1',
        expiryInterval: 60,
        subscriptions: [{ filter: 'a/#', qos: 1, nl: false, rap: false, rh: 0, id: 7 }],
        will: {
          topic: 'w',
          payload: Buffer.from('bye'),
          qos: 1,
          retain: false,
          delay: 5,
          properties: { contentType: 'text', correlationData: Buffer.from([0, 1, 2, 255]) },
        },
      })
      await sessions.enqueue('c1', { message: msg('a/1', 'one'), qos: 1, retain: false }, 10)
      await sessions.enqueue('c1', { message: msg('a/2', 'two'), qos: 1, retain: false, subscriptionIds: [7] }, 10)
      await sessions.putInflight('c1', { message: msg('a/0', 'zero', 2), qos: 2, retain: false, packetId: 3, state: 'publish' })
      await sessions.putInflight('c1', { message: msg('a/0', 'zero', 2), qos: 2, retain: false, packetId: 3, state: 'pubrel' })
      await sessions.addIncoming('c1', 9)
      assert.deepEqual(
        (await sessions.list()).map((s) => s.clientId),
        ['c1'],
      )
      const s = (await sessions.load('c1'))!
      assert.equal(s.expiryInterval, 60)
      assert.deepEqual(s.subscriptions, [{ filter: 'a/#', qos: 1, nl: false, rap: false, rh: 0, id: 7 }])
      assert.equal(s.will?.payload.toString(), 'bye')
      assert.deepEqual(s.will?.properties, { contentType: 'text', correlationData: Buffer.from([0, 1, 2, 255]) }) // (binary survives storage)
      assert.deepEqual(
        s.queue.map((q) => `${q.message.topic}=${q.message.payload}`),
        ['a/1=one', 'a/2=two'],
      )
      assert.deepEqual(s.queue[1]!.subscriptionIds, [7])
      assert.deepEqual(
        s.inflight.map((e) => `${e.packetId}:${e.state}:${e.message.payload}`),
        ['3:pubrel:zero'],
      )
      assert.deepEqual(s.incoming, [9])
      await sessions.dequeue('c1')
      await sessions.deleteInflight('c1', 3)
      await sessions.deleteIncoming('c1', 9)
      const after = (await sessions.load('c1'))!
      assert.deepEqual([after.queue.length, after.inflight.length, after.incoming.length], [1, 0, 0])
      await sessions.delete('c1')
      assert.equal(await sessions.load('c1'), undefined)
      assert.deepEqual(await sessions.list(), [])
    })

    test('sessions: updateSubscriptions adds, replaces and removes filters alone; a later save is the whole set again', async (t) => {
      const { sessions } = await b.make(t)
      const sub = (filter: string, qos: 0 | 1 | 2 = 1) => ({ filter, qos, nl: false, rap: false, rh: 0 as const })
      await sessions.save({ clientId: 'u1', expiryInterval: 60, subscriptions: [sub('a'), sub('b')] })
      assert.ok(sessions.updateSubscriptions, 'both stores write a change alone')
      await sessions.updateSubscriptions({ clientId: 'u1', expiryInterval: 60, set: [sub('c', 0), sub('a', 2)], removed: ['b'] })
      await sessions.updateSubscriptions({ clientId: 'u1', expiryInterval: 60, set: [], removed: ['not-there'] })
      const filters = (subs: Array<{ filter: string; qos: number }>) => subs.map((x) => `${x.filter}:${x.qos}`).sort()
      assert.deepEqual(filters((await sessions.load('u1'))!.subscriptions), ['a:2', 'c:0'])
      assert.deepEqual(filters((await sessions.list()).find((x) => x.clientId === 'u1')!.subscriptions), ['a:2', 'c:0'])
      await sessions.save({ clientId: 'u1', expiryInterval: 60, subscriptions: [sub('d')] })
      assert.deepEqual(filters((await sessions.load('u1'))!.subscriptions), ['d:1'])
      await sessions.delete('u1')
      assert.equal(await sessions.load('u1'), undefined)
    })

    test('sessions: the queue keeps the newest `max` entries', async (t) => {
      const { sessions } = await b.make(t)
      await sessions.save({ clientId: 'q', expiryInterval: 60, subscriptions: [] })
      for (let i = 0; i < 5; i++) await sessions.enqueue('q', { message: msg('t', String(i)), qos: 1, retain: false }, 3)
      assert.deepEqual(
        (await sessions.load('q'))!.queue.map((e) => e.message.payload.toString()),
        ['2', '3', '4'],
      )
    })

    test('sessions: the oldest queued entry moves to in flight under its packet id, then moves on to PUBREL', async (t) => {
      const { sessions } = await b.make(t)
      await sessions.save({ clientId: 'm', expiryInterval: 60, subscriptions: [] })
      await sessions.enqueue('m', { message: msg('q/1', 'first', 2), qos: 2, retain: false, subscriptionIds: [4] }, 10)
      await sessions.enqueue('m', { message: msg('q/2', 'second'), qos: 1, retain: true }, 10)
      await sessions.dequeueToInflight('m', { message: msg('q/1', 'first', 2), qos: 2, retain: false, subscriptionIds: [4], packetId: 5, state: 'publish' })
      let s = (await sessions.load('m'))!
      assert.deepEqual(
        s.queue.map((e) => e.message.payload.toString()),
        ['second'],
      )
      assert.equal(s.inflight.length, 1)
      assert.deepEqual(
        [s.inflight[0]!.packetId, s.inflight[0]!.state, s.inflight[0]!.qos, s.inflight[0]!.message.topic, s.inflight[0]!.subscriptionIds],
        [5, 'publish', 2, 'q/1', [4]],
      )
      await sessions.putInflight('m', { ...s.inflight[0]!, state: 'pubrel' })
      s = (await sessions.load('m'))!
      assert.deepEqual([s.inflight[0]!.packetId, s.inflight[0]!.state], [5, 'pubrel'])
    })

    test('sessions: the owner is kept (an identity, null for anonymous, absent for sessions stored before owners were recorded)', async (t) => {
      const { sessions } = await b.make(t)
      await sessions.save({ clientId: 'named', expiryInterval: 60, subscriptions: [], owner: 'alice' })
      await sessions.save({ clientId: 'anon', expiryInterval: 60, subscriptions: [], owner: null })
      await sessions.save({ clientId: 'legacy', expiryInterval: 60, subscriptions: [] })
      assert.deepEqual(
        [(await sessions.load('named'))!.owner, (await sessions.load('anon'))!.owner, (await sessions.load('legacy'))!.owner],
        ['alice', null, undefined],
      )
      const listed = new Map((await sessions.list()).map((s) => [s.clientId, s.owner]))
      assert.deepEqual([listed.get('named'), listed.get('anon'), listed.get('legacy')], ['alice', null, undefined])
    })

    test('sessions: replaceQueue leaves exactly the given entries, in order; in-flight untouched', async (t) => {
      const { sessions } = await b.make(t)
      await sessions.save({ clientId: 'r', expiryInterval: 60, subscriptions: [] })
      for (const p of ['a/1', 'b/1', 'a/2']) await sessions.enqueue('r', { message: msg(p, p), qos: 1, retain: false }, 10)
      await sessions.putInflight('r', { message: msg('b/0', 'b/0'), qos: 1, retain: false, packetId: 1, state: 'publish' })
      const kept = (await sessions.load('r'))!.queue.filter((e) => e.message.topic.startsWith('a/'))
      await sessions.replaceQueue('r', kept)
      let s = (await sessions.load('r'))!
      assert.deepEqual(
        s.queue.map((e) => e.message.payload.toString()),
        ['a/1', 'a/2'],
      )
      assert.deepEqual(
        s.inflight.map((e) => e.packetId),
        [1],
      )
      await sessions.replaceQueue('r', [])
      s = (await sessions.load('r'))!
      assert.deepEqual(s.queue, [])
    })

    test('retained: set, replace, clear; wildcard match without $ topics for leading wildcards; expiry; properties', async (t) => {
      const { retained } = await b.make(t)
      await retained.set(msg('a/b', 'x'))
      await retained.set(msg('a/b', 'y'))
      await retained.set(msg('a/c/d', 'z'))
      await retained.set(msg('$SYS/up', 's'))
      const withProps = newMessage('p/q', Buffer.from('p'), 1, true, undefined, {
        contentType: 'text/plain',
        correlationData: Buffer.from('cd'),
        userProperties: { k: 'v' },
      })
      await retained.set(withProps)
      const expired = newMessage('e', Buffer.from('gone'), 0, true, undefined)
      expired.expiresAt = Date.now() - 1
      await retained.set(expired)
      const topics = async (f: string): Promise<string[]> => (await retained.match(f)).map((m) => `${m.topic}=${m.payload}`).sort()
      assert.deepEqual(await topics('a/#'), ['a/b=y', 'a/c/d=z'])
      assert.deepEqual(await topics('+/b'), ['a/b=y'])
      assert.deepEqual(await topics('#'), ['a/b=y', 'a/c/d=z', 'p/q=p'])
      assert.deepEqual(await topics('$SYS/#'), ['$SYS/up=s'])
      assert.deepEqual(await topics('e'), [])
      const p = (await retained.match('p/q'))[0]!
      assert.equal(p.properties?.correlationData?.toString(), 'cd')
      assert.equal(p.properties?.contentType, 'text/plain')
      await retained.set(msg('a/b', ''))
      assert.deepEqual(await topics('a/#'), ['a/c/d=z'])
      assert.equal(await retained.count(), 3) // a/c/d, $SYS/up, p/q: the expired one was never kept
    })

    test('retained: payloads come back byte for byte (every byte value, either side of 1 KiB), with their expiry, origin and QoS, each match a copy of its own', async (t) => {
      const { retained } = await b.make(t)
      const every = Buffer.from(Array.from({ length: 256 }, (_, i) => i))
      const sizes = [1, 255, 256, 1023, 1024, 1025, 70000]
      const expiresAt = Date.now() + 60000
      for (const n of sizes) {
        const payload = Buffer.alloc(n)
        for (let i = 0; i < n; i += 256) every.copy(payload, i, 0, Math.min(256, n - i))
        const m = newMessage(`bin/${n}`, payload, 1, true, `client-${n}`)
        m.expiresAt = expiresAt
        await retained.set(m)
      }
      const got = new Map((await retained.match('bin/+')).map((m) => [m.topic, m]))
      for (const n of sizes) {
        const m = got.get(`bin/${n}`)!
        assert.equal(m.payload.length, n, `bin/${n}`)
        for (let i = 0; i < n; i++) if (m.payload[i] !== i % 256) assert.fail(`bin/${n}: byte ${i} is ${m.payload[i]}`)
        assert.equal(m.qos, 1)
        assert.equal(m.retain, true)
        assert.equal(m.origin, `client-${n}`)
        assert.ok(m.expiresAt !== undefined && Math.abs(m.expiresAt - expiresAt) <= 1000, `bin/${n}: expiresAt ${m.expiresAt}`)
      }
      // a subscriber's copy changed in place (a deliver hook may) leaves the store's alone
      got.get('bin/1')!.payload[0] = 0xff
      assert.equal((await retained.match('bin/1'))[0]!.payload[0], 0)
    })

    test('retained: wildcards at every depth, empty levels, parents and children, clearing prunes only what is empty', async (t) => {
      const { retained } = await b.make(t)
      for (const topic of ['a', 'a/b', 'a/b/c', 'a/x/c', 'b/x/c', '/lead', 'trail/', 'a//c', '$share-like/x']) await retained.set(msg(topic, topic))
      const topics = async (f: string): Promise<string[]> => (await retained.match(f)).map((m) => m.topic).sort()
      assert.deepEqual(await topics('a/#'), ['a', 'a//c', 'a/b', 'a/b/c', 'a/x/c'])
      assert.deepEqual(await topics('a/+/c'), ['a//c', 'a/b/c', 'a/x/c'])
      assert.deepEqual(await topics('+/+/c'), ['a//c', 'a/b/c', 'a/x/c', 'b/x/c'])
      assert.deepEqual(await topics('+'), ['a'])
      assert.deepEqual(await topics('+/lead'), ['/lead'])
      assert.deepEqual(await topics('trail/+'), ['trail/'])
      assert.deepEqual(
        await topics('#'),
        ['$share-like/x', '/lead', 'a', 'a//c', 'a/b', 'a/b/c', 'a/x/c', 'b/x/c', 'trail/'].filter((x) => !x.startsWith('$')).sort(),
      )
      assert.deepEqual(await topics('$share-like/+'), ['$share-like/x'])
      assert.deepEqual(await topics('a/b/c/#'), ['a/b/c'])
      assert.deepEqual(await topics('nothing/#'), [])
      await retained.set(msg('a/b', '')) // the parent goes, its child stays
      assert.deepEqual(await topics('a/b/#'), ['a/b/c'])
      await retained.set(msg('a/b/c', ''))
      assert.deepEqual(await topics('a/+'), [])
      assert.deepEqual(await topics('a/#'), ['a', 'a//c', 'a/x/c'])
      assert.equal(await retained.count(), 7)
      const soon = newMessage('short/lived', Buffer.from('s'), 0, true, undefined, { messageExpiryInterval: 1 })
      await retained.set(soon)
      assert.deepEqual(await topics('short/#'), ['short/lived'])
    })
  })
}

test('Redis retained store: one key per topic, expiring with the message; clearing leaves no index behind', async (t) => {
  const server = await startRedis(t)
  const redis = new Redis(server.url)
  redis.on('error', () => {})
  defer(t, () => redis.quit())
  const store = new RedisRetainedStore(redis, 'r:')
  await store.set(msg('x/y/z', 'one'))
  await store.set(newMessage('x/y/ttl', Buffer.from('t'), 0, true, undefined, { messageExpiryInterval: 60 }))
  assert.equal((await redis.get('r:retained:t:x/y/z')) !== null, true)
  const ttl = await redis.pttl('r:retained:t:x/y/ttl')
  assert.ok(ttl > 55000 && ttl <= 60000, `the key expires with the message (${ttl} ms)`)
  assert.equal(await redis.pttl('r:retained:t:x/y/z'), -1)
  await store.set(msg('x/y/z', ''))
  await store.set(msg('x/y/ttl', ''))
  assert.deepEqual((await redis.keys('r:*')).sort(), []) // index pruned to nothing
  assert.equal(await store.count(), 0)
})

test('Redis session store: subscriptions in a hash of their own, expiring with the session; records from before it still load theirs', async (t) => {
  const server = await startRedis(t)
  const redis = new Redis(server.url)
  redis.on('error', () => {})
  defer(t, () => redis.quit())
  const store = new RedisSessionStore(redis, 's:')
  const sub = (filter: string) => ({ filter, qos: 1 as const, nl: false, rap: false, rh: 0 as const })
  // a record written before subscriptions had a key of their own
  await redis.set('s:session:old', JSON.stringify({ clientId: 'old', expiryInterval: 60, subscriptions: [sub('x'), sub('y')], owner: null }))
  await redis.sadd('s:sessions', 'old')
  assert.deepEqual((await store.load('old'))!.subscriptions.map((x) => x.filter).sort(), ['x', 'y'])
  await store.updateSubscriptions({ clientId: 'old', expiryInterval: 60, set: [sub('z')], removed: [] })
  assert.deepEqual((await store.list())[0]!.subscriptions.map((x) => x.filter).sort(), ['x', 'y', 'z'])
  // a SUBSCRIBE writes its own filter, not the session again
  await store.save({ clientId: 'c', expiryInterval: 60, subscriptions: [sub('a')] })
  const meta = await redis.get('s:session:c')
  await store.updateSubscriptions({ clientId: 'c', expiryInterval: 60, set: [sub('b')], removed: [] })
  assert.equal(await redis.get('s:session:c'), meta)
  assert.deepEqual(Object.keys(await redis.hgetall('s:session:c:subs')).sort(), ['a', 'b'])
  assert.equal(await redis.pttl('s:session:c:subs'), -1) // connected: no expiry
  // offline with an expiry: a revocation leaves the hash expiring with the session's other keys
  await store.save({ clientId: 'c', expiryInterval: 60, disconnectedAt: Date.now(), subscriptions: [sub('a'), sub('b')] })
  await store.updateSubscriptions({ clientId: 'c', expiryInterval: 60, disconnectedAt: Date.now(), set: [], removed: ['a'] })
  const ttl = await redis.pttl('s:session:c:subs')
  assert.ok(ttl > 100_000 && ttl <= 120_000, `the hash expires with the session (+ a minute's grace): ${ttl} ms`)
  await store.delete('c')
  await store.delete('old')
  assert.deepEqual((await redis.keys('s:session:*')).sort(), [])
})
