// npm run bench [-- --quick] [-- --only=fan-in-qos0,latency] [-- --reps=3] [-- --brokers=hookmq,aedes] [-- --baseline=../other-checkout,...]
// --baseline: hookmq as built in another checkout (npm run build there) runs beside this one, as
// hookmq@<dir>, in every scenario hookmq runs in (except those needing options it may not know:
// hook isolation, which came with issue #11)
//
// Runs each scenario on hookmq, Aedes and (when installed) Mosquitto, each broker
// fresh per run, in alternating order, several repetitions; prints medians,
// ratios and the CPU time of broker and generator (to show who was saturated).
import { execFileSync } from 'node:child_process'
import { copyFileSync, existsSync, mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { basename, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import {
  baselineDir,
  collectedRss,
  cpuSeconds,
  hasMosquitto,
  hookmqNodeFlags,
  isHookmq,
  rssBytes,
  startBroker,
  startRedisServer,
  type BrokerName,
  type HookmqBenchOptions,
  type RunningBroker,
} from './brokers.js'
import { fanIn, fanOut, idleClients, latency, startSink, subscribeOneByOne, type FanInOptions } from './scenarios.js'
import { amplification } from './amplification.js'
import { clusterCost, printClusterCost } from './cluster-cost.js'
import { median } from './stats.js'
import { costCurves, fileLimit } from './curves.js'
import { stuckHookFolder, stuckToFallback } from './sandbox.js'
import { delayedLink, delayRelay, kernelHasNetem, netemUnavailable, type Delayed } from './netem.js'

const args = process.argv.slice(2)
const quick = args.includes('--quick')
const only = args
  .find((a) => a.startsWith('--only='))
  ?.slice(7)
  .split(',')
const reps = Number(args.find((a) => a.startsWith('--reps='))?.slice(7) ?? (quick ? 1 : 3))
const picked = args
  .find((a) => a.startsWith('--brokers='))
  ?.slice(10)
  .split(',')
const baselines = (
  args
    .find((a) => a.startsWith('--baseline='))
    ?.slice(11)
    .split(',') ?? []
)
  .filter(Boolean)
  .map((d): BrokerName => `hookmq@${resolve(d)}`)
const brokers: BrokerName[] = (['hookmq', ...baselines, 'aedes', ...(hasMosquitto() ? ['mosquitto' as const] : [])] as BrokerName[]).filter(
  (b) => picked === undefined || picked.includes(b) || (baselineDir(b) !== undefined && picked.includes('hookmq')),
)
/** --quick: 8% of each message count (10% took 55-57 s on this machine, too near the minute it must stay under) */
const scale = quick ? 0.08 : 1
/** hookmq and the baselines: for hookmq-only rows whose options every version knows */
const allHookmq: BrokerName[] = brokers.filter(isHookmq)

interface Row {
  value: number
  unit: string
  brokerCpu: number
  genCpu: number
  note?: string
}

type Scenario = {
  name: string
  unit: string
  higherIsBetter: boolean
  brokers?: BrokerName[]
  options?: (b: BrokerName) => HookmqBenchOptions
  /** on the run's redis-server (skipped without one) */
  redis?: boolean
  /** broker processes on that Redis (a cluster); the generator gets every port */
  nodes?: number
  /** seconds each broker process is left idle after it starts, before the run (and its CPU readings) begin */
  settle?: number
  /** the broker runs behind a link with this round trip (netem.ts; root only, skipped otherwise) */
  rttMs?: number
} & (
  | { run: (port: number, pid: number, ports: number[], host: string | undefined) => Promise<{ value: number; note?: string }>; runAll?: never }
  /** measured by its own runner over all brokers at once (memory), which prints its rows */
  | { runAll: (sc: Scenario, list: BrokerName[]) => Promise<void>; run?: never }
)

const examples = fileURLToPath(new URL('../../hooks.example/', import.meta.url))
/** hooks.example's acl.ts (and transform.ts) in a fresh folder, the ACL allowing the bench topics, run in `isolation`. */
function exampleHooks(isolation: 'inline' | 'worker', files = ['acl.ts', 'transform.ts']): HookmqBenchOptions {
  const dir = mkdtempSync(join(tmpdir(), 'hookmq-bench-hooks-'))
  for (const f of files) copyFileSync(join(examples, f), join(dir, f))
  return { hooksDir: dir, hooks: { isolation, acl: { rules: [{ user: '*', allow: 'both', topics: ['sensors/#', 'bench/#', 'lat/#'] }] } } }
}

/** A hooks folder with one deliver hook answering every delivery `unchanged` (undefined) or `changed` (a payload of its own). */
function deliverHook(isolation: 'inline' | 'worker', answer: 'unchanged' | 'changed'): HookmqBenchOptions {
  const dir = mkdtempSync(join(tmpdir(), 'hookmq-bench-hooks-'))
  const body = answer === 'unchanged' ? '() => undefined' : "({ payload }) => ({ payload: 'x' + payload.length })"
  writeFileSync(join(dir, 'deliver.ts'), `import { defineHook } from 'hookmq'\nexport default defineHook({ name: 'deliver', deliver: ${body} })\n`)
  return { hooksDir: dir, hooks: { isolation } }
}

const json64 = Buffer.from(JSON.stringify({ celsius: 21.5, humidity: 40, device: 'bench-sensor-01' }).padEnd(64, ' '))
const per = (n: number): number => Math.max(100, Math.round(n * scale))
/** for the runs whose slowest broker (Aedes on fan-out, Redis persistence, a webhook sink) took most of a quick run: a third of per() there */
const fewer = (n: number): number => (quick ? Math.max(100, Math.round(n * scale * 0.3)) : n)
/**
 * p99 at 2,000 msg/s for `seconds` (5; --quick: 1) after `warmup` seconds, the
 * broker process left idle `settle` seconds first; the relay row is the floor
 * (generator, loopback, scheduler).
 */
function latencyScenario(name: string, warmup: number, settle: number, hooks?: 'inline' | 'worker', seconds = quick ? 1 : 5): Scenario {
  return {
    name,
    unit: 'ms',
    higherIsBetter: false,
    brokers: hooks ? ['hookmq'] : [...brokers, 'relay'],
    settle,
    options: hooks ? () => exampleHooks(hooks, ['acl.ts']) : undefined,
    run: async (port) => {
      const r = await latency(port, 2000, seconds, warmup)
      const first =
        seconds >= 10
          ? ` s1-3 p99 ${r.perSecond
              .slice(0, 3)
              .map((v) => v.toFixed(2))
              .join('/')}`
          : ''
      return { value: r.p99, note: `p50 ${r.p50.toFixed(3)} max ${r.max.toFixed(2)}${first}${r.received < r.expected ? ' LOST' : ''}` }
    },
  }
}
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))
/** --quick: one process per broker, started on first use and kept for the run */
const kept = new Map<BrokerName, Promise<RunningBroker>>()
function sharedBroker(b: BrokerName): Promise<RunningBroker> {
  let p = kept.get(b)
  if (p === undefined) kept.set(b, (p = startBroker(b, {})))
  return p
}
const lossNote = (r: { received: number; expected: number }): string | undefined => (r.received < r.expected ? `LOST ${r.expected - r.received}` : undefined)

/** A scenario's run: fan-in from 10 publishers to one subscriber (QoS 0, 64-byte payloads unless `o` says otherwise); its rate, and any loss. */
function fanInRun(o: Partial<FanInOptions> & { perPublisher: number }): (port: number) => Promise<{ value: number; note?: string }> {
  return async (port) => {
    const r = await fanIn(port, { publishers: 10, qos: 0, payload: 64, ...o })
    return { value: r.rate, note: lossNote(r) }
  }
}

const scenarios: Scenario[] = [
  {
    name: 'generator ceiling (fan-in QoS 0 through a framing-only relay)',
    unit: 'msg/s',
    higherIsBetter: true,
    brokers: ['relay'],
    run: fanInRun({ perPublisher: per(50000), qos: 0 }),
  },
  {
    name: 'fan-in-qos0',
    unit: 'msg/s',
    higherIsBetter: true,
    run: fanInRun({ perPublisher: per(50000), qos: 0 }),
  },
  {
    name: 'fan-in-qos1',
    unit: 'msg/s',
    higherIsBetter: true,
    run: fanInRun({ perPublisher: per(50000), qos: 1 }),
  },
  {
    name: 'fan-in-qos2',
    unit: 'msg/s',
    higherIsBetter: true,
    run: fanInRun({ perPublisher: per(20000), qos: 2 }),
  },
  // acknowledgements in batches: clients that handle what they received once per millisecond (wire.ts)
  ...([1, 2] as const).map(
    (qos): Scenario => ({
      name: `fan-in-qos${qos} with clients reading every 1 ms`,
      unit: 'msg/s',
      higherIsBetter: true,
      run: fanInRun({ perPublisher: fewer(per(qos === 1 ? 20000 : 10000)), qos, readEveryMs: 1 }),
    }),
  ),
  // and behind a real delay (netem.ts: tc netem, or a relaying process where the kernel lacks it; root only; not in --quick)
  ...(quick ? [] : [1, 5, 20]).flatMap((rttMs) =>
    ([1, 2] as const).map(
      (qos): Scenario => ({
        name: `fan-in-qos${qos} over a ${rttMs} ms round trip`,
        unit: 'msg/s',
        higherIsBetter: true,
        rttMs,
        run: async (port, _pid, _ports, host) => {
          const r = await fanIn(port, { publishers: 10, perPublisher: per(qos === 1 ? 20000 : 10000), qos, payload: 64, host })
          return { value: r.rate, note: lossNote(r) }
        },
      }),
    ),
  ),
  {
    name: 'fan-out-qos0',
    unit: 'deliveries/s',
    higherIsBetter: true,
    run: async (port) => {
      const r = await fanOut(port, 100, fewer(per(20000)), 64)
      return { value: r.rate, note: lossNote(r) }
    },
  },
  // the same through a deliver hook (issue #16): asked once per subscriber per message; one answering "unchanged",
  // one giving every subscriber a copy of its own
  ...(
    [
      ['inline', 'unchanged'],
      ['worker', 'unchanged'],
      ['inline', 'changed'],
    ] as const
  ).map(
    ([isolation, answer]): Scenario => ({
      name: `fan-out-qos0 through a deliver hook (${isolation}, ${answer})`,
      unit: 'deliveries/s',
      higherIsBetter: true,
      brokers: ['hookmq'],
      options: () => deliverHook(isolation, answer),
      run: async (port) => {
        const r = await fanOut(port, 100, per(20000), 64)
        return { value: r.rate, note: lossNote(r) }
      },
    }),
  ),
  // the relay row is the floor: what the generator, the loopback and the scheduler add by themselves.
  // Each broker process idles 10 s first: V8's memory reducer runs its first compacting GC (a 5-12 ms
  // pause) ~8 s after the start-up mark-compact when the allocation rate is low, i.e. inside a window
  // measured right after start (it hit hookmq, whose allocation rate is low, in some runs, not Aedes).
  latencyScenario('latency-p99@2000', quick ? 1 : 3, quick ? 0 : 10),
  // the same on a freshly started process (this bench's earlier method), to show what the settling changes
  ...(quick ? [] : [latencyScenario('latency-p99@2000 on a fresh process', 3, 0)]),
  // and nothing left out: the first 10 s of a broker just started (issue #14: the first seconds of a rolling deploy);
  // hookmq warms its publish path before it listens (core/warmup.ts): the second row is without that
  ...(quick
    ? []
    : [
        latencyScenario('latency-p99@2000 in the first 10 s of a fresh process, nothing left out', 0, 0, undefined, 10),
        {
          ...latencyScenario('latency-p99@2000 in the first 10 s, hookmq with warmup: false', 0, 0, undefined, 10),
          brokers: ['hookmq'] as BrokerName[],
          options: () => ({ warmup: false }),
        },
      ]),
  // a publish through hooks.example/acl.ts in each isolation mode (the hook sandbox's cost per message)
  ...(['inline', 'worker'] as const).map((mode) => latencyScenario(`latency-p99@2000 through acl.ts (${mode})`, quick ? 1 : 3, quick ? 0 : 10, mode)),
  // a decision stuck in a synchronous loop, deadline 200 ms: when its fallback (deny) reaches the publisher
  {
    name: 'stuck worker call to its fallback answer (deadline 200 ms)',
    unit: 'ms',
    higherIsBetter: false,
    brokers: ['hookmq'],
    options: () => stuckHookFolder(200),
    run: async (port) => {
      const { samples } = await stuckToFallback(port, quick ? 2 : 5)
      return { value: median(samples), note: `each: ${samples.map((x) => x.toFixed(0)).join(' ')}` }
    },
  },
  // issue #12's amplification attack: hookmq refuses it under its default limits, and is also run with them raised
  { name: 'amplification', unit: 's', higherIsBetter: false, runAll: (sc, list) => amplificationRuns(sc, list) },
  // memory: all brokers at once (see memory() below), two rows from one run
  { name: 'memory-per-idle-connection', unit: 'KB', higherIsBetter: false, runAll: (sc, list) => memory(sc, list) },
  // hooks: bench/# is what the ACL checks and the transform's filter skips; sensors/# with JSON runs both on every message
  {
    name: 'hooks off, bench/#',
    unit: 'msg/s',
    higherIsBetter: true,
    brokers: allHookmq,
    run: fanInRun({ perPublisher: per(50000), qos: 0 }),
  },
  ...(['inline', 'worker'] as const).map(
    (isolation): Scenario => ({
      name: `hooks on (acl.ts checks every message, ${isolation}), bench/#`,
      unit: 'msg/s',
      higherIsBetter: true,
      brokers: ['hookmq'],
      options: () => exampleHooks(isolation, ['acl.ts']),
      run: fanInRun({ perPublisher: per(50000), qos: 0 }),
    }),
  ),
  // the same three, interleaved round by round: on this noisy machine a ratio of runs minutes apart moves by 20-40%
  { name: 'hook isolation cost, interleaved (off, inline, worker each round)', unit: 'msg/s', higherIsBetter: true, runAll: (sc) => isolationCost(sc) },
  {
    // idle connections, subscriptions and retained messages up to 1M, fan-out to 10k: tables and SVG plots in bench-results/
    // (about 6 minutes; left out of --quick unless named: --quick --only=cost)
    name: 'cost curves (connections, subscriptions, retained, fan-out)',
    unit: 'msg/s',
    higherIsBetter: true,
    runAll: async (_sc, list) => {
      if (quick && !only?.some((o) => 'cost curves'.startsWith(o))) return
      const { files } = await costCurves({ quick, brokers: list.filter((b) => b !== 'relay') })
      console.log(`  written: ${files.join(', ')}`)
    },
  },
  {
    name: 'cluster cost per message (1-3 nodes on one Redis; node-local and cross-node; QoS 0, QoS 1 persistent)',
    unit: 'msg/s',
    higherIsBetter: true,
    redis: true,
    // (about 3.5 minutes a repetition; left out of --quick unless named: --quick --only=cluster)
    runAll: async (sc) => {
      if (quick && !only?.some((o) => sc.name.startsWith(o))) return
      printClusterCost(sc.name, await clusterCost(redisServer!, reps, quick))
    },
  },
  {
    name: 'hooks on (acl checks, transform filtered out, inline), bench/#',
    unit: 'msg/s',
    higherIsBetter: true,
    brokers: ['hookmq'],
    options: () => exampleHooks('inline'),
    run: fanInRun({ perPublisher: per(50000), qos: 0 }),
  },
  {
    name: 'hooks off, sensors/# JSON',
    unit: 'msg/s',
    higherIsBetter: true,
    brokers: allHookmq,
    run: fanInRun({ perPublisher: per(50000), prefix: 'sensors/', body: json64 }),
  },
  {
    name: 'hooks on (acl + JSON transform on every message, inline), sensors/# JSON',
    unit: 'msg/s',
    higherIsBetter: true,
    brokers: ['hookmq'],
    options: () => exampleHooks('inline'),
    run: fanInRun({ perPublisher: per(50000), prefix: 'sensors/', body: json64 }),
  },
  ...[1024, 65536].map(
    (size): Scenario => ({
      name: `fan-in-qos0-${size / 1024}KB`,
      unit: 'msg/s',
      higherIsBetter: true,
      run: fanInRun({ perPublisher: per(size > 4096 ? 2000 : 20000), payload: size }),
    }),
  ),
  {
    name: 'fan-in-qos0 (webhook rule off)',
    unit: 'msg/s',
    higherIsBetter: true,
    brokers: allHookmq,
    run: fanInRun({ perPublisher: per(50000), qos: 0 }),
  },
  ...webhookScenarios(),
  // Redis: a persistent QoS 1 subscriber, so every message is stored before it is acknowledged
  {
    name: 'redis fan-in-qos1 persistent, 1 node',
    unit: 'msg/s',
    higherIsBetter: true,
    brokers: [...allHookmq, 'aedes'],
    redis: true,
    run: fanInRun({ perPublisher: fewer(per(10000)), qos: 1, persistent: true }),
  },
  // (each SUBSCRIBE once rewrote the whole session, every filter in it: quadratic; not in --quick, which keeps under a minute)
  ...(quick
    ? []
    : [
        {
          name: 'redis persistent session subscribing 10,000 filters one per SUBSCRIBE (100 in flight)',
          unit: 'sub/s',
          higherIsBetter: true,
          brokers: [...allHookmq, 'aedes'],
          redis: true,
          run: async (port: number) => ({ value: (await subscribeOneByOne(port, 10000)).rate }),
        } satisfies Scenario,
      ]),
  {
    name: 'redis fan-in-qos1 persistent, 2 nodes (publishers on one, subscriber on the other)',
    unit: 'msg/s',
    higherIsBetter: true,
    brokers: [...allHookmq, 'aedes'],
    redis: true,
    nodes: 2,
    run: async (port, _pid, ports) => {
      const r = await fanIn(port, { publishers: 10, perPublisher: fewer(per(10000)), qos: 1, payload: 64, persistent: true, subPort: ports[1] })
      return { value: r.rate, note: lossNote(r) }
    },
  },
]

let redisServer: Awaited<ReturnType<typeof startRedisServer>>

function redisOptions(b: BrokerName, node: number): HookmqBenchOptions {
  if (redisServer === undefined) return {}
  return isHookmq(b) ? { id: `node-${node}`, redis: { url: `redis://127.0.0.1:${redisServer.port}` } } : { redis: { port: redisServer.port } }
}

/** The local webhook endpoint, started once for the run. */
let sink: Awaited<ReturnType<typeof startSink>> | undefined

function webhookOptions(): HookmqBenchOptions {
  return { webhooks: [{ name: 'bench', url: sink!.url, topics: ['bench/#'], maxQueue: 10000000, batch: { maxSize: 500, maxWaitMs: 20 } }] }
}

function webhookScenarios(): Scenario[] {
  return [
    {
      name: 'fan-in-qos0 (webhook rule on)',
      unit: 'msg/s',
      higherIsBetter: true,
      brokers: allHookmq,
      options: webhookOptions,
      run: fanInRun({ perPublisher: per(50000), qos: 0 }),
    },
    {
      name: 'webhook forwarding',
      unit: 'msg/s',
      higherIsBetter: true,
      brokers: allHookmq,
      options: webhookOptions,
      run: async (port) => {
        const before = await sink!.count()
        const started = Date.now()
        const r = await fanIn(port, { publishers: 10, perPublisher: fewer(per(50000)), qos: 0, payload: 64 })
        const end = Date.now() + 60000
        while ((await sink!.count()) - before < r.expected && Date.now() < end) await sleep(20)
        const forwarded = (await sink!.count()) - before
        return { value: forwarded / (((await sink!.lastAt()) - started) / 1000), note: forwarded < r.expected ? `LOST ${r.expected - forwarded}` : undefined }
      },
    },
  ]
}

/**
 * Memory per idle connection: RSS of an idle broker before and after n clients
 * each CONNECT and SUBSCRIBE a unique topic, both read once the process has
 * been idle `settle` ms. A V8 heap grows its young generation under the burst
 * of connecting (up to 32 MB, whatever the number of connections) and gives it
 * back by itself only after some idle seconds (V8's memory reducer); read
 * 0.5 s after the last SUBACK, that one-off growth is divided among the
 * connections. Both readings are printed; the settled one is the idle cost.
 * The brokers run side by side (idle ones take no CPU) so the waits overlap.
 */
/**
 * Fan-in QoS 0 with hooks off, then acl.ts deciding every message inline,
 * then in a worker, `max(reps, 5)` rounds; each mode's ratio to hooks off is
 * taken within its round (runs seconds apart), and the median of those is
 * printed beside the rates. Also the broker's CPU time per message (all its
 * threads, from /proc): the broker is saturated in each mode, so messages per
 * CPU-second is the rate a core of its own would reach, and it does not move
 * when another tenant takes part of core 0 (the rate does, by up to 2x here).
 */
async function isolationCost(sc: Scenario): Promise<void> {
  const modes = ['off', 'inline', 'worker'] as const
  const rows = new Map<string, Row[]>(modes.map((m) => [m, []]))
  const ratios = { inline: [] as number[], worker: [] as number[] }
  const cpuRatios = { inline: [] as number[], worker: [] as number[] }
  const usPerMessage = new Map<string, number[]>(modes.map((m) => [m, []]))
  for (let round = 0; round < Math.max(reps, quick ? 1 : 5); round++) {
    const rate: Record<string, number> = {}
    for (const mode of modes) {
      const b = await startBroker('hookmq', mode === 'off' ? {} : exampleHooks(mode, ['acl.ts']))
      try {
        const cpu0 = cpuSeconds(b.pid)
        const w0 = performance.now()
        const r = await fanIn(b.port, { publishers: 10, perPublisher: per(50000), qos: 0, payload: 64 })
        rate[mode] = r.rate
        usPerMessage.get(mode)!.push(((cpuSeconds(b.pid) - cpu0) * 1e6) / r.expected)
        rows
          .get(mode)!
          .push({ value: r.rate, unit: sc.unit, brokerCpu: (cpuSeconds(b.pid) - cpu0) / ((performance.now() - w0) / 1000), genCpu: NaN, note: lossNote(r) })
      } finally {
        await b.stop()
      }
    }
    ratios.inline.push(rate.inline! / rate.off!)
    ratios.worker.push(rate.worker! / rate.off!)
    const us = (m: string): number => usPerMessage.get(m)!.at(-1)!
    cpuRatios.inline.push(us('off') / us('inline'))
    cpuRatios.worker.push(us('off') / us('worker'))
  }
  console.log(`\n${sc.name}`)
  for (const mode of modes) {
    const rs = rows.get(mode)!
    const each = rs.map((r) => fmt(r.value, sc.unit)).join(' ')
    const ratio = mode === 'off' ? '' : `  ${median(ratios[mode]).toFixed(2)}x of off (rounds ${ratios[mode].map((x) => x.toFixed(2)).join(' ')})`
    console.log(
      `  ${mode.padEnd(7)} ${fmt(median(rs.map((r) => r.value)), sc.unit).padStart(12)} ${sc.unit}  (cpu broker ${median(rs.map((r) => r.brokerCpu)).toFixed(2)})  [${each}]${ratio}`,
    )
  }
  for (const mode of modes) {
    const us = usPerMessage.get(mode)!
    const ratio =
      mode === 'off'
        ? ''
        : `  ${median(cpuRatios[mode]).toFixed(2)}x the messages per CPU-second of off (rounds ${cpuRatios[mode].map((x) => x.toFixed(2)).join(' ')})`
    console.log(`  ${mode.padEnd(7)} ${median(us).toFixed(2).padStart(8)} us of broker CPU per message  [${us.map((x) => x.toFixed(2)).join(' ')}]${ratio}`)
  }
}

async function memory(sc: Scenario, list: BrokerName[]): Promise<void> {
  const n = quick ? 1000 : 5000
  const settle = quick ? 0 : 40000
  const settled = new Map<BrokerName, Row[]>(list.map((b) => [b, []]))
  const early = new Map<BrokerName, Row[]>(list.map((b) => [b, []]))
  // every broker of a group holds its n clients at once: as many per group as the file limit lets this process open
  // (four brokers of 5,000 clients each, with a baseline, ended the run at EMFILE under a limit of 20,000)
  const perGroup = Math.max(1, Math.min(list.length, Math.floor((fileLimit() - 1000) / n)))
  for (let rep = 0; rep < reps; rep++) {
    const order = rep % 2 === 0 ? list : [...list].reverse()
    for (let g = 0; g < order.length; g += perGroup) await memoryRound(order.slice(g, g + perGroup), n, settle, sc, settled, early)
  }
  if (settle > 0) print({ ...sc, name: `${sc.name} (settled: RSS read after ${settle / 1000} s idle and a full collection, before and after)` }, settled)
  print(
    {
      ...sc,
      name: `${sc.name}, read 0.5 s after connecting (includes the young generation grown by the burst${settle > 0 ? '' : '; quick mode, not settled'})`,
    },
    early,
  )
}

/** One round of memory(): `group` started together, n idle clients on each, RSS before and after. */
async function memoryRound(
  group: BrokerName[],
  n: number,
  settle: number,
  sc: Scenario,
  settled: Map<BrokerName, Row[]>,
  early: Map<BrokerName, Row[]>,
): Promise<void> {
  const running = await Promise.all(group.map((b) => startBroker(b)))
  try {
    await sleep(Math.max(settle, 500))
    const before: number[] = []
    for (const r of running) before.push(await collectedRss(r))
    const sockets: Array<{ destroy(): void }> = []
    const soon: number[] = []
    for (const r of running) {
      sockets.push(...(await idleClients(r.port, n)))
      await sleep(500)
      soon.push(rssBytes(r.pid))
    }
    await sleep(settle)
    for (const [i, r] of running.entries()) {
      const row = (after: number): Row => ({ value: (after - before[i]!) / n / 1024, unit: sc.unit, brokerCpu: NaN, genCpu: NaN, note: `${n} clients` })
      settled.get(r.name)!.push(row(await collectedRss(r)))
      early.get(r.name)!.push(row(soon[i]!))
    }
    for (const s of sockets) s.destroy()
  } finally {
    for (const r of running) await r.stop()
  }
}

/**
 * The amplification attack (bench/amplification.ts) on each broker, and on
 * hookmq with its property limits raised so that it routes the messages: the
 * time until all were delivered or refused, and a bystander's round trips
 * meanwhile (the raised run in full mode only). Aedes 1.2 refuses MQTT 5
 * connections: its rows say so.
 */
async function amplificationRuns(sc: Scenario, list: BrokerName[]): Promise<void> {
  const attack = { subscribers: 20, messages: 5, userProperties: 149000, timeoutMs: quick ? 20000 : 120000 }
  const raised = { limits: { maxUserProperties: 200000, maxPropertyBytes: 2000000, maxQueuedMessages: 1000000 } }
  // (baselines before issue #12 had no property limits: the attack froze them for many seconds, see the issue)
  const variants = list
    .filter((b) => b !== 'relay' && baselineDir(b) === undefined)
    .flatMap(
      (b): Array<[string, BrokerName, HookmqBenchOptions]> =>
        b !== 'hookmq'
          ? [[b, b, {}]]
          : quick
            ? [['hookmq', b, {}]]
            : [
                ['hookmq', b, {}],
                ['raised', b, raised],
              ],
    )
  const rows = new Map(variants.map(([v]) => [v, { time: [] as Row[], p99: [] as Row[], max: [] as Row[] }]))
  for (let rep = 0; rep < Math.max(reps, quick ? 1 : 3); rep++) {
    for (const [v, b, options] of rep % 2 === 0 ? variants : [...variants].reverse()) {
      const broker = await startBroker(b, options)
      const row = rows.get(v)!
      try {
        const r = await amplification(broker.port, { ...attack, cpu: () => cpuSeconds(broker.pid) })
        const note = `${r.outcome}; broker CPU ${r.brokerCpu.toFixed(2)} s; ${r.samples} round trips`
        row.time.push({ value: r.seconds, unit: 's', brokerCpu: r.brokerCpu / r.seconds, genCpu: NaN, note })
        row.p99.push({ value: r.p99, unit: 'ms', brokerCpu: NaN, genCpu: NaN })
        row.max.push({ value: r.max, unit: 'ms', brokerCpu: NaN, genCpu: NaN })
      } catch (err) {
        for (const rs of [row.time, row.p99, row.max]) rs.push({ value: NaN, unit: 's', brokerCpu: NaN, genCpu: NaN, note: `n/a: ${(err as Error).message}` })
      } finally {
        await broker.stop()
      }
    }
  }
  const pick = (kind: 'time' | 'p99' | 'max', first: string): Map<BrokerName, Row[]> =>
    new Map(variants.filter(([v]) => v !== (first === 'hookmq' ? 'raised' : 'hookmq')).map(([v, b]) => [b, rows.get(v)![kind]]))
  const what = `${attack.messages} × PUBLISH of 1 MB with ${attack.userProperties.toLocaleString('en-US')} user properties → ${attack.subscribers} MQTT 5 subscribers`
  for (const [first, label] of [['hookmq', 'default limits'], ...(quick ? [] : [['raised', "hookmq's limits raised to let it through"]])] as const) {
    print({ ...sc, name: `${sc.name} (${what}; ${label}): until all delivered or refused, s` }, pick('time', first))
    print({ ...sc, unit: 'ms', name: `  bystander round trip meanwhile, p99 ms` }, pick('p99', first))
    print({ ...sc, unit: 'ms', name: `  bystander round trip meanwhile, max ms` }, pick('max', first))
  }
}

/** whether the kernel has netem: probed at the first delayed scenario */
let netem: boolean | undefined

async function main(): Promise<void> {
  // the generator on core 1, the brokers on core 0 (see brokers.ts)
  if (existsSync('/usr/bin/taskset')) execFileSync('taskset', ['-p', '-c', '1', String(process.pid)], { stdio: 'ignore' })
  sink = await startSink()
  redisServer = await startRedisServer()
  if (redisServer === undefined) console.log('no redis-server on PATH: the Redis scenarios are skipped')
  const results = new Map<string, Map<BrokerName, Row[]>>()
  const t0 = Date.now()
  for (const sc of scenarios) {
    if (only && !only.some((o) => sc.name.startsWith(o))) continue
    if (sc.redis && redisServer === undefined) continue
    const list = (sc.brokers ?? brokers).filter((b) => picked === undefined || b === 'relay' || brokers.includes(b))
    if (sc.runAll !== undefined) {
      await sc.runAll(sc, list)
      continue
    }
    const run = sc.run
    let link: Delayed | undefined
    if (sc.rttMs !== undefined) {
      const why = netemUnavailable()
      if (why !== undefined) {
        console.log(`\n${sc.name}: skipped, ${why}`)
        continue
      }
      netem ??= kernelHasNetem()
      if (netem) link = delayedLink(sc.rttMs)
      else console.log(`\n${sc.name}: this kernel has no netem (sch_netem): the delay is a relaying process (serve-delay.ts) on the generator's core`)
    }
    const rows = new Map<BrokerName, Row[]>(list.map((b) => [b, []]))
    results.set(sc.name, rows)
    for (let rep = 0; rep < reps; rep++) {
      const order = rep % 2 === 0 ? list : [...list].reverse()
      for (const b of order) {
        if (sc.redis) await redisServer!.flush()
        const nodes: RunningBroker[] = []
        // --quick: the scenarios that need nothing of their own share one process per broker (starting
        // three brokers for every scenario was most of a quick run); the others start their own
        const shared = quick && sc.options === undefined && !sc.redis && sc.nodes === undefined && !sc.settle && sc.rttMs === undefined
        if (shared) nodes.push(await sharedBroker(b))
        else for (let k = 0; k < (sc.nodes ?? 1); k++) nodes.push(await startBroker(b, { ...sc.options?.(b), ...(sc.redis ? redisOptions(b, k) : {}) }, link))
        const cpuAll = (): number => nodes.reduce((sum, n) => sum + cpuSeconds(n.pid), 0)
        if (sc.settle) await sleep(sc.settle * 1000)
        try {
          const cpu0 = cpuAll()
          const gen0 = process.cpuUsage()
          const w0 = performance.now()
          const relay = sc.rttMs !== undefined && link === undefined ? await delayRelay(nodes[0]!.port, sc.rttMs) : undefined
          const { value, note } = await run(
            relay?.port ?? nodes[0]!.port,
            nodes[0]!.pid,
            nodes.map((n) => n.port),
            link?.host,
          ).finally(() => relay?.stop())
          const wall = (performance.now() - w0) / 1000
          const gen = process.cpuUsage(gen0)
          rows.get(b)!.push({ value, unit: sc.unit, brokerCpu: (cpuAll() - cpu0) / wall, genCpu: (gen.user + gen.system) / 1e6 / wall, note })
        } catch (err) {
          rows.get(b)!.push({ value: NaN, unit: sc.unit, brokerCpu: NaN, genCpu: NaN, note: `failed: ${(err as Error).message}` })
        } finally {
          if (!shared) for (const n of nodes) await n.stop()
        }
      }
    }
    link?.remove()
    print(sc, rows)
  }
  for (const b of kept.values()) await (await b).stop()
  console.log(
    `\n${reps} repetition(s), ${quick ? 'quick mode (scenarios without options of their own ran on one process per broker)' : 'full mode'}, ${((Date.now() - t0) / 1000).toFixed(0)} s; hookmq ran with Node flags: ${hookmqNodeFlags.join(' ') || 'none'}`,
  )
  await sink.close()
  await redisServer?.stop()
  process.exit(0)
}

/** hookmq@<dir> shown by the folder's name */
function label(b: BrokerName): string {
  const dir = baselineDir(b)
  return dir === undefined ? b : `hookmq@${basename(dir)}`
}

function fmt(v: number, unit: string): string {
  if (Number.isNaN(v)) return 'n/a'
  if (unit === 'ms' || unit === 'KB' || unit === 's') return v.toFixed(unit === 'KB' ? 1 : 3)
  return Math.round(v).toLocaleString('en-US')
}

function print(sc: Scenario, rows: Map<BrokerName, Row[]>): void {
  const med = new Map([...rows].map(([b, rs]) => [b, median(rs.map((r) => r.value))]))
  const h = med.get('hookmq')
  const parts = [...rows].map(([b, rs]) => {
    const m = med.get(b)!
    const brokerCpu = median(rs.map((r) => r.brokerCpu))
    const genCpu = median(rs.map((r) => r.genCpu))
    const cpu = Number.isNaN(brokerCpu) ? '' : `  (cpu broker ${brokerCpu.toFixed(2)}${Number.isNaN(genCpu) ? '' : ` gen ${genCpu.toFixed(2)}`})`
    const notes = rs.map((r) => r.note).filter(Boolean)
    const each = rs.length > 1 ? `  [${rs.map((r) => fmt(r.value, sc.unit)).join(' ')}]` : ''
    return `  ${label(b).padEnd(10)} ${fmt(m, sc.unit).padStart(12)} ${sc.unit}${cpu}${each}${notes.length ? '  ' + [...new Set(notes)].join('; ') : ''}`
  })
  const ratios =
    h === undefined
      ? []
      : [...med]
          .filter(([b, m]) => b !== 'hookmq' && !Number.isNaN(m))
          .map(([b, m]) => `hookmq/${label(b)} ${(sc.higherIsBetter ? h / m : m / h).toFixed(2)}x${sc.higherIsBetter ? '' : ' (lower is better: theirs/ours)'}`)
  console.log(`\n${sc.name}\n${parts.join('\n')}${ratios.length ? '\n  ' + ratios.join(', ') : ''}`)
}

await main().catch(async (err: unknown) => {
  // what the run started goes with it: a crash must not leave the sink and redis-server running
  console.error(err)
  await sink?.close()
  await redisServer?.stop()
  process.exit(1)
})
