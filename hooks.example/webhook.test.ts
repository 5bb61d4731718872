// webhook.test.ts — when webhook.ts queues an alert, checked offline: `hookmq test hooks.example`.
// ctx.forward is recorded in `forwarded` (no webhook is called).
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { loadHook } from 'hookmq/testing'

test('webhook: a temperature over the threshold queues an alert; the publish itself is never refused', async (t) => {
  const hook = await loadHook(new URL('./webhook.ts', import.meta.url), { config: { webhook: 'alerts', thresholdCelsius: 30 } })
  t.after(() => hook.close())
  const client = { id: 'sensor-9' }
  assert.deepEqual(await hook.authorizePublish({ client, topic: 'sensors/attic/temperature', payload: '{"celsius":31.5}' }), { result: 'pass' })
  assert.deepEqual(hook.forwarded, [{ webhook: 'alerts', body: { alert: 'temperature', room: 'attic', celsius: 31.5, threshold: 30, clientId: 'sensor-9' } }])
  assert.deepEqual(await hook.authorizePublish({ client, topic: 'sensors/attic/temperature', payload: '{"celsius":22}' }), { result: 'pass' })
  assert.deepEqual(await hook.authorizePublish({ client, topic: 'sensors/attic/temperature', payload: 'hot!' }), { result: 'pass' })
  // outside its filter it is not even called
  assert.deepEqual(await hook.authorizePublish({ client, topic: 'sensors/attic/humidity', payload: '{"celsius":99}' }), { result: 'pass' })
  assert.equal(hook.forwarded.length, 1)
})

test('webhook: its config defaults (webhook "alerts", 30 °C)', async (t) => {
  const hook = await loadHook(new URL('./webhook.ts', import.meta.url))
  t.after(() => hook.close())
  assert.deepEqual(hook.config, { webhook: 'alerts', thresholdCelsius: 30 })
})
