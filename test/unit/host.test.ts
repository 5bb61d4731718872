import assert from 'node:assert/strict'
import { test } from 'node:test'
import { parseConfig } from '../../core/config.js'
import { createLogger } from '../../core/logger.js'
import { newMessage, type ClientInfo } from '../../core/types.js'
import { defineHook } from '../../plugins/host/define.js'
import { HookHost } from '../../plugins/host/host.js'
import { percentile } from '../../plugins/percentile.js'

// The hook host on its own, with embedded hook objects (inline, no files, no
// broker): how the answers of several hooks compose, what a failing hook costs.

const client: ClientInfo = { id: 'c', remoteAddress: '127.0.0.1', protocolVersion: 5, listener: 'tcp' }
const msg = (topic: string) => newMessage(topic, Buffer.from('x'), 1, false, 'c')

function host(hooks: Record<string, unknown> = {}): HookHost {
  return new HookHost({ log: createLogger('silent'), hookConfig: parseConfig({ hooks }).hooks, defaultTimeoutMs: 200, revokedSubscriptions: 'remove' })
}

test('hooks answer in order: the first that does not pass decides; a hook whose filter does not match is not asked', async () => {
  const h = host()
  const asked: string[] = []
  await h.install(
    defineHook({
      name: 'late',
      order: 20,
      authorizePublish: () => {
        asked.push('late')
        return true
      },
    }),
    'late',
    undefined,
  )
  await h.install(
    defineHook({
      name: 'early',
      order: 10,
      filter: { topics: ['secret/#'] },
      authorizePublish: () => {
        asked.push('early')
        return false
      },
    }),
    'early',
    undefined,
  )
  assert.equal((await h.authorizePublish(client, msg('secret/x'))).result, 'deny')
  assert.deepEqual(asked, ['early'])
  asked.length = 0
  assert.equal((await h.authorizePublish(client, msg('open/x'))).result, 'allow')
  assert.deepEqual(asked, ['late'])
  assert.equal(h.appliesToPublish('anything'), true) // 'late' has no filter
  await h.remove('late')
  assert.equal(h.appliesToPublish('open/x'), false)
  assert.equal((await h.authorizePublish(client, msg('open/x'))).result, 'pass')
})

test('a throwing decision denies (fails closed) and counts; maxFailures within the window trips the hook: it is not asked again until its back-off', async () => {
  const h = host({ breaker: { maxFailures: 3, windowMs: 10000, backoffMs: 60000 } })
  let calls = 0
  await h.install(
    defineHook({
      name: 'broken',
      authorizePublish: () => {
        calls++
        throw new Error('database down')
      },
    }),
    'broken',
    undefined,
  )
  for (let i = 0; i < 3; i++) assert.equal((await h.authorizePublish(client, msg('t'))).result, 'deny')
  const s = h.status()[0]!
  assert.equal(s.state, 'tripped')
  assert.equal(s.errors, 3)
  assert.equal((await h.authorizePublish(client, msg('t'))).result, 'deny')
  assert.equal(calls, 3)
})

test('a decision past its deadline answers its fallback on time', async () => {
  const h = host()
  await h.install(defineHook({ name: 'slow', timeoutMs: 50, authorizePublish: () => new Promise<boolean>(() => {}) }), 'slow', undefined)
  const t0 = performance.now()
  assert.equal((await h.authorizePublish(client, msg('t'))).result, 'deny')
  assert.ok(performance.now() - t0 < 1000)
  assert.equal(h.status()[0]!.timeouts, 1)
})

test("a transform's answer is checked like a client's PUBLISH: an invalid one lets the original through and counts as an error", async () => {
  const h = host()
  await h.install(
    defineHook({ name: 'bad', transform: ({ topic }) => (topic === 'wild' ? { topic: 'a/#' } : { payload: Buffer.from('changed') }) }),
    'bad',
    undefined,
  )
  const original = msg('wild')
  assert.equal(await h.transform(client, original), original)
  assert.equal(h.status()[0]!.errors, 1)
  const changed = await h.transform(client, msg('fine'))
  assert.equal(changed?.payload.toString(), 'changed')
})

test('two hooks may not share a name', async () => {
  const h = host()
  await h.install(defineHook({ name: 'same' }), 'a', undefined)
  await assert.rejects(h.install(defineHook({ name: 'same' }), 'b', undefined), /already used/)
})

test('percentile (hook call durations, webhook latencies): nearest rank; nothing gives 0', () => {
  const upTo = (n: number): number[] => Array.from({ length: n }, (_, i) => n - i) // unsorted on purpose
  assert.equal(percentile([], 0.99), 0)
  assert.equal(percentile([5], 0.99), 5)
  assert.equal(percentile(upTo(100), 0.99), 99)
  assert.equal(percentile(upTo(1000), 0.99), 990)
  assert.equal(percentile(new Float64Array([3, 1, 2]), 0.5), 2)
})
