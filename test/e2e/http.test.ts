import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { connect, defer, hooksFolder, startBroker, startRedis, startSink, until, writeHook } from '../helpers.js'

async function get(base: string, path: string, method = 'GET'): Promise<{ status: number; type: string | null; body: string }> {
  const res = await fetch(base + path, { method })
  return { status: res.status, type: res.headers.get('content-type'), body: await res.text() }
}

/** the value of one sample line of the Prometheus text (`name{labels} value`) */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(series + ' '))
  return line === undefined ? undefined : Number(line.slice(series.length + 1))
}

test('HTTP endpoint: /health, /metrics (Prometheus text) with per-QoS message counts, hook and webhook figures; /hooks; 404 and 405', async (t) => {
  const dir = hooksFolder(t)
  const sink = await startSink(t)
  sink.respond = (_req, res) => {
    res.writeHead(500).end()
  } // every delivery fails and is retried
  const broker = await startBroker(t, {
    hooksDir: dir,
    sys: { enabled: false },
    http: { port: 0 },
    webhooks: [
      { name: 'audit', url: sink.url, topics: ['m/#'], batch: { maxSize: 10, maxWaitMs: 5 }, retry: { maxAttempts: 2, minDelayMs: 10, maxDelayMs: 20 } },
    ],
  })
  await writeHook(
    broker,
    join(dir, 'acl.ts'),
    `
import { defineHook } from 'hookmq'
export default defineHook({ name: 'acl', authorizePublish: ({ topic }) => (topic === 'm/secret' ? { deny: 'no' } : undefined) })
`,
  )
  const base = broker.httpUrl()!
  assert.match(base, /^http:\/\/127\.0\.0\.1:\d+$/) // loopback, like every listener without a host

  const health = await get(base, '/health')
  assert.equal(health.status, 200)
  assert.equal(health.type, 'application/json')
  assert.deepEqual({ ...JSON.parse(health.body), uptimeSeconds: 0 }, { status: 'ok', node: broker.id, uptimeSeconds: 0, connections: 0 })

  const c = await connect(t, broker)
  await c.publishAsync('m/a', 'x', { qos: 0 })
  await c.publishAsync('m/b', 'x', { qos: 1 })
  await c.publishAsync('m/c', 'x', { qos: 1 })
  await c.publishAsync('m/secret', 'x', { qos: 1 })
  await c.publishAsync('m/d', 'x', { qos: 2 })
  await c.publishAsync('r/1', 'x', { qos: 1, retain: true }) // acknowledged: everything before it has been handled
  await until(() => broker.webhooks.status()[0]!.deadLettered > 0, 5000, 'a dead letter')

  const m = await get(base, '/metrics')
  assert.equal(m.status, 200)
  assert.match(m.type ?? '', /^text\/plain; version=0\.0\.4/)
  assert.equal(sample(m.body, 'hookmq_connections'), 1)
  assert.equal(sample(m.body, 'hookmq_messages_received_total{qos="0"}'), 1)
  assert.equal(sample(m.body, 'hookmq_messages_received_total{qos="1"}'), 4)
  assert.equal(sample(m.body, 'hookmq_messages_received_total{qos="2"}'), 1)
  assert.equal(sample(m.body, 'hookmq_retained_messages'), 1)
  assert.equal(sample(m.body, 'hookmq_hook_loaded{hook="acl"}'), 1)
  assert.equal(sample(m.body, 'hookmq_hook_calls_total{hook="acl"}'), 6)
  assert.equal(sample(m.body, 'hookmq_hook_denies_total{hook="acl"}'), 1)
  assert.ok(sample(m.body, 'hookmq_webhook_retries_total{webhook="audit"}')! >= 1)
  assert.ok(sample(m.body, 'hookmq_webhook_dead_lettered_total{webhook="audit"}')! >= 1)
  assert.ok(sample(m.body, 'process_resident_memory_bytes')! > 0) // Node.js process metrics too
  assert.ok(m.body.includes('# TYPE hookmq_messages_received_total counter'))

  // a subscriber: what it is sent is counted by QoS
  const s = await connect(t, broker)
  await s.subscribeAsync('m/#', { qos: 1 })
  await c.publishAsync('m/e', 'x', { qos: 1 })
  await until(async () => sample((await get(base, '/metrics')).body, 'hookmq_messages_sent_total{qos="1"}') === 1, 3000, 'one QoS 1 message sent')

  const hooks = JSON.parse((await get(base, '/hooks')).body) as Array<{ name: string; state: string; denies: number }>
  assert.deepEqual(
    hooks.map((h) => [h.name, h.state, h.denies]),
    [['acl', 'loaded', 1]],
  )
  assert.equal((await get(base, '/nope')).status, 404)
  assert.equal((await get(base, '/health', 'POST')).status, 405)
  assert.equal((await get(base, '/health', 'HEAD')).status, 200)
})

test('HTTP /health answers 503 "redis unavailable" while Redis is down (while /live and /metrics still answer) and 200 again once it is back', async (t) => {
  const redis = await startRedis(t)
  const broker = await startBroker(t, { ws: false, sys: { enabled: false }, http: { port: 0 }, redis: { url: redis.url, heartbeatMs: 100 } })
  const base = broker.httpUrl()!
  assert.equal((await get(base, '/health')).status, 200)
  assert.equal(JSON.parse((await get(base, '/health')).body).redis, 'up')
  await redis.stop()
  await until(async () => (await get(base, '/health')).status === 503, 10000, '/health to answer 503')
  const down = JSON.parse((await get(base, '/health')).body)
  assert.equal(down.status, 'redis unavailable')
  assert.equal((await get(base, '/live')).status, 200) // a liveness probe must not restart the node for it
  assert.equal(sample((await get(base, '/metrics')).body, 'hookmq_redis_available'), 0)
  await redis.start()
  await until(async () => (await get(base, '/health')).status === 200, 15000, '/health to answer 200 again')
  assert.equal(sample((await get(base, '/metrics')).body, 'hookmq_redis_available'), 1)
})

test('HTTP http.token: /metrics and /hooks answer 401 without the bearer token (or with a wrong one) and 200 with it; /health and /live stay open for probes', async (t) => {
  const token = 'tok-0123456789abcdef'
  const broker = await startBroker(t, { ws: false, sys: { enabled: false }, http: { port: 0, token } })
  const base = broker.httpUrl()!
  const fetchWith = async (path: string, authorization?: string): Promise<Response> =>
    fetch(base + path, authorization === undefined ? {} : { headers: { authorization } })
  for (const path of ['/metrics', '/hooks']) {
    const none = await fetchWith(path)
    assert.equal(none.status, 401, path)
    assert.equal(none.headers.get('www-authenticate'), 'Bearer realm="hookmq"')
    assert.equal((await fetchWith(path, `Bearer ${token}x`)).status, 401, path)
    assert.equal((await fetchWith(path, `Bearer ${token.slice(0, -1)}`)).status, 401, path)
    assert.equal((await fetchWith(path, token)).status, 401, path) // the scheme is required
    assert.equal((await fetchWith(path, `Bearer ${token}`)).status, 200, path)
    assert.equal((await fetchWith(path, `bearer ${token}`)).status, 200, path) // the scheme is case-insensitive (RFC 7235)
  }
  assert.match(await (await fetchWith('/metrics', `Bearer ${token}`)).text(), /^hookmq_connections 0$/m)
  assert.equal((await fetchWith('/health')).status, 200)
  assert.equal((await fetchWith('/live')).status, 200)
})

test('HTTP /hooks shows file paths relative to the hooks folder, for loaded and failed hooks and in error messages', async (t) => {
  const dir = hooksFolder(t)
  const broker = await startBroker(t, { hooksDir: dir, ws: false, sys: { enabled: false }, http: { port: 0 } })
  mkdirSync(join(dir, 'sub'))
  await writeHook(
    broker,
    join(dir, 'sub', 'acl.ts'),
    `import { defineHook } from 'hookmq'\nexport default defineHook({ name: 'acl', authorizePublish: () => undefined })\n`,
  )
  await writeHook(broker, join(dir, 'broken.ts'), `import { defineHook } from 'hookmq'\nimport './_missing'\nexport default defineHook({ name: 'broken' })\n`)
  const text = await (await fetch(broker.httpUrl() + '/hooks')).text()
  const hooks = JSON.parse(text) as Array<{ name: string; file?: string; state: string; error?: { file?: string; message: string } }>
  const byName = new Map(hooks.map((h) => [h.name, h]))
  assert.equal(byName.get('acl')!.file, join('sub', 'acl.ts'))
  assert.equal(byName.get('broken')!.state, 'failed')
  assert.equal(byName.get('broken')!.file, 'broken.ts')
  assert.match(byName.get('broken')!.error!.message, /_missing/)
  assert.ok(!text.includes(dir), `no absolute path in ${text}`)
  assert.ok(broker.hookStatus().some((h) => h.file === join(dir, 'broken.ts'))) // the embedder's API keeps absolute paths
})

test('HTTP beyond loopback needs http.token: the CLI refuses to start with one line naming the key', async (t) => {
  const bin = fileURLToPath(new URL('../../../bin/hookmq.js', import.meta.url))
  const child = spawn(process.execPath, [bin, '--host', '0.0.0.0', '--port', '0', '--no-ws', '--http', '0'], {
    cwd: tmpdir(),
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  defer(t, () => child.kill('SIGKILL')) // should it start after all
  let stderr = ''
  child.stderr.on('data', (b: Buffer) => {
    stderr += b.toString()
  })
  const code = await Promise.race([
    new Promise<number | null>((resolve) => child.on('exit', resolve)),
    new Promise<string>((resolve) => setTimeout(() => resolve('still running after 10 s'), 10000).unref()),
  ])
  assert.equal(code, 1)
  assert.equal(stderr.trim().split('\n').length, 1)
  assert.match(stderr, /^hookmq: config error: http\.token = \(missing\): required when the HTTP endpoint binds beyond loopback \(0\.0\.0\.0\)$/m)
})
