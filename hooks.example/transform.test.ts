// transform.test.ts — what transform.ts does to a message, checked offline: `hookmq test hooks.example`.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { loadHook } from 'hookmq/testing'

test('transform: a JSON reading on sensors/# gets receivedAt and clientId; anything else there is dropped', async (t) => {
  const transform = await loadHook(new URL('./transform.ts', import.meta.url))
  t.after(() => transform.close())
  const before = Date.now()
  const out = await transform.transform({ client: { id: 'sensor-7' }, topic: 'sensors/kitchen/temperature', payload: '{"celsius":21.5}', qos: 1 })
  assert.ok(out)
  assert.equal(out.topic, 'sensors/kitchen/temperature')
  assert.equal(out.qos, 1)
  const reading = JSON.parse(out.payload.toString()) as { celsius: number; clientId: string; receivedAt: string }
  assert.equal(reading.celsius, 21.5)
  assert.equal(reading.clientId, 'sensor-7')
  assert.ok(Date.parse(reading.receivedAt) >= before - 1)
  assert.equal(await transform.transform({ topic: 'sensors/kitchen/temperature', payload: 'not json' }), null)
  assert.equal(await transform.transform({ topic: 'sensors/kitchen/temperature', payload: '[1, 2]' }), null)
  // published by the broker itself: no client
  const own = await transform.transform({ client: undefined, topic: 'sensors/x', payload: '{}' })
  assert.equal(JSON.parse(own!.payload.toString()).clientId, null)
})

test('transform: its filter keeps it away from other topics (the message goes on untouched)', async (t) => {
  const transform = await loadHook(new URL('./transform.ts', import.meta.url))
  t.after(() => transform.close())
  const out = await transform.transform({ topic: 'chat/room', payload: 'not json, not a sensor' })
  assert.deepEqual(out, { topic: 'chat/room', payload: Buffer.from('not json, not a sensor'), qos: 0, retain: false, properties: undefined })
})
