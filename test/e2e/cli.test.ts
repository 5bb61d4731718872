import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { copyFileSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import mqtt from 'mqtt'
import { freePort, publishCode } from '../helpers.js'

const bin = fileURLToPath(new URL('../../../bin/hookmq.js', import.meta.url))

function start(
  args: string[],
  cwd?: string,
): { done: Promise<{ code: number | null; stdout: string; stderr: string }>; child: ReturnType<typeof spawn>; stdout(): string } {
  const child = spawn(process.execPath, [bin, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout!.on('data', (b: Buffer) => {
    stdout += b.toString()
  })
  child.stderr!.on('data', (b: Buffer) => {
    stderr += b.toString()
  })
  const done = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => child.on('exit', (code) => resolve({ code, stdout, stderr })))
  return { done, child, stdout: () => stdout }
}

test('a bad CLI flag value gives one line and a non-zero exit', async () => {
  const { code, stderr } = await start(['--port', 'abc']).done
  assert.notEqual(code, 0)
  assert.equal(stderr.trim().split('\n').length, 1)
  assert.match(stderr, /--port "abc"/)
})

test('an unknown CLI flag gives one line and a non-zero exit', async () => {
  const { code, stderr } = await start(['--prot', '1']).done
  assert.notEqual(code, 0)
  assert.equal(stderr.trim().split('\n').length, 1)
  assert.match(stderr, /--prot/)
})

test('a bad config file value names the key and value on one line', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'hookmq-cli-'))
  writeFileSync(join(dir, 'hookmq.config.json'), JSON.stringify({ port: 0, limits: { maxInflightMessages: 0 } }))
  const { code, stderr } = await start([], dir).done
  assert.notEqual(code, 0)
  assert.equal(stderr.trim().split('\n').length, 1)
  assert.match(stderr, /limits\.maxInflightMessages = 0/)
})

test('an unknown config file key is named', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'hookmq-cli-'))
  writeFileSync(join(dir, 'bad.json'), JSON.stringify({ portt: 1 }))
  const { code, stderr } = await start(['--config', 'bad.json'], dir).done
  assert.notEqual(code, 0)
  assert.match(stderr, /unknown key "portt"/)
})

test('a hookmq.config.ts (defineConfig) is found, compiled and used; a broken one gives file:line on one line, a bad value names the key', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'hookmq-cli-'))
  writeFileSync(
    join(dir, 'hookmq.config.ts'),
    `import { defineConfig } from 'hookmq'
const port: number = 0
export default defineConfig({ port, ws: false, http: { port }, log: { level: 'info' } })
`,
  )
  const proc = start([], dir)
  t.after(() => proc.child.kill('SIGKILL'))
  let http: string | undefined
  while (http === undefined) {
    const exited = await Promise.race([new Promise<boolean>((resolve) => proc.child.stdout!.once('data', () => resolve(false))), proc.done.then(() => true)])
    if (exited) assert.fail(`the CLI exited: ${(await proc.done).stderr}`)
    http = /"url":"(http:\/\/[^"]+)"/.exec(proc.stdout())?.[1]
  }
  assert.equal((await fetch(http + '/live')).status, 200) // http came from the .ts file
  proc.child.kill('SIGTERM')
  assert.equal((await proc.done).code, 0)

  const broken = mkdtempSync(join(tmpdir(), 'hookmq-cli-'))
  writeFileSync(
    join(broken, 'hookmq.config.ts'),
    `import { defineConfig } from 'hookmq'\nexport default defineConfig({\n  port: 0,\n  ws: false\n  http: {},\n})\n`,
  )
  const bad = await start([], broken).done
  assert.equal(bad.code, 1)
  assert.equal(bad.stderr.trim().split('\n').length, 1)
  assert.match(bad.stderr, /hookmq\.config\.ts:5:\d+: /)

  const wrong = mkdtempSync(join(tmpdir(), 'hookmq-cli-'))
  writeFileSync(join(wrong, 'app.config.ts'), `export default { port: 0, ws: false, limits: { maxInflightMessages: 0 } }\n`)
  const invalid = await start(['--config', 'app.config.ts'], wrong).done
  assert.equal(invalid.code, 1)
  assert.match(invalid.stderr, /limits\.maxInflightMessages = 0/)
})

test('Redis unreachable at start-up: one line naming it (without the password), exit 1, nothing left running', async () => {
  const port = await freePort() // nothing listens there
  const { code, stderr } = await start(['--port', '0', '--no-ws', '--redis', `redis://user:secret@127.0.0.1:${port}`]).done
  assert.equal(code, 1)
  assert.match(stderr, new RegExp(`hookmq: start-up failed: Redis at redis://user:\\*\\*\\*@127\\.0\\.0\\.1:${port} is unreachable: .*ECONNREFUSED`))
  assert.doesNotMatch(stderr, /secret/)
})

test('a config error with a Redis URL prints it with the password masked (one line, no "secret")', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'hookmq-cli-'))
  writeFileSync(join(dir, 'hookmq.config.json'), JSON.stringify({ port: 0, ws: false, redis: 'redis://:secret@h' }))
  const { code, stderr } = await start([], dir).done
  assert.equal(code, 1)
  assert.equal(stderr.trim().split('\n').length, 1)
  assert.match(stderr, /config error: redis = "redis:\/\/:\*\*\*@h"/)
  assert.doesNotMatch(stderr, /secret/)
})

test('the CLI logs its listeners (and --http its endpoint), serves clients, and SIGTERM closes gracefully (v5: DISCONNECT 0x8B), exit 0', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'hookmq-cli-'))
  const proc = start(['--port', '0', '--no-ws', '--http', '0'], dir)
  t.after(() => proc.child.kill('SIGKILL'))
  let url = ''
  while (!url) {
    await new Promise<void>((resolve) => proc.child.stdout!.once('data', () => resolve()))
    url = /"url":"(mqtt:\/\/[^"]+)"/.exec(proc.stdout())?.[1] ?? ''
  }
  const http = /"url":"(http:\/\/[^"]+)"/.exec(proc.stdout())?.[1]
  assert.ok(http, 'the HTTP endpoint is logged')
  const health = await fetch(http + '/health')
  assert.equal(health.status, 200)
  assert.equal(((await health.json()) as { status: string }).status, 'ok')
  const client = await mqtt.connectAsync(url, { protocolVersion: 5, reconnectPeriod: 0 })
  const reason = new Promise<number | undefined>((resolve) => client.on('disconnect', (p) => resolve(p.reasonCode)))
  proc.child.kill('SIGTERM')
  assert.equal(await reason, 0x8b)
  const { code } = await proc.done
  assert.equal(code, 0)
  await client.endAsync(true)
})

test('hookmq passwd --stdin prints a hash that hooks.example/auth.ts accepts (and only that: the password is not echoed); each command has --help', async () => {
  const child = spawn(process.execPath, [bin, 'passwd', '--stdin'], { stdio: ['pipe', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (b: Buffer) => (stdout += b.toString()))
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()))
  child.stdin.end('correct horse\n')
  const code = await new Promise((resolve) => child.on('exit', resolve))
  assert.equal(code, 0, stderr)
  assert.ok(!stdout.includes('correct horse') && !stderr.includes('correct horse'))
  const line = stdout.trim()
  assert.match(line, /^scrypt:[0-9a-f]{32}:[0-9a-f]{64}$/)
  // what auth.ts does with it: scrypt the offered password with the salt, compare
  const [, salt, hash] = line.split(':')
  const { scryptSync } = await import('node:crypto')
  assert.equal(scryptSync('correct horse', Buffer.from(salt!, 'hex'), 32).toString('hex'), hash)
  assert.notEqual(scryptSync('wrong horse', Buffer.from(salt!, 'hex'), 32).toString('hex'), hash)
  for (const cmd of ['check', 'passwd', 'webhooks']) {
    const r = await start([cmd, '--help']).done
    assert.equal(r.code, 0)
    assert.match(r.stdout, new RegExp(`^usage: hookmq ${cmd}`))
  }
})

test('SIGHUP applies the config file again: a hook config change (acl, in its worker) takes effect without dropping a connected client; a port change is named; a bad file changes nothing', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'hookmq-hup-'))
  mkdirSync(join(dir, 'hooks'))
  copyFileSync(fileURLToPath(new URL('../../../hooks.example/acl.ts', import.meta.url)), join(dir, 'hooks', 'acl.ts'))
  const port = await freePort()
  const config = join(dir, 'hookmq.config.json')
  const write = (acl: string[], extra: object = {}): void =>
    writeFileSync(
      config,
      JSON.stringify({
        port,
        ws: false,
        warmup: false,
        log: { level: 'info' },
        hooks: { acl: { rules: [{ user: '*', allow: 'both', topics: acl }] } },
        ...extra,
      }),
    )
  write(['public/#'])
  const b = start(['--config', config], dir)
  t.after(() => b.child.kill('SIGKILL'))
  /** the log records after the `from`th, as JSON */
  const records = (): Array<Record<string, unknown>> =>
    b
      .stdout()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>)
  const next = async (from: number, match: (r: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> => {
    for (let i = 0; i < 400; i++) {
      const found = records().slice(from).find(match)
      if (found) return found
      await new Promise((r) => setTimeout(r, 25))
    }
    throw new Error(`no such log record; have:\n${b.stdout()}`)
  }
  await next(0, (r) => r.msg === 'listening')
  const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { reconnectPeriod: 0, protocolVersion: 5 })
  t.after(() => c.end(true))
  let closed = false
  c.on('close', () => {
    closed = true
  })
  const puback = (topic: string): Promise<number> => publishCode(c, topic)
  assert.equal(await puback('other/1'), 0x87)

  let from = records().length
  b.child.kill('SIGHUP')
  assert.equal((await next(from, (r) => /^config reloaded/.test(String(r.msg)))).msg, 'config reloaded: unchanged')

  from = records().length
  write(['public/#', 'other/#'])
  b.child.kill('SIGHUP')
  const applied = await next(from, (r) => r.msg === 'config reloaded')
  assert.deepEqual([applied.applied, applied.restartNeeded], [['hooks.acl'], []])
  assert.equal(await puback('other/1'), 0x10) // allowed (no subscribers): the same connection, the new rules
  assert.equal(closed, false)

  from = records().length
  const otherPort = await freePort()
  write(['public/#', 'other/#'], { port: otherPort })
  b.child.kill('SIGHUP')
  const restart = await next(from, (r) => r.msg === 'config reloaded')
  assert.equal(restart.level, 40) // warn
  assert.deepEqual(restart.restartNeeded, ['port'])

  from = records().length
  write(['public/#'], { limits: { maxConnections: 'many' } })
  b.child.kill('SIGHUP')
  assert.match(String((await next(from, (r) => /config reload refused/.test(String(r.msg)))).msg), /limits\.maxConnections/)
  assert.equal(await puback('other/1'), 0x10) // (the acl change in that file was not applied either)
  assert.equal(closed, false)
  assert.equal(b.child.exitCode, null)
})
