import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { mkdirSync, readdirSync, readFileSync, renameSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { defineHook } from '../../plugins/index.js'
import {
  atomicWrite,
  collect,
  connect,
  deleteHook,
  hooksFolder,
  nextChange,
  pingRoundTrip,
  publishCode,
  RawClient,
  startBroker,
  writeHook,
} from '../helpers.js'
import { captureLog } from '../log-capture.js'

const aclHook = (prefix: string): string => `
import { defineHook } from 'hookmq'
export default defineHook({
  name: 'acl',
  authorizePublish({ topic }) {
    return topic.startsWith('${prefix}') ? true : { deny: 'only ${prefix}' }
  },
})
`

test('a hook dropped in takes effect at once, without dropping connections; an edit changes the rule; deleting removes it', async (t) => {
  const dir = hooksFolder(t)
  const broker = await startBroker(t, { hooksDir: dir })
  let disconnects = 0
  broker.on('clientDisconnected', () => disconnects++)
  const c = await connect(t, broker, { protocolVersion: 5 })
  assert.equal(await publishCode(c, 'b/1'), 0x10) // allowed (no subscribers)
  const file = join(dir, 'acl.ts')
  assert.equal((await writeHook(broker, file, aclHook('a/'))).kind, 'loaded')
  assert.equal(await publishCode(c, 'b/1'), 0x87)
  assert.equal(await publishCode(c, 'a/1'), 0x10)
  assert.equal((await writeHook(broker, file, aclHook('b/'))).version, 2)
  assert.equal(await publishCode(c, 'a/1'), 0x87)
  assert.equal(await publishCode(c, 'b/1'), 0x10)
  assert.equal((await deleteHook(broker, file)).kind, 'removed')
  assert.equal(await publishCode(c, 'a/1'), 0x10)
  assert.equal(disconnects, 0)
  assert.equal(c.connected, true)
})

test('a syntax error or a throw in setup keeps the old version serving and reports file:line', async (t) => {
  const dir = hooksFolder(t)
  const file = join(dir, 'acl.ts')
  writeFileSync(file, aclHook('a/'))
  const broker = await startBroker(t, { hooksDir: dir })
  const c = await connect(t, broker, { protocolVersion: 5 })
  assert.equal(await publishCode(c, 'b/1'), 0x87)
  const broken = await writeHook(
    broker,
    file,
    `import { defineHook } from 'hookmq'\nexport default defineHook({\n  name: 'acl',\n  authorizePublish() { return true \n})\n`,
  )
  assert.equal(broken.kind, 'failed')
  assert.equal(broken.error?.file, file)
  assert.equal(broken.error?.line, 5)
  assert.equal(await publishCode(c, 'b/1'), 0x87) // version 1 still serving
  const throwing = await writeHook(
    broker,
    file,
    `import { defineHook } from 'hookmq'\nexport default defineHook({\n  name: 'acl',\n  setup() {\n    throw new Error('database unreachable')\n  },\n  authorizePublish() { return true },\n})\n`,
  )
  assert.equal(throwing.kind, 'failed')
  assert.match(throwing.error!.message, /database unreachable/)
  assert.equal(throwing.error?.file, file)
  assert.equal(throwing.error?.line, 5)
  assert.equal(await publishCode(c, 'b/1'), 0x87)
  const status = broker.hookStatus().find((s) => s.name === 'acl')!
  assert.equal(status.state, 'failed')
  assert.equal(status.version, 1)
  assert.equal(status.error?.line, 5)
  const wrongShape = await writeHook(broker, file, `export default { name: 'acl', authorisePublish() { return true } }\n`)
  assert.match(wrongShape.error!.message, /unknown key "authorisePublish"/)
})

test("editors' atomic saves and bursts of saves: the last content wins", async (t) => {
  const dir = hooksFolder(t)
  const broker = await startBroker(t, { hooksDir: dir })
  const file = join(dir, 'acl.ts')
  const loaded = nextChange(broker, file)
  for (const p of ['x/', 'y/', 'z/']) atomicWrite(file, aclHook(p))
  assert.equal((await loaded).kind, 'loaded')
  await broker.hookHost.settled()
  const c = await connect(t, broker, { protocolVersion: 5 })
  assert.equal(await publishCode(c, 'z/1'), 0x10)
  assert.equal(await publishCode(c, 'x/1'), 0x87)
})

test('a burst of saves that each unlink the file and write it again never leaves the ACL out (a deletion counts once the file stayed away 500 ms)', async (t) => {
  const dir = hooksFolder(t)
  const file = join(dir, 'acl.ts')
  writeFileSync(file, aclHook('a/'))
  const broker = await startBroker(t, { hooksDir: dir })
  const c = await connect(t, broker, { protocolVersion: 5 })
  let allowed = 0
  let denied = 0
  let stop = false
  const pump = (async () => {
    while (!stop) {
      const code = await publishCode(c, 'private/x')
      if (code === 0x87) denied++
      else allowed++
    }
  })()
  for (let i = 0; i < 40; i++) {
    unlinkSync(file)
    await sleep(30)
    writeFileSync(file, aclHook('a/') + `// save ${i}\n`)
    await sleep(20)
  }
  await sleep(700) // the burst's last quiet windows and waiting removals
  await broker.hookHost.settled()
  stop = true
  await pump
  assert.equal(allowed, 0, `${allowed} publishes to private/x were allowed during the saves (${denied} denied)`)
  assert.ok(denied > 10)
  assert.equal(broker.hookStatus().find((s) => s.name === 'acl')?.state, 'loaded')
  const t0 = performance.now()
  let change = nextChange(broker, file)
  unlinkSync(file)
  while ((await change).kind !== 'removed') change = nextChange(broker, file) // (a load the burst began may end first)
  assert.ok(performance.now() - t0 >= 450, 'removed only once it stayed away')
  assert.equal(await publishCode(c, 'private/x'), 0x10)
})

test('a hook file that is not a regular file (a FIFO, a symlink to /dev/zero) fails its load at once, without reading it; a dangling symlink does not stop start-up; the others serve', async (t) => {
  const dir = hooksFolder(t)
  writeFileSync(join(dir, 'acl.ts'), aclHook('a/'))
  symlinkSync(join(dir, 'nowhere.ts'), join(dir, 'dangling.ts'))
  symlinkSync(join(dir, 'nowhere.json'), join(dir, 'notes.json'))
  const broker = await startBroker(t, { hooksDir: dir })
  assert.deepEqual(
    broker.hookStatus().map((s) => `${s.name}:${s.state}`),
    ['acl:loaded'],
  )
  const zero = join(dir, 'zero.ts')
  const failed = nextChange(broker, zero)
  symlinkSync('/dev/zero', zero)
  const change = await failed
  assert.equal(change.kind, 'failed')
  assert.match(change.error!.message, /not a regular file/)
  const fifo = join(dir, 'fifo.ts')
  const fifoFailed = nextChange(broker, fifo)
  execFileSync('mkfifo', [fifo])
  assert.match((await fifoFailed).error!.message, /not a regular file/)
  const c = await connect(t, broker, { protocolVersion: 5 })
  assert.equal(await publishCode(c, 'b/1'), 0x87)
  assert.equal(await publishCode(c, 'a/1'), 0x10)
})

test("esbuild's process killed: the next save still compiles (its service is started again)", async (t) => {
  const dir = hooksFolder(t)
  const file = join(dir, 'acl.ts')
  writeFileSync(file, aclHook('a/'))
  const broker = await startBroker(t, { hooksDir: dir })
  const children = readdirSync('/proc').filter((p) => {
    if (!/^\d+$/.test(p)) return false
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8')
      return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === process.pid && readFileSync(`/proc/${p}/cmdline`, 'utf8').includes('esbuild')
    } catch {
      return false
    }
  })
  assert.equal(children.length, 1, 'one esbuild service process')
  process.kill(Number(children[0]), 'SIGKILL')
  await sleep(200)
  assert.equal((await writeHook(broker, file, aclHook('b/'))).kind, 'loaded')
  const c = await connect(t, broker, { protocolVersion: 5 })
  assert.equal(await publishCode(c, 'b/1'), 0x10)
  assert.equal(await publishCode(c, 'a/1'), 0x87)
})

test('editing a helper module reloads the hook that imports it; helpers and subfolders are not loaded as hooks', async (t) => {
  const dir = hooksFolder(t)
  mkdirSync(join(dir, 'lib'))
  writeFileSync(join(dir, '_prefix.ts'), `export const prefix = 'a/'\n`)
  writeFileSync(
    join(dir, 'lib', 'acl.ts'),
    `import { defineHook } from 'hookmq'\nimport { prefix } from '../_prefix'\nexport default defineHook({ name: 'acl', authorizePublish: ({ topic }) => topic.startsWith(prefix) ? undefined : false })\n`,
  )
  writeFileSync(join(dir, 'acl.test.ts'), `throw new Error('not a hook')\n`)
  writeFileSync(join(dir, 'types.d.ts'), `export type X = 1\n`)
  const broker = await startBroker(t, { hooksDir: dir })
  assert.deepEqual(
    broker.hookStatus().map((s) => `${s.name}:${s.state}`),
    ['acl:loaded'],
  )
  const c = await connect(t, broker, { protocolVersion: 5 })
  assert.equal(await publishCode(c, 'b/1'), 0x87)
  const change = nextChange(broker, join(dir, 'lib', 'acl.ts'))
  writeFileSync(join(dir, '_prefix.ts'), `export const prefix = 'b/'\n`)
  assert.equal((await change).version, 2)
  assert.equal(await publishCode(c, 'b/1'), 0x10)
  assert.equal(await publishCode(c, 'a/1'), 0x87)
})

test('authenticate: deny gives CONNACK 5 (3.1.1) and 0x87 / 0x86 (5); user is attached for later hooks', async (t) => {
  const seen: unknown[] = []
  const broker = await startBroker(t, {
    hooks: [
      defineHook({
        name: 'auth',
        authenticate: ({ username, password }) => {
          if (username === 'banned') return { deny: 'banned user' }
          if (username === 'alice') return password?.toString() === 'secret' ? { allow: true, user: { name: 'alice', role: 'ops' } } : false
          return undefined
        },
        authorizeSubscribe: ({ client }) => {
          seen.push(client.user)
        },
      }),
    ],
  })
  const v4 = await RawClient.open(t, broker, 4)
  assert.equal((await v4.connect({ username: 'banned' }, 4)).returnCode, 5)
  const v5 = await RawClient.open(t, broker, 5)
  const ack = await v5.connect({ username: 'banned' }, 5)
  assert.equal(ack.reasonCode, 0x87)
  assert.equal(ack.properties?.reasonString, 'banned user')
  const bad = await RawClient.open(t, broker, 5)
  assert.equal((await bad.connect({ username: 'alice', password: Buffer.from('wrong') }, 5)).reasonCode, 0x86)
  const ok = await connect(t, broker, { username: 'alice', password: 'secret' })
  await ok.subscribeAsync('x')
  assert.deepEqual(seen, [{ name: 'alice', role: 'ops' }])
})

test('MQTT 5 enhanced authentication in one step: a hook naming the method accepts it and CONNACK carries it back [MQTT-4.12.0-5]; otherwise 0x8C [MQTT-4.12.0-1]', async (t) => {
  const seen: unknown[] = []
  const broker = await startBroker(t, {
    hooks: [
      defineHook({
        name: 'token',
        authenticate: ({ authenticationMethod, authenticationData, username }) => {
          if (username === 'anyone') return true // a hook that allows without looking at the method
          if (authenticationMethod !== 'TOKEN') return undefined
          seen.push(authenticationData?.toString())
          return authenticationData?.toString() === 's3cret'
            ? { allow: true, user: 'token-user', authenticationMethod }
            : { deny: 'bad token', reasonCode: 0x86 }
        },
      }),
    ],
  })
  // MQTT.js, real client: accepted, and the CONNACK names the method
  const client = await connect(t, broker, { protocolVersion: 5, properties: { authenticationMethod: 'TOKEN', authenticationData: Buffer.from('s3cret') } })
  await client.subscribeAsync('t/x')
  const raw = await RawClient.open(t, broker, 5)
  const ok = await raw.connect({ properties: { authenticationMethod: 'TOKEN', authenticationData: Buffer.from('s3cret') } }, 5)
  assert.equal(ok.reasonCode, 0)
  assert.equal(ok.properties?.authenticationMethod, 'TOKEN')
  // wrong data: the hook's deny
  const bad = await RawClient.open(t, broker, 5)
  assert.equal((await bad.connect({ properties: { authenticationMethod: 'TOKEN', authenticationData: Buffer.from('nope') } }, 5)).reasonCode, 0x86)
  // a method no hook takes, and a method only allowed by a hook that never looked at it: 0x8C, connection closed
  for (const [username, method] of [
    [undefined, 'SCRAM-SHA-256'],
    ['anyone', 'SCRAM-SHA-256'],
  ] as const) {
    const c = await RawClient.open(t, broker, 5)
    const ack = await c.connect({ username, properties: { authenticationMethod: method } }, 5)
    assert.equal(ack.reasonCode, 0x8c)
    assert.match(ack.properties?.reasonString ?? '', /SCRAM-SHA-256/)
    await c.expectClosed()
  }
  // without a method nothing changes: the same allow-everyone hook lets a plain CONNECT in
  const plain = await RawClient.open(t, broker, 5)
  assert.equal((await plain.connect({ username: 'anyone' }, 5)).reasonCode, 0)
  assert.deepEqual(seen, ['s3cret', 's3cret', 'nope'])
})

test('MQTT 5 re-authentication: AUTH 0x19 with the CONNECT method runs the authenticate hooks again; success answers AUTH 0x00, failure DISCONNECT 0x87 [MQTT-4.12.1-2]; a wrong method or no method on CONNECT is a protocol error', async (t) => {
  const calls: Array<{ data?: string; again?: true; password?: string }> = []
  const users: unknown[] = []
  const broker = await startBroker(t, {
    hooks: [
      defineHook({
        name: 'token',
        authenticate: ({ authenticationMethod, authenticationData, reauthenticate, password, username }) => {
          if (authenticationMethod === undefined) return username === 'plain' ? true : undefined
          calls.push({ data: authenticationData?.toString(), again: reauthenticate, password: password?.toString() })
          return authenticationData?.toString().startsWith('ok')
            ? { allow: true, user: authenticationData.toString(), authenticationMethod }
            : { deny: 'token expired' }
        },
        authorizePublish: ({ client }) => {
          users.push(client.user)
        },
      }),
    ],
  })
  const c = await RawClient.open(t, broker, 5)
  assert.equal(
    (
      await c.connect(
        { username: 'token-client', password: Buffer.from('pw'), properties: { authenticationMethod: 'TOKEN', authenticationData: Buffer.from('ok-1') } },
        5,
      )
    ).reasonCode,
    0,
  )
  c.send({ cmd: 'auth', reasonCode: 0x19, properties: { authenticationMethod: 'TOKEN', authenticationData: Buffer.from('ok-2') } }, 5)
  const ack = await c.expect('auth')
  assert.equal(ack.reasonCode, 0)
  assert.equal(ack.properties?.authenticationMethod, 'TOKEN')
  // the new user record is what later hooks see
  c.send({ cmd: 'publish', topic: 'who', payload: Buffer.from('x'), qos: 1, messageId: 7, retain: false, dup: false }, 5)
  await c.expect('puback')
  assert.deepEqual(users, ['ok-2'])
  c.send({ cmd: 'auth', reasonCode: 0x19, properties: { authenticationMethod: 'TOKEN', authenticationData: Buffer.from('stale') } }, 5)
  const bye = await c.expect('disconnect')
  assert.equal(bye.reasonCode, 0x87)
  assert.equal(bye.properties?.reasonString, 'token expired')
  await c.expectClosed()
  assert.deepEqual(calls, [
    { data: 'ok-1', again: undefined, password: 'pw' },
    { data: 'ok-2', again: true, password: undefined },
    { data: 'stale', again: true, password: undefined },
  ])
  // another method than CONNECT's, and AUTH from a client that connected without one: protocol errors
  const other = await RawClient.open(t, broker, 5)
  await other.connect({ properties: { authenticationMethod: 'TOKEN', authenticationData: Buffer.from('ok-3') } }, 5)
  other.send({ cmd: 'auth', reasonCode: 0x19, properties: { authenticationMethod: 'SCRAM-SHA-1' } }, 5)
  assert.equal((await other.expect('disconnect')).reasonCode, 0x82)
  const plain = await RawClient.open(t, broker, 5)
  assert.equal((await plain.connect({ username: 'plain' }, 5)).reasonCode, 0)
  plain.send({ cmd: 'auth', reasonCode: 0x19, properties: { authenticationMethod: 'TOKEN' } }, 5)
  assert.equal((await plain.expect('disconnect')).reasonCode, 0x82)
})

test('MQTT 5: Authentication Data without an Authentication Method is a protocol error (0x82)', async (t) => {
  const broker = await startBroker(t)
  const c = await RawClient.open(t, broker, 5)
  const ack = await c.connect({ properties: { authenticationData: Buffer.from('x') } }, 5)
  assert.equal(ack.reasonCode, 0x82)
})

test('a throwing or hanging authenticate hook denies within its deadline while other clients keep working', async (t) => {
  const broker = await startBroker(t, {
    hooks: [
      defineHook({
        name: 'flaky',
        timeoutMs: 300,
        authenticate: ({ username }, { signal }) => {
          if (username === 'throws') throw new Error('boom')
          if (username === 'hangs') return new Promise((resolve) => signal.addEventListener('abort', () => setTimeout(() => resolve(true), 50)))
          return undefined
        },
      }),
    ],
  })
  const other = await connect(t, broker, { protocolVersion: 5 })
  await other.subscribeAsync('alive')
  const thrower = await RawClient.open(t, broker, 5)
  assert.equal((await thrower.connect({ username: 'throws' }, 5)).reasonCode, 0x87)
  const started = Date.now()
  const hanger = await RawClient.open(t, broker, 5)
  const hanging = hanger.connect({ username: 'hangs' }, 5)
  await broker.publish({ topic: 'alive', payload: 'yes' }) // others carry on meanwhile
  assert.equal((await collect(other).next()).payload.toString(), 'yes')
  assert.equal((await hanging).reasonCode, 0x87) // fail closed; the late "true" is ignored
  const took = Date.now() - started
  assert.ok(took >= 250 && took < 2000, `deadline not applied (${took} ms)`)
  const status = broker.hookStatus().find((s) => s.name === 'flaky')!
  assert.equal(status.errors, 2)
  assert.equal(status.timeouts, 1)
})

test('ACL: publish and subscribe denied with MQTT 5 reason codes; QoS downgrade', async (t) => {
  const broker = await startBroker(t, {
    hooks: [
      defineHook({
        name: 'acl',
        authorizePublish: ({ topic }) => (topic.startsWith('ro/') ? { deny: 'read only' } : undefined),
        authorizeSubscribe: ({ filter }) => (filter.startsWith('secret/') ? false : filter.startsWith('slow/') ? { qos: 0 } : undefined),
      }),
    ],
  })
  const raw = await RawClient.open(t, broker, 5)
  await raw.connect({}, 5)
  raw.send(
    {
      cmd: 'subscribe',
      messageId: 1,
      subscriptions: [
        { topic: 'secret/#', qos: 1 },
        { topic: 'slow/#', qos: 2 },
        { topic: 'ok/#', qos: 2 },
      ],
    },
    5,
  )
  assert.deepEqual((await raw.expect('suback')).granted, [0x87, 0, 2])
  raw.send({ cmd: 'publish', topic: 'ro/x', payload: Buffer.from('x'), qos: 1, retain: false, dup: false, messageId: 2 }, 5)
  const ack = await raw.expect('puback')
  assert.equal(ack.reasonCode, 0x87)
  assert.equal(ack.properties?.reasonString, undefined) // reason strings on PUBACK are not sent (no leak of rules)
  raw.send({ cmd: 'publish', topic: 'slow/x', payload: Buffer.from('y'), qos: 2, retain: false, dup: false, messageId: 3 }, 5)
  const p = await raw.expect('publish')
  assert.equal(p.qos, 0)
})

test('transform: changes topic and payload, drops, and a failing transform lets the original through', async (t) => {
  const broker = await startBroker(t, {
    hooks: [
      defineHook({
        name: 't',
        filter: { topics: ['in/#'] },
        transform: ({ topic, payload }) => {
          const s = payload.toString()
          if (s === 'drop') return null
          if (s === 'fail') throw new Error('transform bug')
          if (s === 'bad') return { topic: 'out/#' } as never // invalid answer: counts as an error, fails open
          return { topic: topic.replace('in/', 'out/'), payload: s.toUpperCase() }
        },
      }),
    ],
  })
  const sub = await connect(t, broker)
  await sub.subscribeAsync(['out/#', 'in/#', 'other'])
  const pub = await connect(t, broker)
  for (const m of ['hello', 'drop', 'fail', 'bad']) await pub.publishAsync('in/a', m, { qos: 1 })
  await pub.publishAsync('other', 'untouched', { qos: 1 })
  const got = (await collect(sub).count(4)).map((m) => `${m.topic}=${m.payload}`)
  assert.deepEqual(got, ['out/a=HELLO', 'in/a=fail', 'in/a=bad', 'other=untouched'])
  const s = broker.hookStatus()[0]!
  assert.equal(s.errors, 2)
  assert.equal(s.calls, 4) // the filter kept it off "other"
})

test('live re-check: a reload that denies an existing subscription removes it (disconnect mode: 0x87)', async (t) => {
  const dir = hooksFolder(t)
  const file = join(dir, 'subs.ts')
  const rule = (denied: string): string =>
    `import { defineHook } from 'hookmq'\nexport default defineHook({ name: 'subs', authorizeSubscribe: ({ filter }) => filter.startsWith('${denied}') ? false : undefined })\n`
  writeFileSync(file, rule('none/'))
  const broker = await startBroker(t, { hooksDir: dir })
  const c = await connect(t, broker, { protocolVersion: 5 })
  await c.subscribeAsync(['news/#', 'chat/#'])
  await writeHook(broker, file, rule('news/'))
  await broker.hookHost.settled()
  await broker.publish({ topic: 'news/1', payload: 'gone' })
  await broker.publish({ topic: 'chat/1', payload: 'kept' })
  assert.equal((await collect(c).next()).topic, 'chat/1')
  await pingRoundTrip(c)
  assert.equal(collect(c).messages.length, 1)

  const dir2 = hooksFolder(t)
  const file2 = join(dir2, 'subs.ts')
  writeFileSync(file2, rule('none/'))
  const strict = await startBroker(t, { hooksDir: dir2, revokedSubscriptions: 'disconnect' })
  const d = await connect(t, strict, { protocolVersion: 5 })
  await d.subscribeAsync('news/#')
  const reason = new Promise<number | undefined>((resolve) => d.on('disconnect', (p) => resolve(p.reasonCode)))
  await writeHook(strict, file2, rule('news/'))
  assert.equal(await reason, 0x87)
})

test('live re-check: a subscription revoked while its client is offline takes the messages queued for it alone along (they are never delivered)', async (t) => {
  const dir = hooksFolder(t)
  const file = join(dir, 'subs.ts')
  const rule = (denied: string): string =>
    `import { defineHook } from 'hookmq'\nexport default defineHook({ name: 'subs', authorizeSubscribe: ({ filter }) => filter.startsWith('${denied}') ? false : undefined })\n`
  writeFileSync(file, rule('none/'))
  const broker = await startBroker(t, { hooksDir: dir })
  const opts = { protocolVersion: 5 as const, clientId: 'offline-reader', clean: false, properties: { sessionExpiryInterval: 600 } }
  const c = await connect(t, broker, opts)
  await c.subscribeAsync(['news/#', 'chat/#', 'all/#'], { qos: 1 })
  await c.endAsync()
  await broker.publish({ topic: 'news/1', payload: 'gone', qos: 1 })
  await broker.publish({ topic: 'chat/1', payload: 'kept', qos: 1 })
  await writeHook(broker, file, rule('news/'))
  await broker.hookHost.settled()
  await broker.publish({ topic: 'news/2', payload: 'gone too', qos: 1 })
  const back = await connect(t, broker, { ...opts, clean: false })
  const got = collect(back)
  assert.equal((await got.next()).topic, 'chat/1')
  await pingRoundTrip(back)
  assert.deepEqual(
    got.messages.map((m) => m.topic),
    ['chat/1'],
  )
})

test('hooks run in order, then file name; the first non-pass answer decides; defaults apply when all pass', async (t) => {
  const calls: string[] = []
  const mk = (name: string, order: number, answer: boolean | undefined) =>
    defineHook({
      name,
      order,
      authorizePublish: () => {
        calls.push(name)
        return answer
      },
    })
  const broker = await startBroker(t, { defaults: { publish: 'deny' }, hooks: [mk('c', 5, undefined), mk('a', 1, undefined), mk('b', 5, true)] })
  const c = await connect(t, broker, { protocolVersion: 5 })
  assert.equal(await publishCode(c, 'x'), 0x10)
  assert.deepEqual(calls, ['a', 'b'])
  const none = await startBroker(t, { defaults: { publish: 'deny', subscribe: 'deny' }, hooks: [mk('p', 0, undefined)] })
  const d = await connect(t, none, { protocolVersion: 5 })
  assert.equal(await publishCode(d, 'x'), 0x87)
  await assert.rejects(d.subscribeAsync('x'), /Not authorized/)
})

test('hook config comes from hooks.<name>; a bad value fails the load naming the key; $SYS shows hook status', async (t) => {
  const dir = hooksFolder(t)
  const file = join(dir, 'limit.ts')
  writeFileSync(
    file,
    `import { defineHook } from 'hookmq'\nimport { z } from 'zod'\nexport default defineHook({ name: 'limit', config: z.object({ max: z.number().int().positive() }),\n  authorizePublish: ({ payload }, { config }) => payload.length <= config.max ? undefined : { deny: 'too big' } })\n`,
  )
  // at start-up a hook that fails to load stops the broker (hooks.onStartupFailure: exit), naming the key
  await assert.rejects(startBroker(t, { hooksDir: dir, hooks: { limit: { max: -1 } } }), {
    code: 'HOOKMQ_ERR_HOOK_LOAD_FAILED',
    message: /config hooks\.limit\.max/,
  })
  const broker = await startBroker(t, { hooksDir: dir, hooks: { limit: { max: 3 } }, sys: { intervalMs: 100 } })
  const c = await connect(t, broker, { protocolVersion: 5 })
  assert.equal(await publishCode(c, 'small'), 0x10)
  assert.equal(await publishCode(c, 'big', 'too long'), 0x87)
  await c.subscribeAsync('$SYS/broker/hooks/limit/+')
  const seen = new Map<string, string>()
  while (seen.get('$SYS/broker/hooks/limit/denies') !== '1' || !seen.has('$SYS/broker/hooks/limit/state')) {
    const m = await collect(c).next()
    seen.set(m.topic, m.payload.toString())
  }
  assert.equal(seen.get('$SYS/broker/hooks/limit/state'), 'loaded')
})

test('setup gets config, logger, publish and a signal aborted when the version is replaced; teardown runs after', async (t) => {
  const dir = hooksFolder(t)
  const file = join(dir, 'life.ts')
  const src = (v: number): string => `import { defineHook } from 'hookmq'
export default defineHook({
  name: 'life',
  async setup(ctx) {
    ctx.signal.addEventListener('abort', () => void ctx.publish({ topic: 'life/aborted', payload: 'v${v}' }))
    await ctx.publish({ topic: 'life/setup', payload: 'v${v}' })
    return () => ctx.publish({ topic: 'life/teardown', payload: 'v${v}' })
  },
})
`
  const broker = await startBroker(t, { hooksDir: dir })
  const c = await connect(t, broker)
  await c.subscribeAsync('life/#')
  await writeHook(broker, file, src(1))
  await writeHook(broker, file, src(2))
  const got = (await collect(c).count(4)).map((m) => `${m.topic}=${m.payload}`)
  assert.deepEqual(got, ['life/setup=v1', 'life/setup=v2', 'life/aborted=v1', 'life/teardown=v1'])
})

test('a call running when a new version arrives finishes on the old version; the old teardown runs after it', async (t) => {
  const dir = hooksFolder(t)
  const file = join(dir, 'slow.ts')
  const src = (v: number, wait: boolean): string => `import { defineHook } from 'hookmq'
export default defineHook({
  name: 'slow',
  timeoutMs: 5000,
  setup: (ctx) => () => ctx.publish({ topic: 'slow/teardown', payload: 'v${v}' }),
  authorizePublish: ({ topic }) => topic === 'gate/go' ? ${wait ? `new Promise((r) => setTimeout(() => r({ deny: 'v${v}' }), 300))` : `{ deny: 'v${v}' }`} : undefined,
})
`
  writeFileSync(file, src(1, true))
  const broker = await startBroker(t, { hooksDir: dir })
  const watcher = await connect(t, broker)
  await watcher.subscribeAsync('slow/teardown')
  const raw = await RawClient.open(t, broker, 5)
  await raw.connect({}, 5)
  raw.send({ cmd: 'publish', topic: 'gate/go', payload: Buffer.from('x'), qos: 1, retain: false, dup: false, messageId: 1 }, 5)
  const swapped = writeHook(broker, file, src(2, false)) // arrives while v1 is still deciding
  assert.equal((await swapped).version, 2)
  assert.equal(collect(watcher).messages.length, 0) // v1 still busy: no teardown yet
  const ack = await raw.expect('puback')
  assert.equal(ack.reasonCode, 0x87)
  assert.equal((await collect(watcher).next()).payload.toString(), 'v1')
})

test('the hooks folder is created if missing; packages resolve from its own node_modules', async (t) => {
  const parent = hooksFolder(t)
  const dir = join(parent, 'not-yet')
  const broker = await startBroker(t, { hooksDir: dir })
  mkdirSync(join(dir, 'node_modules', 'shout'), { recursive: true })
  writeFileSync(join(dir, 'node_modules', 'shout', 'package.json'), JSON.stringify({ name: 'shout', version: '1.0.0', main: 'index.js' }))
  writeFileSync(join(dir, 'node_modules', 'shout', 'index.js'), `exports.shout = (s) => s.toUpperCase() + '!'\n`)
  const file = join(dir, 'loud.ts')
  const change = await writeHook(
    broker,
    file,
    `import { defineHook } from 'hookmq'\nimport { shout } from 'shout'\nexport default defineHook({ name: 'loud', transform: ({ payload }) => ({ payload: shout(payload.toString()) }) })\n`,
  )
  assert.equal(change.kind, 'loaded', change.error?.message)
  const c = await connect(t, broker)
  await c.subscribeAsync('l')
  await broker.publish({ topic: 'l', payload: 'hi' })
  assert.equal((await collect(c).next()).payload.toString(), 'HI!')
})

test('renaming a hook file keeps it loaded under its new name', async (t) => {
  const dir = hooksFolder(t)
  const before = join(dir, 'acl.ts')
  writeFileSync(before, aclHook('a/'))
  const broker = await startBroker(t, { hooksDir: dir })
  const after = join(dir, 'rules.ts')
  const loaded = nextChange(broker, after)
  renameSync(before, after)
  assert.equal((await loaded).kind, 'loaded')
  const removed = nextChange(broker, before)
  await removed.catch(() => undefined) // the old path's removal may already have happened
  assert.deepEqual(
    broker.hookStatus().map((s) => `${s.name}:${s.state}:${s.file}`),
    [`acl:loaded:${after}`],
  )
  const c = await connect(t, broker, { protocolVersion: 5 })
  assert.equal(await publishCode(c, 'b/1'), 0x87)
})

test('an asynchronous authorizePublish under a burst of 3,000 QoS 2 messages: every one completes, in order (the read backlog pauses and resumes the socket)', async (t) => {
  const broker = await startBroker(t, {
    hooks: [
      defineHook({
        name: 'slow-acl',
        authorizePublish: async () => {
          await new Promise((r) => setImmediate(r))
          return true
        },
      }),
    ],
  })
  const sub = await connect(t, broker)
  const inbox = collect(sub)
  await sub.subscribeAsync('burst/#', { qos: 2 })
  const pub = await connect(t, broker)
  const sent: Promise<unknown>[] = []
  for (let i = 0; i < 3000; i++) sent.push(pub.publishAsync('burst/x', String(i), { qos: 2 }))
  await Promise.all(sent)
  await pingRoundTrip(sub)
  while (inbox.messages.length < 3000) await inbox.next(5000)
  assert.deepEqual(
    inbox.messages.map((m) => Number(m.payload.toString())),
    Array.from({ length: 3000 }, (_, i) => i),
  )
})

test('a denied publish or subscribe is logged at info with client, topic or filter, reason code and reason, at most one line per client and kind every 10 s', async (t) => {
  const log = captureLog()
  const deny = defineHook({
    name: 'no-secrets',
    authorizePublish: ({ topic }) => (topic.startsWith('secret/') ? { deny: 'secrets are not for you' } : undefined),
    authorizeSubscribe: ({ filter }) => (filter.startsWith('secret/') ? { deny: 'secrets are not for you', reasonCode: 0x87 } : undefined),
  })
  const broker = await startBroker(t, { hooks: [deny], logger: log.logger })
  const c = await connect(t, broker, { clientId: 'nosy', protocolVersion: 5 })
  await assert.rejects(c.subscribeAsync('secret/#'), /Not authorized/) // (MQTT.js rejects a refused SUBACK)
  for (let i = 0; i < 5; i++) await c.publishAsync('secret/x', 'x', { qos: 1 }).catch(() => {})
  await c.publishAsync('open/x', 'x', { qos: 1 })
  const sub = await log.find((r) => r.msg === 'subscribe denied')
  assert.equal(sub.clientId, 'nosy')
  assert.equal(sub.filter, 'secret/#')
  assert.equal(sub.reason, 'secrets are not for you')
  const pub = await log.find((r) => r.msg === 'publish denied')
  assert.equal(pub.topic, 'secret/x')
  assert.equal(pub.reasonCode, 0x87)
  assert.equal(log.records.filter((r) => r.msg === 'publish denied').length, 1, 'five denials within 10 s: one line')
})
