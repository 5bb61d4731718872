import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { test, type TestContext } from 'node:test'
import { fileURLToPath } from 'node:url'
import mqtt from 'mqtt'
import mqttPacket from 'mqtt-packet'
import net from 'node:net'
import { once } from 'node:events'
import { defer, hooksFolder, publishCode, until } from '../helpers.js'

// The sandbox on the broker as operators run it: its own process, started by
// the CLI, ended (when it must be) by its watchdog.

const bin = fileURLToPath(new URL('../../../bin/hookmq.js', import.meta.url))
const examples = fileURLToPath(new URL('../../../hooks.example/', import.meta.url))

interface Proc {
  /** resolves with the exit code (null: killed by a signal) */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>
  output(): string
  /** the first log record matching, waiting for it */
  record(match: (r: Record<string, unknown>) => boolean, ms?: number): Promise<Record<string, unknown>>
}

function run(t: TestContext, cwd: string, args: string[] = []): Proc {
  const child = spawn(process.execPath, [bin, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let waiters: Array<() => void> = []
  const wake = (): void => {
    const w = waiters
    waiters = []
    for (const fn of w) fn()
  }
  child.stdout!.on('data', (b: Buffer) => {
    out += b.toString()
    wake()
  })
  child.stderr!.on('data', (b: Buffer) => {
    out += b.toString()
    wake()
  })
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((resolve) =>
    child.once('exit', (code, signal) => {
      resolve({ code, signal, at: performance.now() })
      wake()
    }),
  )
  defer(t, async () => {
    child.kill('SIGKILL')
    await exited
  })
  const records = (): Array<Record<string, unknown>> =>
    out
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>)
  return {
    exited,
    output: () => out,
    record(match, ms = 15000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no such log line within ${ms} ms:\n${out}`)), ms)
        const check = (): void => {
          const r = records().find(match)
          if (r) {
            clearTimeout(timer)
            resolve(r)
          } else if (child.exitCode !== null) {
            clearTimeout(timer)
            reject(new Error(`the broker exited (${child.exitCode}):\n${out}`))
          } else waiters.push(check)
        }
        check()
      })
    },
  }
}

async function listening(p: Proc): Promise<string> {
  return String((await p.record((r) => r.msg === 'listening' && r.listener === 'tcp')).url)
}

async function client(t: TestContext, url: string): Promise<mqtt.MqttClient> {
  const c = await mqtt.connectAsync(url, { protocolVersion: 5, reconnectPeriod: 0 })
  defer(t, () => c.endAsync(true).catch(() => {}))
  return c
}

const STUCK = `import { defineHook } from 'hookmq'
export default defineHook({
  name: 'stuck',
  timeoutMs: 300,
  authorizePublish({ topic }) {
    if (topic === 'loop') { let n = 0; while (true) n++ }
    return true
  },
})
`

test('inline: a synchronous loop in a call ends the process (exit 70) within blockedLoopMs + 1 s naming the hook and its line; the restarted broker runs that version quarantined in a worker; a new version lifts it', async (t) => {
  const dir = hooksFolder(t)
  const file = join(dir, 'stuck.ts')
  writeFileSync(file, STUCK)
  writeFileSync(join(dir, 'hookmq.config.json'), JSON.stringify({ port: 0, ws: false, hooksDir: dir, hooks: { isolation: 'inline', blockedLoopMs: 500 } }))
  const first = run(t, dir)
  const c = await client(t, await listening(first))
  assert.equal(await publishCode(c, 'fine'), 0x10)
  const sent = performance.now()
  c.publish('loop', 'x', { qos: 1 })
  const { code, at } = await first.exited
  assert.equal(code, 70)
  assert.ok(at - sent < 500 + 1000, `exited ${Math.round(at - sent)} ms after the call (blockedLoopMs 500)`)
  const fatal = await first.record((r) => r.level === 60)
  assert.equal(fatal.hook, 'stuck')
  assert.match(String(fatal.at), new RegExp(`stuck\\.ts:6:\\d+$`))
  assert.match(String(fatal.msg), /blocked the event loop/)
  assert.ok(existsSync(join(dir, '.hookmq', 'quarantine.json')))

  const second = run(t, dir)
  const warned = await second.record((r) => typeof r.msg === 'string' && r.msg.startsWith('hook quarantined'))
  assert.match(String(warned.at), /stuck\.ts:6:/)
  const c2 = await client(t, await listening(second))
  const t0 = performance.now()
  assert.equal(await publishCode(c2, 'loop'), 0x87) // its worker is stuck: the deadline answers
  assert.ok(performance.now() - t0 < 300 + 1000)
  await second.record((r) => r.msg === 'hook worker restarted')
  assert.equal(await publishCode(c2, 'fine'), 0x10) // and the broker (with a new worker) serves
  appendFileSync(file, '// fixed\n')
  await second.record((r) => r.msg === 'hook reloaded' && r.isolation === 'inline')
  assert.equal(JSON.parse(readFileSync(join(dir, '.hookmq', 'quarantine.json'), 'utf8'))['stuck.ts'], undefined)
})

test('inline: a call allocating in a loop ends the process (exit 70) as soon as it has grown the process by 512 MiB, long before blockedLoopMs and before V8 would abort it; that version is quarantined', async (t) => {
  const dir = hooksFolder(t)
  const file = join(dir, 'hoard.ts')
  // one array pushed in a loop: past V8's largest table (about 1 GiB, about a second) a fatal error would end the process with no quarantine
  writeFileSync(
    file,
    `import { defineHook } from 'hookmq'
export default defineHook({
  name: 'hoard',
  authorizePublish({ topic }) {
    if (topic === 'grow') { const a: number[] = []; while (true) a.push(1) }
    return true
  },
})
`,
  )
  writeFileSync(join(dir, 'hookmq.config.json'), JSON.stringify({ port: 0, ws: false, hooksDir: dir, hooks: { isolation: 'inline', blockedLoopMs: 60000 } }))
  const first = run(t, dir)
  const c = await client(t, await listening(first))
  assert.equal(await publishCode(c, 'fine'), 0x10)
  const sent = performance.now()
  c.publish('grow', 'x', { qos: 1 })
  const { code, at } = await first.exited
  assert.equal(code, 70)
  assert.ok(at - sent < 20000, `exited ${Math.round(at - sent)} ms after the call (blockedLoopMs 60 s)`)
  const fatal = await first.record((r) => r.level === 60)
  assert.equal(fatal.hook, 'hoard')
  assert.match(String(fatal.at), /hoard\.ts:5:\d+$/)
  assert.match(String(fatal.msg), /grew the process by \d+ MiB in \d+ ms of synchronous code/)
  const q = JSON.parse(readFileSync(join(dir, '.hookmq', 'quarantine.json'), 'utf8')) as Record<string, { reason: string }>
  assert.match(q['hoard.ts']!.reason, /grew the process/)
})

test('inline: a top level that loops only on the main thread (its check in a worker passed) ends the process (exit 70); that version is quarantined and the restarted broker serves with it in a worker', async (t) => {
  const dir = hooksFolder(t)
  writeFileSync(join(dir, 'good.ts'), `import { defineHook } from 'hookmq'\nexport default defineHook({ name: 'good', authorizePublish: () => undefined })\n`)
  writeFileSync(join(dir, 'hookmq.config.json'), JSON.stringify({ port: 0, ws: false, hooksDir: dir, hooks: { isolation: 'inline', blockedLoopMs: 500 } }))
  const first = run(t, dir)
  const c = await client(t, await listening(first))
  writeFileSync(
    join(dir, 'sly.ts'),
    `import { defineHook } from 'hookmq'
import { isMainThread } from 'node:worker_threads'
if (isMainThread) { let n = 0; while (true) n++ }
export default defineHook({ name: 'sly', authorizePublish: ({ topic }) => topic !== 'sly/no' })
`,
  )
  const { code } = await first.exited
  assert.equal(code, 70, first.output())
  assert.match(first.output(), /sly\.ts:3:/)
  const q = JSON.parse(readFileSync(join(dir, '.hookmq', 'quarantine.json'), 'utf8')) as Record<string, unknown>
  assert.ok(q['sly.ts'], JSON.stringify(q))
  assert.equal(q['good.ts'], undefined)
  void c
  const second = run(t, dir)
  const warned = await second.record((r) => typeof r.msg === 'string' && r.msg.startsWith('hook quarantined'))
  assert.equal(warned.hook, 'sly')
  const c2 = await client(t, await listening(second))
  assert.equal(await publishCode(c2, 'sly/yes'), 0x10)
  assert.equal(await publishCode(c2, 'sly/no'), 0x87) // the quarantined version, in a worker, decides
})

test('inline: a long turn of the event loop made of many short hook calls (a flood read in one go) is busy, not blocked: the watchdog lets the broker live', async (t) => {
  const dir = hooksFolder(t)
  writeFileSync(
    join(dir, 'busy.ts'),
    `import { defineHook } from 'hookmq'
export default defineHook({
  name: 'busy',
  authorizePublish() { const end = performance.now() + 3; while (performance.now() < end) {} return true },
})
`,
  )
  writeFileSync(join(dir, 'hookmq.config.json'), JSON.stringify({ port: 0, ws: false, hooksDir: dir, hooks: { isolation: 'inline', blockedLoopMs: 200 } }))
  const p = run(t, dir)
  const url = new URL(await listening(p))
  let ended = false
  void p.exited.then(() => {
    ended = true
  })
  // 200 PUBLISH packets in one write: the broker reads them in one turn of its loop, ~0.6 s of 3 ms calls (3x blockedLoopMs)
  const socket = net.connect(Number(url.port), url.hostname)
  defer(t, () => socket.destroy())
  await once(socket, 'connect')
  const flood = [mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: 'flood', keepalive: 60 })]
  for (let i = 0; i < 200; i++)
    flood.push(mqttPacket.generate({ cmd: 'publish', topic: 'flood', payload: Buffer.from('x'), qos: 0, retain: false, dup: false }))
  socket.write(Buffer.concat(flood))
  const c = await client(t, url.href)
  assert.equal(await publishCode(c, 'after'), 0x10) // answered after the flood's turn
  await new Promise((r) => setTimeout(r, 300))
  assert.equal(ended, false, p.output())
  assert.doesNotMatch(p.output(), /blocked the event loop|exiting for a restart/)
})

test('inline: a hook blocked in native code (which not even the inspector interrupts) is still named and quarantined before the process is killed', async (t) => {
  const dir = hooksFolder(t)
  writeFileSync(
    join(dir, 'native.ts'),
    `import { defineHook } from 'hookmq'
import { execSync } from 'node:child_process'
export default defineHook({
  name: 'native',
  authorizePublish({ topic }) {
    if (topic === 'native') execSync('sleep 6')
    return true
  },
})
`,
  )
  writeFileSync(join(dir, 'hookmq.config.json'), JSON.stringify({ port: 0, ws: false, hooksDir: dir, hooks: { isolation: 'inline', blockedLoopMs: 500 } }))
  const first = run(t, dir)
  const c = await client(t, await listening(first))
  c.publish('native', 'x', { qos: 1 })
  const { signal } = await first.exited
  assert.equal(signal, 'SIGKILL')
  assert.match(first.output(), /hookmq watchdog: hook "native" .*native\.ts.* blocked for \d+ ms and could not be interrupted/)
  const q = JSON.parse(readFileSync(join(dir, '.hookmq', 'quarantine.json'), 'utf8')) as Record<string, { reason: string }>
  assert.match(q['native.ts']!.reason, /native code/)
  const second = run(t, dir)
  await second.record((r) => typeof r.msg === 'string' && r.msg.startsWith('hook quarantined'))
})

test("inline: rejections nobody handles in hook code are the hook's errors, not the end of the process", async (t) => {
  const dir = hooksFolder(t)
  writeFileSync(
    join(dir, 'stray.ts'),
    `import { defineHook } from 'hookmq'
export default defineHook({
  name: 'stray',
  authorizePublish({ topic }) {
    if (topic === 'storm') for (let i = 0; i < 100; i++) void Promise.reject(new Error('stray ' + i))
    if (topic === 'timer') setTimeout(() => { throw new Error('thrown from a timer') }, 10)
    if (topic === 'exit') setTimeout(() => process.exit(3), 10)
    if (topic === 'null') void Promise.reject(null)
    return true
  },
})
`,
  )
  writeFileSync(
    join(dir, 'hookmq.config.json'),
    JSON.stringify({ port: 0, ws: false, hooksDir: dir, hooks: { isolation: 'inline' }, sys: { intervalMs: 200 } }),
  )
  const p = run(t, dir)
  const c = await client(t, await listening(p))
  let ended = false
  void p.exited.then(() => {
    ended = true
  })
  // a throw from a hook's timer is that hook's error
  assert.equal(await publishCode(c, 'timer'), 0x10)
  const uncaught = await p.record((r) => r.method === 'uncaught exception')
  assert.match(String(uncaught.at), /stray\.ts:6:/)
  // a rejection with nothing to blame (no stack) is logged; the process goes on
  assert.equal(await publishCode(c, 'null'), 0x10)
  await p.record((r) => r.msg === 'a promise was rejected and nobody handled it')
  // process.exit from a hook's timer throws there: an uncaught error of the hook, not an exit
  assert.equal(await publishCode(c, 'exit'), 0x10)
  await new Promise((r) => setTimeout(r, 300))
  assert.equal(ended, false, p.output())
  assert.equal(await publishCode(c, 'fine'), 0x10)
  await new Promise((r) => setTimeout(r, 1100)) // (a hook's failures are logged at most once a second)
  for (let i = 0; i < 20; i++) await publishCode(c, 'storm')
  const logged = await p.record((r) => r.method === 'unhandled rejection')
  assert.match(String(logged.at), /stray\.ts:5:/)
  await p.record((r) => r.breaker === 'tripped')
  assert.equal(await publishCode(c, 'other/topic'), 0x87) // tripped: decisions deny
  const sub = await client(t, String((await p.record((r) => r.msg === 'listening')).url))
  const states: string[] = []
  sub.on('message', (_t, m) => states.push(m.toString()))
  await sub.subscribeAsync('$SYS/broker/hooks/stray/state')
  await until(() => states.includes('tripped'), 5000, '$SYS to say tripped') // (the retained one may be older)
})

test("inline: a throw from a replaced version's timer is logged as that version's error, not the end of the process nor the new version's failure", async (t) => {
  const dir = hooksFolder(t)
  const file = join(dir, 'late.ts')
  const version = (n: number): string => `import { defineHook } from 'hookmq'
export default defineHook({
  name: 'late',
  authorizePublish({ topic }) {
    if (topic === 'late') setTimeout(() => { throw new Error('from version ${n}') }, 1500)
    return true
  },
})
`
  writeFileSync(file, version(1))
  writeFileSync(join(dir, 'hookmq.config.json'), JSON.stringify({ port: 0, ws: false, hooksDir: dir, hooks: { isolation: 'inline' } }))
  const p = run(t, dir)
  const c = await client(t, await listening(p))
  let ended = false
  void p.exited.then(() => {
    ended = true
  })
  assert.equal(await publishCode(c, 'late'), 0x10) // version 1 leaves a timer behind
  writeFileSync(file, version(2))
  await p.record((r) => r.msg === 'hook reloaded')
  const logged = await p.record((r) => typeof r.msg === 'string' && r.msg.includes('not serving'))
  assert.match(JSON.stringify(logged.err), /from version 1/)
  assert.equal(ended, false, p.output())
  assert.equal(await publishCode(c, 'fine'), 0x10)
  assert.equal(p.output().includes('"breaker":"tripped"'), false)
})

test('start-up fails closed: hooks.example/acl.ts with a bad config value stops the CLI with exit code 1 and one line naming the file and the key', async (t) => {
  const dir = hooksFolder(t)
  mkdirSync(join(dir, 'hooks'))
  writeFileSync(join(dir, 'hooks', 'acl.ts'), readFileSync(join(examples, 'acl.ts')))
  writeFileSync(
    join(dir, 'hookmq.config.json'),
    JSON.stringify({ port: 0, ws: false, hooks: { acl: { rules: [{ user: '*', allow: 'both', topics: 'public/#' }] } } }),
  )
  const p = run(t, dir)
  const { code } = await p.exited
  assert.equal(code, 1)
  const lines = p
    .output()
    .split('\n')
    .filter((l) => l.startsWith('hookmq:'))
  assert.equal(lines.length, 1, p.output())
  assert.match(lines[0]!, /hook load failed: .*hooks\/acl\.ts: config hooks\.acl\.rules\.0/)
  assert.doesNotMatch(p.output(), /"msg":"listening"/) // it never served
})

test('hookmq check exits 1, without hanging, on a top-level loop, a process.exit and a throw; 0 on good files', async (t) => {
  const dir = hooksFolder(t)
  writeFileSync(join(dir, 'good.ts'), `import { defineHook } from 'hookmq'\nexport default defineHook({ name: 'good', authorizePublish: () => true })\n`)
  const good = run(t, dir, ['check', dir])
  assert.equal((await good.exited).code, 0, good.output())
  writeFileSync(join(dir, 'loop.ts'), `import { defineHook } from 'hookmq'\nwhile (true) {}\nexport default defineHook({ name: 'loop' })\n`)
  writeFileSync(join(dir, 'exit.ts'), `import { defineHook } from 'hookmq'\nprocess.exit(0)\nexport default defineHook({ name: 'exit' })\n`)
  writeFileSync(join(dir, 'throw.ts'), `import { defineHook } from 'hookmq'\nthrow new Error('no config file')\nexport default defineHook({ name: 'throw' })\n`)
  writeFileSync(join(dir, 'hookmq.config.json'), JSON.stringify({ hooks: { preflightMs: 1000 } }))
  const t0 = performance.now()
  const bad = run(t, dir, ['check', dir])
  const { code } = await bad.exited
  assert.equal(code, 1)
  assert.ok(performance.now() - t0 < 15000)
  const out = bad.output()
  assert.match(out, /error .*loop\.ts: its top level did not finish within 1000 ms/)
  assert.match(out, /error .*exit\.ts:2:\d+: process\.exit\(\) is not available to hooks/)
  assert.match(out, /error .*throw\.ts:2:\d+: no config file/)
  assert.match(out, /ok {4}.*good\.ts \(good\)/)
  assert.match(out, /1 hook\(s\) ok, 3 failed/)
})
