import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Delayed } from './netem.js'

// Starting the brokers under test as their own processes, pinned to core 0
// (the load generator runs on core 1), and reading their CPU time and memory.

/** `hookmq@<dir>`: hookmq as built in another checkout (`--baseline=<dir>`), run beside this one */
export type BrokerName = 'hookmq' | 'aedes' | 'mosquitto' | 'relay' | `hookmq@${string}`

/** hookmq, this checkout's or a baseline's */
export function isHookmq(name: BrokerName): boolean {
  return name === 'hookmq' || baselineDir(name) !== undefined
}

/** The checkout a baseline `hookmq@<dir>` runs from; undefined for any other broker */
export function baselineDir(name: BrokerName): string | undefined {
  return name.startsWith('hookmq@') ? name.slice('hookmq@'.length) : undefined
}

export interface RunningBroker {
  name: BrokerName
  port: number
  pid: number
  /** a Node broker whose serve script collects its garbage on SIGUSR2 (collect.ts) */
  collects?: boolean
  stop(): Promise<void>
}

const here = fileURLToPath(new URL('.', import.meta.url))
const pin = existsSync('/usr/bin/taskset') ? ['taskset', '-c', '0'] : []

/**
 * Node's flags for hookmq (this checkout's and a baseline's alike, so that they
 * differ only in code): those `npm start` passes (package.json), or
 * HOOKMQ_NODE_FLAGS when set (empty: none, as an embedder that passes none).
 */
export const hookmqNodeFlags: string[] = (
  process.env.HOOKMQ_NODE_FLAGS ??
  (JSON.parse(readFileSync(join(here, '..', '..', 'package.json'), 'utf8')) as { scripts: { start: string } }).scripts.start
    .split(' ')
    .filter((a) => a.startsWith('--'))
    .join(' ')
)
  .split(' ')
  .filter(Boolean)

export function hasMosquitto(): boolean {
  return ['/usr/sbin/mosquitto', '/usr/bin/mosquitto', '/usr/local/sbin/mosquitto'].some((p) => existsSync(p))
}

export async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port
      s.close(() => resolve(port))
    })
  })
}

/** Options for hookmq: passed to createBroker as JSON. */
export type HookmqBenchOptions = Record<string, unknown>

/** `behind`: the broker runs in that network namespace, bound to its address (netem.ts). */
export async function startBroker(name: BrokerName, options: HookmqBenchOptions = {}, behind?: Delayed): Promise<RunningBroker> {
  const port = await freePort()
  const host = behind?.host ?? '127.0.0.1'
  if (behind !== undefined) options = { ...options, host }
  let cmd: string[]
  if (name === 'hookmq') cmd = [process.execPath, ...hookmqNodeFlags, join(here, 'serve-hookmq.js'), String(port), JSON.stringify(options)]
  else if (baselineDir(name) !== undefined)
    cmd = [process.execPath, ...hookmqNodeFlags, join(baselineDir(name)!, 'dist', 'bench', 'serve-hookmq.js'), String(port), JSON.stringify(options)]
  else if (name === 'aedes') cmd = [process.execPath, join(here, 'serve-aedes.js'), String(port), JSON.stringify(options)]
  else if (name === 'relay') cmd = [process.execPath, join(here, 'serve-relay.js'), String(port)]
  else {
    const dir = mkdtempSync(join(tmpdir(), 'hookmq-bench-mosq-'))
    const conf = join(dir, 'mosquitto.conf')
    writeFileSync(
      conf,
      `listener ${port} ${host}\nallow_anonymous true\nmax_queued_messages 0\nmax_inflight_messages 0\nset_tcp_nodelay true\npersistence false\nlog_dest none\n`,
    )
    const bin = ['/usr/sbin/mosquitto', '/usr/bin/mosquitto', '/usr/local/sbin/mosquitto'].find((p) => existsSync(p))!
    cmd = [bin, '-c', conf]
  }
  const full = [...(behind === undefined ? [] : ['ip', 'netns', 'exec', behind.netns]), ...pin, ...cmd]
  const child: ChildProcess = spawn(full[0]!, full.slice(1), { stdio: ['ignore', 'ignore', 'inherit'] })
  await waitListening(port, child, host)
  const exited = new Promise<void>((r) => child.once('exit', () => r()))
  // (a baseline's older serve script would be ended by the signal: asked only where the script answers it)
  const script = cmd.find((a) => a.endsWith('.js'))
  return {
    name,
    port,
    pid: child.pid!,
    collects: script !== undefined && readFileSync(script, 'utf8').includes('SIGUSR2'),
    stop: async () => {
      child.kill('SIGKILL')
      await exited
    },
  }
}

async function waitListening(port: number, child: ChildProcess, host = '127.0.0.1'): Promise<void> {
  const end = Date.now() + 10000
  for (;;) {
    if (child.exitCode !== null) throw new Error(`broker exited with ${child.exitCode}`)
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, host, () => {
        s.destroy()
        resolve(true)
      })
      s.on('error', () => resolve(false))
    })
    if (ok) return
    if (Date.now() > end) throw new Error('broker did not start listening')
    await new Promise((r) => setTimeout(r, 30))
  }
}

/** CPU seconds (user + system) a process has used. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) / 100 // utime, stime in clock ticks
}

/** Resident set size in bytes. */
/**
 * The broker's RSS once its garbage is collected (Node brokers: a full
 * collection on SIGUSR2, then 300 ms). Otherwise a Node broker's RSS before
 * clients came holds its start-up garbage, which the first collections they
 * cause free: 5,000 idle clients came out at -4 KB each.
 */
export async function collectedRss(r: RunningBroker): Promise<number> {
  if (r.collects === true) {
    process.kill(r.pid, 'SIGUSR2')
    await new Promise((done) => setTimeout(done, 300))
  }
  return rssBytes(r.pid)
}

export function rssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kb = /VmRSS:\s+(\d+)/.exec(status)
  return kb ? Number(kb[1]) * 1024 : 0
}

/** A redis-server for the Redis scenarios (AOF, fsync every second), not pinned: both brokers share it alike. */
export interface BenchRedis {
  port: number
  pid: number
  flush(): Promise<void>
  /** INFO stats as numbers (total_commands_processed, total_net_input_bytes, ...) */
  stats(): Promise<Record<string, number>>
  stop(): Promise<void>
}

export async function startRedisServer(): Promise<BenchRedis | undefined> {
  const bin = ['/usr/bin/redis-server', '/usr/local/bin/redis-server'].find((p) => existsSync(p))
  if (bin === undefined) return undefined
  const port = await freePort()
  const dir = mkdtempSync(join(tmpdir(), 'hookmq-bench-redis-'))
  const child = spawn(bin, ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'yes', '--appendfsync', 'everysec'], {
    stdio: 'ignore',
  })
  await waitListening(port, child)
  const exited = new Promise<void>((r) => child.once('exit', () => r()))
  const cli = (...args: string[]): Promise<void> =>
    new Promise((resolve) => {
      const c = spawn('redis-cli', ['-p', String(port), ...args], { stdio: 'ignore' })
      c.once('exit', () => resolve())
    })
  const stats = (): Promise<Record<string, number>> =>
    new Promise((resolve, reject) => {
      execFile('redis-cli', ['-p', String(port), 'INFO', 'stats'], (err, out) => {
        if (err) return reject(err)
        const r: Record<string, number> = {}
        for (const line of out.split(/\r?\n/)) {
          const [k, v] = line.split(':')
          if (k !== undefined && v !== undefined && v !== '' && !Number.isNaN(Number(v))) r[k] = Number(v)
        }
        resolve(r)
      })
    })
  return {
    port,
    pid: child.pid!,
    stats,
    flush: () => cli('FLUSHALL'),
    stop: async () => {
      child.kill('SIGKILL')
      await exited
    },
  }
}
