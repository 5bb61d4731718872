import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'
import type { MqttClient } from 'mqtt'
import mqttPacket from 'mqtt-packet'
import { inCanary } from '../../plugins/host/rollout.js'
import { collect, connect, hooksFolder, pingRoundTrip, RawClient, startBroker, until, writeHook } from '../helpers.js'

// The deliver hook point on a real broker, from real hook files, inline and
// in a worker: per subscriber, just before the PUBLISH is written.

const MODES = ['inline', 'worker'] as const

const text = (m: { payload: Buffer }): string => m.payload.toString()
/** (mqtt-packet gives them a null prototype) */
const userProps = (m: { packet: { properties?: { userProperties?: object } } }): unknown => ({ ...m.packet.properties?.userProperties })

/** Subscribes `client` to `filter` at QoS 1. */
async function sub(client: MqttClient, filter: string): Promise<void> {
  await client.subscribeAsync(filter, { qos: 1 })
}

for (const mode of MODES) {
  test(`${mode}: deliver changes one subscriber's copy only; the others (sharing the encoded bytes) get the original`, async (t) => {
    const dir = hooksFolder(t)
    writeFileSync(
      join(dir, 'personal.ts'),
      `import { defineHook } from 'hookmq'
export default defineHook({
  name: 'personal',
  deliver({ client, topic, payload, qos, retain, publisher, properties }) {
    if (client.id !== 'sub-b') return undefined
    return {
      payload: 'for b: ' + payload.toString() + ' on ' + topic + ' from ' + publisher + ' at ' + qos + (retain ? ' retained' : ''),
      properties: { ...properties, userProperties: { copy: 'b' } },
    }
  },
})
`,
    )
    const broker = await startBroker(t, { hooksDir: dir, hooks: { isolation: mode } })
    const a1 = await connect(t, broker, { protocolVersion: 5, clientId: 'sub-a1' })
    const b = await connect(t, broker, { protocolVersion: 5, clientId: 'sub-b' })
    const a2 = await connect(t, broker, { protocolVersion: 5, clientId: 'sub-a2' })
    const c = await connect(t, broker, { protocolVersion: 4, clientId: 'sub-c' })
    for (const s of [a1, b, a2, c]) await sub(s, 'news/#')
    const pub = await connect(t, broker, { protocolVersion: 5, clientId: 'pub' })
    const properties = { userProperties: { orig: '1' } }
    await pub.publishAsync('news/0', 'hello', { qos: 0, properties })
    await pub.publishAsync('news/1', 'again', { qos: 1, properties })
    for (const s of [a1, a2, c]) {
      const got = await collect(s).count(2)
      assert.deepEqual(got.map(text), ['hello', 'again'])
      if (s !== c) assert.deepEqual(got.map(userProps), [{ orig: '1' }, { orig: '1' }])
    }
    const mine = await collect(b).count(2)
    assert.deepEqual(mine.map(text), ['for b: hello on news/0 from pub at 0', 'for b: again on news/1 from pub at 1'])
    assert.deepEqual(mine.map(userProps), [{ copy: 'b' }, { copy: 'b' }])

    // a retained message sent on subscribe goes through it too (with its retain flag), and the store keeps the original
    await pub.publishAsync('kept/1', 'stored', { qos: 1, retain: true })
    await sub(b, 'kept/#')
    assert.equal(text(await collect(b).next()), 'for b: stored on kept/1 from pub at 1 retained')
    const late = await connect(t, broker, { protocolVersion: 5, clientId: 'sub-late' })
    await sub(late, 'kept/#')
    assert.equal(text(await collect(late).next()), 'stored')
    assert.equal(broker.hookStatus()[0]!.errors, 0)
  })

  test(`${mode}: a skipped QoS 1 message counts as delivered: the subscriber's window (Receive Maximum 1) does not stall`, async (t) => {
    const dir = hooksFolder(t)
    writeFileSync(
      join(dir, 'skip.ts'),
      `import { defineHook } from 'hookmq'
export default defineHook({
  name: 'skip',
  deliver: ({ client, topic }) => (client.id === 'skipper' && topic.startsWith('skip/') ? { skip: true } : undefined),
})
`,
    )
    const broker = await startBroker(t, { hooksDir: dir, hooks: { isolation: mode } })
    const skipper = await connect(t, broker, { protocolVersion: 5, clientId: 'skipper', properties: { receiveMaximum: 1 } })
    const all = await connect(t, broker, { protocolVersion: 5, clientId: 'sees-all', properties: { receiveMaximum: 1 } })
    for (const s of [skipper, all]) {
      await sub(s, 'skip/#')
      await sub(s, 'ok/#')
    }
    const pub = await connect(t, broker, { protocolVersion: 5 })
    for (let i = 0; i < 5; i++) await pub.publishAsync(`skip/${i}`, String(i), { qos: 1 })
    await pub.publishAsync('ok/after', 'after', { qos: 1 })
    assert.deepEqual((await collect(skipper).next()).topic, 'ok/after') // not stuck behind the skipped ones
    assert.deepEqual(
      (await collect(all).count(6)).map((m) => m.topic),
      ['skip/0', 'skip/1', 'skip/2', 'skip/3', 'skip/4', 'ok/after'],
    )
    await pingRoundTrip(skipper)
    assert.equal(collect(skipper).messages.length, 1)
    await until(() => broker.sessions.sessions.get('skipper')!.inflight.size === 0, 2000, 'nothing in flight to the skipper')
  })
}

test('inline: an answer that comes later holds only its own subscriber, whose messages keep their order; a deadline sends the original', async (t) => {
  const dir = hooksFolder(t)
  writeFileSync(
    join(dir, 'slow.ts'),
    `import { defineHook } from 'hookmq'
export default defineHook({
  name: 'slow',
  isolation: 'inline',
  timeoutMs: 300,
  async deliver({ client, payload }) {
    const n = payload.toString()
    if (client.id === 'slow') {
      await new Promise((r) => setTimeout(r, n === '1' ? 150 : 0)) // the first answer comes last
      return { payload: 'slow:' + n }
    }
    if (client.id === 'stuck' && n === '2') return new Promise(() => {}) // never: its deadline passes
    return undefined
  },
})
`,
  )
  const broker = await startBroker(t, { hooksDir: dir })
  const arrivals: string[] = []
  const clients: Record<string, MqttClient> = {}
  for (const id of ['fast', 'slow', 'stuck']) {
    const c = await connect(t, broker, { protocolVersion: 5, clientId: id })
    await sub(c, 't/#')
    c.on('message', (_topic, payload) => arrivals.push(`${id}:${payload.toString()}`))
    clients[id] = c
  }
  const pub = await connect(t, broker, { protocolVersion: 5 })
  for (const n of ['1', '2', '3']) await pub.publishAsync('t/x', n, { qos: 1 })
  assert.deepEqual((await collect(clients.slow!).count(3)).map(text), ['slow:1', 'slow:2', 'slow:3'])
  assert.deepEqual((await collect(clients.stuck!).count(3)).map(text), ['1', '2', '3'])
  assert.deepEqual((await collect(clients.fast!).count(3)).map(text), ['1', '2', '3'])
  // the fast subscriber had all three before the slow one had its first
  assert.ok(arrivals.indexOf('fast:3') < arrivals.indexOf('slow:slow:1'), arrivals.join(' '))
  assert.ok(arrivals.indexOf('fast:3') < arrivals.indexOf('stuck:2'), arrivals.join(' '))
  assert.equal(broker.hookStatus()[0]!.timeouts, 1)
})

for (const mode of MODES) {
  test(`${mode}: filter.topics: only matching topics reach the hook; an invalid answer sends the original (fails open); reload and removal`, async (t) => {
    const dir = hooksFolder(t)
    const file = join(dir, 'filtered.ts')
    writeFileSync(
      file,
      `import { defineHook } from 'hookmq'
export default defineHook({
  name: 'filtered',
  filter: { topics: ['f/#'] },
  deliver: ({ topic }) => (topic === 'f/bad' ? { topic: 'elsewhere' } : { payload: 'filtered' }),
})
`,
    )
    const broker = await startBroker(t, { hooksDir: dir, hooks: { isolation: mode } })
    const s = await connect(t, broker, { protocolVersion: 5 })
    await sub(s, '#')
    const pub = await connect(t, broker, { protocolVersion: 5 })
    await pub.publishAsync('g/1', 'plain', { qos: 1 })
    await pub.publishAsync('f/1', 'plain', { qos: 1 })
    await pub.publishAsync('f/bad', 'plain', { qos: 0 })
    assert.deepEqual(
      (await collect(s).count(3)).map((m) => `${m.topic}=${text(m)}`),
      ['g/1=plain', 'f/1=filtered', 'f/bad=plain'],
    )
    const st = broker.hookStatus()[0]!
    assert.equal(st.calls, 2) // g/1 never reached it
    assert.equal(st.errors, 1) // the answer naming a topic: not what deliver may answer
    const change = await writeHook(broker, file, `import { defineHook } from 'hookmq'\nexport default defineHook({ name: 'filtered' })\n`)
    assert.equal(change.kind, 'loaded')
    await pub.publishAsync('f/2', 'plain', { qos: 1 })
    assert.equal(text(await collect(s).next()), 'plain')
  })
}

test('worker: a fan-out faster than the hook answers is held back, not lost: every copy arrives, no call times out', async (t) => {
  const dir = hooksFolder(t)
  // 20 µs a call: 100,000 calls keep the worker 2 s, twice their deadline had they come in one batch
  writeFileSync(
    join(dir, 'tag.ts'),
    `import { defineHook } from 'hookmq'
export default defineHook({
  name: 'tag',
  deliver: ({ payload }) => {
    const end = performance.now() + 0.02
    while (performance.now() < end) {}
    return { payload: 't' + payload.toString() }
  },
})
`,
  )
  const broker = await startBroker(t, { hooksDir: dir, hooks: { isolation: 'worker' } })
  const subscribers: MqttClient[] = []
  for (let i = 0; i < 100; i++) {
    const s = await connect(t, broker, { protocolVersion: 4, clientId: `fan-${i}` })
    await s.subscribeAsync('fan/#', { qos: 0 })
    subscribers.push(s)
  }
  // as fast as the socket takes them: all in one write (one read: what the broker has read already is held as bytes too)
  const pub = await RawClient.open(t, broker, 4)
  assert.equal((await pub.connect()).returnCode, 0)
  const n = 1000
  const packets: Buffer[] = []
  for (let i = 0; i < n; i++)
    packets.push(mqttPacket.generate({ cmd: 'publish', topic: 'fan/x', payload: Buffer.from(String(i)), qos: 0, retain: false, dup: false }))
  pub.sendBytes(Buffer.concat(packets))
  for (const s of subscribers) {
    const got = await collect(s).count(n, 30000)
    assert.equal(text(got[0]!), 't0')
    assert.equal(text(got[n - 1]!), `t${n - 1}`) // in order, none lost
  }
  const st = broker.hookStatus()[0]!
  assert.equal(st.timeouts, 0)
  assert.equal(st.errors, 0)
  assert.equal(st.calls, 100 * n)
})

test('a canary deliver hook serves the subscribers in its share (by their client id), the stable version the others; a shadow deliver is never called', async (t) => {
  const dir = hooksFolder(t)
  const tagger = (version: string, rollout = ''): string => `import { defineHook } from 'hookmq'
export default defineHook({
  name: 'tag',${rollout}
  deliver: ({ payload }) => ({ payload: '${version}:' + payload.toString() }),
})
`
  writeFileSync(join(dir, 'tag.ts'), tagger('stable'))
  writeFileSync(join(dir, 'tag.canary.ts'), tagger('canary', '\n  rollout: { canary: 0.5 },'))
  writeFileSync(join(dir, 'shadow.ts'), tagger('shadow', '\n  rollout: { mode: "shadow" },').replace("name: 'tag'", "name: 'tag-next'"))
  const broker = await startBroker(t, { hooksDir: dir, hooks: { isolation: 'inline' } })
  const ids = Array.from({ length: 40 }, (_, i) => `sub-${i}`)
  const inside = ids.find((id) => inCanary('tag', id, 0.5))!
  const outside = ids.find((id) => !inCanary('tag', id, 0.5))!
  const subs = [await connect(t, broker, { protocolVersion: 5, clientId: inside }), await connect(t, broker, { protocolVersion: 5, clientId: outside })]
  for (const s of subs) await sub(s, 'news/#')
  const pub = await connect(t, broker, { protocolVersion: 5, clientId: 'pub' })
  await pub.publishAsync('news/1', 'hello', { qos: 1 })
  assert.equal(text(await collect(subs[0]!).next()), 'canary:hello')
  assert.equal(text(await collect(subs[1]!).next()), 'stable:hello')
  assert.equal(broker.hookStatus().find((h) => h.name === 'tag-next')!.calls, 0)
})
