import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { randomBytes, scryptSync } from 'node:crypto'
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { pino } from 'pino'
import { collect, connect, hooksFolder, pingRoundTrip, publishCode, RawClient, startBroker, startSink, until } from '../helpers.js'

// Every file in hooks.example/ loaded from a real folder, doing what its comments say.

const examples = fileURLToPath(new URL('../../../hooks.example/', import.meta.url))
/** the hooks that need no package and no service (jwt, http-auth, rate-limit, rewrite, delayed: hooks-example-auth/-messages.test.ts) */
const basics = ['acl.ts', 'auth.ts', 'events.ts', 'transform.ts', 'webhook.ts']
const bin = fileURLToPath(new URL('../../../bin/hookmq.js', import.meta.url))
const run = promisify(execFile)

function hash(password: string): string {
  const salt = randomBytes(16)
  return `scrypt:${salt.toString('hex')}:${scryptSync(password, salt, 32).toString('hex')}`
}

const config = {
  auth: { users: { alice: { password: hash('wonderland') }, admin: { password: hash('root-pw') } } },
  acl: {
    superusers: ['admin'],
    rules: [
      { user: '*', allow: 'both', topics: ['public/#', 'clients/%c/#', 'sensors/#'] },
      { user: '*', allow: 'subscribe', topics: ['users/%u/#'] },
      { user: 'alice', deny: 'publish', topics: ['public/announcements'] },
    ],
  },
}

function logCapture(): { lines: Array<Record<string, unknown>>; text: () => string; logger: pino.Logger } {
  const lines: Array<Record<string, unknown>> = []
  let raw = ''
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      raw += chunk.toString()
      for (const l of chunk.toString().trim().split('\n')) lines.push(JSON.parse(l))
      cb()
    },
  })
  return { lines, text: () => raw, logger: pino({ level: 'info' }, stream) }
}

test('hooks.example: auth, acl, transform and events working together from a hooks folder', async (t) => {
  const dir = hooksFolder(t)
  for (const f of basics) copyFileSync(join(examples, f), join(dir, f))
  const logs = logCapture()
  const sink = await startSink(t)
  const broker = await startBroker(t, {
    hooksDir: dir,
    hooks: { ...config, webhook: { webhook: 'alerts', thresholdCelsius: 30 } },
    webhooks: [{ name: 'alerts', url: sink.url, batch: { maxSize: 1, maxWaitMs: 0 } }],
    logger: logs.logger,
  })
  assert.deepEqual(
    broker
      .hookStatus()
      .map((s) => `${s.name}:${s.state}`)
      .sort(),
    ['acl:loaded', 'auth:loaded', 'events:loaded', 'transform:loaded', 'webhook:loaded'],
  )

  // auth.ts: wrong password → "bad user name or password"
  const bad5 = await RawClient.open(t, broker, 5)
  assert.equal((await bad5.connect({ username: 'alice', password: Buffer.from('nope') }, 5)).reasonCode, 0x86)
  const bad4 = await RawClient.open(t, broker, 4)
  assert.equal((await bad4.connect({ username: 'mallory', password: Buffer.from('x') }, 4)).returnCode, 4)

  // acl.ts: rules with %u and %c, a deny rule, a superuser
  const alice = await connect(t, broker, { protocolVersion: 5, clientId: 'alice-phone', username: 'alice', password: 'wonderland' })
  assert.equal(await publishCode(alice, 'public/chat'), 0x10)
  assert.equal(await publishCode(alice, 'public/announcements'), 0x87)
  assert.equal(await publishCode(alice, 'clients/alice-phone/status'), 0x10)
  assert.equal(await publishCode(alice, 'clients/someone-else/status'), 0x87)
  assert.deepEqual(
    (await alice.subscribeAsync('users/alice/#')).map((g) => g.qos),
    [0],
  )
  await assert.rejects(alice.subscribeAsync('users/bob/#'), /Not authorized/)
  await assert.rejects(alice.subscribeAsync('#'), /Not authorized/)
  const admin = await connect(t, broker, { protocolVersion: 5, username: 'admin', password: 'root-pw' })
  assert.equal(await publishCode(admin, 'public/announcements'), 0x10)
  await admin.subscribeAsync('#')

  // transform.ts: JSON on sensors/# gets receivedAt and clientId; other payloads are dropped
  await alice.subscribeAsync('sensors/#')
  await publishCode(alice, 'sensors/t1', 'not json')
  await publishCode(alice, 'sensors/t1', JSON.stringify({ celsius: 21.5 }))
  const m = await collect(alice).next()
  const body = JSON.parse(m.payload.toString()) as { celsius: number; receivedAt: string; clientId: string }
  assert.equal(body.celsius, 21.5)
  assert.equal(body.clientId, 'alice-phone')
  assert.ok(!Number.isNaN(Date.parse(body.receivedAt)))
  await pingRoundTrip(alice)
  assert.equal(collect(alice).messages.length, 1)

  // webhook.ts: a reading over the threshold queues an alert to the "alerts" webhook
  await publishCode(alice, 'sensors/lab/temperature', JSON.stringify({ celsius: 25 }))
  await publishCode(alice, 'sensors/lab/temperature', JSON.stringify({ celsius: 41.5 }))
  await sink.waitForIds(1)
  const alert = sink.requests[0]!.body.deliveries[0]!
  assert.equal(alert.event, 'custom')
  assert.equal(alert.hook, 'webhook')
  assert.deepEqual(alert.body, { alert: 'temperature', room: 'lab', celsius: 41.5, threshold: 30, clientId: 'alice-phone' })
  assert.equal(sink.ids().length, 1)

  // events.ts: connects and disconnects are logged by hook "events"; passwords never are
  await alice.endAsync()
  await until(() => logs.lines.some((l) => l.msg === 'client disconnected' && l.clientId === 'alice-phone'), 5000, 'the disconnect log line')
  assert.ok(logs.lines.some((l) => l.hook === 'events' && l.msg === 'client connected' && l.clientId === 'alice-phone'))
  assert.ok(!logs.text().includes('wonderland') && !logs.text().includes('root-pw'), 'a password reached the log')
})

test('hookmq check: a good folder passes; a bad one fails naming the file', async (t) => {
  const good = hooksFolder(t)
  for (const f of basics) copyFileSync(join(examples, f), join(good, f))
  const ok = await run(process.execPath, [bin, 'check', good])
  assert.match(ok.stdout, /5 hook\(s\) ok, 0 failed/)
  // in place, beside its tsconfig.json (hookmq's declarations for hooks folders, type-checked) and its *.test.ts files (not hooks)
  const inPlace = await run(process.execPath, [bin, 'check', examples])
  assert.match(inPlace.stdout, /11 hook\(s\) ok, 0 failed/)
  const bad = hooksFolder(t)
  copyFileSync(join(examples, 'acl.ts'), join(bad, 'acl.ts'))
  writeFileSync(join(bad, 'broken.ts'), `import { defineHook } from 'hookmq'\nexport default defineHook({ name: 'broken', authorizePublish() { return true }\n`)
  mkdirSync(join(bad, 'more'))
  writeFileSync(join(bad, 'more', 'dup.ts'), `import { defineHook } from 'hookmq'\nexport default defineHook({ name: 'acl' })\n`)
  const failed = await run(process.execPath, [bin, 'check', bad]).then(
    () => undefined,
    (err: { code: number; stdout: string }) => err,
  )
  assert.ok(failed, 'check passed a bad folder')
  assert.equal(failed.code, 1)
  assert.match(failed.stdout, new RegExp(`error ${join(bad, 'broken.ts')}:3:\\d+: `))
  assert.match(failed.stdout, /already used/)
})

test('hooks.example: hostile names — user names that are Object.prototype keys are refused (not errors that trip the breaker); a client id or user name with "+", "#" or "/" gets nothing from a %c/%u rule; a deny on part of a filter refuses the whole subscription', async (t) => {
  const dir = hooksFolder(t)
  for (const f of ['auth.ts', 'acl.ts']) copyFileSync(join(examples, f), join(dir, f))
  const rules = [...config.acl.rules, { user: 'alice', deny: 'subscribe', topics: ['public/secret/#'] }]
  const broker = await startBroker(t, {
    hooksDir: dir,
    hooks: { ...config, acl: { ...config.acl, rules }, isolation: 'inline', breaker: { maxFailures: 3, windowMs: 60000, backoffMs: 60000 } },
  })
  for (const name of ['constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf', 'constructor']) {
    const raw = await RawClient.open(t, broker, 5)
    assert.equal((await raw.connect({ username: name, password: Buffer.from('x') }, 5)).reasonCode, 0x86, name)
  }
  const auth = broker.hookStatus().find((s) => s.name === 'auth')!
  assert.equal(auth.state, 'loaded')
  assert.equal(auth.errors, 0)

  const alice = await connect(t, broker, { protocolVersion: 5, clientId: 'alice', username: 'alice', password: 'wonderland' })
  await alice.subscribeAsync('clients/alice/#')
  // a client id that is a wildcard would turn clients/%c/# into clients/+/# or clients/#/#
  for (const clientId of ['+', '#', 'a/../alice']) {
    const plain = await connect(t, broker, { protocolVersion: 5, clientId })
    await assert.rejects(plain.subscribeAsync('clients/+/#'), /Not authorized/, clientId)
    await assert.rejects(plain.subscribeAsync('clients/alice/#'), /Not authorized/, clientId)
    assert.equal(await publishCode(plain, 'clients/alice/cmd'), 0x87, clientId)
    if (!/[+#]/.test(clientId)) assert.equal(await publishCode(plain, `clients/${clientId}/x`), 0x87, clientId) // (a topic name cannot hold a wildcard)
    await plain.endAsync()
  }
  // the deny rule on public/secret/# overlaps public/# and public/+/x: refused whole; public/news is untouched
  await assert.rejects(alice.subscribeAsync('public/#'), /Not authorized/)
  await assert.rejects(alice.subscribeAsync('public/+/x'), /Not authorized/)
  await assert.rejects(alice.subscribeAsync('+/secret/x'), /Not authorized/)
  assert.deepEqual(
    (await alice.subscribeAsync('public/news/#')).map((g) => g.qos),
    [0],
  )
  assert.equal(await publishCode(alice, 'public/secret/x'), 0x10) // the rule denies subscribing only
  await pingRoundTrip(alice)
  assert.equal(collect(alice).messages.length, 0)
})
