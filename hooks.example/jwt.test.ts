// jwt.test.ts — which tokens jwt.ts accepts, checked offline against a real JWKS server: `hookmq test hooks.example`.
// Needs jose (npm install jose@5), as jwt.ts does.
import assert from 'node:assert/strict'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { test, type TestContext } from 'node:test'
import { exportJWK, exportSPKI, generateKeyPair, SignJWT, type JWK, type JWTPayload } from 'jose'
import { loadHook } from 'hookmq/testing'

const file = new URL('./jwt.ts', import.meta.url)
const secret = 'a-shared-secret-of-at-least-32-characters'
const now = () => Math.floor(Date.now() / 1000)

async function sign(claims: JWTPayload, key: Parameters<SignJWT['sign']>[0], header: { alg: string; kid?: string } = { alg: 'HS256' }): Promise<string> {
  return new SignJWT(claims).setProtectedHeader(header).sign(key)
}
const hs = (claims: JWTPayload) => sign(claims, new TextEncoder().encode(secret))

/** A JWKS endpoint: `keys` is what it serves; `mode` makes it fail; `fetches` counts requests. */
async function jwksServer(t: TestContext) {
  const state = { keys: [] as JWK[], mode: 'ok' as 'ok' | 'error' | 'hang', fetches: 0 }
  const server: Server = createServer((req, res) => {
    state.fetches++
    if (state.mode === 'hang') return // never answers
    if (state.mode === 'error') return res.writeHead(500).end('down')
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: state.keys }))
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.after(() => new Promise<void>((r) => server.close(() => r())))
  t.after(() => server.closeAllConnections())
  return { state, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks.json`, server }
}

async function rsaKey(kid: string) {
  const { publicKey, privateKey } = await generateKeyPair('RS256')
  return { privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' }, publicKey }
}

const denied = (reasonCode: number) => ({ result: 'deny', reasonCode })
function outcome(d: { result: string; reasonCode?: number }) {
  return d.result === 'deny' ? denied(d.reasonCode!) : { result: d.result }
}

test('jwt (secret): a good token logs in as its subject; expired, wrong issuer or audience, bad signature, no exp: 0x86', async (t) => {
  const hook = await loadHook(file, { config: { secret, issuer: 'https://id.test/', audience: 'mqtt' } })
  t.after(() => hook.close())
  const good = { sub: 'device-17', iss: 'https://id.test/', aud: 'mqtt', exp: now() + 60 }
  const ok = await hook.authenticate({ username: 'whatever', password: await hs(good) })
  assert.equal(ok.result, 'allow')
  assert.deepEqual(ok.result === 'allow' && ok.user, { id: 'device-17', name: 'device-17', jwt: { iss: 'https://id.test/', exp: good.exp } })
  // within the clock tolerance (30 s)
  assert.equal((await hook.authenticate({ password: await hs({ ...good, exp: now() - 10 }) })).result, 'allow')
  for (const [what, token] of [
    ['expired', await hs({ ...good, exp: now() - 60 })],
    ['not yet valid', await hs({ ...good, nbf: now() + 60 })],
    ['other issuer', await hs({ ...good, iss: 'https://evil.test/' })],
    ['other audience', await hs({ ...good, aud: 'web' })],
    ['no exp', await hs({ sub: 'x', iss: good.iss, aud: 'mqtt' })],
    ['no sub', await hs({ iss: good.iss, aud: 'mqtt', exp: good.exp })],
    ['other secret', await sign(good, new TextEncoder().encode('another-secret-of-at-least-32-characters!'))],
    ['alg none', (await hs(good)).replace(/^[^.]+/, Buffer.from('{"alg":"none"}').toString('base64url')).replace(/[^.]+$/, '')],
  ] as const) {
    assert.deepEqual(outcome(await hook.authenticate({ password: token })), denied(0x86), what)
  }
  // not a JWT at all: another hook's business
  assert.deepEqual(await hook.authenticate({ username: 'alice', password: 'wonderland' }), { result: 'pass' })
  assert.deepEqual(await hook.authenticate({ clientId: 'anonymous' }), { result: 'pass' })
  assert.deepEqual(hook.failures, [])
})

test('jwt (JWKS URL): keys fetched once and cached; a token of a new key fetches again (rotation); an unknown key is 0x86', async (t) => {
  const jwks = await jwksServer(t)
  const k1 = await rsaKey('k1')
  jwks.state.keys = [k1.jwk]
  const hook = await loadHook(file, { config: { jwksUrl: jwks.url, audience: 'mqtt', jwks: { cooldownMs: 0 } } })
  t.after(() => hook.close())
  const claims = { sub: 'd-1', aud: 'mqtt', exp: now() + 60 }
  for (let i = 0; i < 3; i++)
    assert.equal((await hook.authenticate({ password: await sign(claims, k1.privateKey, { alg: 'RS256', kid: 'k1' }) })).result, 'allow')
  assert.equal(jwks.state.fetches, 1)
  // the issuer rotates to k2
  const k2 = await rsaKey('k2')
  jwks.state.keys = [k2.jwk]
  assert.equal((await hook.authenticate({ password: await sign(claims, k2.privateKey, { alg: 'RS256', kid: 'k2' }) })).result, 'allow')
  assert.equal(jwks.state.fetches, 2)
  const stranger = await rsaKey('k3')
  assert.deepEqual(outcome(await hook.authenticate({ password: await sign(claims, stranger.privateKey, { alg: 'RS256', kid: 'k3' }) })), denied(0x86))
  // a key the set has, a token signed by another: 0x86
  assert.deepEqual(outcome(await hook.authenticate({ password: await sign(claims, stranger.privateKey, { alg: 'RS256', kid: 'k2' }) })), denied(0x86))
})

test('jwt (JWKS URL): keys that cannot be had (500, no answer within jwks.timeoutMs, nobody listening) refuse with 0x88, never a login', async (t) => {
  const jwks = await jwksServer(t)
  const k1 = await rsaKey('k1')
  jwks.state.keys = [k1.jwk]
  const hook = await loadHook(file, { config: { jwksUrl: jwks.url, jwks: { timeoutMs: 200, cooldownMs: 0 } }, logLevel: 'warn' })
  t.after(() => hook.close())
  const token = await sign({ sub: 'd-1', exp: now() + 60 }, k1.privateKey, { alg: 'RS256', kid: 'k1' })
  jwks.state.mode = 'error'
  assert.deepEqual(outcome(await hook.authenticate({ password: token })), denied(0x88))
  jwks.state.mode = 'hang'
  const start = Date.now()
  assert.deepEqual(outcome(await hook.authenticate({ password: token })), denied(0x88))
  assert.ok(Date.now() - start < 2000)
  jwks.server.closeAllConnections()
  await new Promise<void>((r) => jwks.server.close(() => r()))
  assert.deepEqual(outcome(await hook.authenticate({ password: token })), denied(0x88))
  assert.ok(hook.logs.some((l) => l.msg === 'JWT keys unavailable: login refused with 0x88'))
  assert.deepEqual(hook.failures, []) // answered, not failed: the breaker is not tripped by an outage of the issuer
})

test('jwt (public key, token as user name): the topics claim is the client ACL', async (t) => {
  const { publicKey, privateKey } = await generateKeyPair('ES256')
  const hook = await loadHook(file, { config: { publicKey: await exportSPKI(publicKey), token: 'username', topicsClaim: 'mqtt' } })
  t.after(() => hook.close())
  const token = await sign({ sub: 'd-17', exp: now() + 60, mqtt: { publish: ['devices/d-17/#'], subscribe: ['commands/d-17/+'] } }, privateKey, {
    alg: 'ES256',
  })
  const login = await hook.authenticate({ username: token })
  assert.equal(login.result, 'allow')
  const client = { id: 'd-17-a', user: login.result === 'allow' ? login.user : undefined }
  assert.deepEqual(await hook.authorizePublish({ client, topic: 'devices/d-17/temp' }), { result: 'allow' })
  assert.equal((await hook.authorizePublish({ client, topic: 'devices/d-18/temp' })).result, 'deny')
  assert.deepEqual(await hook.authorizeSubscribe({ client, filter: 'commands/d-17/reboot' }), { result: 'allow' })
  assert.deepEqual(await hook.authorizeSubscribe({ client, filter: '$share/g/commands/d-17/+' }), { result: 'allow' })
  assert.equal((await hook.authorizeSubscribe({ client, filter: 'commands/d-17/#' })).result, 'deny')
  assert.equal((await hook.authorizeSubscribe({ client, filter: 'commands/#' })).result, 'deny')
  // a token without the claim, or a client another hook logged in: the next hook decides
  const plain = await hook.authenticate({ username: await sign({ sub: 'd-2', exp: now() + 60 }, privateKey, { alg: 'ES256' }) })
  const other = { id: 'd-2', user: plain.result === 'allow' ? plain.user : undefined }
  assert.deepEqual(await hook.authorizePublish({ client: other, topic: 'anything' }), { result: 'pass' })
  assert.deepEqual(await hook.authorizePublish({ client: { id: 'x', user: { name: 'alice' } }, topic: 'anything' }), { result: 'pass' })
  // a malformed claim refuses the login
  const bad = await sign({ sub: 'd-3', exp: now() + 60, mqtt: { publish: 'devices/#' } }, privateKey, { alg: 'ES256' })
  assert.deepEqual(outcome(await hook.authenticate({ username: bad })), denied(0x86))
})

test('jwt: without a key source every token is refused with 0x88 (and the log says why); two key sources fail the load', async (t) => {
  const hook = await loadHook(file)
  t.after(() => hook.close())
  assert.ok(hook.logs.some((l) => l.level === 'warn' && l.msg?.startsWith('hooks.jwt sets none of jwksUrl, publicKey, secret')))
  assert.deepEqual(outcome(await hook.authenticate({ password: await hs({ sub: 'x', exp: now() + 60 }) })), denied(0x88))
  assert.deepEqual(await hook.authenticate({ username: 'alice', password: 'not a token' }), { result: 'pass' })
  await assert.rejects(loadHook(file, { config: { secret, jwksUrl: 'https://id.test/jwks' } }), {
    code: 'HOOKMQ_ERR_HOOK_LOAD_FAILED',
    message: /set only one of jwksUrl, publicKey, secret/,
  })
  await assert.rejects(loadHook(file, { config: { secret: 'short' } }), { message: /at least 32 characters/ })
})
