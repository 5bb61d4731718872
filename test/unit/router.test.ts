import assert from 'node:assert/strict'
import { test } from 'node:test'
import { TopicTree } from '../../core/topic-tree.js'
import { Router } from '../../core/router.js'
import { Session } from '../../core/session.js'
import { newMessage, type QoS, type Subscription } from '../../core/types.js'
import { DurableMemoryStore, FakeFlowOwner, FakeOutlet, sessionContext } from './fakes.js'

// The router on its own: real Sessions, fake connections (outlets).

function sub(filter: string, qos: QoS, more: Partial<Subscription> = {}): Subscription {
  return { filter, qos, nl: false, rap: false, rh: 0, ...more }
}

function connected(id: string, persistent = false): { session: Session; outlet: FakeOutlet } {
  const session = new Session(id, sessionContext(persistent ? { store: new DurableMemoryStore() } : {}))
  if (persistent) session.expiryInterval = 60
  const outlet = new FakeOutlet(id)
  session.attach(outlet, false)
  return { session, outlet }
}

function subscribe(router: Router, session: Session, s: Subscription): void {
  session.subscriptions.set(s.filter, s)
  router.add(session, s)
}

test('one matching subscription: delivered once at the lower QoS; the count is answered as a number when nothing is stored', () => {
  const router = new Router()
  const a = connected('a')
  subscribe(router, a.session, sub('t/+', 1))
  assert.equal(router.route(newMessage('t/1', Buffer.from('x'), 2, false, 'p'), null), 1)
  assert.equal(router.route(newMessage('t/2', Buffer.from('y'), 0, false, 'p'), null), 1)
  assert.equal(router.route(newMessage('u/1', Buffer.from('z'), 1, false, 'p'), null), 0)
  assert.deepEqual(
    a.outlet.sent.map((s) => `${s.topic}:${s.qos}`),
    ['t/1:1', 't/2:0'],
  )
})

test('[MQTT-3.3.4-2] [MQTT-3.3.4-3] overlapping subscriptions of one client: one copy, the highest QoS, every subscription identifier, retained as published if one asks', () => {
  const router = new Router()
  const a = connected('a')
  const b = connected('b')
  subscribe(router, a.session, sub('s/#', 0, { id: 1 }))
  subscribe(router, a.session, sub('s/+', 2, { id: 2, rap: true }))
  subscribe(router, a.session, sub('s/x', 1))
  subscribe(router, b.session, sub('s/x', 1, { id: 7 }))
  assert.equal(router.route(newMessage('s/x', Buffer.from('m'), 2, true, 'p'), null), 2)
  assert.equal(a.outlet.sent.length, 1)
  assert.deepEqual(
    a.outlet.sent.map((s) => ({ qos: s.qos, retain: s.retain, ids: s.ids?.sort() })),
    [{ qos: 2, retain: true, ids: [1, 2] }],
  )
  assert.deepEqual(
    b.outlet.sent.map((s) => ({ qos: s.qos, retain: s.retain, ids: s.ids })),
    [{ qos: 1, retain: false, ids: [7] }],
  )
  // the next message is merged afresh (nothing left over from the last one)
  router.route(newMessage('s/y', Buffer.from('n'), 1, false, 'p'), null)
  assert.deepEqual(
    a.outlet.sent.slice(1).map((s) => ({ qos: s.qos, ids: s.ids?.sort() })),
    [{ qos: 1, ids: [1, 2] }],
  )
})

test('[MQTT-3.8.3-3] No Local: not delivered to the client that published it', () => {
  const router = new Router()
  const a = connected('a')
  subscribe(router, a.session, sub('n/#', 1, { nl: true }))
  assert.equal(router.route(newMessage('n/1', Buffer.from('x'), 1, false, 'a'), null), 0)
  assert.equal(router.route(newMessage('n/1', Buffer.from('x'), 1, false, 'other'), null), 1)
  assert.equal(a.outlet.sent.length, 1)
})

test('a persistent subscriber: route answers the count with the store writes to wait for', async () => {
  const router = new Router()
  const p = connected('p', true)
  const q = connected('q')
  subscribe(router, p.session, sub('w', 1))
  subscribe(router, q.session, sub('w', 1))
  const routed = router.route(newMessage('w', Buffer.from('x'), 1, false, 'pub'), null)
  assert.equal(typeof routed, 'object')
  if (typeof routed === 'number') return
  assert.equal(routed.count, 2)
  assert.equal(routed.writes.length, 1) // the persistent one's in-flight entry
  await Promise.all(routed.writes)
  assert.equal(router.route(newMessage('w', Buffer.from('y'), 0, false, 'pub'), null), 2) // QoS 0 stores nothing
})

test("the publisher's flow control reaches every session a message goes to", () => {
  const router = new Router()
  const a = connected('a')
  const b = connected('b')
  b.outlet.sendWindow = 0 // every QoS 1 message waits: congested
  subscribe(router, a.session, sub('f', 0))
  subscribe(router, b.session, sub('f', 1))
  subscribe(router, b.session, sub('f/#', 1))
  const from = new FakeFlowOwner().flow()
  router.route(newMessage('f', Buffer.from('x'), 1, false, 'pub'), from)
  assert.equal(a.outlet.sent[0]!.from, from)
  assert.deepEqual(b.outlet.congestedBy, [from])
})

test('a shared group: one member per message, round robin, members that are connected first', () => {
  const router = new Router()
  const members = ['m1', 'm2', 'm3'].map((id) => connected(id))
  for (const m of members) subscribe(router, m.session, sub('$share/g/jobs/#', 1))
  for (let i = 0; i < 6; i++) assert.equal(router.route(newMessage('jobs/1', Buffer.from(String(i)), 1, false, 'p'), null), 1)
  assert.deepEqual(
    members.map((m) => m.outlet.sent.length),
    [2, 2, 2],
  )
  members[1]!.session.detach()
  for (let i = 0; i < 4; i++) router.route(newMessage('jobs/1', Buffer.from('z'), 1, false, 'p'), null)
  assert.deepEqual(
    members.map((m) => m.outlet.sent.length),
    [4, 2, 4],
  )
})

test('a message routed while another is being delivered (a listener publishing) is merged on its own: the first keeps its QoS and identifiers', () => {
  const router = new Router()
  const a = connected('a')
  const b = connected('b')
  for (const s of [a, b]) {
    subscribe(router, s.session, sub('x/#', 1, { id: 1 }))
    subscribe(router, s.session, sub('x/y', 2, { id: 2 }))
  }
  subscribe(router, b.session, sub('x/+', 0, { id: 3 }))
  let nested = false
  const inner = (): void => {
    if (nested) return
    nested = true // while the first of them receives it (the other's copy is yet to go)
    router.route(newMessage('x/z', Buffer.from('inner'), 1, false, 'p'), null) // matches x/# and (for b) x/+
  }
  a.outlet.onSend = inner
  b.outlet.onSend = inner
  router.route(newMessage('x/y', Buffer.from('outer'), 2, false, 'p'), null)
  const outer = (o: FakeOutlet) => o.sent.filter((s) => s.payload === 'outer').map((s) => ({ qos: s.qos, ids: s.ids?.sort() }))
  assert.deepEqual(outer(a.outlet), [{ qos: 2, ids: [1, 2] }])
  assert.deepEqual(outer(b.outlet), [{ qos: 2, ids: [1, 2, 3] }])
  const innerOf = (o: FakeOutlet) => o.sent.filter((s) => s.payload === 'inner').map((s) => ({ qos: s.qos, ids: s.ids?.sort() }))
  assert.deepEqual(innerOf(a.outlet), [{ qos: 1, ids: [1] }])
  assert.deepEqual(innerOf(b.outlet), [{ qos: 1, ids: [1, 3] }])
})

test("removing a session's last subscription lets the router forget the session", () => {
  const router = new Router()
  const a = connected('a')
  subscribe(router, a.session, sub('r/1', 1))
  subscribe(router, a.session, sub('r/2', 1))
  subscribe(router, a.session, sub('r/1', 2)) // a replacement, not a second entry
  const known = (): number => (router as unknown as { sessionTargets: Map<unknown, unknown> }).sessionTargets.size
  assert.equal(known(), 1)
  assert.equal(router.remove(a.session, 'r/1'), true)
  assert.equal(known(), 1)
  assert.equal(router.remove(a.session, 'r/2'), true)
  assert.equal(router.remove(a.session, 'r/2'), false)
  assert.equal(known(), 0)
  assert.equal(router.route(newMessage('r/1', Buffer.from('x'), 1, false, 'p'), null), 0)
})

test("in a cluster: the router tells of its first and last member of a group, is told the other nodes' groups (RemoteGroups), and picks one node per group and message, round robin", () => {
  const router = new Router('a')
  const changes: string[] = []
  const remote = router.joinCluster((group, filter, present) => void changes.push(`${group} ${filter} ${present}`))
  const w1 = connected('w1')
  const w2 = connected('w2')
  subscribe(router, w1.session, sub('$share/g/job/#', 1))
  subscribe(router, w2.session, sub('$share/g/job/#', 1))
  remote.set('b', 'g', 'job/#', true)
  remote.set('c', 'h', 'job/+', true)
  assert.equal(router.remote?.size, 2)
  const publish = (): Record<string, string> | undefined => {
    const m = newMessage('job/1', Buffer.from('x'), 1, false, 'p')
    m.node = 'a' // published on this node
    router.route(m, null)
    return m.shares
  }
  const picks = [publish(), publish(), publish(), publish()]
  assert.deepEqual(
    picks.map((s) => s?.['g/job/#']),
    ['b', 'a', 'b', 'a'],
  )
  assert.deepEqual(
    picks.map((s) => s?.['h/job/+']),
    ['c', 'c', 'c', 'c'],
  )
  assert.equal(w1.outlet.sent.length + w2.outlet.sent.length, 2) // only the messages this node picked itself for
  remote.forget('b')
  assert.equal(router.remote?.size, 1)
  assert.deepEqual(publish(), { 'g/job/#': 'a', 'h/job/+': 'c' })
  router.remove(w1.session, '$share/g/job/#')
  router.remove(w2.session, '$share/g/job/#')
  assert.deepEqual(changes, ['g job/# true', 'g job/# false'])
})

test("on a single node (no joinCluster) shared groups are the router's own: no node is picked", () => {
  const router = new Router('a')
  const w = connected('w')
  subscribe(router, w.session, sub('$share/g/job/#', 1))
  const m = newMessage('job/1', Buffer.from('x'), 1, false, 'p')
  m.node = 'a'
  assert.equal(router.route(m, null), 1)
  assert.equal(m.shares, undefined)
  assert.equal(router.remote, null)
})

test('topic tree: holders counts the plain subscribers of one filter (shared ones apart); plainFilters lists the filters someone holds', () => {
  const tree = new TopicTree<string>()
  tree.add('a/b', 'k1', 'v')
  tree.add('a/b', 'k2', 'v')
  tree.add('a/+', 'k1', 'v')
  tree.add('a/c', 'k3', 'v', 'g') // a shared group's member only
  tree.add('#', 'k1', 'v')
  assert.equal(tree.holders('a/b'), 2)
  assert.equal(tree.holders('a/+'), 1)
  assert.equal(tree.holders('a/c'), 0)
  assert.equal(tree.holders('a'), 0)
  assert.deepEqual(tree.plainFilters().sort(), ['#', 'a/+', 'a/b'])
  tree.remove('a/b', 'k1')
  assert.equal(tree.holders('a/b'), 1)
  tree.remove('a/b', 'k2')
  assert.equal(tree.holders('a/b'), 0)
  assert.deepEqual(tree.plainFilters().sort(), ['#', 'a/+'])
})
