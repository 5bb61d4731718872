import { memoryUsage } from 'node:process'
import type { WorkerFlags } from './protocol.js'
import { BEAT_MS, QUIET_MS } from './watchdog-beat.js'

// A hook's thread that allocates without ever returning (one array pushed in a
// loop, a Map filled without end) is not stopped by its heap limit: past the
// limit V8 aborts the whole process rather than the worker
// (nodejs/node#47224), and an array or Map that outgrows V8's largest table
// (about 1 GiB) ends the process at any limit. The worker's own memory check
// (hook-worker.ts) cannot run while its thread is in that loop, and the call's
// deadline may be seconds away: at hundreds of MB a second, too late. So the
// broker's thread looks, every TICK_MS, at each hook thread that has been in
// synchronous code a while (a batch of calls still running, or its event loop's
// heartbeat gone quiet: top level, setup, its own timers) and at how much the
// process's resident memory grew since that run began, less what the broker's
// own thread holds (its heap and buffers: a burst of traffic is not blamed on
// a hook) and less what the other hook threads say at their beats they grew
// by. What is left is shared among the threads that may be in synchronous code
// at the time, a beat late (four top levels building a table each at start-up
// are four shares). A
// thread whose share passes its budget is ended there. The budget is its
// memoryMb while it runs alone and no hook thread started or ended since its
// run began; otherwise whose growth it is cannot be told (a new thread's
// memory before its first beat, an ended one's memory the allocator keeps), so
// then only the ceiling applies: what must never happen is V8's fatal error.

/** how often the broker's thread looks */
const TICK_MS = 25
/** the most one synchronous run may grow the process by, whatever memoryMb says: V8's largest table is about 1 GiB */
const CEILING_BYTES = 768 * 1024 * 1024
/** what was read at each tick, the last second of it, to find what it was when a run began */
const HISTORY = Math.ceil(1000 / TICK_MS)
const NONE = { rss: 0, reported: 0, epoch: 0 }

export interface Watched {
  /** the thread's flags (busySince, heartbeat, memory) */
  readonly flags: WorkerFlags
  /** what one synchronous run may grow the process by, in MiB (memoryMb) */
  readonly memoryMb: number
  /** the run grew the process by `grownMb`: end the thread (once; the entry is no longer watched) */
  overrun(grownMb: number, budgetMb: number): void
}

interface Entry {
  readonly w: Watched
  /** the run being measured: when it began (0: none) */
  since: number
  /** what was read before it began */
  base: { rss: number; reported: number; epoch: number }
}

const entries = new Set<Entry>()
const times = new Float64Array(HISTORY)
const rsses = new Float64Array(HISTORY)
const reports = new Float64Array(HISTORY)
const epochs = new Float64Array(HISTORY)
/** counts the hook threads watched and unwatched: a run during which it moved cannot be told apart from them */
let epoch = 0
let next = 0
let timer: NodeJS.Timeout | undefined

/** Watches a hook's thread until the returned function is called. */
export function watchThread(w: Watched): () => void {
  const e: Entry = { w, since: 0, base: NONE }
  entries.add(e)
  epoch++
  if (timer === undefined) {
    times.fill(0)
    record(Date.now(), elsewhere(), reported())
    timer = setInterval(tick, TICK_MS)
    timer.unref()
  }
  return () => {
    if (entries.delete(e)) epoch++
    stopWhenIdle()
  }
}

/** When the thread's current synchronous run began, or 0 when it is not in one (or not for long). */
function runningSince(flags: WorkerFlags, now: number): number {
  const busy = flags.busySince
  if (busy !== 0 && now - busy >= TICK_MS) return busy
  const beat = flags.beat
  return beat !== 0 && now - beat > QUIET_MS ? beat : 0
}

/** Whether the thread may be in synchronous code: a beat late by more than a look's worth (not yet enough to blame it, enough not to blame another for what it grows). */
function maybeRunning(flags: WorkerFlags, now: number): boolean {
  return flags.busySince !== 0 || (flags.beat !== 0 && now - flags.beat > BEAT_MS + TICK_MS)
}

function tick(): void {
  const now = Date.now()
  const rss = elsewhere()
  const told = reported()
  /** threads that may be in synchronous code: what no beat reports is shared among them */
  let running = 0
  for (const e of entries) {
    if (maybeRunning(e.w.flags, now)) running++
    const since = runningSince(e.w.flags, now)
    if (since === 0) {
      e.since = 0
      continue
    }
    if (since !== e.since) {
      e.since = since
      e.base = before(since)
    }
  }
  for (const e of entries) {
    if (e.since === 0) continue
    // the growth no thread owns to (another's shrinking is not counted: its pages may stay resident), shared
    const share = (rss - e.base.rss - Math.max(0, told - e.base.reported)) / running
    const budget = running === 1 && e.base.epoch === epoch ? Math.min(e.w.memoryMb * 1048576, CEILING_BYTES) : CEILING_BYTES
    if (share > budget) {
      entries.delete(e)
      epoch++
      e.w.overrun(Math.round(share / 1048576), Math.round(budget / 1048576))
    }
  }
  record(now, rss, told)
  stopWhenIdle()
}

function stopWhenIdle(): void {
  if (entries.size > 0 || timer === undefined) return
  clearInterval(timer)
  timer = undefined
}

/** The process's resident memory less the broker thread's heap and buffers: mostly its other threads'. */
function elsewhere(): number {
  const m = memoryUsage()
  return m.rss - m.heapTotal - Math.max(m.external, m.arrayBuffers) // (V8's external count lags behind new Buffers until a collection)
}

/** What the watched threads said they held at their last beats (stale for one in synchronous code: its growth is not in it). */
function reported(): number {
  let n = 0
  for (const e of entries) n += e.w.flags.mem
  return n
}

function record(now: number, rss: number, told: number): void {
  times[next] = now
  rsses[next] = rss
  reports[next] = told
  epochs[next] = epoch
  next = (next + 1) % HISTORY
}

/** What was read last at or before `t` (the oldest kept when `t` is older still). */
function before(t: number): { rss: number; reported: number; epoch: number } {
  let best = -1
  let oldest = -1
  for (let i = 0; i < HISTORY; i++) {
    const at = times[i]!
    if (at === 0) continue
    if (oldest === -1 || at < times[oldest]!) oldest = i
    if (at <= t && (best === -1 || at > times[best]!)) best = i
  }
  const i = best !== -1 ? best : oldest
  return { rss: rsses[i]!, reported: reports[i]!, epoch: epochs[i]! }
}
