import assert from 'node:assert/strict'
import { test } from 'node:test'
import { defineHook } from '../../plugins/index.js'
import { collect, connect, startBroker } from '../helpers.js'
import { captureLog } from '../log-capture.js'

// The start-up warm-up (core/warmup.ts) runs a throwaway broker of the same code:
// nothing of it reaches the real broker's hooks, events, counters or stores.

test('with warmup on, the broker starts and serves, and its hooks, events, counters and retained store saw nothing of the warm-up', async (t) => {
  const calls: string[] = []
  const events: string[] = []
  const spy = defineHook({
    name: 'spy',
    authenticate: () => {
      calls.push('authenticate')
      return undefined
    },
    authorizePublish: ({ topic }) => {
      calls.push(`publish ${topic}`)
      return undefined
    },
    authorizeSubscribe: ({ filter }) => {
      calls.push(`subscribe ${filter}`)
      return undefined
    },
  })
  const t0 = performance.now()
  const log = captureLog()
  const broker = await startBroker(t, { warmup: true, hooks: [spy], logger: log.logger })
  const warmed = await log.find((r) => r.msg === 'publish path warmed up')
  assert.equal(warmed.messages, 4000) // every round went through the throwaway broker
  const startMs = performance.now() - t0
  broker.on('clientConnected', (c) => events.push(c.id))
  assert.equal(calls.length, 0, calls.join())
  assert.deepEqual(broker.stats.received, [0, 0, 0])
  assert.deepEqual(broker.stats.sent, [0, 0, 0])
  assert.deepEqual(await broker.stores.retained.match('warmup/#'), []) // ($SYS topics are the broker's own)
  assert.equal(broker.sessions.sessions.size, 0)
  // and it serves
  const sub = await connect(t, broker, { clientId: 'real-sub' })
  const inbox = collect(sub)
  await sub.subscribeAsync('warmup/#')
  const pub = await connect(t, broker, { clientId: 'real-pub' })
  await pub.publishAsync('warmup/1', 'x', { qos: 1 })
  assert.equal((await inbox.next()).payload.toString(), 'x')
  assert.deepEqual(events.sort(), ['real-pub', 'real-sub'])
  assert.ok(calls.includes('subscribe warmup/#') && calls.includes('publish warmup/1'))
  assert.equal(calls.filter((c) => c === 'authenticate').length, 2)
  assert.ok(startMs < 5000, `start-up took ${startMs} ms`)
})
