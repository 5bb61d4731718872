import assert from 'node:assert/strict'
import { test, type TestContext } from 'node:test'
import { defineHook, type Broker } from '../../plugins/index.js'
import type { HookmqBroker } from '../../plugins/index.js'
import { collect, connect, pingRoundTrip, RawClient, startBroker, startRedis, until } from '../helpers.js'

// Identity and takeover across nodes sharing one real redis-server: the owner
// travels with the session, and a client id has one live connection cluster-wide.

const fast = { heartbeatMs: 100, nodeTimeoutMs: 600 }

/** users log in with the password "<name>-pw" */
const auth = defineHook({
  name: 'auth',
  authenticate: ({ username, password }) => (username === undefined ? undefined : password?.toString() === `${username}-pw` ? { allow: true } : false),
})

async function node(t: TestContext, url: string, id: string, extra: object = {}): Promise<HookmqBroker> {
  return startBroker(t, { id, ws: false, sys: { enabled: false }, redis: { url, ...fast }, hooks: [auth], ...extra })
}

const as = (user: string) => ({ username: user, password: `${user}-pw` })

async function bystanderWorks(t: TestContext, a: Broker, b: Broker): Promise<void> {
  const sub = await connect(t, a)
  await sub.subscribeAsync('bystander/x', { qos: 1 })
  const pub = await connect(t, b)
  await pub.publishAsync('bystander/x', 'ok', { qos: 1 })
  assert.equal((await collect(sub).next(5000)).payload.toString(), 'ok')
}

test('cluster: mallory on node B is refused (0x85) a client id whose session alice owns on node A, online or offline', async (t) => {
  const redis = await startRedis(t)
  const a = await node(t, redis.url, 'a')
  const b = await node(t, redis.url, 'b')
  const session = { clientId: 'alice-1', clean: false, protocolVersion: 5 as const, properties: { sessionExpiryInterval: 600 } }
  const alice = await connect(t, a, { ...session, ...as('alice') })
  let aliceClosed = false
  alice.on('close', () => {
    aliceClosed = true
  })
  const inbox = collect(alice)
  await alice.subscribeAsync('inbox/alice', { qos: 1 })
  const mallory = await RawClient.open(t, b, 5)
  assert.equal((await mallory.connect({ ...session, ...as('mallory'), password: Buffer.from('mallory-pw') }, 5)).reasonCode, 0x85)
  await mallory.expectClosed()
  const pub = await connect(t, b)
  await pub.publishAsync('inbox/alice', 'from b', { qos: 1 })
  assert.equal((await inbox.next(5000)).payload.toString(), 'from b')
  assert.equal(aliceClosed, false)
  assert.equal(a.sessions.sessions.get('alice-1')?.outlet !== null, true) // still served on A

  await alice.endAsync()
  await pub.publishAsync('inbox/alice', 'while away', { qos: 1 })
  const again = await RawClient.open(t, b, 4)
  assert.equal((await again.connect({ clientId: 'alice-1', clean: false, ...as('mallory'), password: Buffer.from('mallory-pw') })).returnCode, 2)
  const clean = await RawClient.open(t, b, 4)
  assert.equal((await clean.connect({ clientId: 'alice-1', clean: true, ...as('mallory'), password: Buffer.from('mallory-pw') })).returnCode, 2) // nor may she discard it
  const back = await connect(t, b, { ...session, ...as('alice') })
  assert.equal((await collect(back).next(5000)).payload.toString(), 'while away')
  await bystanderWorks(t, a, b)
})

test("cluster: a clean session is protected too: mallory on B cannot take over alice's live connection on A", async (t) => {
  const redis = await startRedis(t)
  const a = await node(t, redis.url, 'a')
  const b = await node(t, redis.url, 'b')
  const alice = await connect(t, a, { clientId: 'alice-clean', clean: true, ...as('alice') })
  let aliceClosed = false
  alice.on('close', () => {
    aliceClosed = true
  })
  const mallory = await RawClient.open(t, b, 4)
  assert.equal((await mallory.connect({ clientId: 'alice-clean', clean: true, ...as('mallory'), password: Buffer.from('mallory-pw') })).returnCode, 2)
  await pingRoundTrip(alice)
  assert.equal(aliceClosed, false)
  // when alice has gone, the client id is free again
  await alice.endAsync()
  await until(async () => (await b.cluster!.sessionOwner('alice-clean')) === undefined, 5000, 'the session to end cluster-wide')
  const later = await connect(t, b, { clientId: 'alice-clean', clean: true, ...as('mallory') })
  assert.equal(later.connected, true)
  await bystanderWorks(t, a, b)
})

test("cluster: alice's identity is recorded with her claim, before her CONNACK; a claim by mallory that checked before it is refused and changes nothing", async (t) => {
  const redis = await startRedis(t)
  const a = await node(t, redis.url, 'a')
  const b = await node(t, redis.url, 'b')
  const alice = await connect(t, a, { clientId: 'alice-race', clean: true, ...as('alice') })
  let aliceClosed = false
  alice.on('close', () => {
    aliceClosed = true
  })
  // read at once, on the other node: no window after the CONNACK in which the client id looks free
  assert.deepEqual(await b.cluster!.sessionOwner('alice-race'), { owner: 'alice' })
  // mallory's CONNECT on B found no session (it checked before alice's claim) and claims now
  let loaded = false
  await assert.rejects(
    b.cluster!.claim(
      'alice-race',
      async () => {
        loaded = true
      },
      { owner: 'mallory', seen: undefined },
    ),
    (err: Error & { code?: string }) => err.code === 'HOOKMQ_ERR_CLIENT_ID_TAKEN',
  )
  assert.equal(loaded, false)
  assert.deepEqual(await a.cluster!.sessionOwner('alice-race'), { owner: 'alice' })
  await pingRoundTrip(alice)
  assert.equal(aliceClosed, false)
  // the same claim by alice herself (a reconnect on B) goes through, and takes her connection over
  await b.cluster!.claim('alice-race', async () => {}, { owner: 'alice', seen: undefined })
  await until(() => aliceClosed, 5000, "alice's connection on A to be taken over")
})

test('cluster: sessions.identityMismatch "fresh" on node B discards alice\'s session on node A and closes her connection there (0x8E)', async (t) => {
  const redis = await startRedis(t)
  const a = await node(t, redis.url, 'a', { sessions: { identityMismatch: 'fresh' } })
  const b = await node(t, redis.url, 'b', { sessions: { identityMismatch: 'fresh' } })
  const session = { clientId: 'alice-f', clean: false, properties: { sessionExpiryInterval: 600 } }
  const alice = await RawClient.open(t, a, 5)
  await alice.connect({ ...session, ...as('alice'), password: Buffer.from('alice-pw') }, 5)
  alice.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'inbox/alice-f', qos: 1 }] }, 5)
  await alice.expect('suback')
  const mallory = await RawClient.open(t, b, 5)
  const ack = await mallory.connect({ ...session, ...as('mallory'), password: Buffer.from('mallory-pw') }, 5)
  assert.deepEqual([ack.reasonCode, ack.sessionPresent], [0, false])
  assert.equal((await alice.expect('disconnect')).reasonCode, 0x8e)
  await alice.expectClosed()
  await (await connect(t, a)).publishAsync('inbox/alice-f', 'not for mallory', { qos: 1 })
  mallory.send({ cmd: 'pingreq' }, 5)
  await mallory.expect('pingresp')
  assert.deepEqual(
    mallory.packets.filter((p) => p.cmd === 'publish'),
    [],
  )
  assert.deepEqual(await b.cluster!.sessionOwner('alice-f'), { owner: 'mallory' })
  await bystanderWorks(t, a, b)
})

test('cluster: the owner survives a node restart with Redis', async (t) => {
  const redis = await startRedis(t)
  const first = await node(t, redis.url, 'a')
  const session = { clientId: 'alice-r', clean: false, protocolVersion: 5 as const, properties: { sessionExpiryInterval: 600 } }
  const alice = await connect(t, first, { ...session, ...as('alice') })
  await alice.subscribeAsync('inbox/alice-r', { qos: 1 })
  await alice.endAsync()
  await (await connect(t, first)).publishAsync('inbox/alice-r', 'kept over the restart', { qos: 1 })
  await first.close()
  const restarted = await node(t, redis.url, 'a')
  const b = await node(t, redis.url, 'b')
  for (const n of [restarted, b]) {
    const mallory = await RawClient.open(t, n, 5)
    assert.equal((await mallory.connect({ ...session, ...as('mallory'), password: Buffer.from('mallory-pw') }, 5)).reasonCode, 0x85)
  }
  const back = await connect(t, b, { ...session, ...as('alice') })
  assert.equal((await collect(back).next(5000)).payload.toString(), 'kept over the restart')
  await bystanderWorks(t, restarted, b)
})

test('[MQTT-3.1.4-3] cluster: never two live connections with one client id, after a takeover on one node and across nodes', async (t) => {
  const redis = await startRedis(t)
  const a = await node(t, redis.url, 'a')
  const b = await node(t, redis.url, 'b')
  const first = await RawClient.open(t, a, 5)
  await first.connect({ clientId: 'roamer', clean: true }, 5)
  const second = await RawClient.open(t, a, 5)
  await second.connect({ clientId: 'roamer', clean: true }, 5) // a takeover on A: the session ends and a new one starts there
  await first.expectClosed()
  const third = await RawClient.open(t, b, 5)
  await third.connect({ clientId: 'roamer', clean: true }, 5)
  assert.equal((await second.expect('disconnect')).reasonCode, 0x8e) // B took it from A
  await second.expectClosed()
  await bystanderWorks(t, a, b)
})

test('[MQTT-3.1.4-3] cluster: a CONNECT that another node out-claims while it is still being accepted does not open a second live connection', async (t) => {
  const redis = await startRedis(t)
  // the resume re-check of the first CONNECT on A is held at its authorizeSubscribe hook: a window between claiming and opening
  let hold: Promise<void> | undefined
  let reached = (): void => {}
  const held = (): Promise<void> | undefined => {
    const h = hold
    hold = undefined
    if (h) reached()
    return h
  }
  const gate = defineHook({
    name: 'gate',
    async authorizeSubscribe() {
      await held()
      return true
    },
  })
  const start = (id: string): Promise<HookmqBroker> =>
    startBroker(t, { id, ws: false, sys: { enabled: false }, redis: { url: redis.url, ...fast }, hooks: [auth, gate] })
  const a = await start('a')
  const b = await start('b')
  const session = { clientId: 'contested', clean: false, properties: { sessionExpiryInterval: 60 }, username: 'carol', password: Buffer.from('carol-pw') }
  const first = await RawClient.open(t, b, 5)
  await first.connect(session, 5)
  first.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'contested/#', qos: 1 }] }, 5)
  await first.expect('suback')
  first.send({ cmd: 'disconnect', reasonCode: 0 }, 5)
  await first.expectClosed()

  let release = (): void => {}
  hold = new Promise<void>((resolve) => {
    release = resolve
  })
  const atHook = new Promise<void>((resolve) => {
    reached = resolve
  })
  const onA = await RawClient.open(t, a, 5)
  const ackA = onA.connect(session, 5).catch(() => undefined) // claims the client id from B, then waits at the hook
  await atHook
  const onB = await RawClient.open(t, b, 5)
  assert.equal((await onB.connect(session, 5)).reasonCode, 0) // claims it back from A meanwhile
  release()
  const answer = await ackA
  assert.notEqual(answer?.reasonCode, 0) // A's CONNECT lost the client id (0x89): no second live connection
  await onA.expectClosed()
  onB.send({ cmd: 'subscribe', messageId: 2, subscriptions: [{ topic: 'contested/live', qos: 1 }] }, 5)
  await onB.expect('suback')
  await (await connect(t, a)).publishAsync('contested/live', 'to B', { qos: 1 })
  assert.equal((await onB.expect('publish', 5000)).payload.toString(), 'to B')
  assert.equal(a.sessions.sessions.has('contested'), false)
  await bystanderWorks(t, a, b)
})

test('[MQTT-3.1.4-3] cluster: CONNECTs with one client id in bursts on two nodes leave at most one live connection; the next one takes it', async (t) => {
  const redis = await startRedis(t)
  const nodes = [await node(t, redis.url, 'a'), await node(t, redis.url, 'b')]
  const clients: RawClient[] = []
  const open = (): RawClient[] => clients.filter((c) => !c.closed)
  for (let round = 0; round < 4; round++) {
    const burst: RawClient[] = []
    for (let i = 0; i < 16; i++) burst.push(await RawClient.open(t, nodes[(i + round) % 2]!, 5))
    clients.push(...burst)
    // some may lose the race for the client id (CONNACK 0x89, or none before they are taken over): never two win
    await Promise.all(
      burst.map((c, i) =>
        c.connect({ clientId: 'burst', clean: i % 3 === 0, properties: { sessionExpiryInterval: i % 2 === 0 ? 0 : 60 } }, 5).catch(() => undefined),
      ),
    )
    await until(() => open().length <= 1, 10000, `at most one connection left after round ${round}`)
  }
  const check = await RawClient.open(t, nodes[0]!, 5)
  await check.connect({ clientId: 'burst', clean: false, properties: { sessionExpiryInterval: 60 } }, 5)
  await until(() => open().length === 0, 5000, 'every earlier connection closed')
  check.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'burst/x', qos: 1 }] }, 5)
  await check.expect('suback')
  await (await connect(t, nodes[1]!)).publishAsync('burst/x', 'one', { qos: 1 })
  assert.equal((await check.expect('publish', 5000)).payload.toString(), 'one')
  await bystanderWorks(t, nodes[0]!, nodes[1]!)
})
