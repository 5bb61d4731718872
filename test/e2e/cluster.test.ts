import assert from 'node:assert/strict'
import { test } from 'node:test'
import mqtt from 'mqtt'
import { Redis } from 'ioredis'
import { brokerProcess, connect, defer, startRedis, until, urlOf } from '../helpers.js'
import { fast, nodes, raw, received } from '../support/cluster.js'

// Several nodes on one real redis-server behave as one broker (faults, expiry and late readers: cluster-recovery.test.ts).

test('three nodes: a message published on A reaches subscribers on A, B and C once each', async (t) => {
  const redis = await startRedis(t)
  const [a, b, c] = await nodes(t, redis.url, ['a', 'b', 'c'])
  const subs = await Promise.all([a!, b!, c!].map((n) => connect(t, n)))
  const got = subs.map(received)
  for (const s of subs) await s.subscribeAsync('fan/#', { qos: 1 })
  const pub = await connect(t, a!)
  const sent: Promise<unknown>[] = []
  for (let i = 0; i < 1000; i++) sent.push(pub.publishAsync(`fan/${i % 7}`, `m${i}`, { qos: i % 2 === 0 ? 1 : 0 }))
  await Promise.all(sent)
  await until(() => got.every((g) => g.length >= 1000), 10000, 'every subscriber to have 1000 messages')
  const pub2 = await connect(t, c!) // and from another node too
  await pub2.publishAsync('fan/x', 'from-c', { qos: 1 })
  await until(() => got.every((g) => g.includes('from-c')), 5000, 'the message from C everywhere')
  for (const g of got) {
    assert.equal(g.length, 1001) // once each: nothing twice
    assert.equal(new Set(g).size, 1001)
  }
})

test('a session moves from A to B with its queued messages; B serves it from then on', async (t) => {
  const redis = await startRedis(t)
  const [a, b, c] = await nodes(t, redis.url, ['a', 'b', 'c'])
  const opts = { clientId: 'mover', clean: false, protocolVersion: 5 as const, properties: { sessionExpiryInterval: 600 } }
  const first = await raw(t, urlOf(a!), opts)
  await first.subscribeAsync('q/#', { qos: 1 })
  await first.endAsync()
  const pub = await connect(t, c!)
  for (let i = 0; i < 100; i++) await pub.publishAsync('q/x', `queued-${i}`, { qos: 1 }) // acknowledged: queued on A for the offline session
  const again = mqtt.connect(urlOf(b!), { ...opts, reconnectPeriod: 0 })
  defer(t, () => again.endAsync(true).catch(() => {}))
  const got = received(again)
  const [connack] = await new Promise<[mqtt.IConnackPacket]>((resolve) => again.once('connect', (p) => resolve([p])))
  assert.equal(connack.sessionPresent, true)
  await until(() => got.length >= 100, 10000, `100 queued messages (have ${got.length})`)
  await pub.publishAsync('q/x', 'after-move', { qos: 1 })
  await until(() => got.includes('after-move'), 5000, 'a message published after the move')
  assert.equal(got.length, 101)
  assert.deepEqual(
    got.slice(0, 100),
    Array.from({ length: 100 }, (_, i) => `queued-${i}`),
  )
  assert.equal(a!.sessions.sessions.has('mover'), false) // A let it go
  assert.equal(b!.sessions.sessions.has('mover'), true)
})

test('takeover across nodes: the connection on A is closed with 0x8E when the client id connects to B', async (t) => {
  const redis = await startRedis(t)
  const [a, b] = await nodes(t, redis.url, ['a', 'b'])
  const old = await raw(t, urlOf(a!), { clientId: 'twin', protocolVersion: 5 })
  const kicked = new Promise<number | undefined>((resolve) => old.once('disconnect', (p) => resolve(p.reasonCode)))
  const fresh = await raw(t, urlOf(b!), { clientId: 'twin', protocolVersion: 5 })
  assert.equal(await kicked, 0x8e)
  await fresh.subscribeAsync('tw/1', { qos: 1 })
  const got = received(fresh)
  await (await connect(t, a!)).publishAsync('tw/1', 'still here', { qos: 1 })
  await until(() => got.length === 1, 5000, 'a message on the new connection')
  assert.equal(a!.connectionCount, 1) // only the publisher
})

test('a shared group with members on three nodes gets each message once, cluster-wide', async (t) => {
  const redis = await startRedis(t)
  const [a, b, c] = await nodes(t, redis.url, ['a', 'b', 'c'])
  const members = [await connect(t, a!), await connect(t, a!), await connect(t, b!), await connect(t, c!)]
  const got = members.map(received)
  for (const m of members) await m.subscribeAsync('$share/workers/job/#', { qos: 1 })
  await until(() => [a!, b!, c!].every((n) => n.router.remote!.size === 2), 5000, "every node to know the other nodes' members")
  const pubA = await connect(t, a!)
  const pubB = await connect(t, b!)
  const sent: Promise<unknown>[] = []
  for (let i = 0; i < 300; i++) sent.push((i % 2 === 0 ? pubA : pubB).publishAsync(`job/${i}`, `j${i}`, { qos: 1 }))
  await Promise.all(sent)
  await until(() => got.flat().length >= 300, 10000, 'all 300 jobs')
  await new Promise((r) => setTimeout(r, 200)) // a duplicate would arrive now
  const all = got.flat()
  assert.equal(all.length, 300)
  assert.equal(new Set(all).size, 300)
  assert.ok(
    got.every((g) => g.length > 0),
    `every member gets a share: ${got.map((g) => g.length).join(', ')}`,
  )
})

test("node A killed with SIGKILL: another node publishes its clients' wills and serves its sessions, with what was published meanwhile", async (t) => {
  const redis = await startRedis(t)
  const procA = await brokerProcess(t, { port: 0, ws: false, sys: { enabled: false }, id: 'a', hooksDir: './hooks', redis: { url: redis.url, ...fast } })
  const [b, c] = await nodes(t, redis.url, ['b', 'c'])
  const watcher = await connect(t, b!)
  const wills = received(watcher)
  await watcher.subscribeAsync('wills/#', { qos: 1 })
  await raw(t, procA.url, { clientId: 'w1', will: { topic: 'wills/w1', payload: Buffer.from('w1 is gone'), qos: 1, retain: false } })
  const sessionOpts = { clientId: 'p1', clean: false, protocolVersion: 5 as const, properties: { sessionExpiryInterval: 600 } }
  const p1 = await raw(t, procA.url, sessionOpts)
  await p1.subscribeAsync('p/#', { qos: 1 })
  await p1.endAsync()
  const pub = await connect(t, c!)
  await pub.publishAsync('p/x', 'before', { qos: 1 })
  // A has stored 'before' for p1 and saved its cursor past it: killed in between, it would get it twice (at least once, as documented)
  const client = new Redis(redis.url)
  defer(t, () => client.quit())
  await until(
    async () => {
      const [last] = await client.xrevrange('hookmq:bus:c', '+', '-', 'COUNT', 1)
      return last !== undefined && (await client.hget('hookmq:node:a:cursors', 'c')) === last[0]
    },
    10000,
    'A to have handled and saved what C published',
  )
  await procA.kill()
  await pub.publishAsync('p/x', 'while-dead', { qos: 1 }) // A's sessions are nobody's yet: replayed to them from A's cursor
  await until(() => wills.length > 0, 10000, 'the will of w1')
  await until(() => b!.sessions.sessions.has('p1') || c!.sessions.sessions.has('p1'), 5000, 'p1 adopted')
  await pub.publishAsync('p/x', 'after', { qos: 1 })
  const back = mqtt.connect(urlOf(b!), { ...sessionOpts, reconnectPeriod: 0 })
  defer(t, () => back.endAsync(true).catch(() => {}))
  const got = received(back)
  await until(() => got.length >= 3, 10000, `3 messages for p1 (have ${got.join(',')})`)
  assert.deepEqual(got, ['before', 'while-dead', 'after'])
  await new Promise((r) => setTimeout(r, 300))
  assert.deepEqual(wills, ['w1 is gone']) // once, by one node
})

// What goes on a node's stream: only what another node can use (plugins/redis/interest.ts)

async function streamLength(url: string, node: string): Promise<number> {
  const r = new Redis(url)
  try {
    return await r.xlen(`hookmq:bus:${node}`)
  } finally {
    r.disconnect()
  }
}

test('node-local traffic stays off the stream; a filter subscribed on another node is acknowledged once this node knows of it, and matching messages go out from the next publish', async (t) => {
  const redis = await startRedis(t)
  const [a, b] = await nodes(t, redis.url, ['a', 'b'])
  const local = await connect(t, a!)
  const localGot = received(local)
  await local.subscribeAsync('loc/#', { qos: 1 })
  const pub = await connect(t, a!)
  const before = await streamLength(redis.url, 'a')
  for (let i = 0; i < 200; i++) await pub.publishAsync('loc/x', `l${i}`, { qos: i % 2 === 0 ? 1 : 0 })
  await until(() => localGot.length === 200, 5000, 'the local subscriber to have 200')
  assert.equal(await streamLength(redis.url, 'a'), before, 'no message with no use elsewhere went on the stream')
  // a subscriber appears on B: from its SUBACK on, A sends what matches, with nothing lost in between
  const remote = await connect(t, b!)
  const remoteGot = received(remote)
  await remote.subscribeAsync('loc/+', { qos: 1 })
  await pub.publishAsync('loc/x', 'first-after-suback', { qos: 1 })
  await until(() => remoteGot.includes('first-after-suback'), 5000, 'the first message after the SUBACK on B')
  const mid = await streamLength(redis.url, 'a')
  await pub.publishAsync('other/x', 'nobody-elsewhere', { qos: 1 })
  await pub.publishAsync('other/r', 'retained', { qos: 1, retain: true })
  assert.equal(await streamLength(redis.url, 'a'), mid + 1, 'a retained message goes on (the others count the retained store); one nobody else wants does not')
  assert.deepEqual(remoteGot, ['first-after-suback'])
})

test('a node that keeps no subscription set (an older version in a rolling upgrade) is sent every message', async (t) => {
  const redis = await startRedis(t)
  const [a, b] = await nodes(t, redis.url, ['a', 'b'])
  const pub = await connect(t, a!)
  await pub.publishAsync('old/x', 'skipped', { qos: 1 })
  const before = await streamLength(redis.url, 'a')
  // B as an older node would look: no set kept, and it says to read it anew
  const r = new Redis(redis.url)
  defer(t, () => r.disconnect())
  await r.del('hookmq:node:b:announces')
  await r.xadd('hookmq:bus:b', '*', 'k', 'I', 'd', '')
  const s = await connect(t, b!) // (a barrier: A has read B's entry once B's own traffic shows up)
  await s.subscribeAsync('bar/#')
  await until(
    async () => {
      await pub.publishAsync('old/x', 'sent', { qos: 1 })
      return (await streamLength(redis.url, 'a')) > before
    },
    5000,
    'A to send B everything',
  )
})
