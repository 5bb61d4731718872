import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'
import mqtt from 'mqtt'
import type { AuditRecord, HookmqConfigInput } from '../../plugins/index.js'
import { connect, hooksFolder, pingRoundTrip, publishCode, startBroker, startSink, until, urlOf } from '../helpers.js'
import { captureLog } from '../log-capture.js'

// Audit records of enforced decisions: the `audit` event, a webhook with the
// `decision` event (a real HTTP sink), the metrics; bounded.

const ACL = `import { defineHook } from 'hookmq'
export default defineHook({
  name: 'acl',
  authenticate({ username }) { return username === 'mallory' ? { deny: 'mallory is banned here' } : undefined },
  authorizePublish({ topic }) { return topic.startsWith('x/') ? { deny: 'no x' } : true },
  authorizeSubscribe({ filter }) { return filter.startsWith('secret/') ? { deny: 'no secrets' } : undefined },
})
`

function refusedLogin(url: string, username: string): Promise<void> {
  const c = mqtt.connect(url, { protocolVersion: 5, username, clientId: username, reconnectPeriod: 0 })
  return new Promise((resolve) =>
    c.once('close', () => {
      c.end(true)
      resolve()
    }),
  )
}

test('every deny of authenticate, authorizePublish and authorizeSubscribe is an audit record (event, webhook, metrics); allows only with audit.allows, which reloads live', async (t) => {
  const dir = hooksFolder(t)
  writeFileSync(join(dir, 'acl.ts'), ACL)
  const sink = await startSink(t)
  const config: HookmqConfigInput = {
    port: 0,
    ws: false,
    warmup: false,
    hooksDir: dir,
    http: { port: 0 },
    webhooks: [{ name: 'audit', url: sink.url, events: ['decision'], batch: { maxSize: 100, maxWaitMs: 0 } }],
  }
  const broker = await startBroker(t, config)
  const records: AuditRecord[] = []
  broker.on('audit', (r) => records.push(r))
  const c = await connect(t, broker, { protocolVersion: 5, clientId: 'aud', username: 'alice' })
  assert.equal(await publishCode(c, 'x/1'), 0x87)
  assert.equal(await publishCode(c, 'ok/1'), 0x10)
  const suback = new Promise<number[]>((resolve) => c.on('packetreceive', (p) => p.cmd === 'suback' && resolve(p.granted as number[])))
  c.subscribe('secret/a', { qos: 1 })
  assert.deepEqual(await suback, [0x87])
  await refusedLogin(urlOf(broker), 'mallory')
  await until(() => records.length === 3, 5000, 'three audit records')
  const common = { node: broker.id, hook: 'acl', hookVersion: 1, decision: 'deny', reasonCode: 0x87 }
  const strip = ({ time, address, ...r }: AuditRecord): Omit<AuditRecord, 'time' | 'address'> => {
    assert.ok(!Number.isNaN(Date.parse(time)))
    assert.match(address, /127\.0\.0\.1/)
    return r
  }
  assert.deepEqual(records.map(strip), [
    { ...common, kind: 'publish', clientId: 'aud', username: 'alice', reason: 'no x', topic: 'x/1' },
    { ...common, kind: 'subscribe', clientId: 'aud', username: 'alice', reason: 'no secrets', filter: 'secret/a' },
    { ...common, kind: 'authenticate', clientId: 'mallory', username: 'mallory', reason: 'mallory is banned here' },
  ])
  await sink.waitForIds(3)
  const delivered = sink.requests.flatMap((r) => r.body.deliveries)
  assert.deepEqual(
    delivered.map((d) => [d.event, d.kind, d.clientId, d.hook, d.decision, d.reasonCode, d.topic ?? d.filter ?? null]),
    [
      ['decision', 'publish', 'aud', 'acl', 'deny', 0x87, 'x/1'],
      ['decision', 'subscribe', 'aud', 'acl', 'deny', 0x87, 'secret/a'],
      ['decision', 'authenticate', 'mallory', 'acl', 'deny', 0x87, null],
    ],
  )

  const reloaded = await broker.reload({ ...config, audit: { allows: true } })
  assert.ok(reloaded.applied.includes('audit'), JSON.stringify(reloaded))
  assert.equal(await publishCode(c, 'ok/2'), 0x10)
  const d = await connect(t, broker, { protocolVersion: 5, clientId: 'anon' })
  await pingRoundTrip(d)
  await until(() => records.length === 5, 5000, 'the allows audited')
  assert.deepEqual(
    records.slice(3).map((r) => [r.kind, r.clientId, r.hook, r.hookVersion ?? null, r.decision, r.reasonCode, r.topic ?? null]),
    [
      ['publish', 'aud', 'acl', 1, 'allow', 0, 'ok/2'],
      ['authenticate', 'anon', 'default', null, 'allow', 0, null], // every hook passed: the loopback rule let it in
    ],
  )
  const metrics = await (await fetch(broker.httpUrl()! + '/metrics')).text()
  assert.match(metrics, /^hookmq_audit_records_total\{decision="deny"\} 3$/m)
  assert.match(metrics, /^hookmq_audit_records_total\{decision="allow"\} 2$/m)
  assert.match(metrics, /^hookmq_audit_dropped_total 0$/m)
})

test('a burst of denies is bounded by audit.maxPerSecond: the rest is counted as dropped, not queued for the webhook', async (t) => {
  const dir = hooksFolder(t)
  writeFileSync(join(dir, 'acl.ts'), ACL)
  const sink = await startSink(t)
  const log = captureLog()
  const broker = await startBroker(t, {
    hooksDir: dir,
    hooks: { isolation: 'inline' }, // (each decision made as its PUBLISH is read)
    audit: { maxPerSecond: 5 },
    logger: log.logger,
    webhooks: [{ name: 'audit', url: sink.url, events: ['decision'], batch: { maxSize: 1000, maxWaitMs: 0 } }],
  })
  let emitted = 0
  broker.on('audit', () => emitted++)
  const c = await connect(t, broker, { protocolVersion: 5 })
  const started = Date.now()
  for (let i = 0; i < 200; i++) c.publish(`x/${i}`, 'x', { qos: 0 })
  await pingRoundTrip(c)
  const counts = broker.pipeline.audit.counts
  assert.equal(counts.deny, 200)
  const allowance = 5 + Math.ceil(((Date.now() - started) / 1000) * 5)
  assert.ok(emitted >= 5 && emitted <= allowance, `${emitted} emitted, at most ${allowance}`)
  assert.equal(counts.dropped, 200 - emitted)
  await sink.waitForIds(emitted)
  assert.equal(sink.ids().length, emitted)
  const line = await log.find((r) => r.msg === 'audit records dropped: more than audit.maxPerSecond')
  assert.equal(line.maxPerSecond, 5)
  // the denial log stays one line per client every 10 s
  assert.equal(log.records.filter((r) => r.msg === 'publish denied').length, 1)
})
