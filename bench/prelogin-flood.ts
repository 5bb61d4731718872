import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import mqtt from 'mqtt'

// The pre-login flood of issue #12: SOCKETS sockets each send an unfinished
// CONNECT declaring 1 MiB (all of it but 16 bytes). Reports the broker process's
// RSS (peak and settled), how many flood sockets it closed, and bystander
// round-trip times during the flood.
//   node dist/bench/prelogin-flood.js [broker root] [limits as JSON]
// The broker root (a checkout with bin/ and dist/) defaults to this one.

const root = resolve(process.argv[2] ?? new URL('../..', import.meta.url).pathname)
const limits = JSON.parse(process.argv[3] ?? '{}') as Record<string, number>
const SOCKETS = Number(process.env.SOCKETS ?? 1000)
const MiB = 1024 * 1024

function rssOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m ? Number(m[1]) * 1024 : 0
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'hookmq-flood-'))
  writeFileSync(
    join(dir, 'hookmq.config.json'),
    JSON.stringify({ port: 0, ws: false, sys: { enabled: false }, hooksDir: './hooks', limits: { connectTimeoutMs: 60000, ...limits } }),
  )
  const child = spawn(process.execPath, [join(root, 'bin/hookmq.js')], { cwd: dir, stdio: ['ignore', 'pipe', 'inherit'] })
  const url = await new Promise<string>((ok) => {
    let out = ''
    child.stdout!.on('data', (b: Buffer) => {
      out += b.toString()
      const m = /"url":"(mqtt:\/\/[^"]+)"/.exec(out)
      if (m) ok(m[1]!)
    })
  })
  const port = Number(new URL(url).port)
  const sub = await mqtt.connectAsync(url)
  const pub = await mqtt.connectAsync(url)
  await sub.subscribeAsync('by/stander', { qos: 1 })
  const rtts: number[] = []
  const roundTrip = async (): Promise<void> => {
    const got = new Promise<void>((ok) => sub.once('message', () => ok()))
    const t0 = performance.now()
    await pub.publishAsync('by/stander', 'x', { qos: 1 })
    await got
    rtts.push(performance.now() - t0)
  }
  await roundTrip()
  const baseline = rssOf(child.pid!)
  // the flood comes from its own process, so its writes do not stall the bystanders' event loop here
  const flood = spawn(process.execPath, [new URL(import.meta.url).pathname, '--flood', String(port)], { stdio: ['ignore', 'pipe', 'inherit'] })
  let closed = 0
  flood.stdout!.on('data', (b: Buffer) => {
    closed = Number(b.toString().trim().split('\n').pop())
  })
  let peak = baseline
  const started = Date.now()
  while (Date.now() - started < 10000) {
    await roundTrip()
    peak = Math.max(peak, rssOf(child.pid!))
    await sleep(200)
  }
  const settled = rssOf(child.pid!)
  const sorted = [...rtts.slice(1)].sort((a, b) => a - b)
  console.log(
    JSON.stringify({
      root,
      limits,
      sockets: SOCKETS,
      rssBaselineMiB: Math.round(baseline / MiB),
      rssPeakMiB: Math.round(peak / MiB),
      rssAfter10sMiB: Math.round(settled / MiB),
      floodSocketsClosedByBroker: closed,
      bystanderRoundTripMs: { n: sorted.length, median: +sorted[sorted.length >> 1]!.toFixed(1), max: +sorted[sorted.length - 1]!.toFixed(1) },
    }),
  )
  flood.kill('SIGKILL')
  await sub.endAsync(true)
  await pub.endAsync(true)
  child.kill('SIGKILL')
}

/** The flood itself: prints how many of its sockets the broker has closed, as that changes. */
function flood(port: number): void {
  const partial = Buffer.concat([Buffer.from([0x10, 0x80, 0x80, 0x40]), Buffer.alloc(MiB - 16, 0x61)])
  let closed = 0
  for (let i = 0; i < SOCKETS; i++) {
    const s = net.connect(port, '127.0.0.1')
    s.on('error', () => {})
    s.on('close', () => console.log(++closed))
    s.resume()
    s.on('connect', () => s.write(partial))
  }
}

if (process.argv[2] === '--flood') flood(Number(process.argv[3]))
else await main()
