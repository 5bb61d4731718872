import assert from 'node:assert/strict'
import { test } from 'node:test'
import { Session } from '../../core/session.js'
import { newMessage, type QoS } from '../../core/types.js'
import { FakeFlowOwner, FakeOutlet, sessionContext } from './fakes.js'

// One session on its own: a fake connection (outlet), the in-memory store.

const msg = (topic: string, qos: QoS = 1, payload = topic) => newMessage(topic, Buffer.from(payload), qos, false, 'pub')

test("QoS 1 within the client's window goes at once with a packet id; beyond it waits, holding the publisher back; each PUBACK lets the next go", () => {
  const ctx = sessionContext()
  const s = new Session('c', ctx)
  const out = new FakeOutlet('c')
  out.sendWindow = 2
  s.attach(out, false)
  const from = new FakeFlowOwner().flow()
  for (const t of ['a', 'b', 'c', 'd']) s.deliver(msg(t), 1, false, undefined, from)
  assert.deepEqual(
    out.sent.map((x) => x.topic),
    ['a', 'b'],
  )
  assert.equal(s.queued, 2)
  assert.deepEqual(out.congestedBy, [from, from])
  assert.equal(s.complete(out.sent[0]!.packetId), true)
  assert.deepEqual(
    out.sent.map((x) => x.topic),
    ['a', 'b', 'c'],
  )
  assert.deepEqual(ctx.delivered, ['a'])
  s.complete(out.sent[1]!.packetId)
  assert.equal(s.queued, 0)
  assert.ok(out.caughtUpCalls > 0, 'the outlet was told the queue is empty')
  assert.equal(s.complete(9999), false) // an unknown id changes nothing
})

test('the window is bytes too: unacknowledged messages stop going out at maxInflightBytes (one goes even when larger), and each PUBACK frees its bytes', () => {
  const ctx = sessionContext({ maxInflightBytes: 25 })
  const s = new Session('c', ctx)
  const out = new FakeOutlet('c')
  s.attach(out, false)
  // messageSize: topic + payload bytes (+ properties): 't1' + 8 = 10 bytes each
  for (let i = 1; i <= 5; i++) s.deliver(msg(`t${i}`, 1, 'xxxxxxxx'), 1, false, undefined, null)
  assert.deepEqual(
    out.sent.map((x) => x.topic),
    ['t1', 't2', 't3'],
    '30 bytes in flight: the third went while 20 < 25, the fourth waits',
  )
  s.complete(out.sent[0]!.packetId)
  assert.deepEqual(
    out.sent.map((x) => x.topic),
    ['t1', 't2', 't3', 't4'],
  )
  const big = new Session('big', sessionContext({ maxInflightBytes: 4 }))
  const o2 = new FakeOutlet('big')
  big.attach(o2, false)
  big.deliver(msg('large', 1, 'x'.repeat(100)), 1, false, undefined, null)
  big.deliver(msg('next', 1), 1, false, undefined, null)
  assert.deepEqual(
    o2.sent.map((x) => x.topic),
    ['large'],
    'a message larger than the bound goes alone',
  )
  big.complete(o2.sent[0]!.packetId)
  assert.deepEqual(
    o2.sent.map((x) => x.topic),
    ['large', 'next'],
  )
})

test('offline: QoS 0 is not queued, QoS 1 and 2 are; on resume unacknowledged messages go again with DUP [MQTT-4.4.0-1], then the queue', () => {
  const s = new Session('c', sessionContext())
  s.expiryInterval = 60
  const first = new FakeOutlet('c')
  s.attach(first, false)
  s.deliver(msg('inflight'), 1, false, undefined, null)
  s.detach()
  s.deliver(msg('zero', 0), 0, false, undefined, null)
  s.deliver(msg('one'), 1, false, undefined, null)
  s.deliver(msg('two', 2), 2, false, undefined, null)
  assert.equal(s.queued, 2)
  const again = new FakeOutlet('c')
  s.attach(again, true)
  assert.deepEqual(
    again.sent.map((x) => `${x.topic}:${x.dup}`),
    ['inflight:true', 'one:false', 'two:false'],
  )
})

test("the queue's bound: dropOldest lets the newest in, dropNewest refuses it; both count the quota", () => {
  for (const dropNewest of [false, true]) {
    const ctx = sessionContext({ maxQueued: 2, dropNewest })
    const s = new Session('c', ctx)
    for (const t of ['1', '2', '3']) s.deliver(msg(t), 1, false, undefined, null)
    const out = new FakeOutlet('c')
    s.attach(out, false)
    assert.deepEqual(
      out.sent.map((x) => x.topic),
      dropNewest ? ['1', '2'] : ['2', '3'],
    )
    assert.deepEqual(ctx.dropped, ['queued_messages'])
  }
})

test('a message too large for the client is acted on as delivered [MQTT-3.1.2-25], not left in flight', () => {
  const s = new Session('c', sessionContext())
  const out = new FakeOutlet('c')
  out.fits = false
  s.attach(out, false)
  s.deliver(msg('big'), 1, false, undefined, null)
  assert.equal(s.inflight.size, 0)
})

test('discardUncovered drops what waited only for a subscription that is gone', () => {
  const s = new Session('c', sessionContext())
  s.subscriptions.set('keep/#', { filter: 'keep/#', qos: 1, nl: false, rap: false, rh: 0 })
  for (const t of ['keep/1', 'gone/1', 'keep/2']) s.deliver(msg(t), 1, false, undefined, null)
  s.discardUncovered()
  const out = new FakeOutlet('c')
  s.attach(out, false)
  assert.deepEqual(
    out.sent.map((x) => x.topic),
    ['keep/1', 'keep/2'],
  )
})

test('discardUncovered on a connected session keeps what is in flight (its acknowledgement frees the window) and sends on what it kept', () => {
  const s = new Session('c', sessionContext())
  const out = new FakeOutlet('c')
  out.sendWindow = 1
  s.attach(out, false)
  s.subscriptions.set('keep/#', { filter: 'keep/#', qos: 1, nl: false, rap: false, rh: 0 })
  for (const t of ['gone/1', 'gone/2', 'keep/1']) s.deliver(msg(t), 1, false, undefined, null)
  assert.deepEqual(
    out.sent.map((x) => x.topic),
    ['gone/1'],
  ) // the window is full
  s.discardUncovered()
  assert.equal(s.inflight.size, 1)
  assert.equal(s.complete(out.sent[0]!.packetId), true) // the client's PUBACK for it still counts
  assert.deepEqual(
    out.sent.map((x) => x.topic),
    ['gone/1', 'keep/1'],
  )
})

test('QoS 2 outgoing: PUBREC moves it to PUBREL; a failed PUBREC (>= 0x80) ends the exchange', () => {
  const s = new Session('c', sessionContext())
  const out = new FakeOutlet('c')
  s.attach(out, false)
  s.deliver(msg('q2', 2), 2, false, undefined, null)
  s.deliver(msg('q2b', 2), 2, false, undefined, null)
  const [a, b] = out.sent
  assert.equal(s.received(a!.packetId, false), true)
  assert.deepEqual(out.pubrels, [a!.packetId])
  assert.equal(s.received(b!.packetId, true), true)
  assert.equal(s.inflight.size, 1)
  assert.equal(s.complete(a!.packetId), true)
  assert.equal(s.inflight.size, 0)
})
