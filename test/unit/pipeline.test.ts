import assert from 'node:assert/strict'
import { test } from 'node:test'
import { ReasonCode } from '../../core/errors.js'
import { passThroughHooks, type HookRunner } from '../../core/hooks.js'
import { PublishPipeline } from '../../core/pipeline.js'
import { Session } from '../../core/session.js'
import { newMessage, type ClientInfo, type Message } from '../../core/types.js'
import { DurableMemoryStore, FakeFlowOwner, FakeOutlet, services, sessionContext } from './fakes.js'

// The publish pipeline on its own: fake services (in-memory stores), hook
// runners written here, sessions with fake connections.

const client: ClientInfo = { id: 'pub', remoteAddress: '127.0.0.1', protocolVersion: 5, listener: 'tcp' }
const msg = (topic: string, qos: 0 | 1 | 2 = 1, retain = false): Message => newMessage(topic, Buffer.from('x'), qos, retain, 'pub')

function hooks(over: Partial<HookRunner>): HookRunner {
  return { ...passThroughHooks, appliesToPublish: () => true, ...over }
}

test('$SYS is refused before any hook is asked', () => {
  let asked = 0
  const p = new PublishPipeline(
    services(
      {},
      hooks({
        authorizePublish: () => {
          asked++
          return { result: 'allow' }
        },
      }),
    ),
  )
  assert.equal(p.decide(client, msg('$SYS/broker/x')), ReasonCode.NotAuthorized)
  assert.equal(asked, 0)
})

test('no hook applies: the message itself, unasked; a pass falls to defaults.publish', () => {
  const m = msg('t')
  assert.equal(new PublishPipeline(services()).decide(client, m), m)
  const strict = new PublishPipeline(services({ defaults: { publish: 'deny' } }, hooks({})))
  assert.equal(strict.decide(client, msg('t')), ReasonCode.NotAuthorized)
})

test('a deny answers its reason code; a transform may change or drop the message; a failing async transform lets the original through', async () => {
  const denying = new PublishPipeline(services({}, hooks({ authorizePublish: () => ({ result: 'deny', reasonCode: ReasonCode.QuotaExceeded }) })))
  assert.equal(denying.decide(client, msg('t')), ReasonCode.QuotaExceeded)
  const changed = newMessage('t2', Buffer.from('y'), 1, false, 'pub')
  const changing = new PublishPipeline(services({}, hooks({ transform: () => changed })))
  assert.equal(changing.decide(client, msg('t')), changed)
  const dropping = new PublishPipeline(services({}, hooks({ transform: () => null })))
  assert.equal(dropping.decide(client, msg('t')), ReasonCode.Success)
  const original = msg('t')
  const failing = new PublishPipeline(services({}, hooks({ transform: () => Promise.reject(new Error('down')) })))
  assert.equal(await failing.decide(client, original), original)
  const slowDeny = new PublishPipeline(services({}, hooks({ authorizePublish: () => Promise.reject(new Error('down')) })))
  assert.equal(await slowDeny.decide(client, msg('t')), ReasonCode.NotAuthorized)
})

test("route: 0x10 with no subscriber, 0 with one; the publisher's flow reaches a subscriber that cannot take the message", () => {
  const core = services()
  const p = new PublishPipeline(core)
  assert.equal(p.route(msg('r'), client, null), ReasonCode.NoMatchingSubscribers)
  const s = new Session('sub', sessionContext())
  const out = new FakeOutlet('sub')
  out.sendWindow = 0
  s.attach(out, false)
  const sub = { filter: 'r', qos: 1 as const, nl: false, rap: false, rh: 0 as const }
  s.subscriptions.set('r', sub)
  core.router.add(s, sub)
  const from = new FakeFlowOwner().flow()
  assert.equal(p.route(msg('r'), client, from), ReasonCode.Success)
  assert.deepEqual(out.congestedBy, [from])
})

test("route waits for the retained store and a persistent subscriber's write before answering", async () => {
  const core = services()
  const p = new PublishPipeline(core)
  const store = new DurableMemoryStore()
  const s = new Session('sub', sessionContext({ store }))
  s.expiryInterval = 60
  s.attach(new FakeOutlet('sub'), false)
  const sub = { filter: 'k/#', qos: 1 as const, nl: false, rap: false, rh: 0 as const }
  s.subscriptions.set('k/#', sub)
  core.router.add(s, sub)
  const code = p.route(msg('k/1', 1, true), client, null)
  assert.ok(code instanceof Promise)
  assert.equal(await code, ReasonCode.Success)
  assert.equal(store.writes, 1)
  assert.equal((await core.stores.retained.match('k/#')).length, 1)
})

test('retained over its quota: an MQTT 5 publisher at QoS 1 is refused (0x97); at QoS 0 the message is delivered, not retained', async () => {
  const core = services({ limits: { maxRetainedMessages: 1 } })
  const p = new PublishPipeline(core)
  assert.equal(await p.route(msg('a', 1, true), client, null), ReasonCode.NoMatchingSubscribers)
  assert.equal(await p.route(msg('b', 1, true), client, null), ReasonCode.QuotaExceeded)
  const zero = msg('c', 0, true)
  await p.route(zero, client, null)
  assert.equal(zero.retain, false)
  assert.equal(await core.stores.retained.count(), 1)
})
