import { writeSync } from 'node:fs'
import { Session } from 'node:inspector'
import { parentPort, workerData } from 'node:worker_threads'
import { Quarantine } from './quarantine.js'
import { BLOCKED_GROWTH_MB, blockedReason, QUIET_MS } from './watchdog-beat.js'

// The watchdog's own thread. The broker's thread bumps a counter in shared
// memory every BEAT_MS (at most a quarter of `blockedLoopMs`), and counts every hook call it
// begins; when neither moves that long, the event loop is blocked (a turn of
// the loop that reads a flood of packets can keep timers waiting for seconds:
// calls still beginning mean it is busy, not stuck); so it is, sooner, when
// neither moves while the process grows past BLOCKED_GROWTH_MB. Then this thread connects to the broker's
// thread through the inspector and has it evaluate the watchdog's report
// (watchdog.ts): an inspector evaluation runs even inside a busy loop, on top
// of the stuck frames, so the report reads from its own stack which hook
// holds the thread, and logs, records the quarantine and exits. If even that
// does not come back, the process is killed: it must never hang silently.

const { shared, running, blockedLoopMs } = workerData as { shared: SharedArrayBuffer; running: SharedArrayBuffer; blockedLoopMs: number }
const beat = new Int32Array(shared)
const runningHook = new Int32Array(running)
/** inline hooks by watch id: whom to quarantine when the thread cannot be interrupted */
const hooks = new Map<number, { name: string; file: string; at: string; hash: string; dir: string | undefined }>()

parentPort!.on('message', (m: { id: number; forget?: true; name: string; file: string; at: string; hash: string; dir: string | undefined }) => {
  if (m.forget) hooks.delete(m.id)
  else hooks.set(m.id, m)
})
const REPORT = `globalThis[Symbol.for('hookmq.watchdog')]`

/** how often this thread looks */
const TICK_MS = 25

/** both counters: the timer's beats and the hook calls begun */
const progress = (): number => (Atomics.load(beat, 0) + Atomics.load(runningHook, 1)) | 0
let last = progress()
let lastChange = performance.now()
/** the process's resident memory when progress was last seen */
let rssAtChange = process.memoryUsage.rss()
/** 0: none; 1: investigated once; 2: investigated for the last time */
let incident = 0
/** blocked this many times blockedLoopMs, the process ends even when no hook is to blame: it must never hang */
const FINAL = 5

setInterval(
  () => {
    const now = performance.now()
    const v = progress()
    const rss = process.memoryUsage.rss()
    if (v !== last) {
      last = v
      lastChange = now
      rssAtChange = rss
      incident = 0
      return
    }
    // once at blockedLoopMs, or sooner when the blocked thread keeps allocating (an inline hook pushing to an
    // array in a loop reaches V8's largest table, a fatal error, within about a second); again, final, at
    // FINAL times blockedLoopMs (nothing on the stack was a hook's, and it is still blocked)
    const blocked = now - lastChange
    const grownMb = blocked >= QUIET_MS ? Math.round((rss - rssAtChange) / 1048576) : 0
    if (incident < 1 && (blocked >= blockedLoopMs || grownMb > BLOCKED_GROWTH_MB)) {
      incident = 1
      investigate(Math.round(blocked), false, grownMb > BLOCKED_GROWTH_MB ? grownMb : 0)
    } else if (incident === 1 && blocked >= FINAL * blockedLoopMs) {
      incident = 2
      investigate(Math.round(blocked), true, 0)
    }
  },
  Math.min(TICK_MS, Math.max(10, Math.floor(blockedLoopMs / 8))),
)

function investigate(blockedMs: number, final: boolean, grownMb: number): void {
  const session = new Session()
  session.connectToMainThread()
  const giveUp = setTimeout(() => {
    // not even an inspector evaluation runs (native code): quarantine the hook that was running, from here
    const hook = hooks.get(Atomics.load(runningHook, 0))
    if (hook?.dir !== undefined)
      new Quarantine(hook.dir).add(hook.file, {
        hash: hook.hash,
        since: Date.now(),
        reason: `${blockedReason(blockedMs, grownMb)} (in native code)`,
        at: hook.at,
      })
    const who = hook ? `hook "${hook.name}" (${hook.file}) blocked` : 'the event loop has been blocked'
    writeSync(
      2,
      `hookmq watchdog: ${who} for ${blockedMs} ms and could not be interrupted; killing the process${hook ? '; it will run quarantined in worker isolation' : ''}\n`,
    )
    process.kill(process.pid, 'SIGKILL')
  }, 2000)
  // runs inside the busy loop (the inspector interrupts it): the report reads its own stack there
  session.post('Runtime.evaluate', { expression: `${REPORT}?.(${blockedMs}, ${final}, ${grownMb})`, returnByValue: true }, (_err, answer) => {
    clearTimeout(giveUp) // not a hook's doing (it answered instead of ending the process): keep watching
    session.disconnect()
    // 'busy': the thread was somewhere else than at the first look: working, not stuck; watch afresh
    if ((answer as { result?: { value?: unknown } } | undefined)?.result?.value === 'busy') {
      incident = 0
      lastChange = performance.now()
    }
  })
}
