import { writeSync } from 'node:fs'
import { Session } from 'node:inspector'
import { parentPort, workerData } from 'node:worker_threads'

// The watchdog's own thread. The broker's thread bumps a counter in shared
// memory every quarter of `blockedLoopMs`; when the counter stands still that
// long, the event loop is blocked. Then this thread connects to the broker's
// thread through the inspector, pauses it where it is to read its stack, lets
// it go and asks it (an inspector evaluation, which runs even inside a busy
// loop) to deal with it: `report` below, set by watchdog.ts, which logs, records
// the quarantine and exits when a hook is on that stack. If the thread cannot
// even be paused, the process is killed: it must never hang silently.

const { shared, blockedLoopMs } = workerData as { shared: SharedArrayBuffer; blockedLoopMs: number }
const beat = new Int32Array(shared)
const REPORT = `globalThis[Symbol.for('hookmq.watchdog')]`

let last = Atomics.load(beat, 0)
let lastChange = performance.now()
let incident = false

setInterval(() => {
  const now = performance.now()
  const v = Atomics.load(beat, 0)
  if (v !== last) {
    last = v
    lastChange = now
    incident = false
    return
  }
  if (!incident && now - lastChange >= blockedLoopMs) {
    incident = true
    investigate(Math.round(now - lastChange))
  }
}, Math.max(10, Math.floor(blockedLoopMs / 8)))

interface Frame {
  url: string
  line: number
  column: number
  functionName: string
}

function investigate(blockedMs: number): void {
  const session = new Session()
  session.connectToMainThread()
  const giveUp = setTimeout(() => {
    writeSync(2, `hookmq watchdog: the event loop has been blocked for ${blockedMs} ms and could not be interrupted; killing the process\n`)
    process.kill(process.pid, 'SIGKILL')
  }, 2000)
  session.once('Debugger.paused', (ev) => {
    const frames: Frame[] = (ev.params.callFrames as Array<{ url: string; functionName: string; location: { lineNumber: number; columnNumber?: number } }>)
      .slice(0, 30).map((f) => ({ url: f.url, functionName: f.functionName, line: f.location.lineNumber + 1, column: (f.location.columnNumber ?? 0) + 1 }))
    const report = JSON.stringify({ blockedMs, frames })
    session.post('Debugger.resume', () => {
      session.post('Runtime.evaluate', { expression: `${REPORT}?.(${JSON.stringify(report)})`, returnByValue: true }, (err, r) => {
        clearTimeout(giveUp)
        // not a hook (the report answered false): keep watching
        session.post('Debugger.disable', () => session.disconnect())
        if (err) parentPort?.postMessage({ t: 'error', message: err.message })
        void r
      })
    })
  })
  session.post('Debugger.enable', () => session.post('Debugger.pause'))
}
