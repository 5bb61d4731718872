import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { test } from 'node:test'
import { configJsonSchema, configReference, parseConfig, parseConfigWith } from '../../core/config.js'
import { HookmqError } from '../../core/errors.js'
import { LIVE_LIMITS, RESTART_LIMITS } from '../../core/live-limits.js'
import { hookmqConfigSchema } from '../../plugins/config.js'

test('defaults: TCP 1883 and WebSocket 8083 on loopback', () => {
  const c = parseConfig({})
  assert.equal(c.host, '127.0.0.1')
  assert.equal(c.port, 1883)
  assert.deepEqual(c.ws, { port: 8083, path: '/mqtt' })
  assert.equal(c.limits.maxInflightMessages, 1000)
})

test('a bad value is named with key, value and reason on one line', () => {
  assert.throws(
    () => parseConfig({ limits: { maxPacketSize: -1 } }),
    (err: HookmqError) => {
      assert.equal(err.code, 'HOOKMQ_ERR_CONFIG_INVALID')
      assert.match(err.message, /^config error: limits\.maxPacketSize = -1: /)
      assert.ok(!err.message.includes('\n'))
      return true
    },
  )
})

test('an unknown key is refused by name', () => {
  assert.throws(() => parseConfig({ limits: { maxPacketSzie: 10 } }), /unknown key "limits\.maxPacketSzie"/)
  assert.throws(() => parseConfig({ prot: 1 }), /unknown key "prot"/)
})

test('http: off by default; {} opens it on 9883 (bound to host); bad keys and values are named', () => {
  assert.equal(parseConfigWith(hookmqConfigSchema, {}).http, false)
  assert.deepEqual(parseConfigWith(hookmqConfigSchema, { http: {} }).http, { port: 9883 })
  assert.throws(() => parseConfigWith(hookmqConfigSchema, { http: { prot: 1 } }), /unknown key "http\.prot"/)
  assert.throws(() => parseConfigWith(hookmqConfigSchema, { http: { port: 70000 } }), /config error: http\.port = 70000: /)
})

test('README config reference matches the schema', () => {
  const full = readFileSync(new URL('../../../README.md', import.meta.url), 'utf8')
  const readme = full.slice(full.indexOf('<!-- config:start -->'), full.indexOf('<!-- config:end -->'))
  assert.ok(readme.length > 0, 'README lacks the config reference markers')
  for (const row of configReference(hookmqConfigSchema)) {
    assert.ok(readme.includes(`| \`${row.key}\` |`), `README lacks config key ${row.key}`)
  }
  const documented = [...readme.matchAll(/^\| `([a-zA-Z.[\]]+)` \|/gm)].map((m) => m[1])
  const keys = new Set(configReference(hookmqConfigSchema).map((r) => r.key))
  for (const k of documented) assert.ok(keys.has(k!), `README documents unknown key ${k}`)
})

test("docs/hookmq.config.schema.json is the schema's JSON Schema (npm run docs writes it), and describes what parseConfig accepts", () => {
  const shipped = JSON.parse(readFileSync(new URL('../../../docs/hookmq.config.schema.json', import.meta.url), 'utf8')) as Record<string, unknown>
  const { title, ...rest } = shipped
  assert.equal(title, 'hookmq.config.json')
  assert.deepEqual(rest, JSON.parse(JSON.stringify(configJsonSchema(hookmqConfigSchema))), 'docs/hookmq.config.schema.json is stale: npm run docs')
  const props = (rest as { properties: Record<string, { default?: unknown }> }).properties
  assert.equal(props.port!.default, 1883)
  assert.ok('limits' in props && 'hooks' in props && 'redis' in props && 'webhooks' in props)
})

test('redis: a node timeout shorter than two heartbeats is refused by name', () => {
  assert.throws(
    () => parseConfigWith(hookmqConfigSchema, { redis: { heartbeatMs: 1000, nodeTimeoutMs: 1500 } }),
    /config error: redis\.nodeTimeoutMs = 1500: must be at least twice heartbeatMs/,
  )
  assert.equal(parseConfigWith(hookmqConfigSchema, { redis: { heartbeatMs: 1000, nodeTimeoutMs: 2000 } }).redis?.nodeTimeoutMs, 2000)
})

test('a config reload: every limit is decided, live or restart-only (a new limit must be placed in core/live-limits.ts)', () => {
  const keys = Object.keys(parseConfig({}).limits).concat('queuedMessageExpiry') // (optional: no default)
  for (const k of keys) assert.equal(Number(LIVE_LIMITS.has(k as never)) + Number(RESTART_LIMITS.has(k as never)), 1, `limits.${k}`)
  assert.equal(LIVE_LIMITS.size + RESTART_LIMITS.size, new Set(keys).size)
})
