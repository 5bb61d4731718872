import assert from 'node:assert/strict'
import { test } from 'node:test'
import { Breaker } from '../../plugins/host/sandbox/breaker.js'
import { enterHook, guardedProcess, guardProcess, leaveHook } from '../../plugins/host/sandbox/guard.js'
import {
  AUTHORIZE_PUBLISH,
  AUTHORIZE_SUBSCRIBE,
  BatchWriter,
  batchTable,
  batchTopics,
  readInput,
  Ring,
  RING_BYTES,
  TRANSFORM,
} from '../../plugins/host/sandbox/batch.js'
import { CallQueue } from '../../plugins/host/sandbox/call-queue.js'

const settings = { maxFailures: 3, windowMs: 1000, backoffMs: 20, maxBackoffMs: 50 }
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

test('breaker: maxFailures failures within the window trip it; fewer, or spread wider, do not', async () => {
  const changes: string[] = []
  const b = new Breaker(settings, (s) => changes.push(s))
  b.failure()
  b.failure()
  assert.equal(b.state, 'closed')
  b.failure()
  assert.equal(b.state, 'tripped')
  assert.equal(b.admit(), false)
  assert.equal(b.shortCircuited, 1)
  const spread = new Breaker({ ...settings, windowMs: 30 })
  spread.failure()
  spread.failure()
  await sleep(40)
  spread.failure()
  assert.equal(spread.state, 'closed') // the first two fell out of the window
  assert.deepEqual(changes, ['tripped'])
})

test('breaker: after its back-off it probes; a success closes it, a failure trips it again with twice the back-off, up to maxBackoffMs', async () => {
  const b = new Breaker(settings)
  for (let i = 0; i < 3; i++) b.failure()
  await sleep(25)
  assert.equal(b.admit(), true)
  assert.equal(b.state, 'probing')
  b.failure()
  assert.equal(b.state, 'tripped')
  assert.ok(b.retryInMs() > 20 && b.retryInMs() <= 40, String(b.retryInMs()))
  await sleep(45)
  assert.equal(b.admit(), true)
  b.failure()
  assert.ok(b.retryInMs() <= 50) // capped
  await sleep(55)
  assert.equal(b.admit(), true)
  b.success()
  assert.equal(b.state, 'closed')
  assert.equal(b.trips, 3)
})

test("guard: hook code's process refuses exit, kill, abort, chdir, setuid and exitCode with a coded error; the real ones refuse only while hook code runs", () => {
  for (const call of [
    () => guardedProcess.exit(0),
    () => guardedProcess.kill(process.pid),
    () => guardedProcess.abort(),
    () => guardedProcess.chdir('/'),
    () => guardedProcess.setuid?.(0),
    () => {
      guardedProcess.exitCode = 3
    },
  ]) {
    assert.throws(call, { code: 'HOOKMQ_ERR_HOOK_FORBIDDEN' })
  }
  assert.equal(typeof guardedProcess.hrtime.bigint(), 'bigint') // the rest is the real process
  assert.equal(guardedProcess.env, process.env)
  guardProcess()
  enterHook()
  try {
    assert.throws(() => process.exit(0), { code: 'HOOKMQ_ERR_HOOK_FORBIDDEN' })
    assert.throws(() => process.kill(process.pid, 0), { code: 'HOOKMQ_ERR_HOOK_FORBIDDEN' })
  } finally {
    leaveHook()
  }
  assert.equal(process.kill(process.pid, 0), true) // outside hook code: the real one
})

test('ring: regions are handed out in order, wrap around, and come back once their batch was begun', () => {
  const r = new Ring()
  const a = r.take(RING_BYTES / 4, 1)
  const b = r.take(RING_BYTES / 4, 2)
  const c = r.take(RING_BYTES / 4, 3)
  assert.deepEqual([a, b, c], [0, RING_BYTES / 4, RING_BYTES / 2])
  assert.equal(r.take(RING_BYTES / 4 + 4, 4), -1) // no room: the batch brings its own buffer
  r.release(1)
  assert.equal(r.take(RING_BYTES / 4, 4), (3 * RING_BYTES) / 4)
  assert.equal(r.take(100, 5), 0) // the end is full: wrapped to the start, which batch 1 gave back
  assert.equal(r.take(RING_BYTES / 4, 6), -1) // batch 2's region is still in use
  r.release(3)
  assert.equal(r.take(RING_BYTES / 4, 6), 100) // after batch 5's region
  assert.equal(r.take(3, 7) % 4, 0) // offsets stay aligned for the call table
})

test("batch: each call's topic and payload come out as they went in, whatever the topics hold (one string for all topics, split by length)", () => {
  const w = new BatchWriter()
  const client = { id: 'c1', remoteAddress: '127.0.0.1', protocolVersion: 4 as const, listener: 'mqtt' }
  const topics = ['a/b', '', 'émoji/😀/x', 'with\u0000nul/+', 'x'.repeat(5000), 'last']
  const methods = [AUTHORIZE_PUBLISH, AUTHORIZE_SUBSCRIBE, TRANSFORM, AUTHORIZE_PUBLISH, AUTHORIZE_PUBLISH, TRANSFORM]
  topics.forEach((topic, i) => {
    const input =
      methods[i] === AUTHORIZE_SUBSCRIBE
        ? { client, filter: 'f/#', qos: 1 }
        : { client, topic, payload: Buffer.from(`p${i}`), qos: 1, retain: i === 5, properties: undefined }
    assert.equal(w.add(i + 1, methods[i]!, input), 1)
  })
  const b = w.take(0)!
  const { table, region } = batchTable(b, w.ring.buffer, true)
  const out = batchTopics(b, table)
  const clients = new Map([[1, client]])
  const inputs = new Map(b.inputs)
  for (let i = 0; i < topics.length; i++) {
    if (methods[i] === AUTHORIZE_SUBSCRIBE) {
      assert.equal(out[i], '')
      continue
    }
    assert.equal(out[i], topics[i])
    const input = readInput(out[i]!, i, table, region, clients, inputs, null) as { topic: string; payload: Buffer; retain: boolean; client: unknown }
    assert.equal(input.topic, topics[i])
    assert.equal(input.payload.toString(), `p${i}`)
    assert.equal(input.retain, i === 5)
    assert.equal(input.client, client)
  }
})

test('call queue: calls come out by id in any order, oldest first, across growth and wrap-around; skipped ids leave no call', () => {
  const q = new CallQueue<{ id: number }>()
  const expected = new Map<number, { id: number }>()
  let id = 0
  // rounds of adding more than the ring holds, then taking out of order, some left over
  for (let round = 0; round < 5; round++) {
    for (let i = 0; i < 150; i++) {
      id += i % 17 === 0 ? 2 : 1 // now and then an id is skipped (its input could not cross)
      const call = { id }
      q.add(id, call)
      expected.set(id, call)
    }
    const ids = [...expected.keys()]
    for (let k = 0; k < ids.length; k++) {
      if (k % 3 === 2) continue // left waiting
      const i = ids[(k * 7) % ids.length]!
      const got = q.take(i)
      if (expected.has(i)) assert.equal(got, expected.get(i))
      else assert.equal(got, undefined) // taken already
      expected.delete(i)
    }
    assert.equal(q.size, expected.size)
    assert.equal(q.oldest(), expected.get(Math.min(...expected.keys())))
  }
  assert.equal(q.take(id + 1), undefined)
  assert.equal(q.take(-5), undefined)
  assert.throws(() => q.add(id, { id }), /not after/)
  const rest = q.drain()
  assert.deepEqual(
    rest.map((c) => c.id),
    [...expected.keys()].sort((a, b) => a - b),
  )
  assert.equal(q.size, 0)
  assert.equal(q.oldest(), undefined)
  q.add(id + 10, { id: id + 10 }) // an empty queue starts again at any id
  assert.equal(q.take(id + 10)?.id, id + 10)
})
