// rewrite.test.ts — where rewrite.ts moves messages, checked offline: `hookmq test hooks.example`.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { loadHook } from 'hookmq/testing'

const config = {
  rules: [
    { from: 'legacy/+/temp', to: 'sensors/{1}/temperature' },
    { from: 'legacy/+/status/#', to: 'devices/{1}/{2}' },
    // these two swap topics: each message is rewritten once, never back
    { from: 'legacy/a', to: 'legacy/b' },
    { from: 'legacy/b', to: 'legacy/a' },
  ],
}

test('rewrite: wildcard captures fill the new topic; payload, QoS, retain and properties are kept', async (t) => {
  const hook = await loadHook(new URL('./rewrite.ts', import.meta.url), { config })
  t.after(() => hook.close())
  const properties = { contentType: 'application/json', userProperties: { unit: 'C' } }
  assert.deepEqual(await hook.transform({ topic: 'legacy/kitchen/temp', payload: '21.5', qos: 1, retain: true, properties }), {
    topic: 'sensors/kitchen/temperature',
    payload: Buffer.from('21.5'),
    qos: 1,
    retain: true,
    properties,
  })
  assert.equal((await hook.transform({ topic: 'legacy/pump-3/status/power/main' }))?.topic, 'devices/pump-3/power/main')
  // "#" also matches its parent level: {2} is then empty
  assert.equal((await hook.transform({ topic: 'legacy/pump-3/status' }))?.topic, 'devices/pump-3/')
  // messages published by the broker or a hook (no client) too
  assert.equal((await hook.transform({ client: undefined, topic: 'legacy/hall/temp' }))?.topic, 'sensors/hall/temperature')
  assert.deepEqual(hook.failures, [])
})

test('rewrite: no loop — the first matching rule wins and its result is not matched again', async (t) => {
  const hook = await loadHook(new URL('./rewrite.ts', import.meta.url), { config })
  t.after(() => hook.close())
  assert.equal((await hook.transform({ topic: 'legacy/a' }))?.topic, 'legacy/b')
  assert.equal((await hook.transform({ topic: 'legacy/b' }))?.topic, 'legacy/a')
})

test('rewrite: topics no rule matches go on untouched, inside its filter or outside it', async (t) => {
  const hook = await loadHook(new URL('./rewrite.ts', import.meta.url), { config })
  t.after(() => hook.close())
  assert.equal((await hook.transform({ topic: 'legacy/kitchen/temp/extra' }))?.topic, 'legacy/kitchen/temp/extra')
  assert.equal((await hook.transform({ topic: 'legacy/kitchen' }))?.topic, 'legacy/kitchen')
  assert.equal((await hook.transform({ topic: 'sensors/kitchen/temp' }))?.topic, 'sensors/kitchen/temp')
})

test('rewrite: a rewritten topic the broker refuses (too many levels) is a failed transform: the message goes on as it was', async (t) => {
  const hook = await loadHook(new URL('./rewrite.ts', import.meta.url), {
    config: { rules: [{ from: 'legacy/#', to: 'x/y/{1}' }] },
    broker: { limits: { maxTopicLevels: 4 } },
  })
  t.after(() => hook.close())
  assert.equal((await hook.transform({ topic: 'legacy/a/b' }))?.topic, 'x/y/a/b') // 4 levels: fine
  assert.equal((await hook.transform({ topic: 'legacy/a/b/c' }))?.topic, 'legacy/a/b/c') // x/y/a/b/c would have 5
  assert.equal(hook.failures.length, 1)
  assert.equal(hook.failures[0]!.code, 'HOOKMQ_ERR_HOOK_INVALID_ANSWER')
})

test('rewrite: bad rules are refused when the hook loads, naming the rule', async () => {
  const load = (rules: unknown) => loadHook(new URL('./rewrite.ts', import.meta.url), { config: { rules } })
  await assert.rejects(load([{ from: 'other/+', to: 'x/{1}' }]), {
    code: 'HOOKMQ_ERR_HOOK_LOAD_FAILED',
    message: /"other\/\+" is outside this hook's filter \(legacy\/#\)/,
  })
  await assert.rejects(load([{ from: 'legacy/+', to: 'x/{2}' }]), { message: /"x\/\{2\}": \{2\} but "legacy\/\+" has 1 wildcard/ })
  await assert.rejects(load([{ from: 'legacy/+', to: 'x/+' }]), { message: /a topic name has no wildcards/ })
  await assert.rejects(load([{ from: 'legacy/#/x', to: 'x' }]), { message: /"#" must be the last level/ })
})
