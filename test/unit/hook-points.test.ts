import assert from 'node:assert/strict'
import { test } from 'node:test'
import { parseConfig } from '../../core/config.js'
import { createLogger } from '../../core/logger.js'
import { newMessage, type ClientInfo, type Message } from '../../core/types.js'
import { defineHook } from '../../plugins/host/define.js'
import { HookHost } from '../../plugins/host/host.js'
import { makeDeliverCheck, toAuthDecision } from '../../plugins/host/schemas.js'

// The deliver and multi-step authenticate answers on the hook host alone
// (embedded hook objects, inline): how they are checked, how deliver hooks
// compose, what they leave of the shared message.

const client: ClientInfo = { id: 'sub', remoteAddress: '127.0.0.1', protocolVersion: 5, listener: 'tcp' }

function host(): HookHost {
  return new HookHost({ log: createLogger('silent'), hookConfig: parseConfig({}).hooks, defaultTimeoutMs: 200, revokedSubscriptions: 'remove' })
}

test('deliver answers: undefined, { skip: true }, { payload?, properties? }; anything else is invalid (the original goes)', () => {
  const check = makeDeliverCheck()
  assert.equal(check(undefined), undefined)
  assert.equal(check({ skip: true }), null)
  assert.deepEqual(check({ payload: 'x' }), { payload: 'x' })
  assert.deepEqual(check({ properties: { contentType: 'text/plain' } }), { properties: { contentType: 'text/plain' } })
  for (const bad of [null, false, true, { skip: false }, { skip: true, payload: 'x' }, { topic: 'a' }, { qos: 0 }, { properties: { topicAlias: 1 } }, 'text'])
    assert.throws(() => check(bad), { code: 'HOOKMQ_ERR_HOOK_INVALID_ANSWER' }, JSON.stringify(bad))
  assert.throws(() => makeDeliverCheck({ ...parseConfig({}).limits, maxPacketSize: 10 })({ payload: Buffer.alloc(11) }), /maxPacketSize/)
})

test('authenticate answers: { continue, state? } (bytes or a string, at most 65,535 bytes); the final allow may carry Authentication Data', () => {
  assert.deepEqual(toAuthDecision({ continue: 'r=abc', state: { n: 1 } }), { result: 'continue', authenticationData: Buffer.from('r=abc'), state: { n: 1 } })
  const fromWorker = toAuthDecision({ continue: new Uint8Array([1, 2]) })
  assert.ok(fromWorker.result === 'continue' && Buffer.isBuffer(fromWorker.authenticationData))
  const allow = toAuthDecision({ allow: true, authenticationMethod: 'M', authenticationData: 'v=sig' })
  assert.ok(allow.result === 'allow' && allow.authenticationData?.toString() === 'v=sig')
  for (const bad of [{ continue: 1 }, { continue: 'x', more: 1 }, { continue: Buffer.alloc(65536) }, { allow: true, continue: 'x' }])
    assert.throws(() => toAuthDecision(bad), { code: 'HOOKMQ_ERR_HOOK_INVALID_ANSWER' })
})

test('deliver hooks compose: each gets the previous copy, a skip ends it, a filter skips a hook; the shared message is never changed', async () => {
  const h = host()
  const asked: string[] = []
  await h.install(
    defineHook({
      name: 'upper',
      order: 1,
      filter: { topics: ['text/#'] },
      deliver: ({ payload }) => {
        asked.push('upper')
        return { payload: payload.toString().toUpperCase() }
      },
    }),
    'upper',
    undefined,
  )
  await h.install(
    defineHook({
      name: 'sign',
      order: 2,
      deliver: ({ payload, topic }) => {
        asked.push('sign')
        return topic === 'text/skip' ? { skip: true } : { payload: payload.toString() + '!', properties: { userProperties: { by: 'sign' } } }
      },
    }),
    'sign',
    undefined,
  )
  assert.equal(h.delivering, true)
  const original = newMessage('text/a', Buffer.from('hi'), 0, false, 'pub', { contentType: 'text/plain' })
  original.encoded = [Buffer.from('shared bytes')]
  const copy = (await h.deliver(client, original, 0, false)) as Message
  assert.equal(copy.payload.toString(), 'HI!')
  assert.deepEqual(copy.properties, { userProperties: { by: 'sign' } })
  assert.equal(copy.encoded, undefined) // its own bytes, encoded for it alone
  assert.equal(original.payload.toString(), 'hi')
  assert.deepEqual(original.properties, { contentType: 'text/plain' })
  assert.deepEqual(asked, ['upper', 'sign'])
  asked.length = 0
  const other = (await h.deliver(client, newMessage('other', Buffer.from('x'), 0, false, undefined), 0, false)) as Message
  assert.equal(other.payload.toString(), 'x!')
  assert.deepEqual(asked, ['sign']) // upper's filter does not match
  assert.equal(await h.deliver(client, newMessage('text/skip', Buffer.from('x'), 1, false, undefined), 1, false), null)
  await h.remove('sign')
  await h.remove('upper')
  assert.equal(h.delivering, false)
})
