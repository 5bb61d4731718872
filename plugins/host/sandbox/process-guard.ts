import type { Logger } from '../../../core/index.js'
import { original, where } from '../compile.js'
import type { HookHost } from '../host.js'
import { exitProcess, guardProcess } from './guard.js'
import { Watchdog } from './watchdog.js'

// What a folder of hook files adds to the process: the real process.exit and
// friends refuse while hook code runs, the watchdog of inline hooks, and
// rejections nobody handled or throws nobody caught that come from a hook's
// code (a fire-and-forget promise, a timer) counted as that hook's errors
// instead of ending the process.

export class ProcessGuard {
  private readonly watchdog: Watchdog

  constructor(
    private readonly host: HookHost,
    private readonly log: Logger,
  ) {
    this.watchdog = new Watchdog({
      blockedLoopMs: host.settings.blockedLoopMs,
      log,
      quarantine: host.options.quarantine,
      work: () => {
        const s = host.broker?.stats
        return s === undefined ? 0 : s.received[0] + s.received[1] + s.received[2] + s.sent[0] + s.sent[1] + s.sent[2] + s.connectionsTotal
      },
      locate: (url, line, column) => {
        const s = host.scriptOf(url)
        if (s === undefined) return undefined
        const pos = original(s.compiled, line, column)
        return { name: s.name, file: s.file, at: pos ? where(pos) : s.file, hash: s.compiled.sourceHash }
      },
    })
  }

  start(): void {
    guardProcess()
    this.watchdog.start()
    process.on('unhandledRejection', this.unhandled)
    process.on('uncaughtException', this.uncaught)
    this.host.events.on('change', this.changed)
  }

  async stop(): Promise<void> {
    this.host.events.off('change', this.changed)
    process.off('unhandledRejection', this.unhandled)
    process.off('uncaughtException', this.uncaught)
    await this.watchdog.stop()
  }

  private readonly watched = new Map<string, number>()

  /** A version loaded or removed: the watchdog learns (or forgets) which inline hook its id names. */
  private readonly changed = (c: { key: string; kind: string }): void => {
    if (c.kind === 'failed') return
    const before = this.watched.get(c.key)
    if (before !== undefined) this.watchdog.forget(before)
    this.watched.delete(c.key)
    const e = this.host.entryOf(c.key)
    if (e === undefined || e.watchId === 0 || e.file === undefined || e.compiled === undefined) return
    this.watched.set(c.key, e.watchId)
    this.watchdog.note(e.watchId, { name: e.name, file: e.file, at: e.file, hash: e.compiled.sourceHash })
  }

  /** A rejection nobody handled: a hook's error when its stack names a hook's script (logged otherwise; never the end of the process). */
  private readonly unhandled = (reason: unknown): void => {
    if (!this.blame(reason, 'unhandled rejection')) this.log.error({ err: reason }, 'a promise was rejected and nobody handled it')
  }

  /**
   * A throw nobody caught (in a hook's timer, say): a hook's error when its
   * stack names a hook's script. Otherwise the broker's own state is unknown:
   * the process ends as Node would end it (exit code 1), for a restart.
   */
  private readonly uncaught = (err: unknown): void => {
    if (this.blame(err, 'uncaught exception')) return
    this.log.fatal({ err }, 'uncaught exception: exiting')
    exitProcess(1)
  }

  /** Counts `err` as the error of the hook whose script its stack names; false when none does. */
  private blame(err: unknown, what: string): boolean {
    let stack = ''
    try {
      stack = err instanceof Error && typeof err.stack === 'string' ? err.stack : ''
    } catch {
      // a stack getter that throws: nobody to blame
    }
    const m = /([^\s(]+#hookmq-\d+):\d+:\d+/.exec(stack)
    if (m === null) return false
    // a hook script's frame: a hook's error, even from a version replaced since (its timers can outlive it)
    const script = this.host.scriptOf(m[1]!)
    const entry = script === undefined ? undefined : this.host.entryOf(script.file)
    if (entry === undefined || entry.compiled?.url !== m[1]) {
      this.log.error({ err, script: m[1] }, `${what} in a hook version that is not serving (loading, retiring or replaced)`)
      return true
    }
    entry.stats.errors++
    entry.breaker.failure()
    entry.reportFailure({ what, err })
    return true
  }
}
