import assert from 'node:assert/strict'
import { test } from 'node:test'
import mqtt, { type IClientOptions, type IDisconnectPacket } from 'mqtt'
import { createBroker, defineHook, type Broker, type HookmqBroker } from '../../plugins/index.js'
import { collect, connect, once, portOf, startBroker, startRedis, until, urlOf } from '../helpers.js'
import { fast, nodes } from '../support/cluster.js'

// Bans (core/bans.ts): a banned CONNECT is refused before the authenticate
// hooks, a new ban closes the live clients it matches, bans expire, and with
// Redis they are shared by every node and survive restarts.

/** The CONNACK's reason code (MQTT 5) or return code (3.1.1) a client gets; 0 when it connected. `url` '': host and port in `options`. */
async function connackCode(url: string, options: IClientOptions = {}): Promise<number> {
  const o = { reconnectPeriod: 0, connectTimeout: 5000, ...options }
  const client = url === '' ? mqtt.connect(o) : mqtt.connect(url, o)
  try {
    return await new Promise<number>((resolve, reject) => {
      client.once('connect', () => resolve(0))
      client.once('error', (err) => {
        const code = (err as { code?: unknown }).code
        if (typeof code === 'number') resolve(code)
        else reject(err)
      })
      client.once('close', () => reject(new Error('closed without a CONNACK')))
    })
  } finally {
    client.end(true)
  }
}

function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(series + ' '))
  return line === undefined ? undefined : Number(line.slice(series.length + 1))
}

test('a banned CONNECT gets CONNACK 0x8A (MQTT 3.1.1: return code 5) before any authenticate hook runs, and counts in hookmq_refused_total{cause="banned"}', async (t) => {
  const asked: Array<string | undefined> = []
  const broker = await startBroker(t, {
    http: { port: 0 },
    bans: [{ username: 'mallory', reason: 'abuse' }],
    hooks: [
      defineHook({
        name: 'auth',
        authenticate: ({ username }) => {
          asked.push(username)
          return undefined
        },
      }),
    ],
  })
  const url = urlOf(broker)
  assert.equal(await connackCode(url, { protocolVersion: 5, username: 'mallory' }), 0x8a)
  assert.equal(await connackCode(url, { protocolVersion: 4, username: 'mallory' }), 5)
  await broker.bans.add({ kind: 'clientId', value: 'bad-device' })
  assert.equal(await connackCode(url, { protocolVersion: 5, clientId: 'bad-device' }), 0x8a)
  assert.equal(await connackCode(url, { protocolVersion: 4, clientId: 'bad-device' }), 5)
  assert.deepEqual(asked, []) // no hook was asked about a banned client
  assert.equal(await connackCode(url, { protocolVersion: 5, username: 'alice' }), 0)
  assert.deepEqual(asked, ['alice'])
  assert.equal(broker.stats.refused.banned, 4)
  const metrics = await (await fetch(broker.httpUrl()! + '/metrics')).text()
  assert.equal(sample(metrics, 'hookmq_refused_total{cause="banned"}'), 4)
})

test('address bans: an IPv4 CIDR refuses 127.0.0.1, also as the IPv4-mapped ::ffff:127.0.0.1 of a dual-stack listener; an IPv6 CIDR refuses ::1', async (t) => {
  const v4 = await startBroker(t, { sys: { enabled: false } })
  const dual = await startBroker(t, { host: '::', allowAnonymous: true, ws: false, sys: { enabled: false } })
  const v6 = await startBroker(t, { host: '::1', ws: false, sys: { enabled: false } })
  const seen = new Promise<string>((resolve) => dual.once('clientConnected', (c) => resolve(c.remoteAddress)))
  assert.equal(await connackCode(`mqtt://127.0.0.1:${portOf(dual)}`), 0)
  assert.equal(await seen, '::ffff:127.0.0.1') // what the ban below must match
  for (const b of [v4, dual, v6]) {
    await b.bans.add({ kind: 'address', value: '127.0.0.0/8' })
    await b.bans.add({ kind: 'address', value: 'fd00::/8' })
  }
  assert.equal(await connackCode(`mqtt://127.0.0.1:${portOf(v4)}`, { protocolVersion: 5 }), 0x8a)
  assert.equal(await connackCode(`mqtt://127.0.0.1:${portOf(dual)}`, { protocolVersion: 5 }), 0x8a)
  assert.equal(await connackCode('', { host: '::1', port: portOf(v6), protocolVersion: 5 }), 0) // no ban covers ::1 yet
  await v6.bans.add({ kind: 'address', value: '::1/128' })
  assert.equal(await connackCode('', { host: '::1', port: portOf(v6), protocolVersion: 5 }), 0x8a)
  const [narrow] = v4.bans.list().filter((b) => b.value === '127.0.0.0/8')
  assert.equal(await v4.bans.remove(narrow!.id), true)
  assert.equal(await connackCode(`mqtt://127.0.0.1:${portOf(v4)}`, { protocolVersion: 5 }), 0) // lifted
  await v4.bans.add({ kind: 'address', value: '::ffff:127.0.0.1' }) // the mapped form of an IPv4 address bans it too
  assert.equal(await connackCode(`mqtt://127.0.0.1:${portOf(v4)}`, { protocolVersion: 5 }), 0x8a)
})

test('a new ban closes the live clients it matches: MQTT 5 gets DISCONNECT 0x98 "banned", 3.1.1 a closed socket; their wills are published; others stay', async (t) => {
  const broker = await startBroker(t, { sys: { enabled: false } })
  const watcher = await connect(t, broker, { clientId: 'watcher' })
  await watcher.subscribeAsync('wills/#', { qos: 1 })
  const will = (name: string) => ({ topic: `wills/${name}`, payload: Buffer.from(`${name} gone`), qos: 1 as const, retain: false })
  const five = await connect(t, broker, { clientId: 'five', username: 'eve', protocolVersion: 5, will: will('five') })
  const four = await connect(t, broker, { clientId: 'four', username: 'eve', protocolVersion: 4, will: will('four') })
  const bystander = await connect(t, broker, { clientId: 'bystander', username: 'bob', protocolVersion: 5 })
  const disconnect = once<[IDisconnectPacket]>(five, 'disconnect')
  const fourClosed = once(four, 'close')
  await broker.bans.add({ kind: 'username', value: 'eve', reason: 'test', by: 'ops' })
  const [packet] = await disconnect
  assert.equal(packet.reasonCode, 0x98) // [MQTT-3.14.2-1] 0x8A is not a DISCONNECT reason code
  assert.equal(packet.properties?.reasonString, 'banned')
  await fourClosed
  const wills = (await collect(watcher).count(2)).map((m) => m.payload.toString()).sort()
  assert.deepEqual(wills, ['five gone', 'four gone'])
  assert.equal(bystander.connected, true)
  assert.equal(broker.connectionCount, 2) // watcher and bystander
})

test('a ban stops matching when it expires, and leaves list() at once', async (t) => {
  const broker = await startBroker(t, { sys: { enabled: false } })
  const url = urlOf(broker)
  const ban = await broker.bans.add({ kind: 'clientId', value: 'timed', expiresAt: Date.now() + 400 })
  assert.equal(ban.expiresAt! > Date.now(), true)
  assert.equal(await connackCode(url, { clientId: 'timed', protocolVersion: 5 }), 0x8a)
  assert.deepEqual(
    broker.bans.list().map((b) => b.id),
    [ban.id],
  )
  await until(() => broker.bans.list().length === 0, 3000, 'the ban to expire')
  assert.equal(broker.bans.match({ id: 'timed', remoteAddress: '127.0.0.1' }), undefined)
  assert.equal(await connackCode(url, { clientId: 'timed', protocolVersion: 5 }), 0)
})

test('flapping rule: a client id connecting `connects` times within the window is banned for banSeconds (reason "flapping"); other ids are not', async (t) => {
  const broker = await startBroker(t, { sys: { enabled: false }, limits: { flapping: { connects: 3, windowSeconds: 30, banSeconds: 1 } } })
  const url = urlOf(broker)
  assert.equal(await connackCode(url, { clientId: 'flappy', protocolVersion: 5 }), 0)
  assert.equal(await connackCode(url, { clientId: 'flappy', protocolVersion: 5 }), 0)
  assert.equal(await connackCode(url, { clientId: 'steady', protocolVersion: 5 }), 0)
  assert.equal(await connackCode(url, { clientId: 'flappy', protocolVersion: 5 }), 0x8a) // the third within 30 s
  const [ban] = broker.bans.list()
  assert.equal(ban?.kind, 'clientId')
  assert.equal(ban?.value, 'flappy')
  assert.equal(ban?.reason, 'flapping')
  assert.equal(ban?.by, 'flapping')
  assert.equal(ban!.expiresAt! - ban!.createdAt, 1000)
  assert.equal(await connackCode(url, { clientId: 'flappy', protocolVersion: 4 }), 5)
  assert.equal(await connackCode(url, { clientId: 'steady', protocolVersion: 5 }), 0)
  await until(() => broker.bans.list().length === 0, 3000, 'the flapping ban to lift')
  assert.equal(await connackCode(url, { clientId: 'flappy', protocolVersion: 5 }), 0)
})

test('invalid bans are refused with a clear message: by add() (HOOKMQ_ERR_BAN_INVALID), and in the config at start-up (naming the key)', async (t) => {
  const broker = await startBroker(t, { sys: { enabled: false }, bans: [{ clientId: 'from-config' }] })
  const invalid = (message: RegExp) => ({ code: 'HOOKMQ_ERR_BAN_INVALID', message })
  await assert.rejects(broker.bans.add({ kind: 'address', value: '10.0.0.0/33' }), invalid(/"10\.0\.0\.0\/33" is not an IP address or a CIDR/))
  await assert.rejects(broker.bans.add({ kind: 'address', value: 'example.com' }), invalid(/not an IP address or a CIDR/))
  await assert.rejects(broker.bans.add({ kind: 'clientId', value: '' }), invalid(/needs a non-empty value/))
  await assert.rejects(broker.bans.add({ kind: 'ip' as never, value: '1.2.3.4' }), invalid(/kind must be clientId, username or address \(got "ip"\)/))
  await assert.rejects(broker.bans.add({ kind: 'username', value: 'x', expiresAt: Date.now() - 1000 }), invalid(/expiresAt .* is not in the future/))
  const [configured] = broker.bans.list()
  assert.equal(configured?.by, 'config')
  await assert.rejects(broker.bans.remove(configured!.id), invalid(/comes from the config file/))
  assert.equal(await broker.bans.remove('no-such-ban'), false)
  assert.equal(broker.bans.list().length, 1)

  const start = (bans: unknown): HookmqBroker => createBroker({ port: 0, ws: false, warmup: false, bans: bans as never })
  assert.throws(() => start([{ address: '10.0.0.0/33' }]), /^HookmqError: config error: bans\.0\.address = "10\.0\.0\.0\/33": not an IP address or a CIDR/)
  assert.throws(() => start([{ clientId: 'a', username: 'b' }]), /config error: bans\.0 = .*: give exactly one of clientId, username or address/)
  assert.throws(() => start([{ clientId: 'a', expires: 'tomorrow' }]), /config error: bans\.0\.expires = "tomorrow"/)
  assert.throws(() => createBroker({ port: 0, limits: { flapping: { connects: 1, windowSeconds: 10, banSeconds: 60 } } }), /limits\.flapping\.connects = 1/)
})

test('configure() replaces the config file bans and closes the clients a new one matches; bans added at run time stay', async (t) => {
  const broker = await startBroker(t, { sys: { enabled: false }, bans: [{ clientId: 'old', expires: '2999-01-01T00:00:00Z' }] })
  const url = urlOf(broker)
  await broker.bans.add({ kind: 'clientId', value: 'runtime' })
  const target = await connect(t, broker, { clientId: 'target', protocolVersion: 5 })
  const kicked = once<[IDisconnectPacket]>(target, 'disconnect')
  broker.bans.configure([{ clientId: 'target' }, { address: '10.0.0.0/8', reason: 'lab' }])
  assert.equal((await kicked)[0].reasonCode, 0x98)
  assert.deepEqual(
    broker.bans
      .list()
      .map((b) => [b.kind, b.value, b.by])
      .sort(),
    [
      ['address', '10.0.0.0/8', 'config'],
      ['clientId', 'runtime', undefined],
      ['clientId', 'target', 'config'],
    ],
  )
  assert.equal(await connackCode(url, { clientId: 'old', protocolVersion: 5 }), 0)
  assert.equal(await connackCode(url, { clientId: 'runtime', protocolVersion: 5 }), 0x8a)
  assert.throws(() => broker.bans.configure([{ address: 'nope' }]), { code: 'HOOKMQ_ERR_BAN_INVALID', message: /bans\[0\]: "nope" is not an IP/ })
  assert.equal(broker.bans.list().length, 3) // a bad list changes nothing
})

test('two nodes on one Redis: a ban added on A closes its client on B and refuses it there within a second; it survives a restart of both; removed on B, it lifts on A', async (t) => {
  const redis = await startRedis(t)
  const [a, b] = await nodes(t, redis.url, ['a', 'b'])
  const onB = await connect(t, b!, { clientId: 'roamer', protocolVersion: 5 })
  const kicked = once<[IDisconnectPacket]>(onB, 'disconnect', 1000)
  const added = Date.now()
  const ban = await a!.bans.add({ kind: 'clientId', value: 'roamer', reason: 'cluster test', by: 'ops' })
  assert.equal((await kicked)[0].reasonCode, 0x98)
  assert.ok(Date.now() - added < 1000)
  assert.equal(await connackCode(urlOf(b!), { clientId: 'roamer', protocolVersion: 5 }), 0x8a)
  assert.deepEqual(b!.bans.list(), [ban])

  await Promise.all([a!.close(), b!.close()])
  const [a2, b2] = await nodes(t, redis.url, ['a', 'b'])
  for (const n of [a2!, b2!]) {
    assert.deepEqual(n.bans.list(), [ban])
    assert.equal(await connackCode(urlOf(n), { clientId: 'roamer', protocolVersion: 4 }), 5)
  }
  assert.equal(await b2!.bans.remove(ban.id), true)
  await until(() => a2!.bans.list().length === 0, 1000, 'the removal to reach A')
  assert.equal(await connackCode(urlOf(a2!), { clientId: 'roamer', protocolVersion: 5 }), 0)
})

test('while Redis is away the bans known keep applying; changing them is refused (HOOKMQ_ERR_STORE_UNAVAILABLE) until it is back', async (t) => {
  const redis = await startRedis(t)
  const broker: Broker = await startBroker(t, { ws: false, sys: { enabled: false }, redis: { url: redis.url, ...fast } })
  const url = urlOf(broker)
  await broker.bans.add({ kind: 'username', value: 'trudy' })
  await redis.stop()
  await until(() => broker.cluster?.available === false, 3000, 'the broker to see Redis gone')
  assert.equal(await connackCode(url, { username: 'trudy', protocolVersion: 5 }), 0x8a)
  await assert.rejects(broker.bans.add({ kind: 'username', value: 'oscar' }), { code: 'HOOKMQ_ERR_STORE_UNAVAILABLE' })
  await redis.start()
  await until(() => broker.cluster?.available === true, 10000, 'Redis back')
  await broker.bans.add({ kind: 'username', value: 'oscar' })
  assert.deepEqual(
    broker.bans.list().map((b) => b.value),
    ['trudy', 'oscar'],
  )
})
