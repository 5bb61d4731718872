import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test, type TestContext } from 'node:test'
import { fileURLToPath } from 'node:url'
import { Redis } from 'ioredis'
import { connect, defer, hooksFolder, publishCode, RawClient, startBroker, startRedis, writeHook } from '../helpers.js'
import { captureLog } from '../log-capture.js'

// What an operator reads in the log: its format (JSON or lines for a human),
// a line per client connect and disconnect (with why), denials naming the hook,
// where Redis is.

const bin = fileURLToPath(new URL('../../../bin/hookmq.js', import.meta.url))

/** `hookmq` started in a folder with `config` as its hookmq.config.json; resolves with its stdout once `until` matches it. */
async function cliOutput(t: TestContext, config: object, until: RegExp): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'hookmq-logs-'))
  defer(t, () => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(join(dir, 'hookmq.config.json'), JSON.stringify(config))
  const child = spawn(process.execPath, [bin], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] })
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  defer(t, async () => {
    child.kill('SIGKILL')
    await exited
  })
  let out = ''
  return new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no match within 10 s: ${out}`)), 10000)
    child.stdout!.on('data', (b: Buffer) => {
      out += b.toString()
      if (until.test(out)) {
        clearTimeout(timer)
        resolve(out)
      }
    })
    child.stderr!.on('data', (b: Buffer) => (out += b.toString()))
    child.once('exit', () => {
      clearTimeout(timer)
      reject(new Error(`hookmq exited: ${out}`))
    })
  })
}

test('log.format pretty: lines for a human with a local date and time, not JSON; auto on a pipe: JSON', async (t) => {
  const pretty = await cliOutput(t, { port: 0, ws: false, log: { format: 'pretty' } }, /listening[\s\S]*url: "mqtt:\/\/127\.0\.0\.1:\d+"/)
  const lines = pretty.split('\n').filter((l) => l.trim() !== '')
  for (const l of lines) assert.throws(() => JSON.parse(l), SyntaxError, `a JSON line: ${l}`)
  assert.match(pretty, /^\[\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3} [+-]\d{4}\] INFO \(hookmq\): listening$/m)
  assert.doesNotMatch(pretty, /"time":|\b1\d{12}\b/) // no epoch milliseconds
  assert.equal(pretty.includes('\u001b['), false) // no colours when stdout is not a terminal
  const json = await cliOutput(t, { port: 0, ws: false }, /"msg":"listening"/)
  const record = JSON.parse(json.split('\n').find((l) => l.includes('"listening"'))!) as { time: number; level: number }
  assert.equal(typeof record.time, 'number')
  assert.equal(record.level, 30)
})

test('a connect and a disconnect are one info line each: client id, user, address, listener, protocol, keep-alive, clean start, session present; the reason', async (t) => {
  const log = captureLog()
  const broker = await startBroker(t, { logger: log.logger })
  const c = await connect(t, broker, { clientId: 'alice', username: 'al', protocolVersion: 5, keepalive: 30, clean: true })
  const on = await log.find((r) => r.msg === 'client connected' && r.clientId === 'alice')
  assert.equal(on.level, 30)
  assert.equal(on.username, 'al')
  assert.match(on.remoteAddress as string, /127\.0\.0\.1/)
  assert.equal(on.listener, 'tcp')
  assert.equal(on.protocolVersion, 5)
  assert.equal(on.keepalive, 30)
  assert.equal(on.cleanStart, true)
  assert.equal(on.sessionPresent, false)
  await c.endAsync()
  const off = await log.find((r) => r.msg === 'client disconnected' && r.clientId === 'alice')
  assert.equal(off.level, 30)
  assert.equal(off.username, 'al')
  assert.equal(off.listener, 'tcp')
  assert.equal(off.reasonCode, 0)
  assert.equal(off.reason, 'the client sent DISCONNECT')

  // a persistent session resumed (3.1.1), then taken over by another connection of the same client id
  const p1 = await connect(t, broker, { clientId: 'bob', protocolVersion: 4, clean: false })
  await p1.endAsync()
  await connect(t, broker, { clientId: 'bob', protocolVersion: 4, clean: false })
  const resumed = await log.find((r) => r.msg === 'client connected' && r.clientId === 'bob' && r.sessionPresent === true)
  assert.equal(resumed.cleanStart, false)
  assert.equal(resumed.protocolVersion, 4)
  await connect(t, broker, { clientId: 'bob', protocolVersion: 4, clean: false })
  const taken = await log.find((r) => r.msg === 'client disconnected' && r.clientId === 'bob' && r.reasonCode === 0x8e)
  assert.equal(taken.reason, 'another connection took over this client id')
})

test('a disconnect line says why: keep-alive timeout, a socket closed without DISCONNECT, a socket error, the server shutting down', async (t) => {
  const log = captureLog()
  const broker = await startBroker(t, { logger: log.logger })
  const silent = await RawClient.open(t, broker)
  await silent.connect({ clientId: 'quiet', keepalive: 1 })
  await silent.expectClosed(5000)
  const timedOut = await log.find((r) => r.msg === 'client disconnected' && r.clientId === 'quiet')
  assert.equal(timedOut.reasonCode, 0x8d)
  assert.equal(timedOut.reason, 'keep-alive timeout')

  const gone = await RawClient.open(t, broker)
  await gone.connect({ clientId: 'gone' })
  gone.socket.end()
  const closed = await log.find((r) => r.msg === 'client disconnected' && r.clientId === 'gone')
  assert.equal(closed.reasonCode, 0x80)
  assert.equal(closed.reason, 'the client closed the connection without DISCONNECT')

  const reset = await RawClient.open(t, broker)
  await reset.connect({ clientId: 'reset' })
  reset.socket.resetAndDestroy()
  const failed = await log.find((r) => r.msg === 'client disconnected' && r.clientId === 'reset')
  assert.equal(failed.reasonCode, 0x80)
  assert.match(failed.reason as string, /^socket error: .*ECONNRESET/)

  await connect(t, broker, { clientId: 'last', protocolVersion: 5 })
  await broker.close()
  const shut = await log.find((r) => r.msg === 'client disconnected' && r.clientId === 'last')
  assert.equal(shut.reasonCode, 0x8b)
  assert.equal(shut.reason, 'server shutting down')
  // nothing else was logged for those four as connected
  assert.equal(log.records.filter((r) => r.msg === 'client connected').length, 4)
})

const acl = (reason: string, isolation: 'worker' | 'inline'): string => `
import { defineHook } from 'hookmq'
export default defineHook({
  name: 'acl',
  isolation: '${isolation}',
  authenticate: ({ username }) => (username === 'mallory' ? { deny: 'not you' } : undefined),
  authorizePublish: ({ topic }) => (topic.startsWith('secret/') ? { deny: '${reason}' } : undefined),
  authorizeSubscribe: ({ filter }) => (filter.startsWith('open/') ? true : undefined),
})
`

test('a denial names the hook file that denied and its version (worker and inline), or "default" when every hook passed and the default denied', async (t) => {
  const log = captureLog()
  const dir = hooksFolder(t)
  const file = join(dir, 'acl.ts')
  writeFileSync(file, acl('no secrets', 'worker'))
  const broker = await startBroker(t, { hooksDir: dir, defaults: { subscribe: 'deny' }, logger: log.logger })
  const a = await connect(t, broker, { clientId: 'a', protocolVersion: 5 })
  assert.equal(await publishCode(a, 'secret/x'), 0x87)
  const pub = await log.find((r) => r.msg === 'publish denied' && r.clientId === 'a')
  assert.equal(pub.hook, 'acl')
  assert.equal(pub.hookVersion, 1)
  assert.equal(pub.reason, 'no secrets')
  assert.equal((await a.subscribeAsync('open/#'))[0]!.qos, 0)
  await assert.rejects(a.subscribeAsync('other/#'))
  const sub = await log.find((r) => r.msg === 'subscribe denied' && r.clientId === 'a')
  assert.equal(sub.hook, 'default')
  assert.equal(sub.hookVersion, undefined)
  assert.equal(sub.filter, 'other/#')
  assert.equal(sub.reason, 'no hook allowed it (defaults.subscribe: deny)')

  assert.equal((await writeHook(broker, file, acl('still no secrets', 'inline'))).version, 2)
  const b = await connect(t, broker, { clientId: 'b', protocolVersion: 5 })
  assert.equal(await publishCode(b, 'secret/y'), 0x87)
  const pub2 = await log.find((r) => r.msg === 'publish denied' && r.clientId === 'b')
  assert.equal(pub2.hook, 'acl')
  assert.equal(pub2.hookVersion, 2)
  assert.equal(pub2.reason, 'still no secrets')

  await assert.rejects(connect(t, broker, { clientId: 'm', username: 'mallory', protocolVersion: 5 }))
  const refused = await log.find((r) => r.msg === 'connection refused' && r.clientId === 'm')
  assert.equal(refused.hook, 'acl')
  assert.equal(refused.reason, 'not you')
})

test('start-up says "connected to Redis": where (password masked), standalone, cluster or sentinel, the key prefix', async (t) => {
  const redis = await startRedis(t)
  const admin = new Redis(redis.url)
  await admin.config('SET', 'requirepass', 's3cret')
  admin.disconnect()
  const log = captureLog()
  const url = redis.url.replace('redis://', 'redis://:s3cret@')
  await startBroker(t, { ws: false, sys: { enabled: false }, redis: { url }, logger: log.logger })
  const line = await log.find((r) => r.msg === 'connected to Redis')
  assert.equal(line.level, 30)
  assert.equal(line.redis, redis.url.replace('redis://', 'redis://:***@'))
  assert.equal(line.mode, 'standalone')
  assert.equal(line.keyPrefix, 'hookmq:')
  assert.doesNotMatch(JSON.stringify(log.records), /s3cret/)
})
