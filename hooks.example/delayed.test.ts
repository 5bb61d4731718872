// delayed.test.ts — what delayed.ts publishes, and when, checked offline (in memory: no Redis): `hookmq test hooks.example`.
// `published` lists what the hook published with ctx.publish, as routed.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { loadHook, type TestHook } from 'hookmq/testing'

const file = new URL('./delayed.ts', import.meta.url)

async function published(hook: TestHook, n: number, ms = 5000): Promise<void> {
  const end = Date.now() + ms
  while (hook.published.length < n) {
    if (Date.now() > end) throw new Error(`${hook.published.length} of ${n} delayed messages published within ${ms} ms`)
    await new Promise((r) => setTimeout(r, 10))
  }
}

test('delayed: $delayed/<seconds>/<topic> is dropped now and published to <topic> after the delay, as it was sent', async (t) => {
  const hook = await loadHook(file)
  t.after(() => hook.close())
  const properties = { contentType: 'text/plain', correlationData: Buffer.from([1, 2, 3]), userProperties: { a: 'b' }, responseTopic: 'replies/x' }
  const sent = Date.now()
  assert.deepEqual(await hook.authorizePublish({ topic: '$delayed/0.3/lights/porch', payload: 'off', qos: 1 }), { result: 'pass' })
  assert.equal(await hook.transform({ topic: '$delayed/0.3/lights/porch', payload: 'off', qos: 1, retain: true, properties }), null)
  assert.deepEqual(hook.published, [])
  await published(hook, 1)
  assert.ok(Date.now() - sent >= 300, `published after ${Date.now() - sent} ms`)
  assert.deepEqual(hook.published, [{ topic: 'lights/porch', payload: Buffer.from('off'), qos: 1, retain: true, properties }])
  assert.deepEqual(hook.failures, [])
})

test('delayed: messages come out in due order, whatever order they went in', async (t) => {
  const hook = await loadHook(file)
  t.after(() => hook.close())
  await hook.transform({ topic: '$delayed/0.4/q', payload: 'third' })
  await hook.transform({ topic: '$delayed/0.1/q', payload: 'first' })
  await hook.transform({ topic: '$delayed/0.2/q', payload: 'second' })
  await published(hook, 3)
  assert.deepEqual(
    hook.published.map((m) => m.payload.toString()),
    ['first', 'second', 'third'],
  )
})

test('delayed: a malformed topic is 0x90, a delay over maxDelaySeconds or more than maxPending waiting is 0x97', async (t) => {
  const hook = await loadHook(file, { config: { maxDelaySeconds: 60, maxPending: 2 } })
  t.after(() => hook.close())
  const refused = async (topic: string) => {
    const d = await hook.authorizePublish({ topic })
    return d.result === 'deny' ? [d.reasonCode, d.reason] : d.result
  }
  assert.deepEqual(await refused('$delayed/soon/x'), [0x90, 'expected $delayed/<seconds>/<topic>'])
  assert.deepEqual(await refused('$delayed/10'), [0x90, 'expected $delayed/<seconds>/<topic>'])
  assert.deepEqual(await refused('$delayed/-1/x'), [0x90, 'expected $delayed/<seconds>/<topic>'])
  assert.deepEqual(await refused('$delayed/10/$SYS/x'), [0x90, 'a delayed message may not go to a $ topic'])
  assert.deepEqual(await refused('$delayed/10/$delayed/10/x'), [0x90, 'a delayed message may not go to a $ topic'])
  assert.deepEqual(await refused('$delayed/61/x'), [0x97, 'delay over 60 s'])
  assert.equal(await refused('$delayed/60/x'), 'pass')
  await hook.transform({ topic: '$delayed/60/x' })
  await hook.transform({ topic: '$delayed/60/y' })
  assert.deepEqual(await refused('$delayed/1/z'), [0x97, 'too many delayed messages waiting'])
  // outside its filter it is not called
  assert.deepEqual(await hook.authorizePublish({ topic: 'delayed/1/x' }), { result: 'pass' })
})

test('delayed: the Message Expiry Interval counts while the message waits; one that would expire first is dropped', async (t) => {
  const hook = await loadHook(file)
  t.after(() => hook.close())
  assert.equal(await hook.transform({ topic: '$delayed/2/x', payload: 'too late', properties: { messageExpiryInterval: 1 } }), null)
  assert.equal(await hook.transform({ topic: '$delayed/1/x', payload: 'in time', properties: { messageExpiryInterval: 30 } }), null)
  await published(hook, 1)
  const [m] = hook.published
  assert.equal(m!.payload.toString(), 'in time')
  const left = m!.properties!.messageExpiryInterval!
  assert.ok(left >= 28 && left <= 29, `${left} s left`)
  // the dropped one never comes
  await new Promise((r) => setTimeout(r, 1200))
  assert.equal(hook.published.length, 1)
})

test('delayed: without Redis, messages still waiting when the hook stops are lost, and the log says how many', async () => {
  const hook = await loadHook(file)
  await hook.transform({ topic: '$delayed/60/x' })
  await hook.close()
  assert.ok(hook.logs.some((l) => l.msg?.startsWith('delayed: messages waiting in memory are dropped') && l.lost === 1))
})
