import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'
import type { BrokerEventName } from '../../core/index.js'
import { collect, connect, hooksFolder, publishCode, startBroker, until } from '../helpers.js'
import { captureLog } from '../log-capture.js'

// The session, messageDropped and denial events: as broker events (broker.on)
// and as hook events (on.<event> in a hook file, inline and in a worker), from
// real clients.

const MODES = ['inline', 'worker'] as const

const WATCH = `import { defineHook } from 'hookmq'
export default defineHook({
  name: 'watch',
  authorizePublish: ({ topic }) => (topic.startsWith('secret/') ? { deny: 'secret' } : undefined),
  authorizeSubscribe: ({ filter }) => (filter.startsWith('secret/') ? { deny: 'no secrets' } : undefined),
  on: {
    sessionCreated: (s, client, { log }) => log.info({ ev: 'sessionCreated', id: s.clientId, expiry: s.expiryInterval, client: client.id }, 'event'),
    sessionResumed: (s, client, { log }) => log.info({ ev: 'sessionResumed', id: s.clientId, queued: s.queued, client: client.id }, 'event'),
    sessionExpired: (s, client, { log }) => log.info({ ev: 'sessionExpired', id: s.clientId, client: client?.id }, 'event'),
    messageDropped: (m, info, { log }) =>
      log.info({ ev: 'messageDropped', topic: m.topic, payload: Buffer.from(m.payload).toString(), why: info.reason, id: info.clientId }, 'event'),
    publishDenied: (m, client, info, { log }) => log.info({ ev: 'publishDenied', topic: m.topic, client: client.id, code: info.reasonCode, hook: info.hook, why: info.reason }, 'event'),
    subscribeDenied: (s, client, info, { log }) =>
      log.info({ ev: 'subscribeDenied', filter: s.filter, qos: s.qos, client: client.id, code: info.reasonCode, hook: info.hook }, 'event'),
  },
})
`

const EVENTS: BrokerEventName[] = ['sessionCreated', 'sessionResumed', 'sessionExpired', 'messageDropped', 'publishDenied', 'subscribeDenied']

for (const mode of MODES) {
  test(`${mode}: sessionCreated/Resumed/Expired, messageDropped (queue full, expired, too large, no subscribers), publishDenied, subscribeDenied`, async (t) => {
    const dir = hooksFolder(t)
    writeFileSync(join(dir, 'watch.ts'), WATCH)
    const log = captureLog()
    const broker = await startBroker(t, { hooksDir: dir, hooks: { isolation: mode }, limits: { maxQueuedMessages: 2 }, logger: log.logger })
    const seen: Array<[string, unknown[]]> = []
    for (const e of EVENTS) broker.on(e, (...args: unknown[]) => seen.push([e, args]))
    /** the hook's log line for `ev` whose fields include `fields` (waits for it) */
    const hook = (ev: string, fields: Record<string, unknown>): Promise<Record<string, unknown>> =>
      log.find((r) => r.hook === 'watch' && r.ev === ev && Object.entries(fields).every(([k, v]) => r[k] === v))
    /** the broker event `ev` whose arguments pass `match` (waits for it) */
    const event = async (ev: string, match: (args: unknown[]) => boolean): Promise<unknown[]> => {
      await until(() => seen.some(([e, a]) => e === ev && match(a)), 5000, `broker event ${ev}`)
      return seen.find(([e, a]) => e === ev && match(a))![1]
    }

    const pub = await connect(t, broker, { protocolVersion: 5, clientId: 'pub' })
    await hook('sessionCreated', { id: 'pub', expiry: 0, client: 'pub' })

    // a full queue of an offline session drops its oldest message
    const persistent = { protocolVersion: 5 as const, clean: false, properties: { sessionExpiryInterval: 60 } }
    const offline = await connect(t, broker, { ...persistent, clientId: 'offline' })
    await offline.subscribeAsync('full/#', { qos: 1 })
    await offline.endAsync()
    for (const n of [1, 2, 3]) await pub.publishAsync('full/' + n, 'm' + n, { qos: 1 })
    const [dropped, info] = await event('messageDropped', (a) => (a[1] as { reason: string }).reason === 'queueFull')
    assert.equal((dropped as { topic: string }).topic, 'full/1')
    assert.deepEqual(info, { reason: 'queueFull', clientId: 'offline' })
    await hook('messageDropped', { topic: 'full/1', payload: 'm1', why: 'queueFull', id: 'offline' })

    // an expired message is dropped when the session resumes, not sent
    const expiring = await connect(t, broker, { ...persistent, clientId: 'expiring' })
    await expiring.subscribeAsync('exp/#', { qos: 1 })
    await expiring.endAsync()
    await pub.publishAsync('exp/1', 'short-lived', { qos: 1, properties: { messageExpiryInterval: 1 } })
    const due = Date.now() + 1100
    await until(() => Date.now() > due, 2000, 'its Message Expiry Interval to pass')
    const back = await connect(t, broker, { ...persistent, clientId: 'expiring' })
    await hook('sessionResumed', { id: 'expiring', queued: 1, client: 'expiring' })
    await hook('messageDropped', { topic: 'exp/1', why: 'expired', id: 'expiring' })
    await event('sessionResumed', (a) => (a[0] as { clientId: string }).clientId === 'expiring')
    await back.publishAsync('exp/2', 'fresh', { qos: 1 })
    assert.equal((await collect(back).next()).topic, 'exp/2') // exp/1 never came

    // larger than the subscriber's Maximum Packet Size; nobody subscribed
    const small = await connect(t, broker, { protocolVersion: 5, clientId: 'small', properties: { maximumPacketSize: 200 } })
    await small.subscribeAsync('big/#', { qos: 0 })
    await pub.publishAsync('big/1', Buffer.alloc(500, 'x'), { qos: 0 })
    await hook('messageDropped', { topic: 'big/1', why: 'tooLarge', id: 'small' })
    await pub.publishAsync('nobody/listens', 'lost', { qos: 0 })
    await hook('messageDropped', { topic: 'nobody/listens', why: 'noSubscribers' })
    assert.deepEqual((await event('messageDropped', (a) => (a[1] as { reason: string }).reason === 'noSubscribers'))[1], {
      reason: 'noSubscribers',
      clientId: undefined,
    })

    // denials: by the hook, and the broker's own $SYS rule
    assert.equal(await publishCode(pub, 'secret/plans', 'x'), 0x87)
    await hook('publishDenied', { topic: 'secret/plans', client: 'pub', code: 0x87, hook: 'watch', why: 'secret' })
    assert.equal(await publishCode(pub, '$SYS/fake', 'x'), 0x87)
    await hook('publishDenied', { topic: '$SYS/fake', client: 'pub', code: 0x87 })
    await assert.rejects(pub.subscribeAsync('secret/#', { qos: 1 }), /Not authorized/) // SUBACK 0x87
    await hook('subscribeDenied', { filter: 'secret/#', qos: 1, client: 'pub', code: 0x87, hook: 'watch' })
    const [subscription, client, denial] = await event('subscribeDenied', () => true)
    assert.deepEqual(subscription, { filter: 'secret/#', qos: 1 })
    assert.equal((client as { id: string }).id, 'pub')
    assert.deepEqual(denial, { reasonCode: 0x87, reason: 'no secrets', hook: 'watch' })

    // a session that expires while disconnected
    const brief = await connect(t, broker, { protocolVersion: 5, clientId: 'brief', properties: { sessionExpiryInterval: 1 } })
    await hook('sessionCreated', { id: 'brief', expiry: 1, client: 'brief' })
    await brief.endAsync()
    await hook('sessionExpired', { id: 'brief', client: 'brief' })
    assert.equal(broker.sessions.sessions.has('brief'), false)
    assert.equal(broker.hookStatus()[0]!.errors, 0)
  })
}

test('no listener, no event: the broker emits nothing the hooks do not handle (the host listens only to handled events)', async (t) => {
  const dir = hooksFolder(t)
  writeFileSync(join(dir, 'quiet.ts'), `import { defineHook } from 'hookmq'\nexport default defineHook({ name: 'quiet', on: { clientConnected: () => {} } })\n`)
  const broker = await startBroker(t, { hooksDir: dir })
  for (const e of EVENTS) assert.equal(broker.emitter.has(e), false, e)
  assert.equal(broker.emitter.has('clientConnected'), true)
})
