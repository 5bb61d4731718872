// The flapping rule (limits.flapping): a client id that connects `connects`
// times within `windowSeconds` of its first counted connect is banned. One
// small record per client id seen within the window; records older than the
// window are pruned, and at most MAX_TRACKED are kept (the oldest go first).

export interface FlappingRule {
  connects: number
  windowSeconds: number
  banSeconds: number
}

/** client ids followed at once, at most (a flood of distinct ids cannot grow memory beyond it) */
export const MAX_TRACKED = 100000

interface Window {
  start: number
  count: number
}

export class Flapping {
  /** oldest window first (a window that starts again moves to the end) */
  private readonly windows = new Map<string, Window>()
  private readonly windowMs: number
  private timer: NodeJS.Timeout | undefined

  constructor(readonly rule: FlappingRule) {
    this.windowMs = rule.windowSeconds * 1000
  }

  get tracked(): number {
    return this.windows.size
  }

  /** Counts one CONNECT of `clientId`; true when it is the one that trips the rule. */
  connected(clientId: string, now: number): boolean {
    const w = this.windows.get(clientId)
    if (w !== undefined && now - w.start < this.windowMs) {
      w.count++
      if (w.count < this.rule.connects) return false
      this.windows.delete(clientId) // banned now: counted afresh once the ban lifts
      return true
    }
    if (w !== undefined) this.windows.delete(clientId)
    else if (this.windows.size >= MAX_TRACKED) this.windows.delete(this.windows.keys().next().value!)
    this.windows.set(clientId, { start: now, count: 1 })
    if (this.timer === undefined) {
      this.timer = setInterval(() => this.prune(Date.now()), this.windowMs)
      this.timer.unref()
    }
    return false
  }

  /** Drops the windows that have ended (they are in start order: stops at the first still open). */
  prune(now: number): void {
    for (const [id, w] of this.windows) {
      if (now - w.start < this.windowMs) break
      this.windows.delete(id)
    }
    if (this.windows.size === 0) this.stop()
  }

  stop(): void {
    clearInterval(this.timer)
    this.timer = undefined
  }
}
