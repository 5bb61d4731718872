import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { collect, connect, defer, startBroker, until } from '../helpers.js'

// `hookmq clients | kick | publish | retained | trace ...`: the real CLI (bin/hookmq.js) against a real broker's admin API.

const bin = fileURLToPath(new URL('../../../bin/hookmq.js', import.meta.url))
const TOKEN = 'cli-admin-token-0123456789'

function run(args: string[], cwd?: string): { done: Promise<{ code: number | null; stdout: string; stderr: string }>; kill(): void; stdout(): string } {
  const child = spawn(process.execPath, [bin, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, HOOKMQ_URL: '', HOOKMQ_TOKEN: '' } })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (b: Buffer) => (stdout += b.toString()))
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()))
  const done = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => child.on('exit', (code) => resolve({ code, stdout, stderr })))
  return { done, kill: () => child.kill('SIGINT'), stdout: () => stdout }
}

test('CLI over the admin API: clients as a table and as JSON, kick, publish, retained, with --url/--token or from the config file', async (t) => {
  const broker = await startBroker(t, { http: { port: 0, token: TOKEN }, sys: { enabled: false } })
  const url = broker.httpUrl()!
  const c = await connect(t, broker, { clientId: 'sensor-7', username: 'ops', protocolVersion: 5 })
  await connect(t, broker, { clientId: 'other' })
  const auth = ['--url', url, '--token', TOKEN]

  const table = await run(['clients', '--client', 'sensor', ...auth]).done
  assert.equal(table.code, 0, table.stderr)
  const lines = table.stdout.trim().split('\n')
  assert.match(lines[0]!, /^CLIENT\s+USER\s+ADDRESS\s+NODE/)
  assert.match(lines[1]!, /^sensor-7\s+ops\s+127\.0\.0\.1\s+/)
  assert.equal(lines.at(-1), '1 of 1 client(s)')

  const json = await run(['clients', '--json', ...auth]).done
  assert.deepEqual(
    (JSON.parse(json.stdout) as { clients: Array<{ clientId: string }> }).clients.map((x) => x.clientId),
    ['other', 'sensor-7'],
  )

  const noToken = await run(['clients', '--url', url]).done
  assert.equal(noToken.code, 1)
  assert.match(noToken.stderr, /401: unauthorized/)

  // the address and token from a config file, as the broker reads it
  const dir = mkdtempSync(join(tmpdir(), 'hookmq-cli-'))
  defer(t, () => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(join(dir, 'hookmq.config.json'), JSON.stringify({ http: { port: Number(new URL(url).port), token: TOKEN } }))
  const fromConfig = await run(['clients', '--json'], dir).done
  assert.equal(fromConfig.code, 0, fromConfig.stderr)

  const subscriber = await connect(t, broker, { clientId: 'reader' })
  await subscriber.subscribeAsync('cli/#')
  const got = collect(subscriber)
  const pub = await run(['publish', 'cli/x', 'hi there', '--retain', ...auth]).done
  assert.equal(pub.code, 0, pub.stderr)
  assert.equal((await got.next()).payload.toString(), 'hi there')
  await until(async () => (await run(['retained', 'cli/#', ...auth]).done).stdout.includes('hi there'), 3000, 'the retained message listed')

  const disconnected = new Promise<number | undefined>((resolve) => c.once('disconnect', (p) => resolve(p.reasonCode)))
  const kick = await run(['kick', 'sensor-7', ...auth]).done
  assert.equal(kick.code, 0, kick.stderr)
  assert.match(kick.stdout, /kicked sensor-7/)
  assert.equal(await disconnected, 0x98)
  const again = await run(['kick', 'sensor-7', ...auth]).done
  assert.equal(again.code, 1)
  assert.match(again.stderr, /404: no client "sensor-7" is connected/)

  const help = await run(['kick', '--help']).done
  assert.match(help.stdout, /^usage: hookmq kick ID/)
})

test('CLI trace follows a client until interrupted, one line per packet', async (t) => {
  const broker = await startBroker(t, { http: { port: 0, token: TOKEN }, sys: { enabled: false } })
  const c = await connect(t, broker, { clientId: 'traced' })
  const tr = run(['trace', '--client', 'traced', '--url', broker.httpUrl()!, '--token', TOKEN])
  await until(() => broker.tracer.active, 5000, 'the trace to start')
  await c.publishAsync('a/b', 'xyz', { qos: 1 })
  await until(() => tr.stdout().includes('puback'), 5000, 'the trace lines')
  tr.kill()
  const { stdout } = await tr.done
  assert.match(stdout, /traced\s+-> publish\s+a\/b {2}qos 1 {2}id \d+ {2}3 B/)
  assert.match(stdout, /traced\s+<- puback/)
  await until(() => !broker.tracer.active, 2000, 'the trace to end')
})
