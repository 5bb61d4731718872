// rate-limit.test.ts — what rate-limit.ts lets through, checked offline: `hookmq test hooks.example`.
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import { test } from 'node:test'
import { loadHook } from 'hookmq/testing'

const file = new URL('./rate-limit.ts', import.meta.url)
const tooFast = { result: 'deny', reasonCode: 0x97, reason: 'message rate too high', hook: 'rate-limit', hookVersion: 1 }

test('rate-limit: a burst is let through, the next message is refused with 0x97 and costs nothing; tokens come back at the rate', async (t) => {
  const hook = await loadHook(file, { config: { default: { messagesPerSecond: 20, burstMessages: 5 } } })
  t.after(() => hook.close())
  const client = { id: 'sensor-1' }
  for (let i = 0; i < 5; i++) assert.deepEqual(await hook.authorizePublish({ client, topic: 'a' }), { result: 'pass' }, `message ${i}`)
  const start = performance.now()
  assert.deepEqual(await hook.authorizePublish({ client, topic: 'a' }), tooFast)
  // another client has its own bucket
  assert.deepEqual(await hook.authorizePublish({ client: { id: 'sensor-2' }, topic: 'a' }), { result: 'pass' })
  await sleep(120) // 20/s: a token every 50 ms
  let passed = 0
  for (let i = 0; i < 10; i++) if ((await hook.authorizePublish({ client, topic: 'a' })).result === 'pass') passed++
  const elapsed = performance.now() - start
  assert.ok(passed >= 2, `${passed} passed after 120 ms`)
  // (less than one token was left when the 6th was refused)
  assert.ok(passed <= Math.floor((elapsed * 20) / 1000) + 1, `${passed} passed in ${elapsed} ms at 20/s`)
  assert.deepEqual(hook.failures, [])
})

test('rate-limit: bytes per second count payload bytes; a message larger than the byte burst never passes', async (t) => {
  const hook = await loadHook(file, { config: { default: { bytesPerSecond: 100 } } })
  t.after(() => hook.close())
  const client = { id: 'cam' }
  assert.equal((await hook.authorizePublish({ client, topic: 'a', payload: Buffer.alloc(60) })).result, 'pass')
  assert.deepEqual(await hook.authorizePublish({ client, topic: 'a', payload: Buffer.alloc(60) }), { ...tooFast, reason: 'byte rate too high' })
  assert.equal((await hook.authorizePublish({ client, topic: 'a', payload: Buffer.alloc(40) })).result, 'pass')
  assert.equal((await hook.authorizePublish({ client: { id: 'cam-2' }, topic: 'a', payload: Buffer.alloc(101) })).result, 'deny')
  // no message limit here: many small ones pass
  for (let i = 0; i < 50; i++) assert.equal((await hook.authorizePublish({ client: { id: 'cam-3' }, topic: 'a' })).result, 'pass')
})

test('rate-limit: limits by user name (the user an authenticate hook attached first); {} is unlimited; a prototype key is the default', async (t) => {
  const hook = await loadHook(file, {
    config: { default: { messagesPerSecond: 1 }, users: { fleet: { messagesPerSecond: 2 }, bridge: {} } },
  })
  t.after(() => hook.close())
  const count = async (client: { id: string; username?: string; user?: unknown }): Promise<number> => {
    let passed = 0
    for (let i = 0; i < 20; i++) if ((await hook.authorizePublish({ client, topic: 'a' })).result === 'pass') passed++
    return passed
  }
  assert.equal(await count({ id: 'a' }), 1)
  assert.equal(await count({ id: 'b', username: 'fleet' }), 2)
  assert.equal(await count({ id: 'c', username: 'mallory', user: { name: 'fleet' } }), 2)
  assert.equal(await count({ id: 'd', username: 'bridge' }), 20)
  assert.equal(await count({ id: 'e', username: 'constructor' }), 1)
})

test('rate-limit: reconnecting does not reset a limit; memory is bounded by maxClients (the oldest client is forgotten)', async (t) => {
  const hook = await loadHook(file, { config: { default: { messagesPerSecond: 1 }, maxClients: 2 } })
  t.after(() => hook.close())
  const a = { id: 'a' }
  assert.equal((await hook.authorizePublish({ client: a, topic: 'x' })).result, 'pass')
  assert.equal((await hook.authorizePublish({ client: a, topic: 'x' })).result, 'deny')
  await hook.on.clientDisconnected(a, { reasonCode: 0 })
  assert.equal((await hook.authorizePublish({ client: a, topic: 'x' })).result, 'deny')
  // two more clients: "a" is the oldest of three, forgotten, and starts full again
  await hook.authorizePublish({ client: { id: 'b' }, topic: 'x' })
  await hook.authorizePublish({ client: { id: 'c' }, topic: 'x' })
  assert.equal((await hook.authorizePublish({ client: a, topic: 'x' })).result, 'pass')
})
