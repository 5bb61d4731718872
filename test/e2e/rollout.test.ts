import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { test, type TestContext } from 'node:test'
import type { MqttClient } from 'mqtt'
import { inCanary } from '../../plugins/host/rollout.js'
import type { RolloutReport } from '../../plugins/host/rollout-watch.js'
import type { HookmqBroker } from '../../plugins/index.js'
import { connect, hooksFolder, publishCode, startBroker, until, writeHook } from '../helpers.js'
import { captureLog } from '../log-capture.js'

// Shadow and canary rollout on real traffic: hook files on disk, MQTT.js
// clients, the admin API over HTTP.

async function api(broker: HookmqBroker, method: string, path: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(broker.httpUrl()! + path, { method })
  return { status: res.status, body: (await res.json()) as Record<string, unknown> }
}

function subscribeCode(client: MqttClient, filter: string): Promise<number> {
  return new Promise((resolve, reject) => client.subscribe(filter, { qos: 1 }, (err, granted) => (err ? reject(err) : resolve(granted![0]!.qos))))
}

const SHADOW_DENY_ALL = `
import { defineHook } from 'hookmq'
export default defineHook({
  name: 'acl-next',
  rollout: { mode: 'shadow' },
  authorizePublish({ topic }) {
    return topic.startsWith('ok/') ? true : { deny: 'shadow says no' }
  },
  authorizeSubscribe() {
    return { deny: 'no subscriptions' }
  },
})
`

test('a shadow ACL that would deny everything enforces nothing: clients publish and subscribe, its agreements and last disagreements show in /hooks, the admin API and the log', async (t) => {
  const dir = hooksFolder(t)
  writeFileSync(
    join(dir, 'acl.ts'),
    `import { defineHook } from 'hookmq'
export default defineHook({ name: 'acl', authorizePublish({ topic }) { return topic === 'secret' ? { deny: 'not you' } : true } })
`,
  )
  writeFileSync(join(dir, 'acl-next.ts'), SHADOW_DENY_ALL)
  const log = captureLog()
  const broker = await startBroker(t, { hooksDir: dir, http: { port: 0 }, logger: log.logger })
  const c = await connect(t, broker, { protocolVersion: 5, clientId: 'shadowed' })
  assert.equal(await publishCode(c, 'a/1'), 0x10) // allowed by acl (the shadow would deny): no subscribers
  assert.equal(await publishCode(c, 'a/2'), 0x10)
  assert.equal(await publishCode(c, 'ok/1'), 0x10) // both allow
  assert.equal(await publishCode(c, 'secret'), 0x87) // acl denies, the shadow denies too
  assert.equal(await subscribeCode(c, 'a/#'), 1) // granted: the shadow's deny is not enforced
  const shadowOf = (): Extract<NonNullable<ReturnType<HookmqBroker['hookStatus']>[number]['rollout']>, { mode: 'shadow' }> =>
    broker.hookStatus().find((h) => h.name === 'acl-next')!.rollout as never
  await until(() => shadowOf().agree + shadowOf().disagree >= 5, 5000, 'the shadow to run on every decision')
  const s = shadowOf()
  assert.equal(s.mode, 'shadow')
  assert.deepEqual({ agree: s.agree, disagree: s.disagree, passed: s.passed, failed: s.failed }, { agree: 2, disagree: 3, passed: 0, failed: 0 })
  assert.deepEqual(
    s.disagreements.map((d) => [d.kind, d.clientId, d.target, d.shadow, d.enforced]),
    [
      ['publish', 'shadowed', 'a/1', 'deny 0x87 shadow says no (acl-next v1)', 'allow (acl v1)'],
      ['publish', 'shadowed', 'a/2', 'deny 0x87 shadow says no (acl-next v1)', 'allow (acl v1)'],
      ['subscribe', 'shadowed', 'a/#', 'deny 0x87 no subscriptions (acl-next v1)', 'allow (default)'],
    ],
  )
  const hooks = (await (await fetch(broker.httpUrl()! + '/hooks')).json()) as Array<{ name: string; rollout?: { disagree: number } }>
  assert.equal(hooks.find((h) => h.name === 'acl-next')!.rollout!.disagree, 3)
  const r = await api(broker, 'GET', '/admin/hooks/acl-next/rollout')
  assert.equal(r.status, 200)
  const shadow = (r.body as unknown as RolloutReport).shadow!
  assert.equal(shadow.disagree, 3)
  assert.equal(shadow.disagreements[0]!.target, 'a/1')
  assert.equal((await api(broker, 'GET', '/admin/hooks/nope/rollout')).status, 404)
  const line = await log.find((l) => l.msg === 'shadow hook disagrees')
  assert.equal(line.clientId, 'shadowed')
  assert.equal(line.hook, 'acl-next')
  assert.equal(c.connected, true)
})

test('a shadow that throws, hangs or answers nonsense costs nothing enforced: its failures are counted; a shadow transform is compared, never applied', async (t) => {
  const dir = hooksFolder(t)
  writeFileSync(
    join(dir, 'broken.ts'),
    `import { defineHook } from 'hookmq'
export default defineHook({
  name: 'broken',
  rollout: { mode: 'shadow' },
  timeoutMs: 1500,
  authenticate() { throw new Error('shadow auth broke') },
  authorizePublish({ topic }) { return topic === 'hang' ? new Promise(() => {}) : 'nonsense' as never },
  transform({ payload }) { return { payload: payload.toString().toUpperCase() } },
})
`,
  )
  const broker = await startBroker(t, { hooksDir: dir, sys: { enabled: false } }) // ($SYS messages go through transforms too)
  const sub = await connect(t, broker, { protocolVersion: 5 })
  await new Promise((r) => sub.subscribe('t/#', { qos: 1 }, r))
  const got = new Promise<string>((resolve) => sub.once('message', (_topic, payload) => resolve(payload.toString())))
  const c = await connect(t, broker, { protocolVersion: 5, clientId: 'pub' })
  const started = Date.now()
  assert.equal(await publishCode(c, 'hang'), 0x10)
  assert.ok(Date.now() - started < 1000, 'the publisher did not wait for the shadow') // (its deadline is 1500 ms)
  assert.equal(await publishCode(c, 't/1', 'quiet'), 0)
  assert.equal(await got, 'quiet') // the shadow's transform is not applied
  const status = (): { failed: number; disagree: number; agree: number } => broker.hookStatus().find((h) => h.name === 'broken')!.rollout as never
  // two authenticate calls failed (both clients connected anyway), two publishes failed (a hang, nonsense), the transform disagreed twice
  await until(() => status().failed >= 4 && status().disagree >= 2, 5000, 'the shadow failures to be counted')
  assert.equal(status().failed, 4)
  assert.equal(status().agree, 0)
  const d = (broker.hookStatus().find((h) => h.name === 'broken')!.rollout as { disagreements: Array<{ kind: string; shadow: string; enforced: string }> })
    .disagreements
  assert.deepEqual(
    d.map((x) => [x.kind, x.shadow, x.enforced]),
    [
      ['transform', 'changed payload (1 bytes)', 'unchanged'], // 'x' of the publish to 'hang'
      ['transform', 'changed payload (5 bytes)', 'unchanged'],
    ],
  )
  assert.equal(broker.hookStatus().find((h) => h.name === 'broken')!.errors, 4)
})

const STABLE = `import { defineHook } from 'hookmq'
export default defineHook({ name: 'acl', authorizePublish() { return true } })
`
const CANARY = `import { defineHook } from 'hookmq'
export default defineHook({
  name: 'acl',
  rollout: { canary: 0.3 },
  authorizePublish({ topic }) {
    if (topic === 'boom') throw new Error('canary bug')
    return { deny: 'canary says no' }
  },
})
`

/** Connects each client id in turn, publishes once on `topic`, disconnects: the reason codes by client id. */
async function codesOf(t: TestContext, broker: HookmqBroker, ids: string[], topic: string): Promise<Map<string, number>> {
  const codes = new Map<string, number>()
  for (const id of ids) {
    const c = await connect(t, broker, { protocolVersion: 5, clientId: id })
    codes.set(id, await publishCode(c, topic))
    await c.endAsync()
  }
  return codes
}

test('a canary serves its share of client ids, the same ids every time, the stable version the others; its failing decision denies; promotion makes it the stable file', async (t) => {
  const dir = hooksFolder(t)
  writeFileSync(join(dir, 'acl.ts'), STABLE)
  writeFileSync(join(dir, 'acl.canary.ts'), CANARY)
  const broker = await startBroker(t, { hooksDir: dir, http: { port: 0 } })
  const ids = Array.from({ length: 40 }, (_, i) => `device-${i}`)
  const expected = ids.filter((id) => inCanary('acl', id, 0.3))
  assert.ok(expected.length >= 6 && expected.length <= 18, `roughly 30% of 40 ids: ${expected.length}`)
  const denied = (codes: Map<string, number>): string[] => ids.filter((id) => codes.get(id) === 0x87)
  const first = await codesOf(t, broker, ids, 'a/1')
  assert.deepEqual(denied(first), expected)
  assert.ok(ids.every((id) => first.get(id) === 0x87 || first.get(id) === 0x10))
  const again = await codesOf(t, broker, ids, 'a/1')
  assert.deepEqual(denied(again), expected, 'the same client ids meet the canary every time')
  const boom = await codesOf(t, broker, [expected[0]!, ids.find((id) => !expected.includes(id))!], 'boom')
  assert.deepEqual([...boom.values()], [0x87, 0x10]) // the canary's throw fails closed; the stable version allows
  const r = (await api(broker, 'GET', '/admin/hooks/acl/rollout')).body as unknown as RolloutReport
  assert.equal(r.canary!.share, 0.3)
  assert.equal(r.canary!.calls, expected.length * 2 + 1)
  assert.equal(r.stable!.calls, (ids.length - expected.length) * 2 + 1)
  assert.equal(r.canary!.file, join(dir, 'acl.canary.ts'))
  const statuses = broker.hookStatus().filter((h) => h.name === 'acl')
  assert.deepEqual(statuses.map((h) => h.rollout ?? null).sort(), [{ canary: 0.3 }, null].sort())

  const promoted = await api(broker, 'POST', '/admin/hooks/acl/promote')
  assert.equal(promoted.status, 200)
  assert.equal(existsSync(join(dir, 'acl.canary.ts')), false)
  assert.equal(readFileSync(join(dir, 'acl.ts'), 'utf8'), CANARY)
  const after = (promoted.body as unknown as RolloutReport).stable!
  assert.equal(after.file, join(dir, 'acl.ts'))
  assert.equal((promoted.body as unknown as RolloutReport).canary, undefined)
  assert.deepEqual(denied(await codesOf(t, broker, ids.slice(0, 10), 'a/1')), ids.slice(0, 10)) // every client now
  assert.equal((await api(broker, 'POST', '/admin/hooks/acl/promote')).status, 404)
})

test('a canary file must declare its share; a canary with no stable version serves only its share; two canaries of one name clash', async (t) => {
  const dir = hooksFolder(t)
  const broker = await startBroker(t, { hooksDir: dir })
  const bad = await writeHook(broker, join(dir, 'acl.canary.ts'), STABLE)
  assert.equal(bad.kind, 'failed')
  assert.match(bad.error!.message, /must declare rollout: \{ canary/)
  assert.equal((await writeHook(broker, join(dir, 'acl.canary.ts'), CANARY)).kind, 'loaded')
  const ids = Array.from({ length: 20 }, (_, i) => `solo-${i}`)
  const codes = await codesOf(t, broker, ids, 'a/1')
  assert.deepEqual(
    ids.filter((id) => codes.get(id) === 0x87),
    ids.filter((id) => inCanary('acl', id, 0.3)),
  )
  const clash = await writeHook(broker, join(dir, 'other.canary.ts'), CANARY)
  assert.equal(clash.kind, 'failed')
  assert.match(clash.error!.message, /already used/)
})

test('hookmq check passes a canary beside its stable version and fails a canary file that declares no share', async (t) => {
  const bin = fileURLToPath(new URL('../../../bin/hookmq.js', import.meta.url))
  const check = (dir: string): Promise<{ code: number | null; out: string }> => {
    const child = spawn(process.execPath, [bin, 'check', dir], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.on('data', (b: Buffer) => (out += b.toString()))
    return new Promise((resolve) => child.on('exit', (code) => resolve({ code, out })))
  }
  const dir = hooksFolder(t)
  writeFileSync(join(dir, 'acl.ts'), STABLE)
  writeFileSync(join(dir, 'acl.canary.ts'), CANARY)
  writeFileSync(join(dir, 'acl-next.ts'), SHADOW_DENY_ALL)
  const ok = await check(dir)
  assert.equal(ok.code, 0, ok.out)
  assert.match(ok.out, /3 hook\(s\) ok, 0 failed/)
  writeFileSync(join(dir, 'acl.canary.ts'), STABLE)
  const bad = await check(dir)
  assert.equal(bad.code, 1, bad.out)
  assert.match(bad.out, /^error .*acl\.canary\.ts: a <name>\.canary\.ts file must declare rollout/m)
})
