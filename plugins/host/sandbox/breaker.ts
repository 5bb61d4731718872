// The circuit breaker of one hook version. `maxFailures` failures within
// `windowMs` trip it: for `backoff` its decisions deny at once, its transforms
// pass messages unchanged and its event handlers are skipped. Then calls go
// through again (probing): the first success closes it, the first failure
// trips it again with twice the back-off (up to maxBackoffMs). A new version
// of the hook starts with a new, closed breaker.

export interface BreakerSettings {
  maxFailures: number
  windowMs: number
  backoffMs: number
  maxBackoffMs: number
}

export type BreakerState = 'closed' | 'tripped' | 'probing'

export class Breaker {
  state: BreakerState = 'closed'
  /** times tripped since loaded */
  trips = 0
  /** calls answered at once because it was tripped */
  shortCircuited = 0
  private readonly times: Float64Array
  private next = 0
  private backoff: number
  private reopenAt = 0

  constructor(
    private readonly settings: BreakerSettings,
    private readonly onChange: (state: BreakerState) => void = () => {},
  ) {
    this.times = new Float64Array(settings.maxFailures)
    this.backoff = settings.backoffMs
  }

  /** False while tripped: the caller answers as a tripped hook does. */
  admit(): boolean {
    if (this.state !== 'tripped') return true
    if (performance.now() < this.reopenAt) {
      this.shortCircuited++
      return false
    }
    this.set('probing')
    return true
  }

  success(): void {
    if (this.state !== 'probing') return
    this.backoff = this.settings.backoffMs
    this.set('closed')
  }

  failure(): void {
    const now = performance.now()
    if (this.state === 'probing') {
      this.backoff = Math.min(this.backoff * 2, this.settings.maxBackoffMs)
      this.trip(now)
      return
    }
    if (this.state === 'tripped') return
    // the ring holds the last maxFailures failure times: when the oldest of them is within the window, trip
    this.times[this.next] = now
    this.next = (this.next + 1) % this.times.length
    const oldest = this.times[this.next]!
    if (oldest !== 0 && now - oldest <= this.settings.windowMs) this.trip(now)
  }

  /** ms until a tripped breaker lets calls through again (0 otherwise) */
  retryInMs(): number {
    return this.state === 'tripped' ? Math.max(0, Math.round(this.reopenAt - performance.now())) : 0
  }

  private trip(now: number): void {
    this.trips++
    this.times.fill(0)
    this.reopenAt = now + this.backoff
    this.set('tripped')
  }

  private set(state: BreakerState): void {
    this.state = state
    this.onChange(state)
  }
}
