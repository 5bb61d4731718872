import assert from 'node:assert/strict'
import { randomBytes, scryptSync } from 'node:crypto'
import { copyFileSync } from 'node:fs'
import { join } from 'node:path'
import { test, type TestContext } from 'node:test'
import { fileURLToPath } from 'node:url'
import type { MqttClient } from 'mqtt'
import { defineHook, MemoryBus, MemoryRetainedStore, MemorySessionStore, type AuthenticateInput, type Broker } from '../../plugins/index.js'
import { collect, connect, hooksFolder, once, pingRoundTrip, RawClient, startBroker, until } from '../helpers.js'

// A client id is not an identity: a session remembers who owned it, another
// identity cannot resume it or take over its connection, and resumed
// subscriptions are authorized again.

const examples = fileURLToPath(new URL('../../../hooks.example/', import.meta.url))

function hash(password: string): string {
  const salt = randomBytes(16)
  return `scrypt:${salt.toString('hex')}:${scryptSync(password, salt, 32).toString('hex')}`
}

/** hooks.example/auth.ts and acl.ts from a real folder: alice, mallory and admin (a superuser); users subscribe to users/<name>/#. */
async function exampleBroker(t: TestContext, extra: object = {}): Promise<Broker> {
  const dir = hooksFolder(t)
  for (const f of ['auth.ts', 'acl.ts']) copyFileSync(join(examples, f), join(dir, f))
  return startBroker(t, {
    hooksDir: dir,
    hooks: {
      auth: { users: { alice: { password: hash('alice-pw') }, mallory: { password: hash('mallory-pw') }, admin: { password: hash('admin-pw') } } },
      acl: {
        superusers: ['admin'],
        rules: [
          { user: '*', allow: 'subscribe', topics: ['users/%u/#'] },
          { user: '*', allow: 'both', topics: ['public/#'] },
        ],
      },
    },
    ...extra,
  })
}

const as = (user: string) => ({ username: user, password: `${user}-pw` })

/** A publish/subscribe round trip of a client that has nothing to do with the test. */
async function bystanderWorks(t: TestContext, broker: Broker, options: object = {}, topic = 'public/bystander'): Promise<void> {
  const c = await connect(t, broker, { clientId: 'bystander-' + Math.random().toString(36).slice(2), ...options })
  await c.subscribeAsync(topic, { qos: 1 })
  await c.publishAsync(topic, 'ok', { qos: 1 })
  assert.equal((await collect(c).next()).payload.toString(), 'ok')
}

function closes(client: MqttClient): { count: number } {
  const seen = { count: 0 }
  client.on('close', () => {
    seen.count++
  })
  return seen
}

test("a client id is not an identity (5.0 [MQTT-3.1.3-8], 3.1.1 [MQTT-3.1.3-9]): mallory with alice's client id is refused 0x85 / return code 2, alice's connection and session are untouched", async (t) => {
  const broker = await exampleBroker(t)
  const admin = await connect(t, broker, as('admin'))
  const alice = await connect(t, broker, { clientId: 'alice-1', clean: false, ...as('alice') })
  const aliceCloses = closes(alice)
  const inbox = collect(alice)
  await alice.subscribeAsync('users/alice/#', { qos: 1 })
  const direct = await connect(t, broker, { protocolVersion: 5, ...as('mallory') })
  await assert.rejects(direct.subscribeAsync('users/alice/#', { qos: 1 }), /Not authorized/) // the ACL refuses her directly

  const v4 = await RawClient.open(t, broker, 4)
  assert.equal((await v4.connect({ clientId: 'alice-1', clean: false, ...as('mallory'), password: Buffer.from('mallory-pw') })).returnCode, 2)
  await v4.expectClosed()
  const v5 = await RawClient.open(t, broker, 5)
  assert.equal((await v5.connect({ clientId: 'alice-1', clean: true, ...as('mallory'), password: Buffer.from('mallory-pw') }, 5)).reasonCode, 0x85)
  await v5.expectClosed()

  await admin.publishAsync('users/alice/inbox', 'still yours', { qos: 1 })
  assert.equal((await inbox.next()).payload.toString(), 'still yours')
  assert.equal(aliceCloses.count, 0)

  // offline: her queued messages are not mallory's either
  await alice.endAsync()
  await admin.publishAsync('users/alice/inbox', 'while away', { qos: 1 })
  const again = await RawClient.open(t, broker, 4)
  assert.equal((await again.connect({ clientId: 'alice-1', clean: false, ...as('mallory'), password: Buffer.from('mallory-pw') })).returnCode, 2)
  assert.deepEqual(
    again.packets.filter((p) => p.cmd === 'publish'),
    [],
  )
  const back = await connect(t, broker, { clientId: 'alice-1', clean: false, ...as('alice') })
  assert.equal(back.connected, true)
  assert.equal((await collect(back).next()).payload.toString(), 'while away')
  await bystanderWorks(t, broker, as('admin'))
})

test('sessions.identityMismatch "fresh": the newcomer starts empty, the owner\'s session is discarded and its connection taken over', async (t) => {
  const broker = await exampleBroker(t, { sessions: { identityMismatch: 'fresh' } })
  const admin = await connect(t, broker, as('admin'))
  const alice = await connect(t, broker, { clientId: 'shared-1', clean: false, ...as('alice') })
  await alice.subscribeAsync('users/alice/#', { qos: 1 })
  await alice.endAsync()
  await admin.publishAsync('users/alice/inbox', 'queued for alice', { qos: 1 })

  const mallory = await RawClient.open(t, broker, 5)
  const ack = await mallory.connect(
    { clientId: 'shared-1', clean: false, properties: { sessionExpiryInterval: 300 }, ...as('mallory'), password: Buffer.from('mallory-pw') },
    5,
  )
  assert.deepEqual([ack.reasonCode, ack.sessionPresent], [0, false])
  await admin.publishAsync('users/alice/inbox', 'after the switch', { qos: 1 })
  mallory.send({ cmd: 'pingreq' }, 5)
  await mallory.expect('pingresp')
  assert.deepEqual(
    mallory.packets.filter((p) => p.cmd === 'publish'),
    [],
  ) // neither the queued message nor the subscription

  // the session is mallory's now: alice coming back is a mismatch too, and takes over mallory's connection
  const back = await connect(t, broker, { clientId: 'shared-1', clean: false, protocolVersion: 5, properties: { sessionExpiryInterval: 300 }, ...as('alice') })
  assert.equal((await mallory.expect('disconnect')).reasonCode, 0x8e)
  await mallory.expectClosed()
  await pingRoundTrip(back)
  assert.deepEqual(collect(back).messages, [])
  await bystanderWorks(t, broker, as('admin'))
})

test('an authenticate hook sees the existing session and its owner, and may answer resume, fresh or refuse', async (t) => {
  const seen: Array<[string | undefined, AuthenticateInput['session']]> = []
  const broker = await startBroker(t, {
    hooks: [
      defineHook({
        name: 'sessions-policy',
        authenticate(input) {
          seen.push([input.username, input.session])
          if (input.username === 'support') return { allow: true, session: 'resume' }
          if (input.username === 'kiosk') return { allow: true, session: 'fresh' }
          if (input.username === 'locked' && input.session !== undefined) return { allow: true, session: 'refuse' }
          return { allow: true }
        },
      }),
    ],
  })
  const alice = await connect(t, broker, { clientId: 'desk-1', clean: false, username: 'alice' })
  await alice.subscribeAsync('desk/#', { qos: 1 })
  await alice.endAsync()
  await broker.publish({ topic: 'desk/1', payload: 'for the desk', qos: 1 })
  assert.deepEqual(seen.pop(), ['alice', undefined]) // no session yet

  const support = await connect(t, broker, { clientId: 'desk-1', clean: false, username: 'support' })
  assert.deepEqual(seen.pop(), ['support', { owner: 'alice' }])
  assert.equal((await collect(support).next()).payload.toString(), 'for the desk') // resumed: alice's queue

  const kiosk = await RawClient.open(t, broker, 4)
  assert.equal((await kiosk.connect({ clientId: 'desk-1', clean: false, username: 'kiosk' })).sessionPresent, false)
  assert.deepEqual(seen.pop(), ['kiosk', { owner: 'support' }]) // resuming made support the owner
  await until(() => !support.connected, 3000, 'support to be taken over')

  await connect(t, broker, { clientId: 'locked-1', clean: false, username: 'locked' }).then((c) => c.endAsync())
  const locked = await RawClient.open(t, broker, 5)
  assert.equal((await locked.connect({ clientId: 'locked-1', clean: false, username: 'locked' }, 5)).reasonCode, 0x85) // its own session: the hook still decides
  assert.deepEqual(seen.pop(), ['locked', { owner: 'locked' }])
  await bystanderWorks(t, broker)
})

test("identity: the hook's user (a string, or an object's string id), else the user name; anonymous is its own identity", async (t) => {
  const broker = await startBroker(t, {
    hooks: [
      defineHook({
        name: 'tenants',
        authenticate({ username }) {
          if (username?.includes('@')) return { allow: true, user: username.split('@')[1] } // a string: the tenant
          if (username?.startsWith('dev-')) return { allow: true, user: { id: 'device', name: username } } // an object's id
          return undefined // anonymous or a plain user name: the loopback default lets it in, its user name is its identity
        },
      }),
    ],
  })
  const refused = async (clientId: string, options: { username?: string }): Promise<void> => {
    const raw = await RawClient.open(t, broker, 5)
    assert.equal(
      (await raw.connect({ clientId, clean: false, properties: { sessionExpiryInterval: 60 }, ...options }, 5)).reasonCode,
      0x85,
      `${options.username ?? 'anonymous'} on ${clientId}`,
    )
  }
  const resumes = async (clientId: string, options: { username?: string }): Promise<void> => {
    const c = await connect(t, broker, { clientId, clean: false, protocolVersion: 5, properties: { sessionExpiryInterval: 60 }, ...options })
    await c.endAsync()
  }
  await resumes('t-1', { username: 'ann@acme' })
  await resumes('t-1', { username: 'bob@acme' }) // the same tenant
  await refused('t-1', { username: 'eve@other' })
  await resumes('d-1', { username: 'dev-1' })
  await resumes('d-1', { username: 'dev-2' }) // both are "device"
  await refused('d-1', {})
  await resumes('anon-1', {})
  await resumes('anon-1', {}) // anonymous sessions have no protection beyond the client id
  await refused('anon-1', { username: 'carol' })
  await resumes('carol-1', { username: 'carol' })
  await refused('carol-1', {})
  await bystanderWorks(t, broker)
})

test('resumed subscriptions are authorized again: one denied while the client was offline is removed and none of its queued messages arrive', async (t) => {
  const denied = new Set<string>()
  const broker = await startBroker(t, {
    hooks: [
      defineHook({
        name: 'acl-from-a-database',
        async authorizeSubscribe({ filter }) {
          // asynchronous, as a database lookup is
          await new Promise((r) => setImmediate(r))
          return denied.has(filter) ? { deny: 'revoked' } : true
        },
      }),
    ],
  })
  const opts = { clientId: 'reader', clean: false, protocolVersion: 5 as const, properties: { sessionExpiryInterval: 300 } }
  const first = await connect(t, broker, opts)
  await first.subscribeAsync(['kept/#', 'gone/#'], { qos: 1 })
  await first.endAsync()
  await broker.publish({ topic: 'kept/1', payload: 'k1', qos: 1 })
  await broker.publish({ topic: 'gone/1', payload: 'g1', qos: 1 })
  await broker.publish({ topic: 'kept/2', payload: 'k2', qos: 1 })
  denied.add('gone/#') // the rule changes in the database: no hook reload
  const back = await connect(t, broker, opts)
  const inbox = collect(back)
  await inbox.count(2)
  await broker.publish({ topic: 'gone/2', payload: 'g2', qos: 1 })
  await pingRoundTrip(back)
  assert.deepEqual(
    inbox.messages.map((m) => m.payload.toString()),
    ['k1', 'k2'],
  )
  assert.deepEqual(
    broker
      .subscriptions()
      .filter((s) => s.clientId === 'reader')
      .map((s) => s.subscription.filter),
    ['kept/#'],
  )
  await bystanderWorks(t, broker)
})

test('[MQTT-4.4.0-1] resume re-check: an unacknowledged message of a revoked subscription is not sent again; the others are', async (t) => {
  const denied = new Set<string>()
  const broker = await startBroker(t, {
    hooks: [defineHook({ name: 'acl', authorizeSubscribe: ({ filter }) => (denied.has(filter) ? { deny: 'revoked' } : true) })],
  })
  const opts = { clientId: 'unacked', clean: false, properties: { sessionExpiryInterval: 300 } }
  const first = await RawClient.open(t, broker, 5)
  await first.connect(opts, 5)
  first.send(
    {
      cmd: 'subscribe',
      messageId: 1,
      subscriptions: [
        { topic: 'kept/#', qos: 1 },
        { topic: 'gone/#', qos: 2 },
      ],
    },
    5,
  )
  await first.expect('suback')
  await broker.publish({ topic: 'gone/0', payload: 'g0', qos: 2 })
  await broker.publish({ topic: 'kept/0', payload: 'k0', qos: 1 })
  await first.expect('publish')
  await first.expect('publish') // neither acknowledged
  const gone = once(broker, 'clientDisconnected')
  first.socket.destroy()
  await gone
  denied.add('gone/#')
  const back = await RawClient.open(t, broker, 5)
  assert.equal((await back.connect(opts, 5)).sessionPresent, true)
  const again = await back.expect('publish')
  assert.deepEqual([again.topic, again.dup], ['kept/0', true])
  back.send({ cmd: 'pingreq' }, 5)
  await back.expect('pingresp')
  assert.deepEqual(
    back.packets.filter((p) => p.cmd === 'publish'),
    [],
  )
  await bystanderWorks(t, broker)
})

test('resume re-check honours defaults.subscribe and revokedSubscriptions "disconnect": CONNACK, then DISCONNECT 0x87, nothing of the revoked filter', async (t) => {
  let allowed = true
  const broker = await startBroker(t, {
    defaults: { subscribe: 'deny' },
    revokedSubscriptions: 'disconnect',
    hooks: [defineHook({ name: 'acl', authorizeSubscribe: ({ filter }) => (filter.startsWith('open/') || allowed ? true : undefined) })],
  })
  const opts = { clientId: 'strict', clean: false, properties: { sessionExpiryInterval: 300 } }
  const first = await RawClient.open(t, broker, 5)
  await first.connect(opts, 5)
  first.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'private/#', qos: 1 }] }, 5)
  await first.expect('suback')
  first.send({ cmd: 'disconnect', reasonCode: 0 }, 5)
  await first.expectClosed()
  await broker.publish({ topic: 'private/1', payload: 'secret', qos: 1 })
  allowed = false // every hook passes on private/#, and the default is deny
  const back = await RawClient.open(t, broker, 5)
  const ack = await back.connect(opts, 5)
  assert.deepEqual([ack.reasonCode, ack.sessionPresent], [0, true])
  assert.equal((await back.expect('disconnect')).reasonCode, 0x87)
  await back.expectClosed()
  assert.deepEqual(
    back.packets.filter((p) => p.cmd === 'publish'),
    [],
  )
  assert.deepEqual(
    broker.subscriptions().filter((s) => s.clientId === 'strict'),
    [],
  )
  await bystanderWorks(t, broker, {}, 'open/bystander')
})

test('a session stored without an owner (before owners were recorded) is taken by the first identity that resumes it', async (t) => {
  const sessions = new MemorySessionStore()
  sessions.save({
    clientId: 'legacy-1',
    expiryInterval: 3600,
    subscriptions: [{ filter: 'legacy/#', qos: 1, nl: false, rap: false, rh: 0 }],
    disconnectedAt: Date.now(),
  })
  const broker = await startBroker(t, { stores: { sessions, retained: new MemoryRetainedStore(), bus: new MemoryBus() } })
  await broker.publish({ topic: 'legacy/1', payload: 'kept', qos: 1 })
  const carol = await connect(t, broker, { clientId: 'legacy-1', clean: false, username: 'carol' })
  assert.equal((await collect(carol).next()).payload.toString(), 'kept')
  await carol.endAsync()
  assert.equal((await sessions.load('legacy-1'))?.owner, 'carol')
  const dave = await RawClient.open(t, broker, 4)
  assert.equal((await dave.connect({ clientId: 'legacy-1', clean: false, username: 'dave' })).returnCode, 2)
  await bystanderWorks(t, broker)
})
