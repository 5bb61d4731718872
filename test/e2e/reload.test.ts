import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import net from 'node:net'
import { join } from 'node:path'
import { test } from 'node:test'
import mqtt from 'mqtt'
import type { HookmqBroker, HookmqConfigInput } from '../../plugins/index.js'
import { connect, defer, freePort, hooksFolder, once, publishCode, startBroker, startSink, until, urlOf } from '../helpers.js'
import { captureLog } from '../log-capture.js'

// Live config reload (broker.reload) and hook control (setEnabled, reloadFile), on a real broker with
// real hook files, MQTT.js clients and HTTP sinks. The CLI's SIGHUP is in cli.test.ts.

/** what every broker here runs with: a reload passes it again (a whole config), so only what a test changes differs */
const BASE = { port: 0, ws: { port: 0, path: '/mqtt' }, warmup: false } satisfies HookmqConfigInput

/** denies publishing to `hooks.denier.deny`; a setup that refuses `failSetup: true` */
const denier = (isolation: 'inline' | 'worker'): string => `
import { defineHook } from 'hookmq'
import { z } from 'zod'
export default defineHook({
  name: 'denier',
  isolation: '${isolation}',
  config: z.object({ deny: z.string(), failSetup: z.boolean().default(false) }),
  setup({ config }) {
    if (config.failSetup) throw new Error('setup refused this config')
  },
  authorizePublish({ topic }, { config }) {
    return topic === config.deny ? { deny: 'denied by its config' } : undefined
  },
})
`

/** a second hook with a config, to see that a refused reload puts back what it had already changed */
const other = `
import { defineHook } from 'hookmq'
import { z } from 'zod'
export default defineHook({
  name: 'other',
  config: z.object({ deny: z.string() }),
  authorizePublish({ topic }, { config }) {
    return topic === config.deny ? { deny: 'denied by other' } : undefined
  },
})
`

async function withHooks(
  t: Parameters<typeof startBroker>[0],
  files: Record<string, string>,
  hooks: Record<string, unknown>,
): Promise<{ broker: HookmqBroker; dir: string }> {
  const dir = hooksFolder(t)
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text)
  const broker = await startBroker(t, { ...BASE, hooksDir: dir, hooks })
  return { broker, dir }
}

const version = (broker: HookmqBroker, name: string): number | undefined => broker.hookStatus().find((s) => s.name === name)?.version

for (const isolation of ['inline', 'worker'] as const) {
  test(`a hook config change applies at once, the client staying connected; a bad value is refused and the old config keeps serving (${isolation})`, async (t) => {
    const { broker, dir } = await withHooks(t, { 'denier.ts': denier(isolation) }, { denier: { deny: 'a' } })
    let disconnects = 0
    broker.on('clientDisconnected', () => disconnects++)
    const c = await connect(t, broker, { protocolVersion: 5 })
    assert.equal(await publishCode(c, 'a'), 0x87)
    assert.equal(await publishCode(c, 'b'), 0x10)
    const r = await broker.reload({ ...BASE, hooksDir: dir, hooks: { denier: { deny: 'b' } } })
    assert.deepEqual(r, { applied: ['hooks.denier'], restartNeeded: [], unchanged: false })
    assert.equal(version(broker, 'denier'), 2)
    assert.equal(await publishCode(c, 'a'), 0x10)
    assert.equal(await publishCode(c, 'b'), 0x87)

    // a value its schema refuses: the whole reload is refused, nothing changes
    await assert.rejects(broker.reload({ ...BASE, hooksDir: dir, hooks: { denier: { deny: 5 } } }), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'HOOKMQ_ERR_CONFIG_INVALID')
      assert.match(err.message, /hooks\.denier\.deny/)
      return true
    })
    // a value its setup refuses: the same
    await assert.rejects(
      broker.reload({ ...BASE, hooksDir: dir, hooks: { denier: { deny: 'c', failSetup: true } } }),
      /hooks\.denier: .*setup refused this config/,
    )
    assert.equal(await publishCode(c, 'b'), 0x87)
    assert.equal(await publishCode(c, 'c'), 0x10)
    assert.equal(broker.hookStatus().find((s) => s.name === 'denier')?.state, 'loaded') // what serves did not fail
    assert.deepEqual(broker.currentConfig.hooks.denier, { deny: 'b' })
    // the same config again: nothing to do
    assert.deepEqual(await broker.reload({ ...BASE, hooksDir: dir, hooks: { denier: { deny: 'b' } } }), { applied: [], restartNeeded: [], unchanged: true })
    assert.equal(disconnects, 0)
    assert.equal(c.connected, true)
  })
}

test('a reload is all or nothing across hooks: one refusing its value puts back the one already reloaded', async (t) => {
  const { broker, dir } = await withHooks(t, { 'denier.ts': denier('inline'), 'other.ts': other }, { denier: { deny: 'a' }, other: { deny: 'x' } })
  const c = await connect(t, broker, { protocolVersion: 5 })
  await assert.rejects(broker.reload({ ...BASE, hooksDir: dir, hooks: { denier: { deny: 'a', failSetup: true }, other: { deny: 'y' } } }), /hooks\.denier/)
  assert.equal(await publishCode(c, 'x'), 0x87) // other: back to its old value
  assert.equal(await publishCode(c, 'y'), 0x10)
  assert.equal(await publishCode(c, 'a'), 0x87)
  assert.deepEqual(broker.currentConfig.hooks.other, { deny: 'x' })
})

test('reload() with no argument reads the configSource again; without one it is refused with a clear error', async (t) => {
  const plain = await startBroker(t, BASE)
  await assert.rejects(plain.reload(), (err: Error & { code?: string }) => err.code === 'HOOKMQ_ERR_CONFIG_INVALID' && /configSource/.test(err.message))
  let source: HookmqConfigInput = { ...BASE, defaults: { publish: 'allow' } }
  const broker = await startBroker(t, { ...BASE, configSource: async () => source })
  const c = await connect(t, broker, { protocolVersion: 5 })
  assert.equal(await publishCode(c, 't'), 0x10)
  source = { ...BASE, defaults: { publish: 'deny' } }
  assert.deepEqual(await broker.reload(), { applied: ['defaults'], restartNeeded: [], unchanged: false })
  assert.equal(await publishCode(c, 't'), 0x87) // defaults.publish: read once per change, applied at once
  source = { ...BASE, limits: { maxConnections: 'many' } } as unknown as HookmqConfigInput
  await assert.rejects(broker.reload(), /limits\.maxConnections/)
  assert.equal(await publishCode(c, 't'), 0x87) // (nothing of the refused config applied)
})

test('a limit change applies to the next connection; one told to clients in CONNACK is named as needing a restart', async (t) => {
  const log = captureLog('info')
  const broker = await startBroker(t, { ...BASE, logger: log.logger })
  const a = await connect(t, broker)
  const b = await connect(t, broker)
  const r = await broker.reload({ ...BASE, limits: { maxConnections: 2, receiveMaximum: 10 } })
  assert.deepEqual(r, { applied: ['limits.maxConnections'], restartNeeded: ['limits.receiveMaximum'], unchanged: false })
  assert.equal(broker.config.limits.receiveMaximum, 100) // (left as it was)
  await log.find((l) => l.msg === 'config reloaded' && l.level === 40) // warn: something needs a restart
  // a third socket is closed at accept; the two connected stay
  const refused = net.connect(broker.addresses.find((l) => l.name === 'tcp')!.port, '127.0.0.1')
  defer(t, () => refused.destroy())
  await once(refused, 'close')
  assert.equal(a.connected && b.connected, true)
  await broker.reload({ ...BASE, limits: { maxConnections: 3 } })
  await connect(t, broker)
})

test('a port change is named in restartNeeded (and again on the next reload); the broker keeps serving where it listens', async (t) => {
  const broker = await startBroker(t, BASE)
  const port = await freePort()
  const r = await broker.reload({ ...BASE, port })
  assert.deepEqual(r, { applied: [], restartNeeded: ['port'], unchanged: false })
  assert.deepEqual((await broker.reload({ ...BASE, port })).restartNeeded, ['port'])
  const c = await mqtt.connectAsync(urlOf(broker), { reconnectPeriod: 0 })
  await c.endAsync()
})

test('log.level changes live on a logger the broker made', async (t) => {
  const broker = await startBroker(t, { ...BASE, logger: undefined, log: { level: 'silent' } })
  assert.equal(broker.log.isLevelEnabled('error'), false)
  const r = await broker.reload({ ...BASE, log: { level: 'fatal' } })
  assert.deepEqual(r.applied, ['log.level'])
  assert.equal(broker.log.isLevelEnabled('fatal'), true)
  assert.equal(broker.log.child({ plugin: 'x' }).isLevelEnabled('fatal'), true)
})

test('a webhook URL change sends the next message to the new sink; deliveries queued behind a batch in flight are not lost', async (t) => {
  const first = await startSink(t)
  const second = await startSink(t)
  // the first sink holds its first request until released: later messages wait in the outbox meanwhile
  let release: (() => void) | undefined
  first.respond = (_req, res) => {
    release = () => res.writeHead(204).end()
  }
  const hook = { name: 'w', topics: ['t/#'], batch: { maxSize: 1, maxWaitMs: 0 }, concurrency: 1 }
  const broker = await startBroker(t, { ...BASE, webhooks: [{ ...hook, url: first.url }] })
  const c = await connect(t, broker)
  await c.publishAsync('t/1', 'one', { qos: 1 })
  await until(() => release !== undefined, 5000, 'the first request')
  await c.publishAsync('t/2', 'two', { qos: 1 })
  await c.publishAsync('t/3', 'three', { qos: 1 })
  assert.equal(broker.webhooks.status()[0]!.queued, 2)
  const r = await broker.reload({ ...BASE, webhooks: [{ ...hook, url: second.url }] })
  assert.deepEqual(r, { applied: ['webhooks.w'], restartNeeded: [], unchanged: false })
  await second.waitForIds(2)
  release!()
  await first.waitForIds(1)
  const topics = (s: typeof first): string[] => s.requests.flatMap((q) => q.body.deliveries.map((d) => String(d.topic)))
  assert.deepEqual(topics(first), ['t/1']) // the batch in flight finished where it was going
  assert.deepEqual(topics(second), ['t/2', 't/3'])
  await c.publishAsync('t/4', 'four', { qos: 1 })
  await second.waitForIds(3)
  assert.equal(first.all.length, 1)
  await until(() => broker.webhooks.status()[0]!.delivered === 4, 5000, 'its counters, carried over, to count all four')
})

test('webhooks added to a broker started without any, then removed', async (t) => {
  const sink = await startSink(t)
  const broker = await startBroker(t, BASE)
  const c = await connect(t, broker)
  await c.publishAsync('t/0', 'before', { qos: 1 })
  const w = { name: 'w', url: sink.url, topics: ['t/#'], events: ['clientConnected' as const], batch: { maxWaitMs: 0 } }
  assert.deepEqual((await broker.reload({ ...BASE, webhooks: [w] })).applied, ['webhooks.w'])
  await c.publishAsync('t/1', 'after', { qos: 1 })
  await connect(t, broker)
  await sink.waitForIds(2)
  const kinds = sink.requests.flatMap((q) => q.body.deliveries.map((d) => String(d.topic ?? d.event)))
  assert.deepEqual(kinds.sort(), ['clientConnected', 't/1'])
  assert.deepEqual((await broker.reload(BASE)).applied, ['webhooks.w'])
  assert.deepEqual(broker.webhooks.status(), [])
  await c.publishAsync('t/2', 'gone', { qos: 1 })
  await connect(t, broker)
  assert.equal(sink.ids().length, 2)
})

test('setEnabled(false) makes a denying ACL hook stop denying, status shows it disabled; enabled again, it denies', async (t) => {
  const { broker } = await withHooks(t, { 'denier.ts': denier('inline') }, { denier: { deny: 'a' } })
  const c = await connect(t, broker, { protocolVersion: 5 })
  assert.equal(await publishCode(c, 'a'), 0x87)
  assert.equal(broker.hookHost.setEnabled('denier', false), true)
  assert.equal(await publishCode(c, 'a'), 0x10)
  assert.equal(broker.hookStatus().find((s) => s.name === 'denier')?.state, 'disabled')
  assert.equal(broker.hookHost.setEnabled('no-such-hook', false), false)
  assert.equal(broker.hookHost.setEnabled('denier', true), true)
  assert.equal(await publishCode(c, 'a'), 0x87)
  assert.equal(broker.hookStatus().find((s) => s.name === 'denier')?.state, 'loaded')
})

test('reloadFile loads an edited hook file now and answers its new status', async (t) => {
  const { broker, dir } = await withHooks(t, { 'denier.ts': denier('inline') }, { denier: { deny: 'a' } })
  const c = await connect(t, broker, { protocolVersion: 5 })
  assert.equal(await publishCode(c, 'a'), 0x87)
  writeFileSync(
    join(dir, 'denier.ts'),
    denier('inline').replace("topic === config.deny ? { deny: 'denied by its config' } : undefined", "topic === 'edited' ? { deny: 'edited' } : undefined"),
  )
  const s = await broker.hookHost.reloadFile('denier')
  assert.equal(s?.state, 'loaded')
  assert.ok(s!.version >= 2)
  assert.equal(await publishCode(c, 'a'), 0x10)
  assert.equal(await publishCode(c, 'edited'), 0x87)
  assert.equal(await broker.hookHost.reloadFile('no-such-hook'), undefined)
})
