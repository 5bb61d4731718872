import assert from 'node:assert/strict'
import { test, type TestContext } from 'node:test'
import { addressProblem, BanList, MemoryBanStore, ReasonCode, type BanStore, type BanTarget } from '../../core/index.js'
import { Flapping, MAX_TRACKED } from '../../core/flapping.js'
import { createLogger } from '../../core/logger.js'

// The ban list on its own: matching, expiry, configure(), and the flapping
// counter's memory bound. End to end (sockets, Redis): test/e2e/bans.test.ts.

const log = createLogger('silent')

/** A connection as bans see it, recording how it was closed. */
function target(id: string, remoteAddress: string, username?: string, state = 'connected'): BanTarget & { closed: number[] } {
  const closed: number[] = []
  return { client: { id, username, remoteAddress }, state: { kind: state }, closed, closeWith: (code) => void closed.push(code) }
}

function list(t: TestContext, live: BanTarget[] = [], store: BanStore = new MemoryBanStore()): BanList {
  const bans = new BanList({ store, log, live: () => live })
  t.after(() => bans.close())
  return bans
}

test('addresses: IPv4 and IPv6 CIDRs and single addresses, each also matching the other form of an IPv4-mapped address', async (t) => {
  const bans = list(t)
  await bans.start()
  await bans.add({ kind: 'address', value: '10.0.0.0/8' })
  await bans.add({ kind: 'address', value: 'fd00::/8' })
  await bans.add({ kind: 'address', value: '192.0.2.7' })
  const at = (remoteAddress: string) => bans.match({ id: 'c', remoteAddress })?.value
  assert.equal(at('10.200.3.4'), '10.0.0.0/8')
  assert.equal(at('::ffff:10.200.3.4'), '10.0.0.0/8')
  assert.equal(at('11.0.0.1'), undefined)
  assert.equal(at('fd12:3456::1'), 'fd00::/8')
  assert.equal(at('fe80::1'), undefined)
  assert.equal(at('192.0.2.7'), '192.0.2.7')
  assert.equal(at('::ffff:192.0.2.7'), '192.0.2.7')
  assert.equal(at('192.0.2.8'), undefined)
  assert.equal(at(''), undefined) // a socket that had no address
  for (const bad of ['10.0.0.0/33', 'fd00::/129', '10.0.0.0/', '10.0.0.0/8/8', '10.0.0', 'fd00::/-1', 'localhost', ' 10.0.0.1'])
    assert.notEqual(addressProblem(bad), undefined, bad)
})

test('client id and user name bans match exactly; an expired ban stops matching before its timer has run', async (t) => {
  const bans = list(t)
  await bans.start()
  await bans.add({ kind: 'clientId', value: 'dev-1' })
  await bans.add({ kind: 'username', value: 'eve', expiresAt: Date.now() + 60000 })
  assert.equal(bans.match({ id: 'dev-1', remoteAddress: '127.0.0.1' })?.kind, 'clientId')
  assert.equal(bans.match({ id: 'dev-10', remoteAddress: '127.0.0.1' }), undefined)
  assert.equal(bans.match({ id: 'x', username: 'eve', remoteAddress: '127.0.0.1' })?.kind, 'username')
  assert.equal(bans.match({ id: 'eve', remoteAddress: '127.0.0.1' }), undefined) // a client id is not a user name
  const dateNow = Date.now
  Date.now = () => dateNow() + 61000
  try {
    assert.equal(bans.match({ id: 'x', username: 'eve', remoteAddress: '127.0.0.1' }), undefined)
    assert.deepEqual(
      bans.list().map((b) => b.value),
      ['dev-1'],
    )
  } finally {
    Date.now = dateNow
  }
})

test('adding a ban closes what it matches: connected with 0x98, still connecting with CONNACK 0x8A; closing ones and others are left', async (t) => {
  const conns = [
    target('a', '10.1.1.1'),
    target('b', '10.1.1.2', undefined, 'authenticating'),
    target('c', '10.1.1.3', undefined, 'closing'),
    target('d', '192.168.1.1'),
  ]
  const bans = list(t, conns)
  await bans.start()
  await bans.add({ kind: 'address', value: '10.1.0.0/16' })
  assert.deepEqual(
    conns.map((c) => c.closed),
    [[ReasonCode.AdministrativeAction], [ReasonCode.Banned], [], []],
  )
})

test('two ban lists on one store act as two nodes: an add on one applies and kicks on the other, a remove lifts it there', async (t) => {
  const store = new MemoryBanStore()
  const onB = target('roamer', '127.0.0.1')
  const a = list(t, [], store)
  const b = list(t, [onB], store)
  await a.start()
  await b.start()
  const ban = await a.add({ kind: 'clientId', value: 'roamer' })
  assert.deepEqual(onB.closed, [ReasonCode.AdministrativeAction])
  assert.deepEqual(b.list(), [ban])
  assert.equal(await b.remove(ban.id), true)
  assert.deepEqual(a.list(), [])
  const late = list(t, [], store)
  await late.start()
  assert.deepEqual(late.list(), [])
})

test('configure() keeps a configured ban that also exists at run time in force until both are gone', async (t) => {
  const bans = list(t)
  await bans.start()
  bans.configure([{ clientId: 'dup', expires: Date.now() + 60000 }])
  const runtime = await bans.add({ kind: 'clientId', value: 'dup' })
  bans.configure([])
  assert.equal(bans.match({ id: 'dup', remoteAddress: '' })?.id, runtime.id)
  bans.configure([{ clientId: 'dup' }])
  assert.equal(await bans.remove(runtime.id), true)
  assert.equal(bans.match({ id: 'dup', remoteAddress: '' })?.by, 'config')
  bans.configure([{ clientId: 'gone', expires: '2000-01-01T00:00:00Z' }]) // lifted already: not in force
  assert.deepEqual(bans.list(), [])
})

test('flapping: counts within the window, trips at `connects`, and keeps at most MAX_TRACKED client ids, pruning ended windows', (t) => {
  const f = new Flapping({ connects: 3, windowSeconds: 10, banSeconds: 60 })
  t.after(() => f.stop())
  assert.equal(f.connected('x', 0), false)
  assert.equal(f.connected('x', 5000), false)
  assert.equal(f.connected('x', 9999), true)
  assert.equal(f.connected('y', 0), false)
  assert.equal(f.connected('y', 1000), false)
  assert.equal(f.connected('y', 10000), false) // the window ended: counted afresh
  for (let i = 0; i < MAX_TRACKED + 50; i++) f.connected(`c${i}`, 20000)
  assert.equal(f.tracked, MAX_TRACKED)
  f.prune(29999)
  assert.equal(f.tracked, MAX_TRACKED)
  f.prune(30000)
  assert.equal(f.tracked, 0)
})
