// Cost curves (issue #14 item 2): how each broker's cost grows with the number of
// idle connections, subscriptions, retained messages and fan-out subscribers, hookmq
// beside Aedes and Mosquitto in the same run; a table per figure and an SVG per figure.
//
//   node dist/bench/curves.js [--quick] [--brokers=hookmq,aedes,mosquitto,hookmq@<dir>]
//     [--only=connections,subscriptions,retained,fanout] [--max=100000] [--out=bench-results]
//     [--cap=180] [--retained-qos=0|1]
//
// The brokers run pinned to core 0 (brokers.ts), the generator on core 1. The CLI
// re-executes itself once through `sh -c 'ulimit -n ...'` to raise its file limit
// (the brokers inherit it); connection counts beyond that limit are left out, said so.
import { execFileSync, spawn } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { basename, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads'
import {
  baselineDir,
  collectedRss,
  cpuSeconds,
  hasMosquitto,
  hookmqNodeFlags,
  rssBytes,
  startBroker,
  isHookmq,
  type BrokerName,
  type HookmqBenchOptions,
  type RunningBroker,
} from './brokers.js'
import { lineChart, short } from './plot.js'
import { median, quantile } from './stats.js'
import { CONNACK, Framer, PUBLISH, SUBACK, encode, pump, type OnPacket } from './wire.js'

export type CurveName = 'connections' | 'subscriptions' | 'retained' | 'fanout'
export const curveNames: CurveName[] = ['connections', 'subscriptions', 'retained', 'fanout']

export interface CostCurveOptions {
  quick?: boolean
  brokers?: BrokerName[]
  only?: CurveName[]
  /** sizes above this are left out */
  max?: number
  /** where the JSON, the tables (markdown) and the SVGs go; bench-results/ by default */
  outDir?: string
  /** seconds one step may take before it is reported as 'over N s' (and the broker's larger sizes skipped) */
  capSeconds?: number
  /** QoS of the `#` subscriber in the retained curve */
  retainedQos?: 0 | 1
  log?: (line: string) => void
}

export interface Metric {
  key: string
  label: string
  unit: string
  /** a cost per unit (per connection, per subscription...): flat or falling = linear or better; each step's ratio is printed */
  perUnit?: boolean
  /** a per-unit cost whose unit is not the x axis's (CPU per published message as subscriptions grow): ideally flat */
  flat?: boolean
  logY?: boolean
}

export interface Point {
  broker: string
  size: number
  values: Record<string, number>
  note?: string
}

export interface Curve {
  name: CurveName
  title: string
  xLabel: string
  metrics: Metric[]
  points: Point[]
  notes: string[]
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))
const now = (): number => performance.now()
/** a clock both threads share (the bystander runs in a worker) */
const wallNow = (): number => performance.timeOrigin + performance.now()

class OverCap extends Error {}

/** a pause for RSS and the broker to settle; short in --quick */
const settle = (c: { quick: boolean }, ms: number): Promise<void> => sleep(c.quick ? Math.min(ms, 200) : ms)

/** `p`, or an OverCap after `seconds` */
function capped<T>(p: Promise<T>, seconds: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const cap = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new OverCap(`over ${seconds} s (${what})`)), seconds * 1000)
  })
  return Promise.race([p, cap]).finally(() => clearTimeout(timer))
}

/**
 * Resolves when `count()` reaches `target`, or, once something arrived, nothing more
 * came for `quietMs` (then short of target). The time measured is the arrival
 * time of the last one (`last()`), so the polling adds nothing to it.
 */
async function arrivals(count: () => number, target: number, quietMs: number, last: () => number): Promise<void> {
  for (;;) {
    if (count() >= target) return
    if (count() > 0 && now() - last() > quietMs) return
    await sleep(count() > 0 ? 5 : 20)
  }
}

// ---------------------------------------------------------------------------
// clients: raw sockets, pre-encoded packets. Up to `unbound` sockets of a batch
// connect from 127.0.0.1 without binding first (the kernel picks a port unique for
// that broker's port: the broker's port is new each time, so what an earlier step
// left in TIME_WAIT is not in the way); beyond that, one source address
// (127.1.x.y, fresh per batch) per 10,000, as one address has only so many
// ephemeral ports. Binding to an address and port 0 costs the generator ~1 ms
// per socket once a few thousand ports are taken (the kernel searches the range
// for a free one), hence only beyond `unbound`. costCurves widens
// net.ipv4.ip_local_port_range for its run when it can: with 28k ports, connect()
// itself slowed to ~330 us of generator CPU per socket at 19k open (~110 us with 55k).

/** sockets per batch connecting without a bind: 70% of the ephemeral port range */
let unbound = 20000
let addressBlock = 0
class Sources {
  private readonly block = ++addressBlock
  at(i: number): string | undefined {
    if (i < unbound) return undefined
    const b = this.block
    return `127.${1 + Math.floor(b / 250)}.${(b % 250) + 1}.${Math.floor((i - unbound) / 10000) + 1}`
  }
}

const portRange = '/proc/sys/net/ipv4/ip_local_port_range'
/** set while costCurves has the range widened (the CLI's signal handler undoes it) */
let restorePorts: (() => void) | undefined
/** Widens the ephemeral port range to 10000-65535 if it is narrower and writable; answers how to undo it, and what it did. */
function widenPorts(): { undo(): void; note: string } {
  try {
    const old = readFileSync(portRange, 'utf8').trim()
    const [lo, hi] = old.split(/\s+/).map(Number) as [number, number]
    unbound = Math.floor((hi - lo + 1) * 0.7)
    if (lo <= 10000 && hi >= 65535) return { undo: () => {}, note: `ephemeral ports ${lo}-${hi}` }
    writeFileSync(portRange, `${Math.min(lo, 10000)} ${Math.max(hi, 65535)}`)
    unbound = Math.floor((Math.max(hi, 65535) - Math.min(lo, 10000) + 1) * 0.7)
    return { undo: () => writeFileSync(portRange, old.replace(/\s+/, ' ')), note: `ephemeral ports widened from ${lo}-${hi} to 10000-65535 for the run` }
  } catch (err) {
    return { undo: () => {}, note: `ephemeral port range left as it is (${(err as Error).message})` }
  }
}

const PINGREQ = Buffer.from([0xc0, 0])
const PINGRESP = 13

function open(port: number, clientId: string, localAddress: string | undefined, onPacket?: OnPacket): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1', localAddress })
    socket.setNoDelay(true)
    let connected = false
    const framer = new Framer((type, flags, buf, start, length) => {
      if (connected) onPacket?.(type, flags, buf, start, length)
      else if (type === CONNACK) {
        connected = true
        if (buf[start + 3] === 0) resolve(socket)
        else reject(new Error(`CONNACK return code ${buf[start + 3]}`))
      }
    })
    socket.on('data', (c: Buffer) => framer.push(c))
    socket.on('error', (err) => {
      if (!connected) reject(err)
    })
    socket.once('close', () => {
      if (!connected) reject(new Error('closed before CONNACK'))
    })
    // keep-alive 0: idle clients owe no PINGREQ
    socket.write(encode({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId, clean: true, keepalive: 0 }))
  })
}

/** `n` clients, at most `concurrency` connecting at once; `each` runs on each once connected (e.g. to subscribe). */
async function openMany(
  port: number,
  n: number,
  prefix: string,
  onPacket?: (i: number) => OnPacket,
  each?: (socket: net.Socket, i: number) => Promise<void>,
  concurrency = 100,
  sockets: net.Socket[] = [],
): Promise<net.Socket[]> {
  const src = new Sources()
  let next = 0
  await Promise.all(
    Array.from({ length: Math.min(concurrency, n) }, async () => {
      while (next < n) {
        const i = next++
        const s = await open(port, `${prefix}-${i}`, src.at(i), onPacket?.(i))
        sockets[i] = s
        if (each) await each(s, i)
      }
    }),
  )
  return sockets
}

function closeAll(sockets: Array<net.Socket | undefined>): void {
  for (const s of sockets) s?.destroy()
}

/** the return codes of a SUBACK: how many refused (0x80) */
function subackFailures(buf: Buffer, start: number, length: number): number {
  let i = start + 1
  while (buf[i]! & 0x80) i++
  i += 1 + 2 // end of remaining length, then the packet id
  let failed = 0
  for (; i < start + length; i++) if (buf[i] === 0x80) failed++
  return failed
}

function subscribePacket(messageId: number, filters: string[], qos: 0 | 1 = 0): Buffer {
  return encode({ cmd: 'subscribe', messageId, subscriptions: filters.map((topic) => ({ topic, qos })) })
}

/** writes `buf` in 64 KB pieces, honouring backpressure */
function writeAll(socket: net.Socket, buf: Buffer): Promise<void> {
  return new Promise((resolve) => {
    let at = 0
    const write = (): void => {
      while (at < buf.length) {
        const piece = buf.subarray(at, at + 65536)
        at += piece.length
        if (!socket.write(piece)) {
          socket.once('drain', write)
          return
        }
      }
      resolve()
    }
    write()
  })
}

// ---------------------------------------------------------------------------
// the bystander: a client in a worker thread (its own event loop, not the one
// receiving the flood) sending PINGREQ every `intervalMs` and timing each PINGRESP.

interface BystanderData {
  bystander: { port: number; intervalMs: number }
}

async function bystanderThread(o: BystanderData['bystander']): Promise<void> {
  const samples: number[] = [] // pairs: sent at (wall ms), round trip (ms)
  // open loop: a PINGREQ every intervalMs whether or not the last was answered, so a
  // stall of 1 s shows as ~500 late answers (its share of the time), not as one sample
  const sent: number[] = []
  let answered = 0
  const socket = await open(o.port, `bystander-${process.pid}-${Date.now()}`, undefined, (type) => {
    if (type !== PINGRESP || answered >= sent.length) return
    const at = sent[answered++]!
    samples.push(at, wallNow() - at) // answers come in order: the oldest unanswered ping's
  })
  const timer = setInterval(() => {
    sent.push(wallNow())
    socket.write(PINGREQ)
  }, o.intervalMs)
  parentPort!.on('message', () => {
    clearInterval(timer)
    // the pings still unanswered count as round trips of at least their age
    const t = wallNow()
    for (let i = answered; i < sent.length; i++) samples.push(sent[i]!, t - sent[i]!)
    socket.destroy()
    parentPort!.postMessage(samples)
  })
  parentPort!.postMessage('ready')
}

async function startBystander(port: number, intervalMs = 2): Promise<{ stop(): Promise<Array<[number, number]>> }> {
  const worker = new Worker(fileURLToPath(import.meta.url), { workerData: { bystander: { port, intervalMs } } satisfies BystanderData })
  await new Promise<void>((resolve, reject) => {
    worker.once('message', () => resolve())
    worker.once('error', reject)
  })
  return {
    stop: async () => {
      const flat = await new Promise<number[]>((resolve) => {
        worker.once('message', (m) => resolve(m as number[]))
        worker.postMessage('stop')
      })
      await worker.terminate()
      const pairs: Array<[number, number]> = []
      for (let i = 0; i < flat.length; i += 2) pairs.push([flat[i]!, flat[i + 1]!])
      return pairs
    },
  }
}

// ---------------------------------------------------------------------------
// the curves

interface Ctx {
  quick: boolean
  cap: number
  brokers: BrokerName[]
  max: number
  retainedQos: 0 | 1
  log: (line: string) => void
  fdLimit: number
}

/** hookmq's limits raised where the defaults would stop a curve (said in the output); serve-hookmq.ts's maxQueuedMessages kept */
export const hookmqLimits: Record<CurveName, Record<string, number>> = {
  connections: { maxQueuedMessages: 1000000, maxConnections: 1000000 },
  // 1,000 clients hold at most 1,000 subscriptions each at 1M: under the default maxSubscriptionsPerClient (10,000)
  subscriptions: { maxQueuedMessages: 1000000 },
  // one loader client sets them all (default per client: 10,000 messages, 16 MB); maxRetainedMessages (default 1M) is
  // checked before the message that would pass it; the `#` subscriber's QoS 0 deliveries are not dropped at 1 MB waiting
  retained: {
    maxQueuedMessages: 2000000,
    maxRetainedMessages: 2000000,
    maxRetainedMessagesPerClient: 2000000,
    maxRetainedBytesPerClient: 1073741824,
    maxClientBufferBytes: 1e12,
  },
  fanout: { maxQueuedMessages: 1000000 },
}

function options(b: BrokerName, curve: CurveName): HookmqBenchOptions {
  return isHookmq(b) ? { limits: hookmqLimits[curve] } : {}
}

function label(b: BrokerName): string {
  const dir = baselineDir(b)
  return dir === undefined ? b : `hookmq@${basename(dir)}`
}

/** the brokers running now: stopped on SIGINT / SIGTERM */
const running = new Set<RunningBroker>()

async function start(b: BrokerName, curve: CurveName): Promise<RunningBroker> {
  const broker = await startBroker(b, options(b, curve))
  running.add(broker)
  const stop = broker.stop
  return {
    ...broker,
    stop: async () => {
      running.delete(broker)
      await stop()
    },
  }
}

async function withBroker<T>(b: BrokerName, curve: CurveName, fn: (broker: RunningBroker) => Promise<T>): Promise<T> {
  const broker = await start(b, curve)
  try {
    return await fn(broker)
  } finally {
    await broker.stop()
  }
}

/** Idle connections: connect rate with 100 connecting at once, and RSS / broker CPU per connection. */
async function connections(c: Ctx): Promise<Curve> {
  const wanted = (c.quick ? [500, 2000] : [1000, 10000, 50000, 100000]).filter((n) => n <= c.max)
  // every socket is a file descriptor in the broker and in the generator: keep 300 spare
  const fit = c.fdLimit - 300
  const sizes = wanted.filter((n) => n <= fit)
  const notes: string[] = []
  const left = wanted.filter((n) => n > fit)
  if (left.length > 0) {
    const top = Math.floor(fit / 1000) * 1000
    if (!sizes.includes(top) && top > (sizes.at(-1) ?? 0)) sizes.push(top)
    notes.push(
      `left out ${left.map(short).join(', ')}: the file limit is ${c.fdLimit} (RLIMIT_NOFILE, hard limit, not raisable here) for each broker process and the generator; ${short(top)} measured instead`,
    )
  }
  const points = await perSize(c, 'connections', sizes, async (b, n, broker, sockets) => {
    await settle(c, 1000)
    const rss0 = await collectedRss(broker)
    const cpu0 = cpuSeconds(broker.pid)
    const gen0 = process.cpuUsage()
    const t0 = now()
    await capped(openMany(broker.port, n, `idle-${process.pid}-${n}`, undefined, undefined, 100, sockets), c.cap, `${n} connections`)
    const seconds = (now() - t0) / 1000
    const cpu = cpuSeconds(broker.pid) - cpu0
    const gen = process.cpuUsage(gen0)
    await settle(c, 2000)
    const rss1 = await collectedRss(broker)
    return {
      broker: label(b),
      size: n,
      values: { rate: n / seconds, rssKB: (rss1 - rss0) / n / 1024, cpuUs: (cpu / n) * 1e6, seconds },
      note: `while connecting: broker CPU ${((cpu / seconds) * 100).toFixed(0)}%, generator ${(((gen.user + gen.system) / 1e6 / seconds) * 100).toFixed(0)}%`,
    }
  })
  return {
    name: 'connections',
    title: 'Idle connections',
    xLabel: 'connections',
    metrics: [
      { key: 'rate', label: 'connect rate (100 connecting at once)', unit: 'conn/s' },
      { key: 'rssKB', label: 'broker RSS per connection (Node brokers: after a full collection, before and after)', unit: 'KB', perUnit: true },
      { key: 'cpuUs', label: 'broker CPU per connection (CONNECT to CONNACK)', unit: 'µs', perUnit: true },
    ],
    points,
    notes,
  }
}

/**
 * For each broker and size, a fresh broker measured by `measure` (the sockets
 * it opens are closed after); a broker's larger sizes are skipped once one
 * went over the time cap.
 */
async function perSize(
  c: Ctx,
  curve: CurveName,
  sizes: number[],
  measure: (b: BrokerName, n: number, broker: RunningBroker, sockets: net.Socket[]) => Promise<Point>,
): Promise<Point[]> {
  const points: Point[] = []
  for (const b of c.brokers) {
    for (const n of sizes) {
      let point: Point
      const sockets: net.Socket[] = []
      try {
        point = await withBroker(b, curve, (broker) => measure(b, n, broker, sockets))
      } catch (err) {
        point = failed(b, n, err)
      } finally {
        closeAll(sockets)
      }
      points.push(point)
      c.log(`  ${curve} ${label(b)} ${short(n)}: ${describe(point)}`)
      if (point.note?.startsWith('over')) break
    }
  }
  return points
}

function failed(b: BrokerName, size: number, err: unknown): Point {
  const over = err instanceof OverCap
  return { broker: label(b), size, values: {}, note: over ? err.message : `failed: ${(err as Error).message}` }
}

function describe(p: Point): string {
  const v = Object.entries(p.values).map(([k, x]) => `${k} ${Number(x.toPrecision(4))}`)
  return [...v, p.note].filter(Boolean).join(', ')
}

/**
 * Subscription `g` of the mix: in groups of ten on `m/<x>/...` (x = g/10): 6 exact
 * (`m/x/0`..`m/x/5`), 2 `m/x/+` (two clients), 1 `m/x/#`, 1 `$share/g/m/x/0`; a
 * publish on `m/x/0` matches 4 of them and the shared group (5 deliveries).
 */
function mixFilter(g: number): string {
  const x = Math.floor(g / 10)
  const j = g % 10
  if (j <= 5) return `m/${x}/${j}`
  if (j === 6 || j === 9) return `m/${x}/+`
  if (j === 7) return `m/${x}/#`
  return `$share/g/m/${x}/0`
}

/** Subscriptions (10k → 1M over 1,000 clients, added step by step on one broker): time to add, RSS, and the cost of publishes matching a few. */
async function subscriptions(c: Ctx): Promise<Curve> {
  const sizes = (c.quick ? [1000, 10000] : [10000, 30000, 100000, 300000, 1000000]).filter((n) => n <= c.max)
  const clientCount = c.quick ? 100 : 1000
  const messages = c.quick ? 2000 : 20000
  const perPacket = 100
  const points: Point[] = []
  for (const b of c.brokers) {
    const sockets: net.Socket[] = []
    let subacks = 0
    let refusedFilters = 0
    let deliveries = 0
    let lastDelivery = 0
    const onPacket = (): OnPacket => (type, _flags, buf, start, length) => {
      if (type === PUBLISH) {
        deliveries++
        lastDelivery = now()
      } else if (type === SUBACK) {
        subacks++
        refusedFilters += subackFailures(buf, start, length)
      }
    }
    let broker: RunningBroker | undefined
    try {
      broker = await start(b, 'subscriptions')
      await capped(openMany(broker.port, clientCount, `subs-${process.pid}`, onPacket, undefined, 100, sockets), c.cap, `${clientCount} clients`)
      const pub = await open(broker.port, `subs-pub-${process.pid}`, undefined)
      sockets.push(pub)
      await settle(c, 1000)
      const rss0 = rssBytes(broker.pid)
      let prev = 0
      let total = 0
      let messageId = 0
      for (const n of sizes) {
        let point: Point
        try {
          // the step's SUBSCRIBE packets, encoded before the clock starts: client g % clientCount holds subscription g
          const perClient: string[][] = Array.from({ length: clientCount }, () => [])
          for (let g = prev; g < n; g++) perClient[g % clientCount]!.push(mixFilter(g))
          const batches = perClient.map((filters) => {
            const packets: Buffer[] = []
            for (let k = 0; k < filters.length; k += perPacket)
              packets.push(subscribePacket((messageId = (messageId % 65535) + 1), filters.slice(k, k + perPacket)))
            return Buffer.concat(packets)
          })
          const expected = subacks + perClient.reduce((sum, f) => sum + Math.ceil(f.length / perPacket), 0)
          const refused0 = refusedFilters
          const cpu0 = cpuSeconds(broker.pid)
          const t0 = now()
          let lastSuback = t0
          await capped(
            (async () => {
              await Promise.all(batches.map((buf, i) => writeAll(sockets[i]!, buf)))
              while (subacks < expected) await sleep(2)
              lastSuback = now()
            })(),
            c.cap,
            `subscribing ${short(n - prev)}`,
          )
          const seconds = (lastSuback - t0) / 1000
          const subCpu = cpuSeconds(broker.pid) - cpu0
          total += seconds
          await settle(c, 1500)
          const rss = rssBytes(broker.pid)
          // QoS 0 publishes on m/x/0, x spread over the groups: each matches ~5 subscriptions
          const groups = Math.floor(n / 10)
          const packets = Array.from({ length: messages }, (_, k) =>
            encode({ cmd: 'publish', topic: `m/${(k * 7919) % groups}/0`, payload: Buffer.alloc(16, 0x70), qos: 0, retain: false, dup: false }),
          )
          const burst = Buffer.concat(packets)
          const warm = Buffer.concat(packets.slice(0, messages / 4))
          // a quarter of the burst first, not counted (JIT, first growth of the structures it touches)
          deliveries = 0
          lastDelivery = now()
          await capped(
            (async () => {
              await writeAll(pub, warm)
              await arrivals(
                () => deliveries,
                (messages / 4) * 5,
                500,
                () => lastDelivery,
              )
            })(),
            c.cap,
            'warm-up',
          )
          await sleep(200)
          deliveries = 0
          const pcpu0 = cpuSeconds(broker.pid)
          const p0 = now()
          lastDelivery = p0
          await capped(
            (async () => {
              await writeAll(pub, burst)
              await arrivals(
                () => deliveries,
                messages * 5,
                2000,
                () => lastDelivery,
              )
            })(),
            c.cap,
            `publishing ${messages} messages`,
          )
          const pubSeconds = (lastDelivery - p0) / 1000
          const pubCpu = cpuSeconds(broker.pid) - pcpu0
          const refused = refusedFilters - refused0
          point = {
            broker: label(b),
            size: n,
            values: {
              total,
              subUs: (seconds / (n - prev)) * 1e6,
              subCpuUs: (subCpu / (n - prev)) * 1e6,
              rssMB: rss / 2 ** 20,
              rssB: (rss - rss0) / n,
              pubRate: messages / pubSeconds,
              pubCpuUs: (pubCpu / messages) * 1e6,
            },
            note: [`${(deliveries / messages).toFixed(2)} deliveries per publish`, refused > 0 ? `${refused} filters refused` : ''].filter(Boolean).join(', '),
          }
          prev = n
        } catch (err) {
          point = failed(b, n, err)
        }
        points.push(point)
        c.log(`  subscriptions ${label(b)} ${short(n)}: ${describe(point)}`)
        if (point.note?.startsWith('over') || point.note?.startsWith('failed')) break
      }
    } catch (err) {
      points.push(failed(b, sizes[0]!, err))
      c.log(`  subscriptions ${label(b)}: ${describe(points.at(-1)!)}`)
    } finally {
      closeAll(sockets)
      await broker?.stop()
    }
  }
  return {
    name: 'subscriptions',
    title: 'Subscriptions',
    xLabel: 'subscriptions (60% exact, 20% +, 10% #, 10% $share; over 1,000 clients)',
    metrics: [
      { key: 'total', label: 'time to subscribe them all (cumulative)', unit: 's' },
      { key: 'subUs', label: "time per subscription, this step's increment (100 filters per SUBSCRIBE)", unit: 'µs', perUnit: true },
      { key: 'subCpuUs', label: 'broker CPU per subscription, this step', unit: 'µs', perUnit: true },
      { key: 'rssMB', label: 'broker RSS', unit: 'MB' },
      { key: 'rssB', label: 'broker RSS per subscription', unit: 'B', perUnit: true },
      { key: 'pubRate', label: `QoS 0 publish rate, each publish matching 5 (${messages} messages to the last delivery)`, unit: 'msg/s' },
      { key: 'pubCpuUs', label: 'broker CPU per published message (5 deliveries)', unit: 'µs', perUnit: true, flat: true },
    ],
    points,
    notes: [
      `${clientCount} subscribing clients; a publish on m/x/0 matches m/x/0, m/x/+ (2 clients), m/x/# and $share/g/m/x/0: 5 deliveries where shared subscriptions are supported`,
    ],
  }
}

/** retained topic of message g: fixed width, 1,000 per branch */
function retainedTopic(g: number): string {
  return `r/${String(Math.floor(g / 1000)).padStart(4, '0')}/${String(g % 1000).padStart(3, '0')}`
}

/**
 * Retained messages (10k → 1M set step by step on one broker): RSS, and a `#`
 * subscriber's time to receive them all while a bystander pings every 2 ms.
 */
async function retained(c: Ctx): Promise<Curve> {
  const sizes = (c.quick ? [1000, 10000] : [10000, 30000, 100000, 300000, 1000000]).filter((n) => n <= c.max)
  const points: Point[] = []
  const payload = Buffer.alloc(16, 0x72)
  const template = encode({ cmd: 'publish', topic: retainedTopic(0), payload, qos: 0, retain: true, dup: false })
  const topicAt = template.indexOf(Buffer.from(retainedTopic(0)))
  for (const b of c.brokers) {
    let broker: RunningBroker | undefined
    const sockets: net.Socket[] = []
    try {
      broker = await start(b, 'retained')
      const port = broker.port
      let pongs = 0
      const loader = await open(port, `ret-loader-${process.pid}`, undefined, (type) => {
        if (type === PINGRESP) pongs++
      })
      sockets.push(loader)
      await settle(c, 1000)
      const rss0 = rssBytes(broker.pid)
      let prev = 0
      for (const n of sizes) {
        let point: Point
        const stepSockets: net.Socket[] = []
        let bystander: Awaited<ReturnType<typeof startBystander>> | undefined
        try {
          // set messages prev..n-1, then wait until the last is retained (a probe subscribing to its topic gets it)
          const added = n - prev
          const l0 = now()
          await capped(
            (async () => {
              await pump(
                loader,
                n - prev,
                2048,
                (chunk, index, count) => {
                  for (let k = 0; k < count; k++) {
                    const at = k * template.length
                    template.copy(chunk, at)
                    chunk.write(retainedTopic(prev + index + k), at + topicAt, 'latin1')
                  }
                },
                template.length,
              )
              // the loader's PINGREQ is answered after its publishes were handled; then a probe
              // subscribing to the last topic gets it once it is stored (asked again only after each
              // SUBACK: Aedes's in-memory store scans every retained message on each SUBSCRIBE)
              const pinged = pongs + 1
              loader.write(PINGREQ)
              while (pongs < pinged) await sleep(5)
              let got = false
              let subacked = 0
              const probe = await open(port, `ret-probe-${process.pid}-${n}`, undefined, (type) => {
                if (type === PUBLISH) got = true
                else if (type === SUBACK) subacked++
              })
              stepSockets.push(probe)
              for (let id = 1; !got; id++) {
                probe.write(subscribePacket(id, [retainedTopic(n - 1)]))
                while (subacked < id && !got) await sleep(5)
                for (let k = 0; k < 20 && !got; k++) await sleep(5)
              }
            })(),
            c.cap,
            `setting ${short(n - prev)} retained`,
          )
          const loadSeconds = (now() - l0) / 1000
          prev = n
          await settle(c, 1500)
          const rss = rssBytes(broker.pid)
          // the `#` subscriber
          bystander = await startBystander(port)
          await settle(c, 500)
          let count = 0
          let last = 0
          const acks: Buffer[] = []
          const sub = await open(port, `ret-sub-${process.pid}-${n}`, undefined, (type, flags, buf, start) => {
            if (type !== PUBLISH || (flags & 1) === 0) return
            count++
            last = now()
            if (((flags >> 1) & 3) === 1) {
              let i = start + 1
              while (buf[i]! & 0x80) i++
              i++
              const at = i + 2 + buf.readUInt16BE(i)
              if (acks.push(Buffer.from([0x40, 2, buf[at]!, buf[at + 1]!])) === 1) setImmediate(() => sub.write(Buffer.concat(acks.splice(0))))
            }
          })
          stepSockets.push(sub)
          const w0 = wallNow()
          const t0 = now()
          last = t0
          sub.write(subscribePacket(1, ['#'], c.retainedQos))
          let over: OverCap | undefined
          await capped(
            arrivals(
              () => count,
              n,
              5000,
              () => last,
            ),
            c.cap,
            `receiving ${short(n)} retained`,
          ).catch((err: unknown) => {
            if (err instanceof OverCap) over = err
            else throw err
          })
          const w1 = wallNow()
          const seconds = (last - t0) / 1000
          const samples = await bystander.stop()
          bystander = undefined
          const during = samples
            .filter(([at]) => at >= w0 && at <= w1)
            .map(([, rtt]) => rtt)
            .sort((x, y) => x - y)
          const before = samples
            .filter(([at]) => at < w0)
            .map(([, rtt]) => rtt)
            .sort((x, y) => x - y)
          point = {
            broker: label(b),
            size: n,
            values: {
              loadRate: added / loadSeconds,
              rssMB: rss / 2 ** 20,
              rssB: (rss - rss0) / n,
              ...(over ? {} : { recvS: seconds, recvUs: (seconds / n) * 1e6 }),
              byP99: quantile(during, 0.99),
              byMax: during.at(-1) ?? NaN,
            },
            note: [
              over ? `${over.message}: ${count} received` : count < n ? `received only ${count} of ${n}` : '',
              `${during.length} pings meanwhile (idle before: p99 ${quantile(before, 0.99).toFixed(2)} ms)`,
            ]
              .filter(Boolean)
              .join(', '),
          }
        } catch (err) {
          point = failed(b, n, err)
        } finally {
          await bystander?.stop()
          closeAll(stepSockets)
        }
        points.push(point)
        c.log(`  retained ${label(b)} ${short(n)}: ${describe(point)}`)
        if (point.note?.startsWith('over') || point.note?.startsWith('failed') || point.values.recvS === undefined) break
      }
    } catch (err) {
      points.push(failed(b, sizes[0]!, err))
      c.log(`  retained ${label(b)}: ${describe(points.at(-1)!)}`)
    } finally {
      closeAll(sockets)
      await broker?.stop()
    }
  }
  return {
    name: 'retained',
    title: 'Retained messages',
    xLabel: 'retained messages (16-byte payloads)',
    metrics: [
      { key: 'loadRate', label: "retained publishes set (this step's, QoS 0, one client)", unit: 'msg/s' },
      { key: 'rssMB', label: 'broker RSS', unit: 'MB' },
      { key: 'rssB', label: 'broker RSS per retained message', unit: 'B', perUnit: true },
      { key: 'recvS', label: `a new '#' subscriber (QoS ${c.retainedQos}): time to receive them all`, unit: 's' },
      { key: 'recvUs', label: 'the same per retained message', unit: 'µs', perUnit: true },
      { key: 'byP99', label: 'bystander PINGREQ round trip (every 2 ms) while they stream: p99', unit: 'ms', logY: true },
      { key: 'byMax', label: 'bystander PINGREQ round trip while they stream: max', unit: 'ms', logY: true },
    ],
    points,
    notes: [
      'bystander: another client sends PINGREQ every 2 ms (open loop: whether or not answered) from a worker thread; round trips of the pings sent from the SUBSCRIBE until the last retained message arrived',
    ],
  }
}

/** Fan-out: one QoS 0 message to n subscribers of one topic; time until the last has it, median of 7 (3 in --quick). */
async function fanout(c: Ctx): Promise<Curve> {
  const sizes = (c.quick ? [100, 1000] : [100, 1000, 10000]).filter((n) => n <= c.max && n <= c.fdLimit - 300)
  const rounds = c.quick ? 3 : 7
  const message = encode({ cmd: 'publish', topic: 'fan/t', payload: Buffer.alloc(64, 0x66), qos: 0, retain: false, dup: false })
  const subscribe = subscribePacket(1, ['fan/t'])
  const points = await perSize(c, 'fanout', sizes, async (b, n, broker, sockets) => {
    let got = 0
    let last = 0
    const at: number[] = []
    const subacked: Array<() => void> = []
    await capped(
      openMany(
        broker.port,
        n,
        `fan-${process.pid}-${n}`,
        (i) => (type) => {
          if (type === SUBACK) subacked[i]?.()
          else if (type === PUBLISH) {
            got++
            last = now()
            at.push(last)
          }
        },
        (s, i) =>
          new Promise<void>((resolve) => {
            subacked[i] = resolve
            s.write(subscribe)
          }),
        100,
        sockets,
      ),
      c.cap,
      `${n} subscribers`,
    )
    const pub = await open(broker.port, `fan-pub-${process.pid}-${n}`, undefined)
    sockets.push(pub)
    await settle(c, 500)
    const lasts: number[] = []
    const halves: number[] = []
    let short_ = ''
    for (let r = 0; r < rounds; r++) {
      got = 0
      at.length = 0
      const t0 = now()
      last = t0
      pub.write(message)
      await capped(
        arrivals(
          () => got,
          n,
          2000,
          () => last,
        ),
        c.cap,
        'fan-out',
      )
      if (got < n) short_ = `only ${got} of ${n} received in a round`
      lasts.push(last - t0)
      halves.push(quantile(at, 0.5) - t0)
      await sleep(200)
    }
    return {
      broker: label(b),
      size: n,
      values: { lastMs: median(lasts), halfMs: median(halves), perSubUs: (median(lasts) / n) * 1000 },
      note: [short_, `rounds ${lasts.map((x) => x.toFixed(1)).join(' ')} ms`].filter(Boolean).join(', '),
    }
  })
  return {
    name: 'fanout',
    title: 'Fan-out of one message',
    xLabel: 'subscribers of the topic',
    metrics: [
      { key: 'lastMs', label: `time until the last subscriber has it (median of ${rounds})`, unit: 'ms' },
      { key: 'halfMs', label: 'time until half of them have it', unit: 'ms' },
      { key: 'perSubUs', label: 'time to the last, per subscriber', unit: 'µs', perUnit: true },
    ],
    points,
    notes: ['measured at the generator: includes its own handling of the n sockets, on the other core'],
  }
}

// ---------------------------------------------------------------------------
// tables and plots

function fmt(v: number | undefined): string {
  if (v === undefined || !Number.isFinite(v)) return 'n/a'
  const a = Math.abs(v)
  if (a >= 100000) return Math.round(v).toLocaleString('en-US')
  if (a >= 100) return v.toFixed(0)
  if (a >= 10) return v.toFixed(1)
  if (a >= 1) return v.toFixed(2)
  return v.toPrecision(2)
}

/** A table per metric: brokers by sizes; a per-unit cost shows each step's ratio to the step before (×1.0: linear). */
export function tables(curve: Curve): string {
  const sizes = [...new Set(curve.points.map((p) => p.size))].sort((a, b) => a - b)
  const brokers = [...new Set(curve.points.map((p) => p.broker))]
  const lines: string[] = [`## ${curve.title}`, ...curve.notes.map((n) => `- ${n}`)]
  for (const m of curve.metrics) {
    const how = m.flat
      ? ' (×: ratio to the step before; ideally flat, above 1: it grows with the size)'
      : ' (per unit; ×: ratio to the step before — above 1 is worse than linear)'
    lines.push('', `${m.label}, ${m.unit}${m.perUnit ? how : ''}`)
    lines.push(`| broker | ${sizes.map(short).join(' | ')} |${m.perUnit ? ' growth |' : ''}`)
    lines.push(`|---|${sizes.map(() => '---:').join('|')}|${m.perUnit ? '---|' : ''}`)
    for (const b of brokers) {
      let before: number | undefined
      let first: number | undefined
      let lastV: number | undefined
      const cells = sizes.map((n) => {
        const p = curve.points.find((q) => q.broker === b && q.size === n)
        if (p === undefined) return ''
        const v = p.values[m.key]
        if (v === undefined || !Number.isFinite(v)) return p.note?.startsWith('over') ? p.note.replace(/ \(.*\)$/, '') : 'n/a'
        const ratio = m.perUnit && before !== undefined && before > 0 ? ` ×${(v / before).toFixed(2)}` : ''
        before = v
        first ??= v
        lastV = v
        return fmt(v) + ratio
      })
      const growth =
        m.perUnit && first !== undefined && lastV !== undefined && first > 0
          ? ` ${lastV / first <= 1.25 ? (m.flat ? 'flat or falling' : 'linear or better') : m.flat ? 'grows' : 'worse than linear'} (×${(lastV / first).toFixed(2)}, first to last) |`
          : m.perUnit
            ? ' |'
            : ''
      lines.push(`| ${b} | ${cells.join(' | ')} |${growth}`)
    }
  }
  const noted = curve.points.filter((p) => p.note)
  if (noted.length > 0) lines.push('', 'notes:', ...noted.map((p) => `- ${p.broker} ${short(p.size)}: ${p.note}`))
  return lines.join('\n')
}

function plots(curve: Curve, dir: string): string[] {
  const brokers = [...new Set(curve.points.map((p) => p.broker))]
  return curve.metrics.map((m) => {
    const file = join(dir, `curves-${curve.name}-${m.key}.svg`)
    const svg = lineChart({
      title: `${curve.title}: ${m.label.replace(/ \(.*\)$/, '')}`,
      xLabel: curve.xLabel.replace(/ \(.*\)$/, ''),
      yLabel: m.unit,
      logY: m.logY,
      series: brokers.map((b) => ({
        name: b,
        points: curve.points.filter((p) => p.broker === b).map((p): [number, number] => [p.size, p.values[m.key] ?? NaN]),
      })),
    })
    writeFileSync(file, svg)
    return file
  })
}

/** Writes curves.json, curves.md (the tables) and one SVG per figure to `dir`; answers the files. */
export function render(curves: Curve[], meta: { date: string; seconds: number; quick: boolean; nodeFlags?: string[] }, dir: string): string[] {
  const json = join(dir, 'curves.json')
  writeFileSync(json, JSON.stringify({ meta, curves }, null, 2) + '\n')
  const md = join(dir, 'curves.md')
  const title = `# Cost curves (${meta.date}, ${meta.quick ? 'quick' : 'full'}, ${meta.seconds.toFixed(0)} s; hookmq's Node flags: ${meta.nodeFlags?.join(' ') || 'none'})`
  writeFileSync(md, `${title}\n\n${curves.map(tables).join('\n\n')}\n`)
  return [json, md, ...curves.flatMap((curve) => plots(curve, dir))]
}

/** RLIMIT_NOFILE soft limit of this process (the brokers it starts inherit it) */
export function fileLimit(): number {
  const line = readFileSync('/proc/self/limits', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('Max open files'))
  const soft = line?.split(/\s{2,}/)[1]
  return soft === undefined || soft === 'unlimited' ? Infinity : Number(soft)
}

function gitState(): string {
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim()
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { encoding: 'utf8' }).trim()
    return `${head}${dirty ? ` with uncommitted changes in ${dirty.split('\n').length} file(s)` : ''}`
  } catch {
    return 'unknown'
  }
}

/** Runs the curves, prints the tables, writes curves.json, curves.md and one SVG per figure to `outDir`. */
export async function costCurves(opts: CostCurveOptions = {}): Promise<{ curves: Curve[]; files: string[] }> {
  const log = opts.log ?? ((l: string) => console.log(l))
  const quick = opts.quick ?? false
  const c: Ctx = {
    quick,
    cap: opts.capSeconds ?? (quick ? 20 : 180),
    brokers: opts.brokers ?? (['hookmq', 'aedes', ...(hasMosquitto() ? ['mosquitto'] : [])] as BrokerName[]),
    max: opts.max ?? Infinity,
    retainedQos: opts.retainedQos ?? 0,
    log,
    fdLimit: fileLimit(),
  }
  const dir = resolve(opts.outDir ?? 'bench-results')
  mkdirSync(dir, { recursive: true })
  const started = Date.now()
  const only = opts.only ?? curveNames
  const ports = widenPorts()
  restorePorts = ports.undo
  try {
    return await run(c, dir, only, started, ports.note)
  } finally {
    ports.undo()
    restorePorts = undefined
  }
}

async function run(c: Ctx, dir: string, only: CurveName[], started: number, portNote: string): Promise<{ curves: Curve[]; files: string[] }> {
  const { quick, log } = c
  log(
    `cost curves (${quick ? 'quick' : 'full'}): ${c.brokers.map(label).join(', ')}; file limit ${c.fdLimit}; step cap ${c.cap} s; ${portNote}; this checkout at ${gitState()}`,
  )
  for (const name of only) if (c.brokers.some(isHookmq)) log(`  hookmq limits for ${name}: ${JSON.stringify(hookmqLimits[name])}`)
  const runners: Record<CurveName, (c: Ctx) => Promise<Curve>> = { connections, subscriptions, retained, fanout }
  const curves: Curve[] = []
  for (const name of curveNames.filter((n) => only.includes(n))) {
    log(`\n${name}`)
    const curve = await runners[name](c)
    curves.push(curve)
    log('\n' + tables(curve))
  }
  const seconds = (Date.now() - started) / 1000
  const meta = {
    date: new Date().toISOString(),
    seconds,
    quick,
    nodeFlags: hookmqNodeFlags,
    hookmq: gitState(),
    hookmqLimits,
    fileLimit: c.fdLimit,
    capSeconds: c.cap,
    retainedQos: c.retainedQos,
  }
  const files = render(curves, meta, dir)
  log(`\n${files.length} files in ${dir}: ${files.map((f) => basename(f)).join(' ')}`)
  log(`cost curves: ${seconds.toFixed(0)} s`)
  return { curves, files }
}

// ---------------------------------------------------------------------------
// entry points: the bystander's worker thread, and the command line

if (!isMainThread && (workerData as Partial<BystanderData> | null)?.bystander !== undefined) {
  await bystanderThread((workerData as BystanderData).bystander)
} else if (isMainThread && process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2)
  const arg = (name: string): string | undefined => args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3)
  if (fileLimit() < 1048576 && process.env.HOOKMQ_CURVES_ULIMIT === undefined) {
    // raise the file limit through the shell (Node cannot), as far as the hard limit lets it, and run again
    const child = spawn(
      'sh',
      [
        '-c',
        'ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$@"',
        'sh',
        process.execPath,
        ...process.execArgv,
        process.argv[1],
        ...args,
      ],
      { stdio: 'inherit', env: { ...process.env, HOOKMQ_CURVES_ULIMIT: '1' } },
    )
    child.once('exit', (code) => process.exit(code ?? 1))
    for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => child.kill(sig))
  } else {
    for (const sig of ['SIGINT', 'SIGTERM'] as const)
      process.on(sig, () => {
        restorePorts?.()
        void Promise.all([...running].map((r) => r.stop())).finally(() => process.exit(130))
      })
    // the generator on core 1, the brokers on core 0 (brokers.ts)
    if (existsSync('/usr/bin/taskset')) execFileSync('taskset', ['-p', '-c', '1', String(process.pid)], { stdio: 'ignore' })
    const picked = arg('brokers')?.split(',').filter(Boolean) as BrokerName[] | undefined
    const qos = Number(arg('retained-qos') ?? 0)
    await costCurves({
      quick: args.includes('--quick'),
      brokers: picked?.map((b): BrokerName => (b.startsWith('hookmq@') ? `hookmq@${resolve(b.slice(7))}` : b)),
      only: arg('only')?.split(',') as CurveName[] | undefined,
      max: arg('max') === undefined ? undefined : Number(arg('max')),
      outDir: arg('out'),
      capSeconds: arg('cap') === undefined ? undefined : Number(arg('cap')),
      retainedQos: qos === 1 ? 1 : 0,
    })
    process.exit(0)
  }
}
