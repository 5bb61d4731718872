import assert from 'node:assert/strict'
import { unlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'
import mqtt from 'mqtt'
import { defineHook } from '../../plugins/index.js'
import { bystander } from '../bystander.js'
import { collect, connect, hooksFolder, pingRoundTrip, publishCode, startBroker, startSink, until, urlOf, writeHook } from '../helpers.js'
import { captureLog } from '../log-capture.js'

// The hook sandbox, on a real broker with real hook files: what a hook file's
// mistakes cost (its own calls, never the broker), in each isolation mode.

const MODES = ['worker', 'inline'] as const

/** CONNECTs as `username` and answers the CONNACK reason code (0 when accepted) and how long it took. */
async function connectCode(url: string, username: string): Promise<{ code: number; ms: number }> {
  const t0 = performance.now()
  const c = mqtt.connect(url, { protocolVersion: 5, username, reconnectPeriod: 0, connectTimeout: 10000 })
  try {
    const code = await new Promise<number>((resolve) => {
      c.once('connect', () => resolve(0))
      c.once('error', (err) => resolve((err as { code?: number }).code ?? -1))
    })
    return { code, ms: performance.now() - t0 }
  } finally {
    c.end(true)
  }
}

test('worker isolation: a synchronous loop in authenticate answers its deadline with a deny; the stuck worker is replaced; others are served', async (t) => {
  const dir = hooksFolder(t)
  writeFileSync(
    join(dir, 'auth.ts'),
    `import { defineHook } from 'hookmq'
export default defineHook({
  name: 'auth',
  isolation: 'worker',
  timeoutMs: 300,
  authenticate({ username }) {
    if (username === 'loop') while (true) {}
    return username === 'ok' ? true : undefined
  },
})
`,
  )
  const broker = await startBroker(t, { hooksDir: dir })
  const other = await bystander(t, broker, { username: 'ok' })
  const stuck = await connectCode(urlOf(broker), 'loop')
  assert.equal(stuck.code, 0x87) // fails closed
  assert.ok(stuck.ms < 300 + 1000, `the stuck call answered after ${stuck.ms.toFixed(0)} ms (deadline 300)`)
  await other.roundTrip()
  await until(() => broker.hookStatus()[0]!.workerRestarts === 1 && broker.hookStatus()[0]!.worker === 'ready', 5000, 'the worker to be replaced')
  assert.equal((await connectCode(urlOf(broker), 'ok')).code, 0) // the new worker serves
  const st = broker.hookStatus()[0]!
  assert.equal(st.timeouts, 1)
  assert.equal(st.isolation, 'worker')
})

test('a loop at the top level of a new version is refused in its preflight; the previous version keeps serving', async (t) => {
  const dir = hooksFolder(t)
  const file = join(dir, 'acl.ts')
  const acl = `import { defineHook } from 'hookmq'
export default defineHook({ name: 'acl', authorizePublish: ({ topic }) => topic.startsWith('ok/') || topic.startsWith('bystander/') ? true : { deny: 'no' } })
`
  writeFileSync(file, acl)
  const broker = await startBroker(t, { hooksDir: dir, hooks: { preflightMs: 500 } })
  const other = await bystander(t, broker, {}, 'tcp')
  const c = await connect(t, broker, { protocolVersion: 5 })
  const t0 = performance.now()
  const change = await writeHook(
    broker,
    file,
    `import { defineHook } from 'hookmq'\nlet n = 0\nwhile (true) { n++ }\nexport default defineHook({ name: 'acl' })\n`,
  )
  assert.equal(change.kind, 'failed')
  assert.match(change.error!.message, /did not finish within 500 ms/)
  assert.ok(performance.now() - t0 < 500 + 3000)
  assert.equal(await publishCode(c, 'no/1'), 0x87) // version 1 still serving
  assert.equal(await publishCode(c, 'ok/1'), 0x10)
  assert.equal(broker.hookStatus()[0]!.version, 1)
  await other.roundTrip()
})

for (const mode of MODES) {
  test(`${mode}: process.exit and friends throw inside hooks (the call fails closed); at the top level they refuse the load; the broker lives`, async (t) => {
    const dir = hooksFolder(t)
    const file = join(dir, 'exit.ts')
    writeFileSync(
      file,
      `import { defineHook } from 'hookmq'
import proc from 'node:process'
export default defineHook({
  name: 'exit',
  authorizePublish({ topic }) {
    if (topic === 'exit') process.exit(0)
    if (topic === 'global') globalThis.process.exit(1)
    if (topic === 'imported') proc.exit(2)
    if (topic === 'kill') process.kill(process.pid, 'SIGKILL')
    if (topic === 'abort') process.abort()
    if (topic === 'chdir') process.chdir('/')
    return true
  },
})
`,
    )
    const log = captureLog()
    const broker = await startBroker(t, { hooksDir: dir, hooks: { isolation: mode }, logger: log.logger })
    const other = await bystander(t, broker)
    const c = await connect(t, broker, { protocolVersion: 5 })
    for (const topic of ['exit', 'global', 'imported', 'kill', 'abort', 'chdir']) {
      assert.equal(await publishCode(c, topic), 0x87, topic)
    }
    assert.equal(await publishCode(c, 'fine'), 0x10)
    assert.equal(broker.hookStatus()[0]!.errors, 6)
    const logged = await log.find((r) => r.code === 'HOOKMQ_ERR_HOOK_FORBIDDEN')
    assert.match(String(logged.msg), /process\.exit\(\) is not available to hooks/)
    await other.roundTrip()
    const change = await writeHook(broker, file, `import { defineHook } from 'hookmq'\n\nprocess.exit(0)\nexport default defineHook({ name: 'exit' })\n`)
    assert.equal(change.kind, 'failed')
    assert.match(change.error!.message, /process\.exit\(\) is not available to hooks/)
    assert.equal(change.error!.line, 3)
    assert.equal(await publishCode(c, 'fine'), 0x10) // the previous version serves
    await other.roundTrip()
  })
}

test("worker isolation: a hook keeping payloads past its memoryMb, and one allocating in a loop, restart their worker; the broker's memory stays put", async (t) => {
  const dir = hooksFolder(t)
  writeFileSync(
    join(dir, 'hoard.ts'),
    `import { defineHook } from 'hookmq'
const kept: Buffer[] = []
export default defineHook({
  name: 'hoard',
  memoryMb: 64,
  timeoutMs: 500,
  authorizePublish({ topic, payload }) {
    if (topic === 'alloc') { const a: number[][] = []; while (true) a.push(new Array(100000).fill(1)) }
    if (topic === 'grow') { const a: number[] = []; while (true) a.push(1) } // one array growing: past V8's own limit it would abort the process (nodejs/node#47224)
    kept.push(payload)
    return true
  },
})
`,
  )
  const broker = await startBroker(t, { hooksDir: dir, limits: { maxPacketSize: 2 * 1024 * 1024 } })
  const other = await bystander(t, broker)
  const c = await connect(t, broker, { protocolVersion: 5 })
  const rss0 = process.memoryUsage().rss
  const big = Buffer.alloc(1024 * 1024, 7)
  const codes: number[] = []
  for (let i = 0; i < 150; i++) codes.push(await publishCode(c, 'keep', big as unknown as string))
  await until(() => (broker.hookStatus()[0]!.workerRestarts ?? 0) >= 1, 5000, 'the hoarding worker to be replaced')
  assert.ok(codes.filter((x) => x === 0x10).length > 100, 'most publishes were allowed')
  const restarts = broker.hookStatus()[0]!.workerRestarts!
  assert.equal(await publishCode(c, 'alloc'), 0x87) // the call fails closed when its worker dies
  await until(() => broker.hookStatus()[0]!.workerRestarts! > restarts, 5000, 'the allocating worker to be replaced')
  await until(() => broker.hookStatus()[0]!.worker === 'ready', 5000, 'a new worker')
  assert.equal(await publishCode(c, 'grow'), 0x87) // stopped by the memory watch (or its deadline), long before V8's limit: the broker lives
  await until(() => broker.hookStatus()[0]!.workerRestarts! > restarts + 1, 5000, 'the growing worker to be replaced')
  await until(() => broker.hookStatus()[0]!.worker === 'ready', 5000, 'a new worker') // (the bystander's publish asks this hook too)
  await other.roundTrip()
  assert.equal(await publishCode(c, 'keep'), 0x10)
  const grown = (process.memoryUsage().rss - rss0) / 1048576
  assert.ok(grown < 200, `the process grew by ${grown.toFixed(0)} MiB while 150 MiB of payloads were kept by a 64 MiB hook`)
})

test('worker isolation: allocating in synchronous code that never returns (an array pushed, a Map filled; in a call with a 60 s deadline, in its own timer, at its top level) stops that thread past memoryMb, never the broker', async (t) => {
  const dir = hooksFolder(t)
  const file = join(dir, 'runaway.ts')
  // past V8's largest table (about 1 GiB: a second or so) or the thread's heap limit, each of these aborted the whole process (nodejs/node#47224)
  writeFileSync(
    file,
    `import { defineHook } from 'hookmq'
export default defineHook({
  name: 'runaway',
  memoryMb: 64,
  timeoutMs: 60000,
  authorizePublish({ topic }) {
    if (topic === 'push') { const a: number[] = []; while (true) a.push(1) }
    if (topic === 'map') { const m = new Map<number, number>(); let i = 0; while (true) m.set(i++, i) }
    if (topic === 'timer') setTimeout(() => { const a: number[] = []; while (true) a.push(1) }, 0)
    return true
  },
})
`,
  )
  const log = captureLog()
  const broker = await startBroker(t, { hooksDir: dir, hooks: { preflightMs: 60000 }, logger: log.logger })
  const other = await bystander(t, broker)
  const c = await connect(t, broker, { protocolVersion: 5 })
  const status = () => broker.hookStatus()[0]!
  const replaced = async (before: number, what: string): Promise<void> => {
    await until(() => (status().workerRestarts ?? 0) > before, 20000, `the worker of ${what} to be replaced`)
    await until(() => status().worker === 'ready', 20000, `a new worker after ${what}`) // (the bystander's publish asks this hook too)
  }
  for (const topic of ['push', 'map']) {
    const before = status().workerRestarts ?? 0
    const t0 = Date.now()
    assert.equal(await publishCode(c, topic), 0x87, topic) // the call fails closed
    assert.ok(Date.now() - t0 < 20000, `${topic}: answered after ${Date.now() - t0} ms, not at the 60 s deadline`)
    await replaced(before, topic)
    await other.roundTrip()
  }
  const before = status().workerRestarts ?? 0
  assert.equal(await publishCode(c, 'timer'), 0x10) // the call itself answered; the loop runs in the hook's own timer
  await replaced(before, 'timer')
  const logged = await log.find((r) => /hook worker replaced: in synchronous code it grew the process by \d+ MiB, more than 64 MiB/.test(String(r.msg)))
  assert.equal(logged.file, file)
  await other.roundTrip()
  const change = await writeHook(
    broker,
    file,
    `import { defineHook } from 'hookmq'\n\nconst a: number[] = []\nwhile (true) a.push(1)\nexport default defineHook({ name: 'runaway' })\n`,
  )
  assert.equal(change.kind, 'failed')
  assert.match(change.error!.message, /its top level grew the process by \d+ MiB, more than 768 MiB, in synchronous code/)
  assert.equal(await publishCode(c, 'fine'), 0x10) // the previous version serves
  await other.roundTrip()
})

test("worker isolation: the memory watch blames no healthy hook for another's memory: one busy 800 ms while another grows 300 MiB in its own timers is not stopped; four top levels building 50 MiB tables each at once all load", async (t) => {
  const dir = hooksFolder(t)
  writeFileSync(
    join(dir, 'busy.ts'),
    `import { defineHook } from 'hookmq'
export default defineHook({
  name: 'busy',
  memoryMb: 64,
  timeoutMs: 5000,
  authorizePublish({ topic }) {
    if (topic === 'go') { const t = Date.now(); let x = 0; while (Date.now() - t < 800) x++ }
    return true
  },
})
`,
  )
  writeFileSync(
    join(dir, 'grower.ts'),
    `import { defineHook } from 'hookmq'
const keep: Buffer[] = []
export default defineHook({
  name: 'grower',
  memoryMb: 1024,
  authorizeSubscribe({ filter }) {
    if (filter === 'grow') { let i = 0; const step = () => { keep.push(Buffer.alloc(1 << 20, 1)); if (++i < 300) setTimeout(step, 1) }; step() }
    return true
  },
})
`,
  )
  for (const n of ['t1', 't2', 't3', 't4'])
    writeFileSync(
      join(dir, `${n}.ts`),
      `import { defineHook } from 'hookmq'
const table: Buffer[] = []
for (let i = 0; i < 50; i++) table.push(Buffer.alloc(1 << 20, 1))
const t = Date.now(); while (Date.now() - t < 600) {}
export default defineHook({ name: '${n}', memoryMb: 128, authorizeSubscribe() { return table.length > 0 } })
`,
    )
  const broker = await startBroker(t, { hooksDir: dir })
  assert.deepEqual(
    broker
      .hookStatus()
      .map((h) => `${h.name}:${h.state}`)
      .sort(),
    ['busy:loaded', 'grower:loaded', 't1:loaded', 't2:loaded', 't3:loaded', 't4:loaded'],
  )
  const c = await connect(t, broker, { protocolVersion: 5 })
  await c.subscribeAsync('grow', { qos: 1 })
  assert.equal(await publishCode(c, 'go'), 0x10)
  assert.equal(broker.hookStatus().find((h) => h.name === 'busy')!.workerRestarts ?? 0, 0)
})

test("worker isolation: a hook logging in a loop sends the broker at most 1,000 lines a second and says how many it dropped; one calling ctx.publish in a loop without awaiting has every message delivered, in order, at the broker's pace", async (t) => {
  const dir = hooksFolder(t)
  writeFileSync(
    join(dir, 'noisy.ts'),
    `import { defineHook } from 'hookmq'
const long = 'x'.repeat(100000)
let publish: ((m: { topic: string; payload: string }) => Promise<void>) | undefined
export default defineHook({
  name: 'noisy',
  setup(ctx) {
    publish = ctx.publish
  },
  authorizePublish({ topic }, ctx) {
    if (topic === 'log') for (let i = 0; i < 50000; i++) ctx.log.info('line ' + i + ' ' + long)
    if (topic === 'flood') for (let i = 0; i < 5000; i++) publish!({ topic: 'flooded', payload: String(i) }).catch(() => {})
    return true
  },
})
`,
  )
  const log = captureLog()
  const broker = await startBroker(t, { hooksDir: dir, logger: log.logger })
  const other = await bystander(t, broker)
  const c = await connect(t, broker, { protocolVersion: 5 })
  assert.equal(await publishCode(c, 'log'), 0x10)
  await new Promise((r) => setTimeout(r, 1100))
  assert.equal(await publishCode(c, 'log'), 0x10) // a new second: its first line says what the last dropped
  const dropped = await log.find((r) => typeof r.dropped === 'number')
  const lines = log.records.filter((r) => typeof r.msg === 'string' && r.msg.startsWith('line '))
  assert.ok(lines.length <= 2000, `${lines.length} lines reached the broker`)
  assert.ok((dropped.dropped as number) >= 49000 - 1000, `dropped ${String(dropped.dropped)}`)
  assert.ok((lines[0]!.msg as string).length < 20000, 'a long line is cut')
  await other.roundTrip()
  const sub = await connect(t, broker, { protocolVersion: 5 })
  await sub.subscribeAsync('flooded', { qos: 0 })
  const inbox = collect(sub)
  assert.equal(await publishCode(c, 'flood'), 0x10)
  await until(() => inbox.messages.length >= 5000, 20000, 'the 5,000 messages the hook published')
  assert.deepEqual(
    inbox.messages.map((m) => m.payload.toString()),
    Array.from({ length: 5000 }, (_, i) => String(i)),
  )
  await other.roundTrip()
})

for (const mode of MODES) {
  test(`${mode}: a storm of failing calls and unhandled rejections trips the breaker: decisions deny at once, transforms pass, events are skipped; it probes after its back-off; a new version resets it`, async (t) => {
    const dir = hooksFolder(t)
    const file = join(dir, 'flaky.ts')
    writeFileSync(
      file,
      `import { defineHook } from 'hookmq'
export default defineHook({
  name: 'flaky',
  timeoutMs: 2000,
  filter: { topics: ['storm/#', 'fine'] },
  authorizePublish({ topic }) {
    if (!topic.startsWith('storm/')) return true
    ${mode === 'worker' ? "void Promise.reject(new Error('nobody waits for me'))" : '// (unhandled rejections of inline hooks: in the process test)'}
    return Promise.reject(new Error('database down'))
  },
  transform: ({ topic }) => { if (topic === 'storm/x') throw new Error('transform broken') },
})
`,
    )
    const broker = await startBroker(t, { hooksDir: dir, hooks: { isolation: mode, breaker: { maxFailures: 5, windowMs: 10000, backoffMs: 400 } } })
    const other = await bystander(t, broker)
    const c = await connect(t, broker, { protocolVersion: 5 })
    for (let i = 0; i < 5; i++) assert.equal(await publishCode(c, `storm/${i}`), 0x87)
    await until(() => broker.hookStatus()[0]!.state === 'tripped', 3000, 'the breaker to trip')
    const t0 = performance.now()
    assert.equal(await publishCode(c, 'fine'), 0x87) // tripped: denied at once, the hook is not called
    assert.ok(performance.now() - t0 < 500)
    const st = broker.hookStatus()[0]!
    assert.equal(st.breaker, 'tripped')
    assert.ok(st.shortCircuited! >= 1)
    await other.roundTrip()
    await until(() => broker.hookStatus()[0]!.retryInMs === 0, 3000, 'the back-off to pass')
    assert.equal(await publishCode(c, 'fine'), 0x10) // probing: a success closes it
    assert.equal(broker.hookStatus()[0]!.breaker, 'closed')
    assert.equal(
      (await writeHook(broker, file, `import { defineHook } from 'hookmq'\nexport default defineHook({ name: 'flaky', authorizePublish: () => true })\n`)).kind,
      'loaded',
    )
    assert.equal(broker.hookStatus()[0]!.breaker, 'closed')
    assert.equal(await publishCode(c, 'storm/1'), 0x10)
  })
}

test("a tripped transform passes messages unchanged; a tripped hook's event handlers are skipped", async (t) => {
  const dir = hooksFolder(t)
  writeFileSync(
    join(dir, 'broken.ts'),
    `import { defineHook } from 'hookmq'
let seen = 0
export default defineHook({
  name: 'broken',
  transform: ({ topic }) => { throw new Error('broken ' + topic) },
  on: { published: (m, client, ctx) => { seen++; ctx.forward('none', seen).catch(() => {}) } },
})
`,
  )
  const broker = await startBroker(t, { hooksDir: dir, hooks: { breaker: { maxFailures: 3, windowMs: 10000, backoffMs: 60000 } } })
  const c = await connect(t, broker, { protocolVersion: 5 })
  await c.subscribeAsync('t/#')
  const inbox = collect(c)
  for (let i = 0; i < 3; i++) await c.publishAsync(`t/${i}`, 'x', { qos: 1 })
  await until(() => broker.hookStatus()[0]!.state === 'tripped', 3000, 'the breaker to trip')
  const calls = broker.hookStatus()[0]!.calls
  await c.publishAsync('t/after', 'unchanged', { qos: 1 })
  let m = await inbox.next()
  while (m.topic !== 't/after') m = await inbox.next()
  assert.equal(m.payload.toString(), 'unchanged')
  assert.equal(broker.hookStatus()[0]!.calls, calls) // neither the transform nor the event handler ran
})

test('start-up fails closed: onStartupFailure deny starts, denies every decision and says so in /health until the folder loads cleanly', async (t) => {
  const dir = hooksFolder(t)
  const file = join(dir, 'acl.ts')
  writeFileSync(
    file,
    `import { defineHook } from 'hookmq'\nimport { z } from 'zod'\nexport default defineHook({ name: 'acl', config: z.object({ topics: z.array(z.string()) }),\n  authorizePublish: ({ topic }, { config }) => config.topics.includes(topic) ? true : { deny: 'no' } })\n`,
  )
  const log = captureLog()
  const broker = await startBroker(t, { hooksDir: dir, hooks: { onStartupFailure: 'deny', acl: { topics: 'a' } }, http: { port: 0 }, logger: log.logger })
  const health = async (): Promise<{ status: number; body: { status: string } }> => {
    const r = await fetch(`${broker.httpUrl()}/health`)
    return { status: r.status, body: (await r.json()) as { status: string } }
  }
  const unready = await health()
  assert.equal(unready.status, 503)
  assert.equal(unready.body.status, 'hooks failed to load')
  await log.find((r) => /every authenticate and authorize decision is denied/.test(String(r.msg)))
  const refused = await connectCode(urlOf(broker), 'anyone')
  assert.equal(refused.code, 0x88) // server unavailable: no decision can be made
  // the fix: the file no longer needs a config; everything is decided again
  assert.equal(
    (
      await writeHook(
        broker,
        file,
        `import { defineHook } from 'hookmq'\nexport default defineHook({ name: 'acl', authorizePublish: ({ topic }) => topic === 'a' ? true : { deny: 'no' } })\n`,
      )
    ).kind,
    'loaded',
  )
  assert.equal((await health()).status, 200)
  const c = await connect(t, broker, { protocolVersion: 5 })
  assert.equal(await publishCode(c, 'a'), 0x10)
  assert.equal(await publishCode(c, 'b'), 0x87)
})

for (const mode of MODES) {
  test(`${mode}: a hook's runtime error is logged at its .ts file's own line and column`, async (t) => {
    const dir = hooksFolder(t)
    const file = join(dir, 'thrower.ts')
    const line7 = `  authorizePublish() { const thing = undefined as unknown as Thing; return thing.name.length > 0 },`
    writeFileSync(
      file,
      `import { defineHook } from 'hookmq'

interface Thing { name: string }

export default defineHook({
  name: 'thrower',
${line7}
})
`,
    )
    const column = line7.indexOf('name.length') + 1 // the property read on undefined: where V8 places "Cannot read properties of undefined (reading 'name')"
    const log = captureLog()
    const broker = await startBroker(t, { hooksDir: dir, hooks: { isolation: mode }, logger: log.logger })
    const c = await connect(t, broker, { protocolVersion: 5 })
    assert.equal(await publishCode(c, 'x'), 0x87)
    const r = await log.find((rec) => rec.method === 'authorizePublish')
    assert.equal(r.at, `${file}:7:${column}`)
    assert.ok(String(r.msg).includes(`failed at ${file}:7:${column}`), String(r.msg))
    assert.ok(String((r.err as { stack: string }).stack).includes(`thrower.ts:7:${column}`))
  })
}

for (const mode of MODES) {
  test(`${mode}: a hook's context works the same: its config, ctx.log, ctx.publish and ctx.forward, the call's signal, and the user its authenticate answer attached`, async (t) => {
    const sink = await startSink(t)
    const dir = hooksFolder(t)
    writeFileSync(
      join(dir, 'ctx.ts'),
      `import { defineHook } from 'hookmq'
import { z } from 'zod'
export default defineHook({
  name: 'ctx',
  timeoutMs: 300,
  config: z.object({ greeting: z.string() }),
  async setup(ctx) {
    ctx.log.info({ mark: 'setup' }, 'setup ran')
    await ctx.publish({ topic: 'ctx/setup', payload: ctx.config.greeting + ' from ' + ctx.name, retain: true })
  },
  authenticate({ username }) {
    return username === 'u' ? { allow: true, user: { id: 'u', roles: ['reader'] } } : undefined
  },
  async authorizePublish({ topic, client }, { config, log, signal, forward }) {
    if (topic.startsWith('ctx/config/')) return topic === 'ctx/config/' + config.greeting ? true : { deny: 'not ' + config.greeting }
    if (topic === 'ctx/log') { log.warn({ mark: 'call' }, 'logged from a call'); return true }
    if (topic === 'ctx/forward') { await forward('sink', { greeting: config.greeting }); return true }
    if (topic === 'ctx/user') return (client.user as { roles?: string[] } | undefined)?.roles?.[0] === 'reader' ? true : { deny: 'no user' }
    if (topic === 'ctx/signal') {
      await new Promise((resolve) => signal.addEventListener('abort', resolve))
      await forward('sink', { aborted: String(signal.reason) })
      return true
    }
    return true
  },
})
`,
    )
    const log = captureLog()
    const broker = await startBroker(t, {
      hooksDir: dir,
      logger: log.logger,
      hooks: { isolation: mode, ctx: { greeting: 'hi' } },
      webhooks: [{ name: 'sink', url: sink.url, batch: { maxSize: 1, maxWaitMs: 0 } }],
    })
    const setupLog = await log.find((r) => r.mark === 'setup')
    assert.equal(setupLog.hook, 'ctx')
    assert.equal(setupLog.msg, 'setup ran')
    const sub = await connect(t, broker, { protocolVersion: 5 })
    const inbox = collect(sub)
    await sub.subscribeAsync('ctx/setup')
    assert.equal((await inbox.next()).payload.toString(), 'hi from ctx') // ctx.publish from setup (retained)
    const c = await connect(t, broker, { protocolVersion: 5, username: 'u' })
    assert.equal(await publishCode(c, 'ctx/config/hi'), 0x10) // the hook's config, parsed and read in its thread
    assert.equal(await publishCode(c, 'ctx/config/bye'), 0x87)
    assert.equal(await publishCode(c, 'ctx/log'), 0x10)
    const callLog = await log.find((r) => r.mark === 'call')
    assert.equal(callLog.hook, 'ctx')
    assert.equal(callLog.level, 40)
    assert.equal(await publishCode(c, 'ctx/forward'), 0x10)
    await sink.waitForIds(1)
    assert.deepEqual(sink.requests[0]!.body.deliveries[0]!.body, { greeting: 'hi' })
    assert.equal(await publishCode(c, 'ctx/user'), 0x10) // the user object crossed with the client
    assert.equal(await publishCode(c, 'ctx/signal'), 0x87) // the deadline: fails closed, and the signal is aborted
    await sink.waitForIds(2)
    assert.match(String((sink.requests[1]!.body.deliveries[0]!.body as { aborted: string }).aborted), /deadline|did not answer/)
  })
}

test("$SYS tells a hook's state and counters, never its error text (it can hold a connection string); /metrics shows a tripped breaker", async (t) => {
  const dir = hooksFolder(t)
  const file = join(dir, 'db.ts')
  writeFileSync(
    file,
    `import { defineHook } from 'hookmq'\nexport default defineHook({ name: 'db', authorizePublish: ({ topic }) => topic === 'boom' ? Promise.reject(new Error('x')) : true })\n`,
  )
  const broker = await startBroker(t, {
    hooksDir: dir,
    sys: { intervalMs: 100 },
    http: { port: 0 },
    hooks: { breaker: { maxFailures: 1, windowMs: 10000, backoffMs: 60000 } },
  })
  const c = await connect(t, broker, { protocolVersion: 5 })
  const inbox = collect(c)
  await c.subscribeAsync('$SYS/broker/hooks/db/#')
  const change = await writeHook(
    broker,
    file,
    `import { defineHook } from 'hookmq'\nthrow new Error('cannot reach redis://admin:s3cret@db.internal:6379')\nexport default defineHook({ name: 'db' })\n`,
  )
  assert.equal(change.kind, 'failed')
  const seen = new Map<string, string>()
  while (seen.get('$SYS/broker/hooks/db/state') !== 'failed') {
    const m = await inbox.next()
    seen.set(m.topic, m.payload.toString())
  }
  for (const [topic, payload] of seen) {
    assert.ok(!topic.endsWith('/error'), topic)
    assert.doesNotMatch(payload, /s3cret|redis:/, topic)
  }
  assert.equal(seen.get('$SYS/broker/hooks/db/version'), '1') // version 1 keeps serving
  assert.equal(await publishCode(c, 'boom'), 0x87)
  await until(() => broker.hookStatus()[0]!.breaker === 'tripped', 3000, 'the breaker to trip')
  const metrics = await (await fetch(`${broker.httpUrl()}/metrics`)).text()
  assert.match(metrics, /hookmq_hook_tripped\{hook="db"\} 1/)
  assert.match(metrics, /hookmq_hook_loaded\{hook="db"\} 0/) // its last load failed
})

test('worker isolation: every answer goes to its own call, also when a new batch reuses the shared memory while the worker still runs the last', async (t) => {
  const dir = hooksFolder(t)
  writeFileSync(
    join(dir, 'slow.ts'),
    `import { defineHook } from 'hookmq'
export default defineHook({
  name: 'slow',
  timeoutMs: 3000,
  filter: { topics: ['x/#'] },
  authorizePublish({ topic }) {
    if (topic === 'x/slow') {
      const until = performance.now() + 400
      while (performance.now() < until) {} // the broker sends the next batch meanwhile
    }
    return topic.endsWith('deny') ? { deny: 'no' } : true
  },
})
`,
  )
  const broker = await startBroker(t, { hooksDir: dir })
  const a = await connect(t, broker, { protocolVersion: 5 })
  const b = await connect(t, broker, { protocolVersion: 5 })
  const outcome = (c: typeof a, topic: string): Promise<string> =>
    new Promise((resolve) => c.publish(topic, 'x', { qos: 1 }, (err) => resolve(err ? 'denied' : 'allowed')))
  // two calls in one batch, the first slow; then, while the worker runs it, another batch of two
  const first = [outcome(a, 'x/slow'), outcome(a, 'x/a-deny')]
  await new Promise((r) => setTimeout(r, 150))
  const second = [outcome(b, 'x/b-deny'), outcome(b, 'x/b-allow')]
  assert.deepEqual(await Promise.all([...first, ...second]), ['allowed', 'denied', 'denied', 'allowed'])
  const st = broker.hookStatus()[0]!
  assert.equal(st.timeouts, 0)
  assert.equal(st.errors, 0)
})

test('a chain of hooks that began before a reload goes on with the new version, never the retired one (worker and inline)', async (t) => {
  const dir = hooksFolder(t)
  const go = join(dir, 'reloaded.flag')
  // a waits until the test says b was reloaded: the chain a → b began before that reload
  writeFileSync(
    join(dir, 'a.ts'),
    `import { defineHook } from 'hookmq'
import { existsSync } from 'node:fs'
export default defineHook({ name: 'a', order: 1, filter: { topics: ['c/#'] }, async authorizePublish() {
  while (!existsSync(${JSON.stringify(go)})) await new Promise((r) => setTimeout(r, 10))
  return undefined
} })
`,
  )
  const file = join(dir, 'b.ts')
  const b = (v: number, isolation: string): string => `import { defineHook } from 'hookmq'
export default defineHook({ name: 'b', order: 2, isolation: '${isolation}', filter: { topics: ['c/#'] },
  async teardown() { await new Promise((r) => setTimeout(r, 500)) },
  authorizePublish: ({ topic }) => topic === 'c/v${v}' ? true : { deny: 'not v${v}' } })
`
  for (const isolation of ['worker', 'inline']) {
    writeFileSync(file, b(1, isolation))
    const broker = await startBroker(t, { hooksDir: dir })
    const c = await connect(t, broker, { protocolVersion: 5 })
    const answer = publishCode(c, 'c/v2') // a begins, and waits
    assert.equal((await writeHook(broker, file, b(2, isolation))).kind, 'loaded')
    writeFileSync(go, '')
    assert.equal(await answer, 0x10, isolation) // decided by b version 2 (version 1 would deny it)
    assert.equal(await publishCode(c, 'c/v1'), 0x87)
    await pingRoundTrip(c)
    await broker.close()
    unlinkSync(go)
  }
})

test('worker isolation: a client whose user cannot cross to the worker (a function in it) is denied on every call, not only the first', async (t) => {
  const dir = hooksFolder(t)
  writeFileSync(
    join(dir, 'acl.ts'),
    `import { defineHook } from 'hookmq'
export default defineHook({ name: 'acl', authorizePublish: ({ client }) => (client.user as { banned?: boolean } | undefined)?.banned ? { deny: 'banned' } : true })
`,
  )
  const embedded = await startBroker(t, {
    hooksDir: dir,
    hooks: [
      defineHook({
        name: 'auth',
        authenticate: ({ username }) =>
          username === 'banned'
            ? {
                allow: true,
                user: {
                  banned: true,
                  can() {
                    return false
                  },
                },
              }
            : undefined,
      }),
    ],
  })
  const c = await connect(t, embedded, { protocolVersion: 5, username: 'banned' })
  for (let i = 0; i < 3; i++) assert.equal(await publishCode(c, 'any'), 0x87, `publish ${i}`)
  const ok = await connect(t, embedded, { protocolVersion: 5 })
  assert.equal(await publishCode(ok, 'any'), 0x10)
})

for (const mode of ['worker', 'inline'] as const)
  test(`${mode} isolation: ctx.publish with no topic, or not even a message, is the hook's error (a rejection), not the broker's end`, async (t) => {
    const dir = hooksFolder(t)
    writeFileSync(
      join(dir, 'bad.ts'),
      `import { defineHook } from 'hookmq'
export default defineHook({ name: 'bad', async setup(ctx) {
  await ctx.publish({} as never).catch((err) => ctx.publish({ topic: 'bad/empty', payload: String(err.code), retain: true }))
  let thrown = 'no'
  try {
    await ctx.publish(null as never).catch((err) => ctx.publish({ topic: 'bad/null', payload: String(err.code) + ' ' + err.message, retain: true }))
  } catch {
    thrown = 'yes' // a throw instead of a rejection
  }
  await ctx.publish({ topic: 'bad/thrown', payload: thrown, retain: true })
  await ctx.publish({ topic: 'a/+' }).catch((err) => ctx.publish({ topic: 'bad/wildcard', payload: String(err.code), retain: true }))
  await ctx.publish({ topic: '$SYS/broker/version', payload: 'spoofed', retain: true }).catch((err) => ctx.publish({ topic: 'bad/sys', payload: String(err.code), retain: true }))
  await ctx.publish({ topic: 'ok', properties: { contentType: 'a\\u0000b' } }).catch((err) => ctx.publish({ topic: 'bad/nul', payload: String(err.code), retain: true }))
} })
`,
    )
    const broker = await startBroker(t, { hooksDir: dir, hooks: { isolation: mode } })
    const sub = await connect(t, broker, { protocolVersion: 5 })
    assert.equal(broker.hookStatus()[0]!.state, 'loaded') // setup finished: each bad publish was refused to it
    const inbox = collect(sub)
    await sub.subscribeAsync('bad/#')
    const said = new Map<string, string>()
    while (said.size < 6) {
      const m = await inbox.next()
      said.set(m.topic, m.payload.toString())
    }
    assert.deepEqual(Object.fromEntries(said), {
      'bad/empty': 'HOOKMQ_ERR_TOPIC_NAME_INVALID',
      'bad/null': 'HOOKMQ_ERR_TOPIC_NAME_INVALID ctx.publish needs a message: { topic, payload?, qos?, retain? }',
      'bad/thrown': 'no',
      'bad/wildcard': 'HOOKMQ_ERR_TOPIC_NAME_INVALID',
      'bad/sys': 'HOOKMQ_ERR_TOPIC_NAME_INVALID',
      'bad/nul': 'HOOKMQ_ERR_TOPIC_NAME_INVALID',
    })
    await assert.rejects(broker.publish({ topic: 'a/+' }), { code: 'HOOKMQ_ERR_TOPIC_NAME_INVALID' })
    await assert.rejects(broker.publish({ topic: undefined as unknown as string }), { code: 'HOOKMQ_ERR_TOPIC_NAME_INVALID' })
    const other = await bystander(t, broker)
    await other.roundTrip()
    void sub
  })

test('worker isolation: a version whose setup fails leaves no worker behind, and nothing restarts', async (t) => {
  const dir = hooksFolder(t)
  const file = join(dir, 'once.ts')
  writeFileSync(file, `import { defineHook } from 'hookmq'\nexport default defineHook({ name: 'once', authorizePublish: () => true })\n`)
  const log = captureLog()
  const broker = await startBroker(t, { hooksDir: dir, logger: log.logger })
  const change = await writeHook(
    broker,
    file,
    `import { defineHook } from 'hookmq'\nexport default defineHook({ name: 'once', setup() { throw new Error('no database') }, authorizePublish: () => true })\n`,
  )
  assert.equal(change.kind, 'failed')
  await new Promise((r) => setTimeout(r, 1500))
  assert.equal(log.records.filter((r) => /hook worker (replaced|restarted|could not)/.test(String(r.msg))).length, 0)
  assert.equal(broker.hookStatus()[0]!.version, 1) // version 1 serves on
})

test('worker isolation: a hook with only event handlers that gets stuck is found stuck and replaced (events do not pile up)', async (t) => {
  const dir = hooksFolder(t)
  writeFileSync(
    join(dir, 'watcher.ts'),
    `import { defineHook } from 'hookmq'
export default defineHook({ name: 'watcher', timeoutMs: 300, on: { published: (m) => { if (m.topic === 'loop') while (true) {} } } })
`,
  )
  const broker = await startBroker(t, { hooksDir: dir })
  const c = await connect(t, broker, { protocolVersion: 5 })
  await c.publishAsync('loop', 'x', { qos: 1 })
  for (let i = 0; i < 200; i++) c.publish('after', Buffer.alloc(4096), { qos: 0 })
  await until(() => (broker.hookStatus()[0]!.workerRestarts ?? 0) >= 1, 5000, 'the stuck worker to be replaced')
  const other = await bystander(t, broker)
  await other.roundTrip()
})

test('inline: a rejection whose stack cannot be read, and a deny with a reason code its packet cannot carry, still answer (0x87)', async (t) => {
  const dir = hooksFolder(t)
  writeFileSync(
    join(dir, 'odd.ts'),
    `import { defineHook } from 'hookmq'
export default defineHook({
  name: 'odd',
  isolation: 'inline',
  async authorizePublish({ topic }) {
    if (topic === 'stack') { const e = new Error('x'); Object.defineProperty(e, 'stack', { get() { throw new Error('no stack for you') } }); throw e }
    if (topic === 'code') return { deny: 'x'.repeat(100000), reasonCode: 0xff }
    return true
  },
  authorizeSubscribe: ({ filter }) => filter === 'code' ? { deny: 'no', reasonCode: 0x8e } : true,
})
`,
  )
  const broker = await startBroker(t, { hooksDir: dir })
  const c = await connect(t, broker, { protocolVersion: 5 })
  assert.equal(await publishCode(c, 'stack'), 0x87)
  assert.equal(await publishCode(c, 'code'), 0x87) // 0xff is no PUBACK reason code
  const refused = await c.subscribeAsync('code').then(
    () => undefined,
    (err: { packet?: { granted?: number[] } }) => err,
  )
  assert.deepEqual(refused?.packet?.granted, [0x87]) // 0x8e is no SUBACK reason code
  assert.equal(await publishCode(c, 'fine'), 0x10)
  assert.ok(c.connected)
})
