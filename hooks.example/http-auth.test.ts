// http-auth.test.ts — what http-auth.ts asks its service and what it makes of the answer, against a real HTTP server: `hookmq test hooks.example`.
import assert from 'node:assert/strict'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { test, type TestContext } from 'node:test'
import { loadHook } from 'hookmq/testing'

const file = new URL('./http-auth.ts', import.meta.url)

type Handler = (body: Record<string, unknown>, res: ServerResponse) => void

/** An auth service: `handle` answers; `requests` lists the bodies it got. */
async function service(t: TestContext) {
  const state = { requests: [] as Array<Record<string, unknown>>, handle: ((_b, res) => res.writeHead(204).end()) as Handler }
  const server = createServer((req: IncomingMessage, res) => {
    let raw = ''
    req.on('data', (c: Buffer) => (raw += c.toString()))
    req.on('end', () => {
      const body = JSON.parse(raw) as Record<string, unknown>
      state.requests.push(body)
      state.handle(body, res)
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.after(() => new Promise<void>((r) => server.close(() => r())))
  t.after(() => server.closeAllConnections())
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  return { state, server, login: `${url}/login`, acl: `${url}/acl` }
}

const json = (res: ServerResponse, status: number, body: unknown) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body))
const deny = (reasonCode: number, reason: string) => ({ result: 'deny', reasonCode, reason, hook: 'http-auth', hookVersion: 1 })

test('http-auth: the service gets the login (password in base64); 2xx allows with its "user", 401 is 0x86, 403 is 0x87', async (t) => {
  const svc = await service(t)
  svc.state.handle = (b, res) =>
    b.username === 'alice' && b.password === Buffer.from('wonderland').toString('base64')
      ? json(res, 200, { user: { id: 'u-1', name: 'alice', plan: 'pro' } })
      : b.username === 'mallory'
        ? res.writeHead(403).end()
        : res.writeHead(401).end()
  const hook = await loadHook(file, { config: { url: svc.login, headers: { authorization: 'Bearer s3cret' } } })
  t.after(() => hook.close())
  const ok = await hook.authenticate({ clientId: 'phone', username: 'alice', password: 'wonderland', remoteAddress: '10.1.2.3' })
  assert.deepEqual(ok, { result: 'allow', user: { id: 'u-1', name: 'alice', plan: 'pro' }, authenticationMethod: undefined, session: undefined })
  assert.deepEqual(svc.state.requests[0], {
    clientId: 'phone',
    username: 'alice',
    password: 'd29uZGVybGFuZA==',
    address: '10.1.2.3',
    protocolVersion: 5,
    listener: 'tcp',
  })
  assert.deepEqual(await hook.authenticate({ username: 'alice', password: 'rabbit' }), deny(0x86, 'bad user name or password'))
  assert.deepEqual(await hook.authenticate({ username: 'mallory', password: 'x' }), deny(0x87, 'not authorized'))
  // a body with "result" (EMQX's HTTP auth answer)
  svc.state.handle = (b, res) => json(res, 200, { result: b.username === 'bob' ? 'deny' : 'ignore' })
  assert.deepEqual(await hook.authenticate({ username: 'bob', password: 'x' }), deny(0x86, 'bad user name or password'))
  assert.deepEqual(await hook.authenticate({ username: 'carol', password: 'x' }), { result: 'pass' })
  assert.deepEqual(hook.failures, [])
})

test('http-auth: answers are cached (allow ttlMs, deny denyTtlMs), keyed without the password in clear; failures are not cached', async (t) => {
  const svc = await service(t)
  svc.state.handle = (b, res) => res.writeHead(b.password === Buffer.from('right').toString('base64') ? 204 : 401).end()
  const hook = await loadHook(file, { config: { url: svc.login, cache: { ttlMs: 60_000, denyTtlMs: 0 } } })
  t.after(() => hook.close())
  for (let i = 0; i < 3; i++) assert.equal((await hook.authenticate({ clientId: 'c', username: 'alice', password: 'right' })).result, 'allow')
  assert.equal(svc.state.requests.length, 1)
  // another password, client id or address is another entry
  assert.equal((await hook.authenticate({ clientId: 'c', username: 'alice', password: 'wrong' })).result, 'deny')
  assert.equal((await hook.authenticate({ clientId: 'c2', username: 'alice', password: 'right' })).result, 'allow')
  assert.equal(svc.state.requests.length, 3)
  // a deny with denyTtlMs 0 is asked again
  assert.equal((await hook.authenticate({ clientId: 'c', username: 'alice', password: 'wrong' })).result, 'deny')
  assert.equal(svc.state.requests.length, 4)
  // ten logins at once for one key: one request
  const same = await Promise.all(Array.from({ length: 10 }, () => hook.authenticate({ clientId: 'c3', username: 'alice', password: 'right' })))
  assert.ok(same.every((d) => d.result === 'allow'))
  assert.equal(svc.state.requests.length, 5)
  // 500: denied with 0x88, and asked again next time
  svc.state.handle = (_b, res) => res.writeHead(500).end()
  assert.deepEqual(await hook.authenticate({ clientId: 'c4', username: 'alice', password: 'right' }), deny(0x88, 'auth service unavailable'))
  svc.state.handle = (_b, res) => res.writeHead(204).end()
  assert.equal((await hook.authenticate({ clientId: 'c4', username: 'alice', password: 'right' })).result, 'allow')
  assert.equal(svc.state.requests.length, 7)
})

test('http-auth: a service that does not answer within timeoutMs, or is down, fails closed with 0x88', async (t) => {
  const svc = await service(t)
  svc.state.handle = () => {} // never answers
  const hook = await loadHook(file, { config: { url: svc.login, timeoutMs: 200 }, logLevel: 'warn' })
  t.after(() => hook.close())
  const start = Date.now()
  assert.deepEqual(await hook.authenticate({ username: 'alice', password: 'x' }), deny(0x88, 'auth service unavailable'))
  assert.ok(Date.now() - start < 2000)
  svc.server.closeAllConnections()
  await new Promise<void>((r) => svc.server.close(() => r()))
  assert.deepEqual(await hook.authenticate({ username: 'alice', password: 'hunter2hunter2' }), deny(0x88, 'auth service unavailable'))
  assert.ok(hook.logs.some((l) => l.msg === 'auth service unreachable: denied'))
  const logged = JSON.stringify(hook.logs)
  assert.ok(!logged.includes('hunter2') && !logged.includes(Buffer.from('hunter2hunter2').toString('base64')), 'a password reached the log')
  assert.deepEqual(hook.failures, [])
})

test('http-auth: with "acl", publish and subscribe are asked (and cached) too; a failure denies with 0x80', async (t) => {
  const svc = await service(t)
  svc.state.handle = (b, res) => {
    if (b.action === undefined) return json(res, 200, { user: { name: b.username } })
    res.writeHead(String(b.topic).startsWith(`users/${b.username}/`) ? 200 : 403).end()
  }
  const hook = await loadHook(file, { config: { url: svc.login, acl: { url: svc.acl } } })
  t.after(() => hook.close())
  const client = { id: 'phone', username: 'alice', user: { name: 'alice' } }
  assert.deepEqual(await hook.authorizePublish({ client, topic: 'users/alice/status', qos: 1 }), { result: 'allow' })
  assert.deepEqual(svc.state.requests.at(-1), {
    action: 'publish',
    clientId: 'phone',
    username: 'alice',
    user: { name: 'alice' },
    topic: 'users/alice/status',
    qos: 1,
    retain: false,
  })
  assert.deepEqual(await hook.authorizePublish({ client, topic: 'users/alice/status', qos: 1 }), { result: 'allow' })
  assert.equal(svc.state.requests.length, 1)
  assert.deepEqual(await hook.authorizePublish({ client, topic: 'users/bob/status' }), deny(0x87, 'not authorized'))
  assert.deepEqual(await hook.authorizeSubscribe({ client, filter: 'users/alice/#' }), { result: 'allow' })
  assert.equal(svc.state.requests.at(-1)!.action, 'subscribe')
  svc.state.handle = (_b, res) => res.writeHead(502).end()
  assert.deepEqual(await hook.authorizePublish({ client, topic: 'users/alice/other' }), deny(0x80, 'auth service unavailable'))
})

test('http-auth: without a "url" every login is refused with 0x88, and the log says why', async (t) => {
  const hook = await loadHook(file)
  t.after(() => hook.close())
  assert.ok(hook.logs.some((l) => l.level === 'warn' && l.msg === 'hooks.http-auth has no url: every login is refused (0x88) until it does'))
  assert.deepEqual(await hook.authenticate({ username: 'alice', password: 'x' }), deny(0x88, 'auth service not configured'))
  assert.deepEqual(await hook.authenticate({ clientId: 'anonymous' }), deny(0x88, 'auth service not configured'))
})

test('http-auth: without "acl" it decides logins only', async (t) => {
  const svc = await service(t)
  const hook = await loadHook(file, { config: { url: svc.login } })
  t.after(() => hook.close())
  assert.deepEqual(await hook.authorizePublish({ topic: 'anything' }), { result: 'pass' })
  assert.deepEqual(await hook.authorizeSubscribe({ filter: '#' }), { result: 'pass' })
  assert.equal(svc.state.requests.length, 0)
})
