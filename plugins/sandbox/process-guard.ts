import type { Logger } from '../../core/index.js'
import { original, where } from '../compile.js'
import type { HookHost } from '../host.js'
import { guardProcess } from './guard.js'
import { Watchdog } from './watchdog.js'

// What a folder of hook files adds to the process: the real process.exit and
// friends refuse while hook code runs, the watchdog of inline hooks, and
// rejections nobody handled (a hook's fire-and-forget promise) counted as that
// hook's errors instead of ending the process.

export class ProcessGuard {
  private readonly watchdog: Watchdog

  constructor(private readonly host: HookHost, private readonly log: Logger) {
    this.watchdog = new Watchdog({
      blockedLoopMs: host.settings.blockedLoopMs,
      log,
      quarantine: host.options.quarantine,
      locate: (url, line, column) => {
        const e = host.entryOfScript(url)
        if (e?.compiled === undefined || e.file === undefined) return undefined
        const pos = original(e.compiled, line, column)
        return { name: e.name, file: e.file, at: pos ? where(pos) : e.file, hash: e.compiled.sourceHash }
      },
    })
  }

  start(): void {
    guardProcess()
    this.watchdog.start()
    process.on('unhandledRejection', this.unhandled)
    this.host.events.on('change', this.changed)
  }

  async stop(): Promise<void> {
    this.host.events.off('change', this.changed)
    process.off('unhandledRejection', this.unhandled)
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

  private readonly unhandled = (reason: unknown): void => {
    const stack = reason instanceof Error ? reason.stack ?? '' : ''
    const m = /([^\s(]+#hookmq-\d+):\d+:\d+/.exec(stack)
    const entry = m ? this.host.entryOfScript(m[1]!) : undefined
    if (entry === undefined) {
      this.log.error({ err: reason }, 'a promise was rejected and nobody handled it')
      return
    }
    entry.stats.errors++
    entry.breaker.failure()
    entry.reportFailure({ what: 'unhandled rejection', err: reason })
  }
}
