import assert from 'node:assert/strict'
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test, type TestContext } from 'node:test'
import { fileURLToPath } from 'node:url'
import type { MqttClient } from 'mqtt'
import { chromium, type Page } from 'playwright-core'
import { connect, defer, hooksFolder, once, startBroker, startSink, until, writeHook } from '../helpers.js'

// The dashboard (plugins/http/dashboard/) in a real headless browser: Debian's
// chromium driven by playwright-core, against a real broker, real MQTT.js
// clients and a real webhook sink. Screenshots go to a temporary folder, or to
// $DASHBOARD_SHOTS to be looked at.

const TOKEN = 'dashboard-token-0123456789'
const BUILT = fileURLToPath(new URL('../../plugins/http/dashboard/index.html', import.meta.url))

function chromiumPath(): string {
  const candidates = [process.env.CHROMIUM_PATH, '/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'].filter((p) => p !== undefined)
  const found = candidates.find((p) => existsSync(p))
  if (found === undefined) throw new Error(`no chromium found (tried ${candidates.join(', ')}): apt-get install chromium, or set CHROMIUM_PATH`)
  return found
}

/** A page of a fresh headless chromium at 1280×800, closed after the test; `problems` collects console errors and failed page scripts. */
async function openPage(t: TestContext): Promise<{ page: Page; problems: string[]; shot(name: string): Promise<void> }> {
  assert.ok(existsSync(BUILT), `${BUILT} is missing: run npm run build (it builds the dashboard)`)
  const browser = await chromium.launch({ executablePath: chromiumPath(), args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] })
  defer(t, () => browser.close())
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } })
  page.setDefaultTimeout(10000)
  const problems: string[] = []
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`))
  page.on('console', (msg) => {
    // the browser logs each refused request (401, 501) as a failed resource: the page's own answer to them is checked instead
    if (msg.type() === 'error' && !/Failed to load resource/.test(msg.text())) problems.push(`console: ${msg.text()}`)
  })
  const dir = process.env.DASHBOARD_SHOTS ?? mkdtempSync(join(tmpdir(), 'hookmq-shots-'))
  mkdirSync(dir, { recursive: true })
  if (process.env.DASHBOARD_SHOTS === undefined) defer(t, () => rmSync(dir, { recursive: true, force: true }))
  return { page, problems, shot: async (name) => void (await page.screenshot({ path: join(dir, `${name}.png`) })) }
}

/** The reason code of the DISCONNECT the client gets (MQTT 5), within 10 s. */
async function disconnectCode(c: MqttClient): Promise<number | undefined> {
  const [packet] = await once<[{ reasonCode?: number }]>(c, 'disconnect', 10000)
  return packet.reasonCode
}

test('dashboard: without the token it shows the unauthorized state and no data; the page is served with a strict CSP', async (t) => {
  const broker = await startBroker(t, { http: { port: 0, token: TOKEN }, sys: { enabled: false } })
  await connect(t, broker, { clientId: 'secret-client' })
  const base = broker.httpUrl()!
  const { page, problems, shot } = await openPage(t)
  const answers: Array<[string, number]> = []
  page.on('response', (r) => {
    if (new URL(r.url()).pathname.startsWith('/admin/')) answers.push([new URL(r.url()).pathname, r.status()])
  })

  const res = await page.goto(base + '/')
  const csp = res!.headers()['content-security-policy']
  assert.match(csp!, /default-src 'self'/)
  assert.match(csp!, /script-src 'self'(;|$)/)
  await page.getByRole('heading', { name: 'Unauthorized' }).waitFor()
  assert.match((await page.getByRole('alert').textContent())!, /needs a token/)
  assert.equal(await page.locator('body').getAttribute('data-state'), 'unauthorized')
  await shot('unauthorized')

  await page.getByLabel('admin token').fill('wrong-token-0123456789')
  await page.getByRole('button', { name: 'Open the dashboard' }).click()
  await page.getByRole('alert').filter({ hasText: 'The token was refused' }).waitFor()
  assert.equal(await page.evaluate('sessionStorage.getItem("hookmq.token")'), 'wrong-token-0123456789')

  const text = (await page.locator('body').textContent())!
  assert.doesNotMatch(text, /secret-client/)
  assert.equal(await page.locator('table, canvas').count(), 0)
  assert.deepEqual(answers, [
    ['/admin/stats', 401],
    ['/admin/stats', 401],
  ])
  assert.deepEqual(problems, [])
})

test('dashboard: with the token it shows live charts and a connected client, kicks one client (0x98) and bans another, replays a dead letter to the sink, disables, enables and reloads a hook and shows its error with file:line, browses and clears retained messages, traces a client', async (t) => {
  const sink = await startSink(t)
  let failing = true
  sink.respond = (_req, res) => void res.writeHead(failing ? 500 : 204).end()
  const dir = hooksFolder(t)
  const acl = join(dir, 'acl.ts')
  writeFileSync(
    acl,
    `import { defineHook } from 'hookmq'\nexport default defineHook({ name: 'acl', authorizePublish: ({ topic }) => (topic === 'dash/secret' ? { deny: 'no' } : undefined) })\n`,
  )
  const broker = await startBroker(t, {
    http: { port: 0, token: TOKEN },
    sys: { enabled: false },
    hooksDir: dir,
    webhooks: [
      { name: 'audit', url: sink.url, topics: ['dash/audit/#'], batch: { maxSize: 1, maxWaitMs: 0 }, retry: { maxAttempts: 1, minDelayMs: 1, maxDelayMs: 1 } },
    ],
  })
  const base = broker.httpUrl()!
  const kicked = await connect(t, broker, { clientId: 'dash-kick', username: 'kim', protocolVersion: 5 })
  await kicked.subscribeAsync('dash/#', { qos: 1 })
  const tracer = await connect(t, broker, { clientId: 'dash-tracer', protocolVersion: 5 })
  const banned = await connect(t, broker, { clientId: 'dash-ban', protocolVersion: 5 })
  await tracer.publishAsync('dash/audit/1', 'to the sink', { qos: 1 })
  await tracer.publishAsync('dash/retained/room', '{"temperature": 21.5}', { qos: 1, retain: true })

  const { page, problems, shot } = await openPage(t)
  await page.goto(base + '/')
  await page.getByLabel('admin token').fill(TOKEN)
  await page.getByRole('button', { name: 'Open the dashboard' }).click()
  await page.getByRole('tab', { name: 'Clients' }).waitFor()
  assert.equal(await page.locator('body').getAttribute('data-state'), 'live')

  // the charts sample /admin/stats: the connections chart reads 3 clients
  await page.getByRole('figure', { name: 'Connections chart' }).getByText('3', { exact: true }).waitFor()
  assert.equal(await page.locator('figure.chart canvas').count(), 5)

  // clients: the three connected, one's detail with its subscription
  const clients = page.getByRole('table', { name: 'clients' })
  await clients.getByRole('row', { name: /dash-kick/ }).waitFor()
  assert.equal(await clients.getByRole('row').count(), 4) // with the header row
  await clients.getByRole('link', { name: 'dash-kick' }).click()
  await page.getByRole('complementary', { name: 'client detail' }).getByText('dash/#').waitFor()
  await shot('clients')

  // kick: confirmed in a dialog; the MQTT 5 client gets DISCONNECT 0x98
  const code = disconnectCode(kicked)
  await page.getByRole('button', { name: 'Kick dash-kick' }).click()
  await page.getByRole('dialog').getByRole('button', { name: 'Kick' }).click()
  assert.equal(await code, 0x98)
  await clients.getByRole('row', { name: /dash-kick/ }).waitFor({ state: 'detached' })
  await page
    .getByRole('status')
    .getByText(/Kicked dash-kick/)
    .waitFor()

  // ban: from the client's row, in a dialog; the client is disconnected (0x98), the ban listed, then lifted
  const gone = disconnectCode(banned)
  await page.getByRole('button', { name: 'Ban dash-ban' }).click()
  const dialog = page.getByRole('dialog', { name: 'Ban' })
  assert.equal(await dialog.getByLabel('ban value').inputValue(), 'dash-ban')
  await dialog.getByLabel('Reason').fill('testing the dashboard')
  await dialog.getByRole('button', { name: 'Ban' }).click()
  assert.equal(await gone, 0x98)
  const bans = page.getByRole('table', { name: 'bans' })
  await bans.getByRole('row', { name: /client id.*dash-ban.*testing the dashboard/ }).waitFor()
  await clients.getByRole('row', { name: /dash-ban/ }).waitFor({ state: 'detached' })
  await shot('bans')
  await page.getByRole('button', { name: 'Lift ban dash-ban' }).click()
  await bans.getByText('No ban is in force.').waitFor()
  const left = await fetch(`${base}/admin/bans`, { headers: { authorization: `Bearer ${TOKEN}` } })
  assert.deepEqual(((await left.json()) as { bans: unknown[] }).bans, [])

  // webhooks: the failed delivery is a dead letter; Replay queues it again and the sink receives it
  await page.getByRole('tab', { name: 'Webhooks' }).click()
  const dead = page.getByRole('table', { name: 'dead letters' })
  await dead.getByRole('row', { name: /dash\/audit\/1/ }).waitFor()
  await page.getByRole('table', { name: 'webhooks' }).getByRole('row', { name: /audit/ }).waitFor()
  await shot('webhooks')
  failing = false
  await page.getByRole('button', { name: 'Replay dead letters of audit' }).click()
  await sink.waitForIds(1, 5000)
  assert.deepEqual(
    sink.requests.flatMap((r) => r.body.deliveries.map((d) => d.topic)),
    ['dash/audit/1'],
  )
  await dead.getByText('No dead letter.').waitFor()

  // hooks: disabled (its deny stops) and enabled again; a broken save shows as failed with file:line (version 1 still
  // serving), and Reload loads the file again
  await page.getByRole('tab', { name: 'Hooks', exact: true }).click()
  const hooks = page.getByRole('table', { name: 'hooks' })
  await hooks.getByRole('row', { name: /acl.*loaded.*v1/ }).waitFor()
  await assert.rejects(tracer.publishAsync('dash/secret', 'x', { qos: 1 }))
  await page.getByRole('button', { name: 'Disable acl' }).click()
  await page.getByRole('dialog').getByRole('button', { name: 'Disable' }).click()
  await hooks.getByRole('row', { name: /acl.*disabled.*v1/ }).waitFor()
  await tracer.publishAsync('dash/secret', 'x', { qos: 1 })
  await page.getByRole('button', { name: 'Enable acl' }).click()
  await hooks.getByRole('row', { name: /acl.*loaded.*v1/ }).waitFor()
  await assert.rejects(tracer.publishAsync('dash/secret', 'x', { qos: 1 }))
  const broken = await writeHook(
    broker,
    acl,
    `import { defineHook } from 'hookmq'\nexport default defineHook({\n  name: 'acl',\n  authorizePublish() { return true \n})\n`,
  )
  assert.equal(broken.kind, 'failed')
  await hooks
    .getByRole('row', { name: /acl.*failed.*v1/ })
    .getByText('acl.ts:5')
    .waitFor()
  await page.getByRole('button', { name: 'Reload acl' }).click()
  await page
    .getByRole('status')
    .getByText(/acl did not load: .*\(v1 still serving\)/)
    .waitFor()
  await shot('hooks')

  // retained: listed, read whole, cleared
  await page.getByRole('tab', { name: 'Retained' }).click()
  const retained = page.getByRole('table', { name: 'retained messages' })
  await retained.getByRole('row', { name: /dash\/retained\/room/ }).waitFor()
  await page.getByRole('button', { name: 'View dash/retained/room' }).click()
  await page.getByLabel('payload').getByText('{"temperature": 21.5}').waitFor()
  await shot('retained')
  await page.getByRole('complementary', { name: 'retained message' }).getByRole('button', { name: 'Clear dash/retained/room' }).click()
  await page.getByRole('dialog').getByRole('button', { name: 'Clear' }).click()
  await retained.getByText('No retained message matches.').waitFor()
  assert.deepEqual(await broker.stores.retained.match('dash/retained/room'), [])

  // trace: a client's publishes, in and out, and the hook's decisions on them (a deny in red)
  await page.getByRole('tab', { name: 'Trace' }).click()
  await page.getByLabel('trace target').fill('dash-tracer')
  await page.getByRole('button', { name: 'Start' }).click()
  await page.getByText(/Tracing client dash-tracer/).waitFor()
  await tracer.publishAsync('dash/traced', 'hello', { qos: 1 })
  await tracer.publishAsync('dash/secret', 'x', { qos: 1 }).catch(() => {})
  const events = page.getByRole('table', { name: 'trace events' })
  await events.getByRole('row', { name: /→ in.*dash-tracer.*publish.*dash\/traced/ }).waitFor()
  await events.getByRole('row', { name: /⚙ hook.*authorizePublish.*dash\/secret.*acl v1: deny/ }).waitFor()
  await shot('trace')
  await page.getByRole('button', { name: 'Stop' }).click()
  await until(() => !broker.tracer.active, 5000, 'the trace stream closed')

  assert.deepEqual(problems, [])
})
