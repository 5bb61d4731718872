import assert from 'node:assert/strict'
import http from 'node:http'
import { join } from 'node:path'
import { test } from 'node:test'
import type { MqttClient } from 'mqtt'
import { collect, connect, hooksFolder, publishCode, startBroker, startRedis, startSink, until, writeHook } from '../helpers.js'
import { nodes } from '../support/cluster.js'

// The admin API (/admin/...) over real HTTP, real MQTT.js clients, a real sink and a real redis-server.

const ADMIN = 'admin-token-0123456789'
const READER = 'read-token-0123456789ab'

async function api(
  base: string,
  path: string,
  options: { method?: string; token?: string; body?: unknown } = {},
): Promise<{ status: number; body: Record<string, unknown> & { error?: string } }> {
  const res = await fetch(base + path, {
    method: options.method ?? 'GET',
    headers: {
      ...(options.token !== undefined ? { authorization: `Bearer ${options.token}` } : {}),
      ...(options.body !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  })
  const text = await res.text()
  return { status: res.status, body: text === '' ? {} : (JSON.parse(text) as Record<string, unknown>) }
}

/** The reason code of the DISCONNECT the client gets (MQTT 5). */
function disconnectCode(c: MqttClient): Promise<number | undefined> {
  return new Promise((resolve) => c.once('disconnect', (p) => resolve(p.reasonCode)))
}

test('admin API: tokens and roles (read-only GET, admin for actions, 401 without), clients list and detail, kick with 0x98', async (t) => {
  const broker = await startBroker(t, {
    http: {
      port: 0,
      tokens: [
        { token: ADMIN, role: 'admin' },
        { token: READER, role: 'read' },
      ],
    },
    sys: { enabled: false },
  })
  const base = broker.httpUrl()!
  const a = await connect(t, broker, { clientId: 'dev-a', username: 'alice', protocolVersion: 5 })
  await connect(t, broker, { clientId: 'dev-b', protocolVersion: 4 })
  await connect(t, broker, { clientId: 'other', protocolVersion: 5 })
  await a.subscribeAsync('s/#', { qos: 1 })
  await a.publishAsync('s/x', 'hello', { qos: 1 })

  assert.equal((await api(base, '/admin/clients')).status, 401)
  assert.equal((await api(base, '/admin/clients', { token: 'wrong-token-0123456789' })).status, 401)
  const list = await api(base, '/admin/clients?clientId=dev-', { token: READER })
  assert.equal(list.status, 200)
  assert.equal(list.body.total, 2)
  const rows = list.body.clients as Array<Record<string, unknown>>
  assert.deepEqual(
    rows.map((r) => [r.clientId, r.username, r.protocolVersion, r.node]),
    [
      ['dev-a', 'alice', 5, broker.id],
      ['dev-b', undefined, 4, broker.id],
    ],
  )
  const paged = await api(base, '/admin/clients?limit=1&offset=1', { token: READER })
  assert.deepEqual(
    (paged.body.clients as Array<{ clientId: string }>).map((r) => r.clientId),
    ['dev-b'],
  )
  assert.equal(paged.body.total, 3)
  assert.equal((await api(base, '/admin/clients?limit=0', { token: READER })).status, 400)
  assert.match((await api(base, '/admin/clients?bogus=1', { token: READER })).body.error!, /bogus/)

  const detail = await api(base, '/admin/clients/dev-a', { token: READER })
  assert.equal(detail.status, 200)
  assert.deepEqual(detail.body.subscriptions, [{ filter: 's/#', qos: 1 }])
  assert.equal(detail.body.address, '127.0.0.1')
  assert.ok((detail.body.bytesIn as number) > 20 && (detail.body.bytesOut as number) > 10, JSON.stringify(detail.body))
  assert.ok(Date.parse(detail.body.connectedAt as string) <= Date.now())
  assert.equal((await api(base, '/admin/clients/nobody', { token: READER })).status, 404)

  // a read-only token cannot act
  const refused = await api(base, '/admin/clients/dev-a/kick', { method: 'POST', token: READER })
  assert.equal(refused.status, 403)
  assert.equal(broker.connectedClients().length, 3)

  const code = disconnectCode(a)
  const kicked = await api(base, '/admin/clients/dev-a/kick', { method: 'POST', token: ADMIN, body: { reason: 'maintenance' } })
  assert.equal(kicked.status, 200)
  assert.deepEqual(kicked.body, { kicked: 'dev-a', node: broker.id })
  assert.equal(await code, 0x98) // Administrative action
  await until(() => broker.connectedClients().length === 2, 2000, 'dev-a gone')
  assert.equal((await api(base, '/admin/clients/dev-a/kick', { method: 'POST', token: ADMIN })).status, 404)
  assert.equal((await api(base, '/admin/clients', { method: 'PUT', token: ADMIN })).status, 405)
})

test('admin API: without a token it answers loopback as admin; sessions (list, inspect, delete), subscriptions matching a topic, retained (list, read, clear), publish', async (t) => {
  const broker = await startBroker(t, { http: { port: 0 }, sys: { enabled: false } })
  const base = broker.httpUrl()!
  // a persistent session that goes offline with a subscription and queued messages
  const p = await connect(t, broker, { clientId: 'sleeper', clean: false, protocolVersion: 5, properties: { sessionExpiryInterval: 3600 } })
  await p.subscribeAsync('q/+', { qos: 1 })
  await p.subscribeAsync('$share/g/q/x', { qos: 0 })
  await p.endAsync()
  const live = await connect(t, broker, { clientId: 'watcher' })
  await live.subscribeAsync('q/#')
  const inbox = collect(live)

  const pub = await api(base, '/admin/publish', { method: 'POST', body: { topic: 'q/x', payload: 'from-api', qos: 1 } })
  assert.equal(pub.status, 200)
  assert.equal((await inbox.next()).payload.toString(), 'from-api')
  const bad = await api(base, '/admin/publish', { method: 'POST', body: { topic: 'q/#', payload: 'x' } })
  assert.equal(bad.status, 400)
  assert.match(bad.body.error!, /body\.topic/)

  const sessions = await api(base, '/admin/sessions')
  assert.deepEqual(
    (sessions.body.sessions as Array<{ clientId: string }>).map((s) => s.clientId),
    ['sleeper'],
  )
  const one = await api(base, '/admin/sessions/sleeper')
  assert.equal(one.body.queued, 1)
  assert.equal(one.body.connected, false)
  assert.deepEqual((one.body.subscriptions as Array<{ filter: string }>).map((s) => s.filter).sort(), ['$share/g/q/x', 'q/+'])

  const subs = await api(base, '/admin/subscriptions?topic=q/x')
  assert.deepEqual(
    (subs.body.subscribers as Array<{ clientId: string; filter: string; connected: boolean }>).map((s) => `${s.clientId} ${s.filter} ${s.connected}`).sort(),
    ['sleeper $share/g/q/x false', 'sleeper q/+ false', 'watcher q/# true'],
  )

  assert.equal((await api(base, '/admin/sessions/sleeper', { method: 'DELETE' })).status, 200)
  assert.equal((await api(base, '/admin/sessions/sleeper')).status, 404)
  assert.equal(broker.sessions.sessions.has('sleeper'), false)
  assert.deepEqual((await api(base, '/admin/sessions')).body.sessions, [])

  // retained
  await api(base, '/admin/publish', { method: 'POST', body: { topic: 'cfg/a', payload: 'one', retain: true } })
  await api(base, '/admin/publish', {
    method: 'POST',
    body: { topic: 'cfg/b', payload: Buffer.from([0, 1, 2, 255]).toString('base64'), encoding: 'base64', retain: true },
  })
  await until(async () => ((await api(base, '/admin/retained?filter=cfg/%23')).body.messages as unknown[]).length === 2, 2000, 'two retained')
  const retained = (await api(base, '/admin/retained?filter=cfg/%23')).body.messages as Array<{ topic: string; payload: string; encoding: string }>
  assert.deepEqual(retained.map((m) => [m.topic, m.payload, m.encoding]).sort(), [
    ['cfg/a', 'one', 'utf8'],
    ['cfg/b', 'AAEC/w==', 'base64'],
  ])
  assert.equal((await api(base, '/admin/retained/message?topic=cfg/a')).body.payload, 'one')
  assert.equal((await api(base, '/admin/retained/message?topic=cfg/a', { method: 'DELETE' })).status, 200)
  await until(async () => (await api(base, '/admin/retained/message?topic=cfg/a')).status === 404, 2000, 'cfg/a cleared')
})

test('admin API: the running config with secrets masked; the OpenAPI description lists every route', async (t) => {
  const sink = await startSink(t)
  const broker = await startBroker(t, {
    http: { port: 0, token: ADMIN },
    sys: { enabled: false },
    webhooks: [{ name: 'w', url: sink.url, secret: 'webhook-hmac-secret', headers: { authorization: 'Basic c2VjcmV0' } }],
    hooks: { auth: { users: { bob: { password: 'scrypt:aa:bb' } } } },
  })
  const base = broker.httpUrl()!
  const config = await api(base, '/admin/config', { token: ADMIN })
  const text = JSON.stringify(config.body)
  for (const secret of [ADMIN, 'webhook-hmac-secret', 'c2VjcmV0', 'scrypt:aa:bb']) assert.ok(!text.includes(secret), `${secret} shown`)
  assert.equal((config.body.webhooks as Array<{ url: string }>)[0]!.url, sink.url)
  assert.equal((config.body.http as { token: string }).token, '[masked]')

  const doc = await api(base, '/admin/openapi.json')
  assert.equal(doc.body.openapi, '3.1.0')
  const paths = doc.body.paths as Record<string, Record<string, { 'x-role': string }>>
  assert.equal(paths['/admin/clients/{clientId}/kick']!.post!['x-role'], 'admin')
  assert.ok(paths['/admin/trace']!.get)
  assert.ok(Object.keys(paths).length >= 15)
})

test('admin API: webhook dead letters listed, replayed (the sink receives them) and purged, without Redis', async (t) => {
  const sink = await startSink(t)
  let failing = true
  sink.respond = (_req, res) => {
    res.writeHead(failing ? 500 : 204).end()
  }
  const broker = await startBroker(t, {
    http: { port: 0 },
    sys: { enabled: false },
    webhooks: [{ name: 'audit', url: sink.url, topics: ['m/#'], batch: { maxSize: 1, maxWaitMs: 0 }, retry: { maxAttempts: 1, minDelayMs: 1, maxDelayMs: 1 } }],
  })
  const base = broker.httpUrl()!
  const c = await connect(t, broker)
  await c.publishAsync('m/1', 'a', { qos: 1 })
  await c.publishAsync('m/2', 'b', { qos: 1 })
  await until(async () => ((await api(base, '/admin/webhooks/dead-letters')).body.deadLetters as unknown[]).length === 2, 5000, 'two dead letters')
  failing = false
  const replay = await api(base, '/admin/webhooks/dead-letters/replay?webhook=audit', { method: 'POST' })
  assert.deepEqual(replay.body, { requeued: 2 })
  await until(() => sink.requests.length >= 2, 5000, 'replayed deliveries at the sink')
  assert.deepEqual(sink.requests.map((r) => (r.body.deliveries[0] as { topic?: string }).topic).sort(), ['m/1', 'm/2'])

  failing = true
  await c.publishAsync('m/3', 'c', { qos: 1 })
  await until(async () => ((await api(base, '/admin/webhooks/dead-letters')).body.deadLetters as unknown[]).length === 1, 5000, 'a dead letter')
  assert.deepEqual((await api(base, '/admin/webhooks/dead-letters', { method: 'DELETE' })).body, { purged: 1 })
  assert.deepEqual((await api(base, '/admin/webhooks/dead-letters')).body.deadLetters, [])
  assert.equal(((await api(base, '/admin/webhooks')).body as unknown as Array<{ name: string }>)[0]!.name, 'audit')
})

/** The first `n` events of a trace stream, read with a real HTTP client. */
function traceEvents(
  url: string,
  n: number,
  token?: string,
): { events: Array<Record<string, unknown>>; done: Promise<void>; opened: Promise<void>; close(): void } {
  const events: Array<Record<string, unknown>> = []
  let close = (): void => {}
  let opened!: () => void
  const openedP = new Promise<void>((r) => (opened = r))
  const done = new Promise<void>((resolve, reject) => {
    const req = http.get(url, { headers: token ? { authorization: `Bearer ${token}` } : {} }, (res) => {
      if (res.statusCode !== 200) return reject(new Error(`trace answered ${res.statusCode}`))
      let buf = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => {
        buf += chunk
        if (buf.startsWith(':')) opened()
        for (let i = buf.indexOf('\n\n'); i >= 0; i = buf.indexOf('\n\n')) {
          const block = buf.slice(0, i)
          buf = buf.slice(i + 2)
          if (block.startsWith('data: ')) events.push(JSON.parse(block.slice(6)) as Record<string, unknown>)
        }
        if (events.length >= n) resolve()
      })
    })
    req.on('error', reject)
    close = () => req.destroy()
  })
  return { events, done, opened: openedP, close }
}

test('admin API: live trace (SSE) of one client: its packets in and out and the hook decisions on them, with hook, version and answer', async (t) => {
  const dir = hooksFolder(t)
  const broker = await startBroker(t, { http: { port: 0 }, sys: { enabled: false }, hooksDir: dir })
  await writeHook(
    broker,
    join(dir, 'acl.ts'),
    `import { defineHook } from 'hookmq'
export default defineHook({ name: 'acl', authorizePublish: ({ topic }) => (topic === 't/secret' ? { deny: 'no' } : undefined) })
`,
  )
  const base = broker.httpUrl()!
  assert.equal(broker.tracer.active, false)
  const c = await connect(t, broker, { clientId: 'traced', protocolVersion: 5 })
  const bystander = await connect(t, broker, { clientId: 'bystander' })
  const trace = traceEvents(`${base}/admin/trace?clientId=traced`, 6)
  await trace.opened
  assert.equal(broker.tracer.active, true)
  await bystander.publishAsync('t/other', 'x', { qos: 1 }) // not traced
  await c.publishAsync('t/ok', 'hello', { qos: 1 })
  await c.publishAsync('t/secret', 'x', { qos: 1 }).catch(() => {})
  await trace.done
  trace.close()
  const seen = trace.events.map(
    (e) => `${e.dir} ${e.type}${e.topic !== undefined ? ' ' + String(e.topic) : ''}${e.answer !== undefined ? ' ' + String(e.answer) : ''}`,
  )
  assert.deepEqual(seen.slice(0, 6), [
    'in publish t/ok',
    'hook authorizePublish t/ok pass',
    'out puback',
    'in publish t/secret',
    'hook authorizePublish t/secret deny 0x87',
    'out puback',
  ])
  const decision = trace.events[4]!
  assert.equal(decision.hook, 'acl')
  assert.equal(decision.version, 1)
  assert.equal(typeof decision.ms, 'number')
  assert.equal(trace.events[5]!.reasonCode, 0x87)
  assert.ok(trace.events.every((e) => e.clientId === 'traced'))
  await until(() => !broker.tracer.active, 2000, 'the trace stopped when its client went away')
})

test('admin API in a cluster: clients of every node listed with their node; a client on another node kicked; subscriptions of every node', async (t) => {
  const redis = await startRedis(t)
  const [a, b] = await nodes(t, redis.url, ['admin-a', 'admin-b'], { http: { port: 0 } })
  const onA = await connect(t, a!, { clientId: 'on-a', protocolVersion: 5 })
  const onB = await connect(t, b!, { clientId: 'on-b', protocolVersion: 5 })
  await onB.subscribeAsync('x/+')
  void onA
  const base = a!.httpUrl()!
  const list = await api(base, '/admin/clients')
  assert.deepEqual(
    (list.body.clients as Array<{ clientId: string; node: string }>).map((c) => `${c.clientId}@${c.node}`),
    ['on-a@admin-a', 'on-b@admin-b'],
  )
  assert.equal(list.body.missingNodes, undefined)
  const detail = await api(base, '/admin/clients/on-b')
  assert.equal(detail.body.node, 'admin-b')
  const subs = await api(base, '/admin/subscriptions?topic=x/1')
  assert.deepEqual(subs.body.subscribers, [{ clientId: 'on-b', node: 'admin-b', filter: 'x/+', qos: 0, connected: true }])
  const code = disconnectCode(onB)
  const kicked = await api(base, '/admin/clients/on-b/kick', { method: 'POST' })
  assert.deepEqual(kicked.body, { kicked: 'on-b', node: 'admin-b' })
  assert.equal(await code, 0x98)
})

test('admin API: bans — a ban by client id kicks the live client and refuses its CONNECT with 0x8A; listed; lifted; a bad CIDR is a 400', async (t) => {
  const broker = await startBroker(t, { http: { port: 0 }, sys: { enabled: false } })
  const base = broker.httpUrl()!
  const c = await connect(t, broker, { clientId: 'rogue', protocolVersion: 5 })
  const code = disconnectCode(c)
  const added = await api(base, '/admin/bans', { method: 'POST', body: { clientId: 'rogue', reason: 'abuse', expiresInSeconds: 3600 } })
  assert.equal(added.status, 200)
  const ban = added.body.ban as { id: string; kind: string; value: string; reason: string; expiresAt: number; by: string }
  assert.deepEqual([ban.kind, ban.value, ban.reason, ban.by], ['clientId', 'rogue', 'abuse', 'admin API: loopback'])
  assert.ok(ban.expiresAt > Date.now() + 3500_000)
  assert.equal(await code, 0x98)
  const refused = await connect(t, broker, { clientId: 'rogue', protocolVersion: 5, reconnectPeriod: 0 }).then(
    () => undefined,
    (err: { code?: number }) => err.code,
  )
  assert.equal(refused, 0x8a)
  assert.deepEqual(
    ((await api(base, '/admin/bans')).body.bans as Array<{ id: string }>).map((b) => b.id),
    [ban.id],
  )
  assert.equal((await api(base, `/admin/bans/${encodeURIComponent(ban.id)}`, { method: 'DELETE' })).status, 200)
  assert.deepEqual((await api(base, '/admin/bans')).body.bans, [])
  await connect(t, broker, { clientId: 'rogue', protocolVersion: 5 })
  const bad = await api(base, '/admin/bans', { method: 'POST', body: { address: '10.0.0.0/99' } })
  assert.equal(bad.status, 400)
  assert.match(bad.body.error!, /10\.0\.0\.0\/99/)
  assert.equal((await api(base, '/admin/bans', { method: 'POST', body: { clientId: 'a', username: 'b' } })).status, 400)
})

test('admin API: POST /admin/reload applies the config source (a ban from the file kicks at once); hooks disabled, enabled and reloaded by name', async (t) => {
  const dir = hooksFolder(t)
  let fileBans: Array<{ clientId: string }> = []
  const broker = await startBroker(t, {
    http: { port: 0 },
    sys: { enabled: false },
    hooksDir: dir,
    configSource: async () => ({
      port: 0,
      ws: { port: 0, path: '/mqtt' },
      warmup: false,
      sys: { enabled: false },
      http: { port: 0 },
      hooksDir: dir,
      bans: fileBans,
    }),
  })
  await writeHook(
    broker,
    join(dir, 'acl.ts'),
    `import { defineHook } from 'hookmq'
export default defineHook({ name: 'acl', authorizePublish: ({ topic }) => (topic.startsWith('no/') ? { deny: 'no' } : undefined) })
`,
  )
  const base = broker.httpUrl()!
  const c = await connect(t, broker, { clientId: 'from-file', protocolVersion: 5 })
  const code = disconnectCode(c)
  fileBans = [{ clientId: 'from-file' }]
  const reloaded = await api(base, '/admin/reload', { method: 'POST' })
  assert.equal(reloaded.status, 200, JSON.stringify(reloaded.body))
  assert.ok((reloaded.body.applied as string[]).includes('bans'), JSON.stringify(reloaded.body))
  assert.equal(await code, 0x98)

  const p = await connect(t, broker, { clientId: 'pub', protocolVersion: 5 })
  assert.equal(await publishCode(p, 'no/x'), 0x87)
  assert.equal((await api(base, '/admin/hooks/acl/disable', { method: 'POST' })).body.state, 'disabled')
  assert.equal(await publishCode(p, 'no/x'), 0x10) // allowed (no matching subscribers)
  assert.equal((await api(base, '/admin/hooks/acl/enable', { method: 'POST' })).body.state, 'loaded')
  const version = ((await api(base, '/admin/hooks/acl/reload', { method: 'POST' })).body as { version?: number }).version
  assert.equal(version, 2)
  assert.equal((await api(base, '/admin/hooks/nope/disable', { method: 'POST' })).status, 404)
})

test('admin API in a cluster: a trace through node A follows a client on node B; a session held by B is deleted through A; Redis dead letters listed, replayed and purged', async (t) => {
  const redis = await startRedis(t)
  const sink = await startSink(t)
  let failing = true
  sink.respond = (_req, res) => {
    res.writeHead(failing ? 500 : 204).end()
  }
  const webhooks = [
    { name: 'audit', url: sink.url, topics: ['m/#'], batch: { maxSize: 1, maxWaitMs: 0 }, retry: { maxAttempts: 1, minDelayMs: 1, maxDelayMs: 1 } },
  ]
  const [a, b] = await nodes(t, redis.url, ['trace-a', 'trace-b'], { http: { port: 0 }, webhooks })
  const base = a!.httpUrl()!
  const onB = await connect(t, b!, { clientId: 'far', protocolVersion: 5 })
  const trace = traceEvents(`${base}/admin/trace?clientId=far`, 2)
  await trace.opened
  await until(() => b!.tracer.active, 3000, 'the trace to start on node B')
  await onB.publishAsync('m/1', 'x', { qos: 1 })
  await trace.done
  trace.close()
  assert.deepEqual(
    trace.events.slice(0, 2).map((e) => `${String(e.node)} ${String(e.dir)} ${String(e.type)}`),
    ['trace-b in publish', 'trace-b out puback'],
  )
  await until(() => !b!.tracer.active, 3000, 'the trace to end on node B')

  // a persistent session that node B holds, offline
  const p = await connect(t, b!, { clientId: 'kept', clean: false, protocolVersion: 5, properties: { sessionExpiryInterval: 3600 } })
  await p.subscribeAsync('k/#', { qos: 1 })
  await p.endAsync()
  await until(async () => (await api(base, '/admin/sessions/kept')).status === 200, 3000, 'the stored session')
  assert.equal((await api(base, '/admin/sessions/kept', { method: 'DELETE' })).status, 200)
  assert.equal(b!.sessions.sessions.has('kept'), false)
  assert.equal((await api(base, '/admin/sessions/kept')).status, 404)
  const back = await connect(t, b!, { clientId: 'kept', clean: false, protocolVersion: 5, properties: { sessionExpiryInterval: 3600 } })
  assert.equal(back.connected, true)
  assert.deepEqual((await api(base, '/admin/subscriptions?topic=k/1')).body.subscribers, []) // a new session: its subscription went with the old one

  // dead letters kept in Redis
  await until(async () => ((await api(base, '/admin/webhooks/dead-letters')).body.deadLetters as unknown[]).length >= 1, 5000, 'a dead letter in Redis')
  failing = false
  const before = sink.requests.length
  assert.equal((await api(base, '/admin/webhooks/dead-letters/replay', { method: 'POST' })).body.requeued, 1)
  await until(() => sink.requests.length > before, 5000, 'the replayed delivery')
  failing = true
  await onB.publishAsync('m/2', 'y', { qos: 1 })
  await until(async () => ((await api(base, '/admin/webhooks/dead-letters')).body.deadLetters as unknown[]).length === 1, 5000, 'a second dead letter')
  assert.deepEqual((await api(base, '/admin/webhooks/dead-letters', { method: 'DELETE' })).body, { purged: 1 })
  assert.deepEqual((await api(base, '/admin/webhooks/dead-letters')).body.deadLetters, [])
})
