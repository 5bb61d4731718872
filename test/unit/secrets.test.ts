import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { test } from 'node:test'
import { maskCredentials, parseConfigWith } from '../../core/index.js'
import { hookmqConfigSchema } from '../../plugins/config.js'

test('maskCredentials masks URL passwords (the user stays), token-only userinfo and password= values, and leaves the rest alone', () => {
  const cases: Array<[string, string]> = [
    ['redis://:secret@h', 'redis://:***@h'],
    ['Redis at rediss://app:s3cr3t@10.0.0.5:6380/2 is unreachable', 'Redis at rediss://app:***@10.0.0.5:6380/2 is unreachable'],
    ['"redis://:p@ss@h:1"', '"redis://:***@h:1"'], // an unencoded @ in the password
    ['https://ghp_token@github.com/x', 'https://***@github.com/x'],
    ['a redis://u:p@h and redis://:q@k', 'a redis://u:***@h and redis://:***@k'],
    ['https://h/x?user=a&password=hunter2&db=1', 'https://h/x?user=a&password=***&db=1'],
    ['token=abc secret=def', 'token=*** secret=***'],
    ['redis://127.0.0.1:6379/0', 'redis://127.0.0.1:6379/0'],
    ['mail alice@example.com about it', 'mail alice@example.com about it'],
  ]
  for (const [input, masked] of cases) assert.equal(maskCredentials(input), masked, input)
})

test('config errors never show a secret: URLs with passwords are masked (also when the value is cut short), secret keys show ***', () => {
  const error = (input: unknown): string => {
    try {
      parseConfigWith(hookmqConfigSchema, input)
    } catch (err) {
      return (err as Error).message
    }
    return assert.fail('no config error')
  }
  const cases: Array<[unknown, RegExp]> = [
    [{ redis: 'redis://:secret@h' }, /^config error: redis = "redis:\/\/:\*\*\*@h": /],
    [{ redis: { url: 'http://user:secret@h' } }, /^config error: redis\.url = "http:\/\/user:\*\*\*@h": a redis:\/\/ or rediss:\/\/ URL$/],
    [{ redis: { sentinels: `redis://:${'x'.repeat(60)}secret@h` } }, /^config error: redis\.sentinels = "redis:\/\/:\*\*\*@h": /],
    [{ webhooks: [{ name: 'w', url: 'ftp://u:secret@h' }] }, /^config error: webhooks\.0\.url = "ftp:\/\/u:\*\*\*@h": /],
    [{ http: { token: 'secret' } }, /^config error: http\.token = \*\*\*: at least 16 characters$/],
    [{ webhooks: [{ name: 'w', url: 'https://h', secret: 42 }] }, /^config error: webhooks\.0\.secret = \*\*\*: /],
  ]
  for (const [input, expected] of cases) {
    const message = error(input)
    assert.match(message, expected)
    assert.doesNotMatch(message, /secret@|:secret|"secret"|42/, message)
  }
})

test('http.token: required when the endpoint binds beyond loopback (its own host or the global one), optional on loopback', () => {
  assert.throws(
    () => parseConfigWith(hookmqConfigSchema, { host: '0.0.0.0', http: {} }),
    /^.*config error: http\.token = \(missing\): required when the HTTP endpoint binds beyond loopback \(0\.0\.0\.0\)$/,
  )
  assert.throws(() => parseConfigWith(hookmqConfigSchema, { http: { host: '10.1.2.3' } }), /http\.token = \(missing\): required .*\(10\.1\.2\.3\)/)
  assert.equal(parseConfigWith(hookmqConfigSchema, { host: '0.0.0.0', http: { host: '127.0.0.1' } }).host, '0.0.0.0')
  assert.equal(parseConfigWith(hookmqConfigSchema, { host: '0.0.0.0', http: { token: 't'.repeat(16) } }).http !== false, true)
  assert.equal(parseConfigWith(hookmqConfigSchema, { host: '0.0.0.0' }).http, false) // no endpoint, no token needed
})

test('log lines mask URL passwords in the message and in errors', () => {
  const logger = new URL('../../core/logger.js', import.meta.url).href
  const script = `import(${JSON.stringify(logger)}).then(({ createLogger }) => {
    const log = createLogger('info')
    log.error({ err: new Error('connect to redis://:secret@h failed') }, 'Redis at redis://app:secret@h is unreachable')
    log.warn({ err: 'rediss://:secret@k refused' }, 'as a string')
  })`
  const out = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' })
  const lines = out.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { msg: string; err: { message: string; stack: string } | string })
  assert.equal(lines.length, 2)
  assert.equal(lines[0]!.msg, 'Redis at redis://app:***@h is unreachable')
  assert.equal((lines[0]!.err as { message: string }).message, 'connect to redis://:***@h failed')
  assert.equal(lines[1]!.err, 'rediss://:***@k refused')
  assert.doesNotMatch(out.stdout, /secret/)
})

test('log lines for a human (log.format pretty) mask and redact as JSON lines do', () => {
  const logger = new URL('../../core/logger.js', import.meta.url).href
  const script = `import(${JSON.stringify(logger)}).then(({ createLogger }) => {
    const log = createLogger('info', 'pretty')
    log.error({ err: new Error('connect to redis://:secret@h failed'), password: 'hunter2' }, 'Redis at redis://app:secret@h is unreachable')
  })`
  const out = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' })
  assert.match(out.stdout, /ERROR \(hookmq\): Redis at redis:\/\/app:\*\*\*@h is unreachable/)
  assert.match(out.stdout, /connect to redis:\/\/:\*\*\*@h failed/)
  assert.match(out.stdout, /password: "\[redacted\]"/)
  assert.doesNotMatch(out.stdout, /secret|hunter2/)
})

test('a JSON logger does not load pino-pretty; a pretty one does', () => {
  const logger = new URL('../../core/logger.js', import.meta.url).href
  const loaded = (format: string): boolean => {
    const script = `import { createRequire } from 'node:module'
      const { createLogger } = await import(${JSON.stringify(logger)})
      createLogger('info', '${format}').info('x')
      process.stderr.write(String(Object.keys(createRequire(import.meta.url).cache).some((k) => k.includes('pino-pretty'))))`
    return spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' }).stderr === 'true'
  }
  assert.equal(loaded('json'), false)
  assert.equal(loaded('auto'), false) // (stdout is a pipe here)
  assert.equal(loaded('pretty'), true)
})
