import { Worker } from 'node:worker_threads'
import type { Logger } from '../../../core/index.js'
import { exitProcess, runningHook } from './guard.js'
import type { Quarantine } from './quarantine.js'
import { BEAT_MS, blockedReason } from './watchdog-beat.js'

// The watchdog of inline hooks, which share the broker's thread and so cannot
// be interrupted: when one blocks the event loop longer than `blockedLoopMs`,
// or blocks it while the process grows past BLOCKED_GROWTH_MB (a runaway
// allocation that would otherwise meet a fatal V8 limit within a second),
// the process logs the hook, its file and line, records the version in the
// quarantine (it runs in a worker on the next start, until the file changes)
// and exits with EXIT_CODE, for a supervisor to restart it. The watching
// happens in a thread of its own (watchdog-worker.ts), which needs no event
// loop of the broker's.

export const EXIT_CODE = 70

export interface HookAt {
  name: string
  file: string
  /** file:line:column in the hook's source */
  at: string
  /** of the sources of the version that hung */
  hash: string
}

export interface WatchdogOptions {
  blockedLoopMs: number
  log: Logger
  /** the hook whose compiled code a stack frame (its script URL, 1-based line and column) is in */
  locate(url: string, line: number, column: number): HookAt | undefined
  quarantine: Quarantine | undefined
  /** a count of the broker's work (packets in and out, connections): moving, the thread is busy, not stuck */
  work?: () => number
}

/** A frame of a hook's evaluated code in a stack: its script URL (`file#hookmq-N`), 1-based line and column. */
const HOOK_FRAME = /([^\s(]+#hookmq-\d+):(\d+):(\d+)/g

const REPORT = Symbol.for('hookmq.watchdog')

/** One watching thread per process, shared by every broker's watchdog in it (the shortest blockedLoopMs wins). */
const active = new Set<Watchdog>()
let thread: { worker: Worker; timer: NodeJS.Timeout; ms: number } | undefined

function ensureThread(ms: number, log: Logger): void {
  if (thread !== undefined && thread.ms <= ms) return
  stopThread()
  const beat = new Int32Array(new SharedArrayBuffer(4))
  const worker = new Worker(new URL('./watchdog-worker.js', import.meta.url), {
    workerData: { shared: beat.buffer, running: runningHook.buffer, blockedLoopMs: ms },
  })
  worker.unref()
  worker.on('error', (err) => log.error({ err }, 'hook watchdog stopped'))
  const timer = setInterval(bump, Math.min(BEAT_MS, Math.max(10, Math.floor(ms / 4))), beat)
  timer.unref()
  thread = { worker, timer, ms }
  for (const w of active) w.renote()
  let firstLook = ''
  let firstWork = 0
  const work = (): number => {
    let n = 0
    for (const w of active) n += w.work()
    return n
  }
  ;(globalThis as Record<symbol, unknown>)[REPORT] = (blockedMs: number, final: boolean, grownMb = 0): string => {
    // evaluated by the inspector on top of whatever holds the thread: this stack shows it
    const limit = Error.stackTraceLimit
    Error.stackTraceLimit = 200
    const stack = new Error().stack ?? ''
    Error.stackTraceLimit = limit
    for (const w of active) w.report(blockedMs, grownMb, stack) // exits when a hook of that broker is on the stack
    const top = stack
      .split('\n')
      .slice(2, 6)
      .map((l) => l.trim())
    if (!final) {
      firstLook = top.join('\n')
      firstWork = work()
      log.warn({ blockedMs, grownMb, stack: top }, 'event loop blocked, not in a hook')
      return 'warned'
    }
    // a hang stays where it is and gets nothing done; a thread found elsewhere than at the first look, or
    // one that has handled packets since, is busy (a long turn of the loop), not stuck
    if (top.join('\n') !== firstLook || work() !== firstWork) {
      log.warn({ blockedMs, stack: top }, 'event loop busy for a long turn, not stuck: watching again')
      return 'busy'
    }
    log.fatal({ blockedMs, stack: top, exitCode: EXIT_CODE }, `event loop blocked for ${blockedMs} ms (no hook on its stack): exiting for a restart`)
    exitProcess(EXIT_CODE)
  }
}

function stopThread(): void {
  if (thread === undefined) return
  clearInterval(thread.timer)
  void thread.worker.terminate()
  thread = undefined
  delete (globalThis as Record<symbol, unknown>)[REPORT]
}

export class Watchdog {
  constructor(private readonly options: WatchdogOptions) {}

  start(): void {
    active.add(this)
    ensureThread(this.options.blockedLoopMs, this.options.log)
  }

  async stop(): Promise<void> {
    active.delete(this)
    if (active.size === 0) stopThread()
  }

  private readonly noted = new Map<number, HookAt & { dir: string | undefined }>()

  /**
   * Tells the watching thread which inline hook a watch id names, so that when
   * the broker's thread cannot even be interrupted (blocked in native code) it
   * still quarantines the hook that was running before it kills the process.
   */
  note(id: number, hook: HookAt): void {
    const entry = { ...hook, dir: this.options.quarantine?.dir }
    this.noted.set(id, entry)
    thread?.worker.postMessage({ id, ...entry })
  }

  /** Forgets a watch id (that version was replaced or removed). */
  forget(id: number): void {
    this.noted.delete(id)
    thread?.worker.postMessage({ id, forget: true })
  }

  /** A new watching thread learns what the old one knew. */
  renote(): void {
    for (const [id, hook] of this.noted) thread?.worker.postMessage({ id, ...hook })
  }

  /** A count of this broker's work (see WatchdogOptions.work). */
  work(): number {
    return this.options.work?.() ?? 0
  }

  /** Runs on the blocked thread itself (an inspector evaluation): ends the process when one of this broker's hooks is on the stack. */
  report(blockedMs: number, grownMb: number, stack: string): void {
    const { log, quarantine } = this.options
    for (const m of stack.matchAll(HOOK_FRAME)) {
      const hook = this.options.locate(m[1]!, Number(m[2]), Number(m[3]))
      if (hook === undefined) continue
      const reason = blockedReason(blockedMs, grownMb)
      quarantine?.add(hook.file, { hash: hook.hash, since: Date.now(), reason, at: hook.at })
      log.fatal(
        { hook: hook.name, file: hook.file, at: hook.at, blockedMs, grownMb, exitCode: EXIT_CODE },
        `hook "${hook.name}" ${reason} at ${hook.at}: exiting for a restart; it will run quarantined in worker isolation until ${hook.file} changes`,
      )
      exitProcess(EXIT_CODE)
    }
  }
}

function bump(beat: Int32Array): void {
  Atomics.add(beat, 0, 1)
}
