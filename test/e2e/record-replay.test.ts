import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import mqtt from 'mqtt'
import type { DecisionRecord } from '../../plugins/host/record.js'
import { connect, hooksFolder, pingRoundTrip, publishCode, startBroker, until, urlOf } from '../helpers.js'

// hooks.record on real traffic, then `hookmq replay` (the real CLI) over what it wrote.

const bin = fileURLToPath(new URL('../../../bin/hookmq.js', import.meta.url))
const PASSWORD = 'hunter2-not-in-the-file'

const AUTH = `import { defineHook } from 'hookmq'
export default defineHook({
  name: 'auth',
  authenticate({ username, password }) {
    if (username === undefined) return undefined
    return password?.toString() === '${PASSWORD}' ? { allow: true, user: { tier: 'gold' } } : false
  },
})
`
const acl = (denied: string[]): string => `import { defineHook } from 'hookmq'
export default defineHook({
  name: 'acl',
  authorizePublish({ topic }) {
    return ${JSON.stringify(denied)}.includes(topic) ? { deny: 'not this topic' } : true
  },
  authorizeSubscribe({ filter }) {
    return filter.startsWith('secret/') ? { deny: 'no secrets' } : true
  },
})
`

function run(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (b: Buffer) => (stdout += b.toString()))
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()))
  return new Promise((resolve) => child.on('exit', (code) => resolve({ code, stdout, stderr })))
}

function readRecords(file: string): DecisionRecord[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as DecisionRecord)
}

test('hooks.record writes decisions and outcomes as JSONL without passwords; hookmq replay reports what another folder would change and gates CI with --fail-on-diff', async (t) => {
  const dir = hooksFolder(t)
  writeFileSync(join(dir, 'auth.ts'), AUTH)
  writeFileSync(join(dir, 'acl.ts'), acl(['secret/1']))
  const file = join(dir, '.records', 'decisions.jsonl') // (a dot-folder: not watched)
  const broker = await startBroker(t, { hooksDir: dir, allowAnonymous: true, hooks: { record: { file, sample: 1, payloadBytes: 3 } } })
  const c = await connect(t, broker, { protocolVersion: 5, clientId: 'c1', username: 'alice', password: PASSWORD })
  const refused = mqtt.connect(urlOf(broker), { protocolVersion: 5, clientId: 'c2', username: 'mallory', password: PASSWORD + 'x', reconnectPeriod: 0 })
  await new Promise<void>((resolve) => refused.once('close', () => resolve()))
  refused.end(true)
  assert.equal(await publishCode(c, 'a/1', 'hello'), 0x10)
  assert.equal(await publishCode(c, 'secret/1'), 0x87)
  await new Promise((r) => c.subscribe('a/#', { qos: 1 }, r))
  await new Promise((r) => c.subscribe('secret/#', { qos: 1 }, r))
  await until(() => existsSync(file) && readRecords(file).length === 6, 5000, 'six records in the file')
  const text = readFileSync(file, 'utf8')
  assert.ok(!text.includes(PASSWORD) && !text.includes(Buffer.from(PASSWORD).toString('base64')), 'no password in the record')
  assert.ok(!text.includes('gold'), 'client.user is not recorded unless asked')
  const records = readRecords(file)
  assert.deepEqual(
    records.map((r) => [r.kind, r.client.id, r.topic ?? r.filter ?? null, r.outcome.decision, r.outcome.hook]),
    [
      ['authenticate', 'c1', null, 'allow', 'auth'],
      ['authenticate', 'c2', null, 'deny', 'auth'],
      ['publish', 'c1', 'a/1', 'allow', 'acl'],
      ['publish', 'c1', 'secret/1', 'deny', 'acl'],
      ['subscribe', 'c1', 'a/#', 'allow', 'acl'],
      ['subscribe', 'c1', 'secret/#', 'deny', 'acl'],
    ],
  )
  const [login, badLogin, hello] = records
  assert.equal(login!.hasPassword, true)
  assert.equal(badLogin!.outcome.reasonCode, 0x86)
  assert.equal(hello!.payload, Buffer.from('hel').toString('base64')) // payloadBytes: 3
  assert.equal(hello!.payloadSize, 5)
  assert.equal(hello!.outcome.hookVersion, 1)
  assert.equal(records[3]!.outcome.reason, 'not this topic')
  assert.equal(broker.hookHost.recording()!.written, 6)

  // the same folder changes nothing (the logins with a password are skipped: it was not recorded)
  const same = await run(['replay', dir, file, '--fail-on-diff'])
  assert.equal(same.code, 0, same.stdout + same.stderr)
  assert.match(same.stdout, /^4 decision\(s\) replayed: 0 would change \(allow -> deny 0, deny -> allow 0, other 0\); 2 skipped/m)
  // an edited ACL: a/1 now denied
  const edited = hooksFolder(t)
  writeFileSync(join(edited, 'auth.ts'), AUTH)
  writeFileSync(join(edited, 'acl.ts'), acl(['secret/1', 'a/1']))
  const diff = await run(['replay', edited, file, '--fail-on-diff'])
  assert.equal(diff.code, 1, diff.stdout + diff.stderr)
  const lines = diff.stdout.trim().split('\n')
  assert.deepEqual(lines, [
    'publish      client c1 (alice) topic a/1: allow (acl v1) -> deny 0x87 not this topic (acl v1)',
    "4 decision(s) replayed: 1 would change (allow -> deny 1, deny -> allow 0, other 0); 2 skipped (a login's password is not recorded, or a kind not asked for)",
  ])
  assert.equal((await run(['replay', edited, file])).code, 0) // without --fail-on-diff: a report
  const subscribes = await run(['replay', edited, file, '--kinds', 'subscribe', '--fail-on-diff'])
  assert.equal(subscribes.code, 0, subscribes.stdout)
  // a folder that does not load is an error, not an empty replay
  const broken = hooksFolder(t)
  writeFileSync(join(broken, 'acl.ts'), 'export default {')
  const failed = await run(['replay', broken, file])
  assert.equal(failed.code, 1)
  assert.match(failed.stdout, /^error .*acl\.ts:1:/m)
})

test('hooks.record samples its share of the decisions, and rotates the file at maxBytes', async (t) => {
  const dir = hooksFolder(t)
  writeFileSync(join(dir, 'acl.ts'), acl([]))
  const records = join(dir, '.records')
  mkdirSync(records)
  const sampled = join(records, 'sampled.jsonl')
  const broker = await startBroker(t, { hooksDir: dir, hooks: { isolation: 'inline', record: { file: sampled, sample: 0.25 } } })
  const c = await connect(t, broker, { protocolVersion: 5 })
  for (let i = 0; i < 200; i++) c.publish(`s/${i}`, 'x', { qos: 0 })
  await pingRoundTrip(c) // (inline: each decision was made, and recorded or not, as its PUBLISH was read)
  const written = broker.hookHost.recording()!.written
  assert.ok(written >= 20 && written <= 85, `about a quarter of 201 decisions: ${written}`)
  await until(() => existsSync(sampled) && readRecords(sampled).length === written, 5000, 'the records on disk')

  const rotating = join(records, 'rotating.jsonl')
  const small = await startBroker(t, { hooksDir: dir, hooks: { isolation: 'inline', record: { file: rotating, sample: 1, maxBytes: 1024 } } })
  const d = await connect(t, small, { protocolVersion: 5 })
  for (let i = 0; i < 30; i++) d.publish(`r/${i}`, 'x', { qos: 0 })
  await pingRoundTrip(d)
  const status = small.hookHost.recording()!
  assert.equal(status.written, 31)
  assert.ok(status.rotations >= 2, `rotated: ${status.rotations}`)
  await until(() => existsSync(rotating + '.1') && existsSync(rotating) && statSync(rotating).size === status.bytes, 5000, 'the rotated files on disk')
  assert.ok(statSync(rotating).size <= 1024)
  assert.ok(statSync(rotating + '.1').size <= 1024)
  const kept = [...readRecords(rotating + '.1'), ...readRecords(rotating)]
  assert.equal(kept.at(-1)!.topic, 'r/29') // the newest are kept
})
