import assert from 'node:assert/strict'
import { mock, test } from 'node:test'
import { FakeFlowOwner } from './fakes.js'

// Flow control on its own: fake sockets counting pause() and resume().

test('hold and release are counted: reading resumes when the last hold is released', () => {
  const owner = new FakeFlowOwner()
  const flow = owner.flow()
  flow.hold()
  flow.hold()
  assert.equal(owner.paused, 1)
  flow.release()
  assert.equal(owner.resumed, 0)
  flow.release()
  assert.equal(owner.resumed, 1)
})

test('a congested subscriber holds each of its publishers once, until it caught up (drained and its queue empty)', () => {
  const sub = new FakeFlowOwner()
  const subscriber = sub.flow()
  const p1 = new FakeFlowOwner()
  const p2 = new FakeFlowOwner()
  const f1 = p1.flow()
  const f2 = p2.flow()
  subscriber.throttle(f1)
  subscriber.throttle(f1)
  subscriber.throttle(f2)
  assert.equal(f1.congestion, 1)
  assert.equal(p1.paused, 1)
  assert.equal(p2.paused, 1)
  sub.writableNeedDrain = true
  subscriber.caughtUp()
  sub.writableNeedDrain = false
  sub.queued = 3
  subscriber.caughtUp()
  assert.equal(p1.resumed, 0, 'released while the subscriber still had a full socket or a queue')
  sub.queued = 0
  subscriber.caughtUp()
  assert.equal(f1.congestion, 0)
  assert.equal(p1.resumed, 1)
  assert.equal(p2.resumed, 1)
  assert.equal(p1.unthrottledCalls, 1)
  subscriber.releaseAll() // nothing left to release
  assert.equal(p1.resumed, 1)
})

test('a subscriber that has not caught up within 1 s is slow: it lets its publishers go and holds nobody until it catches up', () => {
  mock.timers.enable({ apis: ['setTimeout'] })
  try {
    const sub = new FakeFlowOwner()
    const subscriber = sub.flow()
    const p = new FakeFlowOwner()
    const pf = p.flow()
    subscriber.throttle(pf)
    mock.timers.tick(999)
    assert.equal(p.resumed, 0)
    mock.timers.tick(1)
    assert.equal(p.resumed, 1)
    assert.equal(subscriber.slow, true)
    subscriber.throttle(pf)
    assert.equal(pf.congestion, 0)
    subscriber.caughtUp()
    assert.equal(subscriber.slow, false)
    subscriber.throttle(pf)
    assert.equal(pf.congestion, 1)
  } finally {
    mock.timers.reset()
  }
})
