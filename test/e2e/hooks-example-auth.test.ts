import assert from 'node:assert/strict'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { test, type TestContext } from 'node:test'
import { exportJWK, generateKeyPair, SignJWT, type JWTPayload, type KeyLike } from 'jose'
import { connect, exampleFolder, defer, publishCode, RawClient, startBroker } from '../helpers.js'

// hooks.example/jwt.ts and http-auth.ts loaded from a hooks folder (with the
// node_modules they require) by a real broker, against a real JWKS endpoint
// and a real HTTP auth service, with MQTT.js and raw MQTT 3.1.1 / 5 clients.

/** A real HTTP server; `handle` answers (changeable); `requests` counts them. */
async function httpServer(t: TestContext) {
  const state = {
    requests: 0,
    bodies: [] as Array<Record<string, unknown>>,
    handle: (_req: IncomingMessage, _body: Record<string, unknown>, res: ServerResponse): void => void res.writeHead(204).end(),
  }
  const server = createServer((req, res) => {
    let raw = ''
    req.on('data', (c: Buffer) => (raw += c.toString()))
    req.on('end', () => {
      state.requests++
      const body = raw.length > 0 ? (JSON.parse(raw) as Record<string, unknown>) : {}
      state.bodies.push(body)
      state.handle(req, body, res)
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const stop = (): Promise<void> =>
    new Promise((r) => {
      server.closeAllConnections()
      server.close(() => r())
    })
  defer(t, stop)
  return { state, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, stop }
}

const now = (): number => Math.floor(Date.now() / 1000)

test('hooks.example/jwt.ts: a token from the JWKS logs in as its subject (acl.ts rules apply by it); a bad token is 0x86 / code 4; a JWKS that is down is 0x88 / code 3', async (t) => {
  const { publicKey, privateKey } = await generateKeyPair('RS256')
  const jwks = await httpServer(t)
  jwks.state.handle = (_req, _b, res) =>
    void exportJWK(publicKey).then((jwk) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [{ ...jwk, kid: 'k1' }] })))
  const sign = (claims: JWTPayload, key: KeyLike = privateKey): Promise<string> => new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid: 'k1' }).sign(key)
  const broker = await startBroker(t, {
    hooksDir: exampleFolder(t, ['jwt.ts', 'acl.ts']),
    hooks: {
      jwt: { jwksUrl: `${jwks.url}/jwks.json`, issuer: 'https://id.test/', audience: 'mqtt', topicsClaim: 'mqtt', jwks: { timeoutMs: 500, cooldownMs: 0 } },
      acl: { rules: [{ user: '*', allow: 'both', topics: ['users/%u/#'] }] },
    },
  })
  const claims = { sub: 'device-17', iss: 'https://id.test/', aud: 'mqtt', exp: now() + 300 }
  // the user name is the client's choice; the session and acl.ts's %u are the token's subject
  const device = await connect(t, broker, { protocolVersion: 5, clientId: 'd17', username: 'admin', password: await sign(claims) })
  assert.equal(await publishCode(device, 'users/device-17/status'), 0x10)
  assert.equal(await publishCode(device, 'users/admin/status'), 0x87)
  // a token that carries its topics is its client's whole ACL
  const scoped = await connect(t, broker, {
    protocolVersion: 5,
    username: 'device-18',
    password: await sign({ ...claims, sub: 'device-18', mqtt: { publish: ['telemetry/device-18/#'], subscribe: [] } }),
  })
  assert.equal(await publishCode(scoped, 'telemetry/device-18/t'), 0x10)
  assert.equal(await publishCode(scoped, 'users/device-18/status'), 0x87)
  await assert.rejects(scoped.subscribeAsync('telemetry/#'), /Not authorized/)
  assert.equal(jwks.state.requests, 1) // the key set is cached

  const refused = async (password: string, version: 4 | 5): Promise<number | undefined> => {
    const raw = await RawClient.open(t, broker, version)
    const ack = await raw.connect({ username: 'x', password: Buffer.from(password) }, version)
    return version === 5 ? ack.reasonCode : ack.returnCode
  }
  const other = await generateKeyPair('RS256')
  assert.equal(await refused(await sign({ ...claims, exp: now() - 120 }), 5), 0x86)
  assert.equal(await refused(await sign({ ...claims, aud: 'web' }), 5), 0x86)
  assert.equal(await refused(await sign(claims, other.privateKey), 5), 0x86)
  assert.equal(await refused(await sign({ ...claims, exp: now() - 120 }), 4), 4)
  // the issuer's JWKS endpoint goes away: a new key id must be fetched, and cannot be
  await jwks.stop()
  const rotated = await new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid: 'k2' }).sign(privateKey)
  assert.equal(await refused(rotated, 5), 0x88)
  assert.equal(await refused(rotated, 4), 3)
  const status = broker.hookStatus().find((s) => s.name === 'jwt')!
  assert.equal(status.errors, 0) // refusals, not failures: the breaker stays closed
})

test('hooks.example/http-auth.ts: the service decides logins and publishes, answers are cached, and a service that is down refuses with 0x88', async (t) => {
  const svc = await httpServer(t)
  svc.state.handle = (req, b, res) => {
    if (req.url === '/acl') return void res.writeHead(String(b.topic).startsWith(`clients/${String(b.clientId)}/`) ? 200 : 403).end()
    if (b.username === 'alice' && Buffer.from(String(b.password), 'base64').toString() === 'wonderland')
      return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ user: { id: 'u-alice', name: 'alice' } }))
    res.writeHead(401).end()
  }
  const broker = await startBroker(t, {
    hooksDir: exampleFolder(t, ['http-auth.ts']),
    hooks: { 'http-auth': { url: `${svc.url}/login`, timeoutMs: 500, acl: { url: `${svc.url}/acl` } } },
  })
  const alice = await connect(t, broker, { protocolVersion: 5, clientId: 'phone', username: 'alice', password: 'wonderland' })
  assert.deepEqual(svc.state.bodies[0], {
    clientId: 'phone',
    username: 'alice',
    password: 'd29uZGVybGFuZA==',
    address: '127.0.0.1',
    protocolVersion: 5,
    listener: 'tcp',
  })
  assert.equal(await publishCode(alice, 'clients/phone/status'), 0x10)
  assert.equal(await publishCode(alice, 'clients/phone/status'), 0x10)
  assert.equal(await publishCode(alice, 'clients/other/status'), 0x87)
  assert.equal(svc.state.requests, 3) // the login, then one per topic
  await alice.endAsync()
  // the same login again: cached
  await (await connect(t, broker, { protocolVersion: 5, clientId: 'phone', username: 'alice', password: 'wonderland' })).endAsync()
  assert.equal(svc.state.requests, 3)

  const code = async (password: string, version: 4 | 5): Promise<number | undefined> => {
    const raw = await RawClient.open(t, broker, version)
    const ack = await raw.connect({ username: 'alice', password: Buffer.from(password) }, version)
    return version === 5 ? ack.reasonCode : ack.returnCode
  }
  assert.equal(await code('rabbit', 5), 0x86)
  assert.equal(await code('rabbit', 4), 4)
  // the service hangs, then is gone: refused as "server unavailable", never let in
  svc.state.handle = () => {}
  assert.equal(await code('hangs', 5), 0x88)
  await svc.stop()
  assert.equal(await code('gone', 5), 0x88)
  assert.equal(await code('gone', 4), 3)
})
