import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { test, type TestContext } from 'node:test'
import { fileURLToPath } from 'node:url'
import { loadHook } from '../../plugins/testing.js'
import { defer, hooksFolder, RawClient, startBroker } from '../helpers.js'

// Writing hooks (issue #16): hookmq init, check's type check, hookmq/testing and hookmq test, through the real CLI.

const root = fileURLToPath(new URL('../../../', import.meta.url))
const bin = join(root, 'bin/hookmq.js')
const tsc = join(root, 'node_modules/typescript/bin/tsc')
const examples = join(root, 'hooks.example')

interface Run {
  code: number | null
  stdout: string
  stderr: string
}

function run(args: string[], cwd?: string): Promise<Run> {
  const child = spawn(process.execPath, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (b: Buffer) => (stdout += b.toString()))
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()))
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })))
}

const hookmq = (args: string[], cwd?: string): Promise<Run> => run([bin, ...args], cwd)

/** A folder outside the repository (no node_modules above it), removed after the test. */
function away(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'hookmq-authoring-'))
  defer(t, () => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** Every node_modules folder at or above `dir`. */
function nodeModulesAbove(dir: string): string[] {
  const found: string[] = []
  for (let d = dir; ; d = dirname(d)) {
    if (existsSync(join(d, 'node_modules'))) found.push(join(d, 'node_modules'))
    if (dirname(d) === d) return found
  }
}

const TYPE_ERROR = `import { defineHook } from 'hookmq'

export default defineHook({
  name: 'typo',
  authorizePublish({ topic }) {
    const n: number = topic
    return n > 0
  },
})
`

test('hookmq init: a typed folder with nothing installed — tsc -p passes on it and finds a type error in a hook; a second init writes nothing and names what exists; --types writes .hookmq again', async (t) => {
  const base = away(t)
  const dir = join(base, 'hooks')
  const made = await hookmq(['init', dir], base)
  assert.equal(made.code, 0, made.stderr)
  assert.deepEqual(readdirSync(dir).sort(), ['.hookmq', 'own-topics.test.ts', 'own-topics.ts', 'tsconfig.json'])
  assert.deepEqual(nodeModulesAbove(dir), [])
  // the editor's view: the repository's TypeScript, the folder's tsconfig.json
  const clean = await run([tsc, '-p', dir])
  assert.equal(clean.code, 0, clean.stdout)
  // the hook's input types are real (not `any` from a module that did not resolve)
  writeFileSync(join(dir, 'typo.ts'), TYPE_ERROR)
  const typo = await run([tsc, '-p', dir])
  assert.notEqual(typo.code, 0)
  assert.match(typo.stdout, /typo\.ts\(6,11\): error TS2322: Type 'string' is not assignable to type 'number'/)
  rmSync(join(dir, 'typo.ts'))
  // its example test passes
  const tested = await hookmq(['test', dir], base)
  assert.equal(tested.code, 0, tested.stdout + tested.stderr)
  assert.match(tested.stdout, /# pass 2/)

  writeFileSync(join(dir, 'own-topics.ts'), '// mine\n')
  const again = await hookmq(['init', dir], base)
  assert.equal(again.code, 1)
  assert.match(again.stderr, /already has tsconfig\.json, own-topics\.ts, own-topics\.test\.ts, \.hookmq: nothing written/)
  assert.equal(readFileSync(join(dir, 'own-topics.ts'), 'utf8'), '// mine\n')

  rmSync(join(dir, '.hookmq/zod'), { recursive: true })
  const types = await hookmq(['init', '--types', dir], base)
  assert.equal(types.code, 0, types.stderr)
  assert.ok(existsSync(join(dir, '.hookmq/zod')))
  assert.equal(readFileSync(join(dir, 'own-topics.ts'), 'utf8'), '// mine\n')
})

test('hookmq check type-checks (a folder without tsconfig.json: hookmq declarations for hooks folders): `const n: number = topic` fails with file:line:column; a helper is checked too; a syntax error is said once', async (t) => {
  const dir = hooksFolder(t)
  writeFileSync(
    join(dir, 'good.ts'),
    `import { defineHook } from 'hookmq'\nexport default defineHook({ name: 'good', authorizePublish: ({ topic }) => topic.startsWith('a/') })\n`,
  )
  writeFileSync(join(dir, 'typo.ts'), TYPE_ERROR)
  writeFileSync(join(dir, '_helper.ts'), `export const port: number = 'mqtt'\n`)
  writeFileSync(join(dir, 'broken.ts'), `import { defineHook } from 'hookmq'\nexport default defineHook({ name: 'broken' \n`)
  const r = await hookmq(['check', dir])
  assert.equal(r.code, 1)
  assert.match(r.stdout, /^types {2}4 file\(s\) checked by TypeScript 5\.\d+\.\d+ in \d+\.\d s \(.*hook-types\/tsconfig\.json\): \d+ error\(s\)$/m)
  assert.match(r.stdout, new RegExp(`^error ${join(dir, 'typo.ts')}:6:11: Type 'string' is not assignable to type 'number'\\.$`, 'm'))
  assert.match(r.stdout, new RegExp(`^error ${join(dir, '_helper.ts')}:1:14: Type 'string' is not assignable to type 'number'\\.$`, 'm'))
  assert.match(r.stdout, new RegExp(`^ok {4}${join(dir, 'good.ts')} \\(good\\)$`, 'm'))
  assert.equal(r.stdout.split(join(dir, 'broken.ts')).length - 1, 1, r.stdout) // esbuild's error alone, not TypeScript's as well
  assert.match(r.stdout, /^1 hook\(s\) ok, 2 failed; 1 type error\(s\) in other files$/m)
})

test('hookmq check where no TypeScript is installed: says so, and still compiles and preflights', async (t) => {
  // an install of hookmq without typescript: its files copied, its dependencies linked
  const base = away(t)
  const pkg = join(base, 'node_modules/hookmq')
  for (const part of ['bin', 'dist/core', 'dist/plugins', 'dist/hook-types', 'package.json']) cpSync(join(root, part), join(pkg, part), { recursive: true })
  for (const name of readdirSync(join(root, 'node_modules'))) {
    if (name !== 'typescript' && !name.startsWith('.')) symlinkSync(join(root, 'node_modules', name), join(base, 'node_modules', name))
  }
  assert.deepEqual(nodeModulesAbove(base), [join(base, 'node_modules')])
  const dir = join(base, 'hooks')
  mkdirSync(dir)
  writeFileSync(join(dir, 'typo.ts'), TYPE_ERROR)
  const r = await run([join(pkg, 'bin/hookmq.js'), 'check', dir], base)
  assert.equal(r.code, 0, r.stdout + r.stderr)
  assert.match(r.stdout, /^types {2}not checked: TypeScript is not installed \(npm install --save-dev typescript/m)
  assert.match(r.stdout, /^ok {4}.*typo\.ts \(typo\)$/m)
  writeFileSync(join(dir, 'broken.ts'), `export default {`)
  assert.equal((await run([join(pkg, 'bin/hookmq.js'), 'check', dir], base)).code, 1)
})

test("hookmq test: hooks.example's tests pass; a failing test fails the run and says where in its .ts file; packages resolve from the folder; nothing is left behind", async (t) => {
  const shipped = await hookmq(['test', examples])
  assert.equal(shipped.code, 0, shipped.stdout + shipped.stderr)
  assert.match(shipped.stdout, /^# fail 0$/m)
  assert.match(shipped.stdout, /^ok \d+ - acl: /m)
  assert.deepEqual(
    readdirSync(examples).filter((f) => f.startsWith('.')),
    [],
  )

  const dir = away(t)
  mkdirSync(join(dir, 'node_modules/local-thing'), { recursive: true })
  writeFileSync(join(dir, 'node_modules/local-thing/index.js'), 'exports.answer = 42\n')
  writeFileSync(
    join(dir, 'deny.ts'),
    `import { defineHook } from 'hookmq'\nexport default defineHook({ name: 'deny', authorizePublish: () => ({ deny: 'never', reasonCode: 0x97 }) })\n`,
  )
  writeFileSync(
    join(dir, 'deny.test.ts'),
    `import assert from 'node:assert/strict'
import { test } from 'node:test'
import { loadHook } from 'hookmq/testing'
import { answer } from 'local-thing'

test('passes', async () => {
  const hook = await loadHook(new URL('./deny.ts', import.meta.url))
  assert.deepEqual(await hook.authorizePublish({ topic: 'a' }), { result: 'deny', reasonCode: 0x97, reason: 'never', hook: 'deny', hookVersion: 1 })
  assert.equal(answer, 42)
  await hook.close()
})

test('fails on purpose', async (t) => {
  const hook = await loadHook(new URL('./deny.ts', import.meta.url))
  t.after(() => hook.close())
  assert.equal((await hook.authorizePublish({ topic: 'a' })).result, 'allow')
})
`,
  )
  const r = await hookmq(['test', dir])
  assert.equal(r.code, 1, r.stdout + r.stderr)
  assert.match(r.stdout, /^ok 1 - passes$/m)
  assert.match(r.stdout, /^not ok 2 - fails on purpose$/m)
  assert.ok(r.stdout.includes(`${join(dir, 'deny.test.ts')}:16:10`), r.stdout) // the assertion's line, through the source map
  assert.deepEqual(readdirSync(dir).sort(), ['deny.test.ts', 'deny.ts', 'node_modules'])

  writeFileSync(join(dir, 'broken.test.ts'), `import { test } from 'node:test'\ntest('x', () => {\n`)
  const broken = await hookmq(['test', dir])
  assert.equal(broken.code, 1)
  assert.match(broken.stderr, new RegExp(`${join(dir, 'broken.test.ts')}:3:\\d+: `))
  for (const cmd of ['init', 'test']) {
    const help = await hookmq([cmd, '--help'])
    assert.equal(help.code, 0)
    assert.match(help.stdout, new RegExp(`^usage: hookmq ${cmd} \\[DIR\\]`))
  }
})

const PARITY = `import { defineHook } from 'hookmq'

export default defineHook({
  name: 'parity',
  authenticate({ username }) {
    if (username === 'nobody') return false
    if (username === 'banned') return { deny: 'banned', reasonCode: 0x8a }
    if (username === 'odd') return { deny: 5 }
    return { allow: true, user: { name: username } }
  },
  authorizePublish({ topic }) {
    if (topic === 'quota/x') return { deny: 'over quota', reasonCode: 0x97 }
    if (topic === 'weird/x') return { deny: 'not a PUBACK code', reasonCode: 0x9b }
    if (topic === 'bad/x') return 'yes'
    if (topic === 'throw/x') throw new Error('boom')
    if (topic.startsWith('open/')) return true
    return undefined
  },
  authorizeSubscribe({ filter }) {
    if (filter === 'low/#') return { qos: 0 }
    if (filter === 'secret/#') return { deny: 'no', reasonCode: 0x87 }
    return true
  },
  transform({ topic, payload }) {
    if (topic === 'upper/x') return { payload: payload.toString().toUpperCase() }
    if (topic === 'drop/x') return null
    if (topic === 'badtransform/x') return { topic: 'a/#' }
    return undefined
  },
})
`

/** A decision as one string: `allow`, `pass`, `deny 0x87`, `allow qos 0`. */
function said(d: { result: string; reasonCode?: number; qos?: number }): string {
  return d.result + (d.reasonCode !== undefined ? ` 0x${d.reasonCode.toString(16)}` : '') + (d.qos !== undefined ? ` qos ${d.qos}` : '')
}

test('loadHook answers what the broker decides: the same hook file served by a broker (worker isolation, MQTT 5 codes on the wire) and through hookmq/testing', async (t) => {
  const dir = hooksFolder(t)
  const file = join(dir, 'parity.ts')
  writeFileSync(file, PARITY)
  const broker = await startBroker(t, { hooksDir: dir })
  const hook = await loadHook(file)
  t.after(() => hook.close())

  const logins: string[] = []
  for (const username of ['alice', 'nobody', 'banned', 'odd']) {
    const d = await hook.authenticate({ clientId: `p-${username}`, username })
    logins.push(`${username}: ${said({ result: d.result, reasonCode: d.result === 'deny' ? d.reasonCode : undefined })}`)
    const ack = await (await RawClient.open(t, broker, 5)).connect({ clientId: `p-${username}`, username }, 5)
    assert.equal(ack.reasonCode, d.result === 'deny' ? d.reasonCode : 0, username)
  }
  assert.deepEqual(logins, ['alice: allow', 'nobody: deny 0x86', 'banned: deny 0x8a', 'odd: deny 0x87'])

  const raw = await RawClient.open(t, broker, 5)
  await raw.connect({ clientId: 'p-pub', username: 'alice' }, 5)
  const client = { id: 'p-pub', username: 'alice', user: { name: 'alice' } }
  const filters = ['#', 'low/#', 'secret/#']
  raw.send({ cmd: 'subscribe', messageId: 1, subscriptions: filters.map((topic) => ({ topic, qos: 1 as const })) }, 5)
  const granted = (await raw.expect('suback')).granted
  const subscribes = await Promise.all(filters.map((filter) => hook.authorizeSubscribe({ client, filter, qos: 1 })))
  assert.deepEqual(subscribes.map(said), ['allow', 'allow qos 0', 'deny 0x87'])
  assert.deepEqual(
    granted,
    subscribes.map((d) => (d.result === 'deny' ? d.reasonCode : ((d.result === 'allow' ? d.qos : undefined) ?? 1))),
  )

  let id = 10
  const publish = async (topic: string, payload = 'abc'): Promise<number | undefined> => {
    raw.send({ cmd: 'publish', topic, payload: Buffer.from(payload), qos: 1, retain: false, dup: false, messageId: ++id }, 5)
    return (await raw.expect('puback')).reasonCode ?? 0
  }
  const publishes: string[] = []
  for (const topic of ['open/x', 'plain/x', 'quota/x', 'weird/x', 'bad/x', 'throw/x']) {
    const d = await hook.authorizePublish({ client, topic, payload: 'abc', qos: 1 })
    publishes.push(`${topic}: ${said(d)}`)
    assert.equal(await publish(topic), d.result === 'deny' ? d.reasonCode : 0, topic)
    if (d.result !== 'deny') assert.equal((await raw.expect('publish')).topic, topic) // (its copy to '#')
  }
  assert.deepEqual(publishes, ['open/x: allow', 'plain/x: pass', 'quota/x: deny 0x97', 'weird/x: deny 0x87', 'bad/x: deny 0x87', 'throw/x: deny 0x87'])
  assert.deepEqual(
    hook.failures.map((f) => [f.method, f.code ?? f.message]),
    [
      ['authenticate', 'HOOKMQ_ERR_HOOK_INVALID_ANSWER'],
      ['authorizePublish', 'HOOKMQ_ERR_HOOK_INVALID_ANSWER'],
      ['authorizePublish', 'boom'],
    ],
  )
  assert.match(hook.failures[2]!.at!, new RegExp(`^${file}:15:\\d+$`))

  // transforms: what the subscriber gets is what loadHook answers (drop/x: nothing, then the next message)
  const upper = await hook.transform({ client, topic: 'upper/x', payload: 'abc', qos: 1 })
  assert.equal(upper?.payload.toString(), 'ABC')
  assert.equal(await publish('upper/x'), 0)
  assert.equal((await raw.expect('publish')).payload.toString(), upper!.payload.toString())
  assert.equal(await hook.transform({ client, topic: 'drop/x', payload: 'abc' }), null)
  await publish('drop/x')
  const kept = await hook.transform({ client, topic: 'badtransform/x', payload: 'keep' })
  assert.deepEqual([kept?.topic, kept?.payload.toString()], ['badtransform/x', 'keep']) // an invalid answer: the message as it was
  await publish('badtransform/x', 'keep')
  const next = await raw.expect('publish')
  assert.deepEqual([next.topic, next.payload.toString()], [kept!.topic, 'keep'])
})

const LIFE = `import { defineHook } from 'hookmq'
import { z } from 'zod'

export default defineHook({
  name: 'life',
  timeoutMs: 100,
  config: z.object({ greeting: z.string() }),
  async setup(ctx) {
    await ctx.publish({ topic: 'hello', payload: ctx.config.greeting })
    return () => ctx.log.info('torn down')
  },
  authorizePublish({ topic }) {
    if (topic === 'boom') throw new Error('boom')
    return new Promise(() => {}) // never answers
  },
  on: {
    published(message, client, { log }) {
      log.info({ topic: message.topic, payload: message.payload.toString(), by: client?.id }, 'seen')
    },
  },
})
`

test('loadHook: setup runs (its ctx.publish is listed), teardown on close; a deadline denies with HOOK_TIMEOUT; on.<event> runs with filled-in arguments; load failures name file:line; a method the hook lacks is a usage error', async (t) => {
  const dir = hooksFolder(t)
  const file = join(dir, 'life.ts')
  writeFileSync(file, LIFE)
  const hook = await loadHook(file, { config: { greeting: 'hi' } })
  assert.equal(hook.name, 'life')
  assert.deepEqual(hook.config, { greeting: 'hi' })
  assert.deepEqual(
    hook.published.map((m) => [m.topic, m.payload.toString()]),
    [['hello', 'hi']],
  )

  const started = Date.now()
  assert.deepEqual(await hook.authorizePublish({ topic: 'slow' }), { result: 'deny', reasonCode: 0x87, reason: 'not authorized', hook: 'life', hookVersion: 1 })
  assert.ok(Date.now() - started >= 90)
  assert.equal(hook.failures[0]?.code, 'HOOKMQ_ERR_HOOK_TIMEOUT')

  await hook.on.published({ topic: 'a/b', payload: 'x' }, { id: 'c1' })
  assert.ok(hook.logs.some((l) => l.msg === 'seen' && l.topic === 'a/b' && l.payload === 'x' && l.by === 'c1' && l.hook === 'life'))
  await assert.rejects(hook.authenticate({ username: 'x' }), { code: 'HOOKMQ_ERR_USAGE', message: 'hook "life" has no authenticate' })
  await assert.rejects(hook.on.clientConnected({}, { sessionPresent: false }), { code: 'HOOKMQ_ERR_USAGE' })

  await hook.close()
  assert.ok(hook.logs.some((l) => l.msg === 'torn down'))
  await assert.rejects(hook.authorizePublish({ topic: 'a' }), { code: 'HOOKMQ_ERR_USAGE', message: 'hook "life" is closed' })

  await assert.rejects(loadHook(file, { config: { greeting: 5 } }), {
    code: 'HOOKMQ_ERR_HOOK_LOAD_FAILED',
    message: new RegExp(`^${file}: config hooks\\.life\\.greeting: `),
  })
  writeFileSync(join(dir, 'broken.ts'), `import { defineHook } from 'hookmq'\nexport default defineHook({\n  name: 'broken',,\n})\n`)
  await assert.rejects(loadHook(join(dir, 'broken.ts')), { code: 'HOOKMQ_ERR_HOOK_LOAD_FAILED', message: new RegExp(`^${join(dir, 'broken.ts')}:3:\\d+: `) })
})

test('the package ships what a hooks folder points to: dist/hook-types whole, hookmq/testing, hooks.example and its tests', async () => {
  const pack = spawn('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: root, stdio: ['ignore', 'pipe', 'ignore'] })
  let out = ''
  pack.stdout.on('data', (b: Buffer) => (out += b.toString()))
  await new Promise((resolve) => pack.on('close', resolve))
  const shipped = new Set((JSON.parse(out) as Array<{ files: Array<{ path: string }> }>)[0]!.files.map((f) => f.path))
  const types = (readdirSync(join(root, 'dist/hook-types'), { recursive: true }) as string[])
    .map((f) => `dist/hook-types/${f}`)
    .filter((f) => statSync(join(root, f)).isFile())
  assert.ok(types.length > 200)
  assert.deepEqual(
    types.filter((f) => !shipped.has(f)),
    [],
  )
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { exports: Record<string, Record<string, string>> }
  for (const target of Object.values(pkg.exports['./testing']!)) assert.ok(shipped.has(target.replace(/^\.\//, '')), target)
  assert.equal((JSON.parse(readFileSync(join(examples, 'tsconfig.json'), 'utf8')) as { extends: string }).extends, '../dist/hook-types/tsconfig.json')
  for (const f of readdirSync(examples)) assert.ok(shipped.has(`hooks.example/${f}`), f)
})
