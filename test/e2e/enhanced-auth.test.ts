import assert from 'node:assert/strict'
import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto'
import { copyFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt'
import type { IAuthPacket, IConnackPacket, Packet } from 'mqtt-packet'
import type { AuditRecord } from '../../plugins/index.js'
import { hooksFolder, RawClient, startBroker, until, urlOf } from '../helpers.js'

// MQTT 5 enhanced authentication over several steps (AUTH 0x18 both ways),
// at CONNECT and at re-authentication, through real hook files; and
// hooks.example/scram.ts (SCRAM-SHA-256) end to end with MQTT.js.

const examples = fileURLToPath(new URL('../../../hooks.example/', import.meta.url))
const MODES = ['inline', 'worker'] as const
const METHOD = 'SCRAM-SHA-256'

const hmac = (key: Buffer, text: string): Buffer => createHmac('sha256', key).update(text).digest()
const sha256 = (b: Buffer): Buffer => createHash('sha256').update(b).digest()

/** An RFC 5803 verifier, as the hook's config holds it. */
function verifier(password: string, iterations = 4096): string {
  const salt = randomBytes(16)
  const salted = pbkdf2Sync(password, salt, iterations, 32, 'sha256')
  return `SCRAM-SHA-256$${iterations}:${salt.toString('base64')}$${sha256(hmac(salted, 'Client Key')).toString('base64')}:${hmac(salted, 'Server Key').toString('base64')}`
}

/** The client side of SCRAM-SHA-256 (RFC 5802 section 3). */
function scramClient(user: string, password: string, clientNonce = randomBytes(18).toString('base64')) {
  const firstBare = `n=${user},r=${clientNonce}`
  let serverSignature = ''
  return {
    first: `n,,${firstBare}`,
    final(serverFirst: string): string {
      const attrs = Object.fromEntries(serverFirst.split(',').map((a) => [a[0], a.slice(2)]))
      const salted = pbkdf2Sync(password, Buffer.from(attrs.s!, 'base64'), Number(attrs.i), 32, 'sha256')
      const clientKey = hmac(salted, 'Client Key')
      const withoutProof = `c=biws,r=${attrs.r}`
      const authMessage = `${firstBare},${serverFirst},${withoutProof}`
      const signature = hmac(sha256(clientKey), authMessage)
      serverSignature = hmac(hmac(salted, 'Server Key'), authMessage).toString('base64')
      return `${withoutProof},p=${Buffer.from(clientKey.map((b, i) => b ^ signature[i]!)).toString('base64')}`
    },
    /** the server-final-message proves the broker knows the verifier */
    verify: (serverFinal: string): boolean => serverFinal === `v=${serverSignature}`,
  }
}

test('the SCRAM client of these tests computes RFC 7677 section 3 example', () => {
  const c = scramClient('user', 'pencil', 'rOprNGfwEbeRWgbNEkqO')
  assert.equal(c.first, 'n,,n=user,r=rOprNGfwEbeRWgbNEkqO')
  const serverFirst = 'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096'
  assert.equal(c.final(serverFirst), 'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=')
  assert.ok(c.verify('v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4='))
})

/** Connects with MQTT.js doing SCRAM; answers the CONNACK (or the refusal's reason code) and what the client saw. */
async function scramConnect(
  url: string,
  user: string,
  password: string,
  options: IClientOptions = {},
): Promise<{ code: number; connack?: IConnackPacket; client: MqttClient; verified: boolean; steps: number }> {
  const scram = scramClient(user, password)
  const client = mqtt.connect(url, {
    protocolVersion: 5,
    reconnectPeriod: 0,
    connectTimeout: 5000,
    properties: { authenticationMethod: METHOD, authenticationData: Buffer.from(scram.first) },
    ...options,
  })
  let steps = 0
  client.handleAuth = (packet: IAuthPacket, cb: (err?: Error, p?: IAuthPacket) => void): void => {
    steps++
    const data = packet.properties?.authenticationData?.toString() ?? ''
    cb(undefined, {
      cmd: 'auth',
      reasonCode: 0x18,
      properties: { authenticationMethod: METHOD, authenticationData: Buffer.from(scram.final(data)) },
    })
  }
  const result = await new Promise<{ code: number; connack?: IConnackPacket }>((resolve) => {
    client.once('connect', (connack) => resolve({ code: 0, connack }))
    client.once('error', (err) => resolve({ code: (err as { code?: number }).code ?? -1 }))
  })
  const final = result.connack?.properties?.authenticationData?.toString() ?? ''
  return { ...result, client, verified: scram.verify(final), steps }
}

for (const mode of MODES) {
  test(`${mode}: hooks.example/scram.ts: SCRAM-SHA-256 end to end with MQTT.js; a wrong password or an unknown user is refused with 0x87`, async (t) => {
    const dir = hooksFolder(t)
    copyFileSync(join(examples, 'scram.ts'), join(dir, 'scram.ts'))
    const broker = await startBroker(t, {
      hooksDir: dir,
      hooks: { isolation: mode, scram: { users: { alice: verifier('correct horse'), bob: verifier('battery staple', 5000) } } },
    })
    const url = urlOf(broker)
    const ok = await scramConnect(url, 'alice', 'correct horse', { clientId: 'alice-1' })
    t.after(() => ok.client.end(true))
    assert.equal(ok.code, 0)
    assert.equal(ok.steps, 1) // one AUTH 0x18 from the broker, answered once
    assert.equal(ok.connack!.properties?.authenticationMethod, METHOD)
    assert.ok(ok.verified, 'the CONNACK carries the server signature the client expects')
    // the SCRAM user is the client's identity (its session's owner) and client.user for later hooks
    assert.deepEqual(broker.connectionOf('alice-1')!.client.user, { id: 'alice', name: 'alice' })
    await ok.client.publishAsync('after/login', 'x', { qos: 1 })

    const bob = await scramConnect(url, 'bob', 'battery staple') // another iteration count: told in server-first
    t.after(() => bob.client.end(true))
    assert.equal(bob.code, 0)
    assert.ok(bob.verified)

    const wrong = await scramConnect(url, 'alice', 'incorrect horse')
    wrong.client.end(true)
    assert.equal(wrong.code, 0x87)
    const nobody = await scramConnect(url, 'mallory', 'anything')
    nobody.client.end(true)
    assert.equal(nobody.code, 0x87) // refused at the same step as a wrong password: user names cannot be probed
    assert.equal(nobody.steps, 1)
    // another method is not scram.ts's: nobody takes it (CONNACK 0x8C, though anonymous clients may connect here)
    const other = await RawClient.open(t, broker, 5)
    const connack = await other.connect({ properties: { authenticationMethod: 'PLAIN', authenticationData: Buffer.from('x') } }, 5)
    assert.equal(connack.reasonCode, 0x8c)
  })
}

/** A hook that asks for `steps` more AUTH rounds, each time checking what it kept in `state`, then allows with data for the CONNACK. */
const STEPPER = `import { defineHook } from 'hookmq'
export default defineHook({
  name: 'stepper',
  authenticate(input, { config }) {
    if (input.authenticationMethod !== 'STEP') return undefined
    const data = input.authenticationData?.toString() ?? ''
    const steps = Number(config?.steps ?? 2)
    if (input.step === undefined) return { continue: 'challenge-1', state: { seen: [data], reauthenticate: input.reauthenticate === true } }
    const state = input.state as { seen: string[]; reauthenticate: boolean }
    const seen = [...state.seen, input.step + ':' + data]
    if (data === 'wrong') return { deny: 'wrong answer', reasonCode: 0x87 }
    if (input.step < steps) return { continue: 'challenge-' + (input.step + 1), state: { ...state, seen } }
    return { allow: true, authenticationMethod: 'STEP', authenticationData: Buffer.from(seen.join('|')), user: { name: 'stepper' } }
  },
})
`

/** An AUTH 0x18 answer over a raw connection. */
function auth(raw: RawClient, data: string, reasonCode = 0x18, method = 'STEP'): void {
  raw.send({ cmd: 'auth', reasonCode, properties: { authenticationMethod: method, authenticationData: Buffer.from(data) } }, 5)
}

for (const mode of MODES) {
  test(`${mode}: a multi-step exchange: AUTH 0x18 each way, step and state kept for the hook, the CONNACK carries its data`, async (t) => {
    const dir = hooksFolder(t)
    writeFileSync(join(dir, 'stepper.ts'), STEPPER)
    const broker = await startBroker(t, { hooksDir: dir, hooks: { isolation: mode, stepper: { steps: 3 } } })
    const raw = await RawClient.open(t, broker, 5)
    raw.send(
      {
        cmd: 'connect',
        protocolId: 'MQTT',
        protocolVersion: 5,
        clientId: 'stepper-1',
        clean: true,
        keepalive: 30,
        properties: { authenticationMethod: 'STEP', authenticationData: Buffer.from('hello') },
      },
      5,
    )
    for (let i = 1; i <= 3; i++) {
      const challenge = await raw.expect('auth')
      assert.equal(challenge.reasonCode, 0x18) // [MQTT-4.12.0-2]
      assert.equal(challenge.properties?.authenticationMethod, 'STEP') // [MQTT-4.12.0-5]
      assert.equal(challenge.properties?.authenticationData?.toString(), `challenge-${i}`)
      auth(raw, `answer-${i}`)
    }
    const connack = await raw.expect('connack')
    assert.equal(connack.reasonCode, 0)
    assert.equal(connack.properties?.authenticationMethod, 'STEP')
    assert.equal(connack.properties?.authenticationData?.toString(), 'hello|1:answer-1|2:answer-2|3:answer-3')
    assert.deepEqual(broker.connectionOf('stepper-1')!.client.user, { name: 'stepper' })

    // re-authentication [MQTT-4.12.1-1] goes the same way, ending with AUTH 0x00, while the connection serves on
    auth(raw, 'again', 0x19)
    const challenge = await raw.expect('auth')
    assert.equal(challenge.reasonCode, 0x18)
    raw.send({ cmd: 'pingreq' }, 5)
    await raw.expect('pingresp') // other packets go on during the exchange
    for (let i = 1; i <= 3; i++) {
      auth(raw, `re-${i}`)
      const next = await raw.expect('auth')
      if (i < 3) assert.equal(next.reasonCode, 0x18)
      else {
        assert.equal(next.reasonCode, 0x00)
        assert.equal(next.properties?.authenticationData?.toString(), 'again|1:re-1|2:re-2|3:re-3')
      }
    }
    // a wrong answer in a re-authentication ends the connection with DISCONNECT 0x87 [MQTT-4.12.1-2]
    auth(raw, 'again', 0x19)
    await raw.expect('auth')
    auth(raw, 'wrong')
    assert.equal((await raw.expect('disconnect')).reasonCode, 0x87)
    await raw.expectClosed()
  })
}

test('a multi-step exchange fails closed: a wrong answer, too many steps, a late client, a PUBLISH before CONNACK, continue without a method', async (t) => {
  const dir = hooksFolder(t)
  writeFileSync(join(dir, 'stepper.ts'), STEPPER)
  writeFileSync(
    join(dir, 'forever.ts'),
    `import { defineHook } from 'hookmq'
export default defineHook({ name: 'forever', authenticate: ({ authenticationMethod, username }) =>
  authenticationMethod === 'FOREVER' || username === 'no-method' ? { continue: 'more' } : undefined })
`,
  )
  const broker = await startBroker(t, {
    hooksDir: dir,
    allowAnonymous: false,
    limits: { connectTimeoutMs: 600 },
    hooks: { isolation: 'inline', stepper: { steps: 2 } },
  })
  const start = async (method = 'STEP'): Promise<RawClient> => {
    const raw = await RawClient.open(t, broker, 5)
    raw.send(
      {
        cmd: 'connect',
        protocolId: 'MQTT',
        protocolVersion: 5,
        clientId: 'c-' + randomBytes(4).toString('hex'),
        clean: true,
        keepalive: 30,
        properties: { authenticationMethod: method },
      },
      5,
    )
    assert.equal((await raw.expect('auth')).reasonCode, 0x18)
    return raw
  }

  const wrong = await start()
  auth(wrong, 'wrong')
  assert.equal((await wrong.expect('connack')).reasonCode, 0x87)
  await wrong.expectClosed()

  const endless = await start('FOREVER')
  for (let i = 1; i < 10; i++) {
    auth(endless, 'x', 0x18, 'FOREVER')
    assert.equal((await endless.expect('auth')).reasonCode, 0x18)
  }
  auth(endless, 'x', 0x18, 'FOREVER') // the 10th answer: no 11th step
  const tooMany = await endless.expect('connack')
  assert.equal(tooMany.reasonCode, 0x87)
  assert.match(String(tooMany.properties?.reasonString), /more than 10 authentication steps/)

  const silent = await start()
  const t0 = Date.now()
  const late = await silent.expect('connack', 3000) // the client never answers: limits.connectTimeoutMs after the challenge
  assert.equal(late.reasonCode, 0x87)
  assert.ok(Date.now() - t0 >= 500, `refused after ${Date.now() - t0} ms`)

  const eager = await start()
  eager.send({ cmd: 'publish', topic: 'early', payload: Buffer.from('x'), qos: 0, retain: false, dup: false }, 5)
  assert.equal((await eager.expect('connack')).reasonCode, 0x82) // [MQTT-3.1.2-30]

  const otherMethod = await start()
  auth(otherMethod, 'x', 0x18, 'OTHER')
  assert.equal((await otherMethod.expect('connack')).reasonCode, 0x82) // [MQTT-4.12.0-5]

  // a continue answered to a CONNECT with no Authentication Method cannot be sent: refused, no AUTH [MQTT-4.12.0-6]
  const plain = await RawClient.open(t, broker, 5)
  const refused = await plain.connect({ username: 'no-method' }, 5)
  assert.equal(refused.reasonCode, 0x87)
  assert.ok(!plain.packets.some((p: Packet) => p.cmd === 'auth'))
})

test('a multi-step login is audited once, with its final decision; a shadow is asked its last step, and a shadow that answers continue has passed', async (t) => {
  const dir = hooksFolder(t)
  writeFileSync(join(dir, 'stepper.ts'), STEPPER)
  // the same hook as a shadow: given the last step (its data, step and the enforcing hook's state), it decides as the enforcing one did
  writeFileSync(join(dir, 'stepper-next.ts'), STEPPER.replace("name: 'stepper',", "name: 'stepper-next',\n  rollout: { mode: 'shadow' },"))
  writeFileSync(
    join(dir, 'more.ts'),
    `import { defineHook } from 'hookmq'
export default defineHook({ name: 'more', rollout: { mode: 'shadow' }, authenticate: () => ({ continue: 'more' }) })
`,
  )
  const broker = await startBroker(t, {
    hooksDir: dir,
    audit: { allows: true },
    hooks: { isolation: 'inline', stepper: { steps: 2 }, 'stepper-next': { steps: 2 } },
  })
  const records: AuditRecord[] = []
  broker.on('audit', (r) => records.push(r))
  const login = async (clientId: string, answers: string[]): Promise<number> => {
    const raw = await RawClient.open(t, broker, 5)
    raw.send(
      {
        cmd: 'connect',
        protocolId: 'MQTT',
        protocolVersion: 5,
        clientId,
        clean: true,
        keepalive: 30,
        properties: { authenticationMethod: 'STEP', authenticationData: Buffer.from('hello') },
      },
      5,
    )
    for (const a of answers) {
      assert.equal((await raw.expect('auth')).reasonCode, 0x18)
      auth(raw, a)
    }
    return (await raw.expect('connack')).reasonCode!
  }
  assert.equal(await login('good', ['answer-1', 'answer-2']), 0)
  assert.equal(await login('bad', ['wrong']), 0x87)

  type ShadowStatus = { agree: number; disagree: number; passed: number; failed: number }
  const shadowOf = (name: string): ShadowStatus => broker.hookStatus().find((h) => h.name === name)!.rollout as never
  const counts = (s: ShadowStatus): ShadowStatus => ({ agree: s.agree, disagree: s.disagree, passed: s.passed, failed: s.failed })
  await until(() => shadowOf('stepper-next').agree + shadowOf('more').passed === 4, 5000, 'the shadows to run on both logins')
  assert.deepEqual(counts(shadowOf('stepper-next')), { agree: 2, disagree: 0, passed: 0, failed: 0 })
  assert.deepEqual(counts(shadowOf('more')), { agree: 0, disagree: 0, passed: 2, failed: 0 }) // its continue took no step
  assert.deepEqual(
    records.map((r) => [r.kind, r.clientId, r.decision, r.hook, r.reasonCode, r.reason]),
    [
      ['authenticate', 'good', 'allow', 'stepper', 0, undefined],
      ['authenticate', 'bad', 'deny', 'stepper', 0x87, 'wrong answer'],
    ],
  )
})
