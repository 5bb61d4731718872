import { execFileSync, fork } from 'node:child_process'
import { freePort } from './brokers.js'

// A real network delay between the load generator and the broker: the broker
// runs in a network namespace of its own, reached over a veth pair whose two
// ends each delay what they send by half the round trip (tc netem). Needs root,
// iproute2 and a kernel with netem (sch_netem); where the kernel lacks it, the
// bench relays through a delaying process instead (serve-delay.ts), and says so.
// Without root or iproute2 the scenarios are skipped with a message.

/** Where a broker runs behind the delay: its namespace, and the address it binds and is reached at. */
export interface Delayed {
  netns: string
  host: string
  remove(): void
}

const HOST = '10.213.0.2'
const CLIENT = '10.213.0.1'

/** Why a delayed link cannot be made here, or undefined when it can. */
export function netemUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (network namespaces and tc netem)'
  try {
    execFileSync('ip', ['-V'], { stdio: 'ignore' })
    execFileSync('tc', ['-V'], { stdio: 'ignore' })
  } catch {
    return 'needs iproute2 (ip, tc): apt-get install -y iproute2'
  }
  return undefined
}

/** Whether this kernel has netem (tried once, in a namespace of its own). */
export function kernelHasNetem(): boolean {
  const netns = `hookmq-probe-${process.pid}`
  try {
    run(['ip', 'netns', 'add', netns])
    run(['ip', 'netns', 'exec', netns, 'tc', 'qdisc', 'add', 'dev', 'lo', 'root', 'netem', 'delay', '1ms'])
    return true
  } catch {
    return false
  } finally {
    try {
      run(['ip', 'netns', 'del', netns])
    } catch {
      // never made
    }
  }
}

/** A delaying relay in front of `brokerPort` (the kernel has no netem): the port to connect to instead. */
export async function delayRelay(brokerPort: number, rttMs: number): Promise<{ port: number; stop(): void }> {
  const port = await freePort()
  const child = fork(new URL('./serve-delay.js', import.meta.url), [String(port), String(brokerPort), String(rttMs / 2)], {
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  })
  await new Promise<void>((resolve, reject) => {
    child.once('message', () => resolve())
    child.once('exit', (code) => reject(new Error(`the delay relay exited (${code})`)))
  })
  return { port, stop: () => child.kill() }
}

function run(args: string[]): void {
  execFileSync(args[0]!, args.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] })
}

/** Makes the namespace and the delayed pair (removing one a crashed run left behind). */
export function delayedLink(rttMs: number): Delayed {
  const netns = `hookmq-bench-${process.pid}`
  const outside = `hqb${process.pid % 100000}a`
  const inside = `hqb${process.pid % 100000}b`
  const remove = (): void => {
    for (const args of [
      ['ip', 'netns', 'del', netns],
      ['ip', 'link', 'del', outside],
    ]) {
      try {
        run(args)
      } catch {
        // not there
      }
    }
  }
  remove()
  const half = `${rttMs / 2}ms`
  try {
    run(['ip', 'netns', 'add', netns])
    run(['ip', 'link', 'add', outside, 'type', 'veth', 'peer', 'name', inside])
    run(['ip', 'link', 'set', inside, 'netns', netns])
    run(['ip', 'addr', 'add', `${CLIENT}/30`, 'dev', outside])
    run(['ip', 'link', 'set', outside, 'up'])
    run(['ip', 'netns', 'exec', netns, 'ip', 'addr', 'add', `${HOST}/30`, 'dev', inside])
    run(['ip', 'netns', 'exec', netns, 'ip', 'link', 'set', inside, 'up'])
    run(['ip', 'netns', 'exec', netns, 'ip', 'link', 'set', 'lo', 'up'])
    // a queue long enough for a full window at the highest rates: netem's default (1,000 packets) would drop
    run(['tc', 'qdisc', 'add', 'dev', outside, 'root', 'netem', 'delay', half, 'limit', '100000'])
    run(['ip', 'netns', 'exec', netns, 'tc', 'qdisc', 'add', 'dev', inside, 'root', 'netem', 'delay', half, 'limit', '100000'])
  } catch (err) {
    remove()
    throw err
  }
  process.once('exit', remove)
  return { netns, host: HOST, remove }
}
