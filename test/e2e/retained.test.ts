import assert from 'node:assert/strict'
import { test } from 'node:test'
import { collect, connect, pingRoundTrip, startBroker } from '../helpers.js'

// Retained messages on subscribe come out a slice at a time, only as fast as
// the subscriber takes them (core/retained-feed.ts): all of them, however many,
// none dropped at the session queue's bound, and other clients are served meanwhile.

const N = 20000

async function brokerWithRetained(t: Parameters<typeof startBroker>[0], limits: object): ReturnType<typeof startBroker> {
  const broker = await startBroker(t, { limits: { maxQueuedMessages: 50, ...limits } })
  for (let i = 0; i < N; i++) await broker.publish({ topic: `r/${i % 100}/${i}`, payload: `m${i}`, qos: 1, retain: true })
  return broker
}

for (const qos of [0, 1] as const) {
  test(`a '#' subscriber at QoS ${qos} gets all ${N} retained messages, though its session queue holds 50 and its window is 10; a bystander is answered while they stream`, async (t) => {
    const broker = await brokerWithRetained(t, { maxClientBufferBytes: 65536 })
    const bystander = await connect(t, broker, { clientId: 'bystander' })
    const sub = await connect(t, broker, { clientId: 'all', protocolVersion: 5, properties: { receiveMaximum: 10 } })
    const inbox = collect(sub)
    await sub.subscribeAsync('#', { qos })
    // the bystander is served between slices: its ping comes back before the last retained message has gone out
    await pingRoundTrip(bystander)
    const seenAtPing = inbox.messages.length
    const all = await inbox.count(N, 60000)
    assert.ok(seenAtPing < N, `the bystander's ping was answered only after all ${N} retained messages (${seenAtPing})`)
    const topics = new Set(all.map((m) => m.topic))
    assert.equal(topics.size, N, 'each retained message once')
    assert.ok(all.every((m) => m.packet.retain === true))
    assert.equal(broker.stats.dropped, 0)
    // and live traffic still reaches it afterwards
    const pub = await connect(t, broker)
    await pub.publishAsync('r/live', 'now', { qos: 1 })
    assert.equal((await inbox.next()).topic, 'r/live')
  })
}

test('retained messages of a subscription that is removed while they stream stop coming; a closed subscriber costs nothing further', async (t) => {
  const broker = await brokerWithRetained(t, {})
  const sub = await connect(t, broker, { clientId: 'quitter', protocolVersion: 5, properties: { receiveMaximum: 5 } })
  const inbox = collect(sub)
  await sub.subscribeAsync('r/#', { qos: 1 })
  await inbox.count(100)
  await sub.unsubscribeAsync('r/#')
  const after = inbox.messages.length
  await pingRoundTrip(sub)
  await new Promise((r) => setTimeout(r, 200))
  // those already in flight or written may still arrive; nothing like the rest
  assert.ok(inbox.messages.length < after + 600, `${inbox.messages.length - after} arrived after the unsubscribe`)
  assert.ok(inbox.messages.length < N)
})

test('a filter matching part of the tree gets exactly its retained messages, in pages, with + and # and $ topics kept apart', async (t) => {
  const broker = await startBroker(t)
  const topics = ['a', 'a/b', 'a/b/c', 'a/x/c', 'b/b/c', '$SYS-like/a', 'a/b/c/d']
  for (const topic of topics) await broker.publish({ topic, payload: topic, retain: true })
  for (let i = 0; i < 1200; i++) await broker.publish({ topic: `p/${i}`, payload: 'x', retain: true })
  const expect: Record<string, string[]> = {
    '#': ['a', 'a/b', 'a/b/c', 'a/b/c/d', 'a/x/c', 'b/b/c'],
    'a/#': ['a', 'a/b', 'a/b/c', 'a/b/c/d', 'a/x/c'],
    '+/b/c': ['a/b/c', 'b/b/c'],
    'a/+/c': ['a/b/c', 'a/x/c'],
    '+': ['a'],
    'a/b': ['a/b'],
    '$SYS-like/#': ['$SYS-like/a'],
  }
  for (const [filter, want] of Object.entries(expect)) {
    const got: string[] = []
    for (let it = broker.stores.retained.pages(filter), r = await it.next(); r.done !== true; r = await it.next()) got.push(...r.value.map((m) => m.topic))
    const mine = got.filter((x) => !x.startsWith('p/')).sort()
    assert.deepEqual(mine, want, filter)
    if (filter === '#') assert.equal(got.length - mine.length, 1200)
  }
})
