import type { Duplex } from 'node:stream'

// Flow control. A connection stops reading while anything holds it: a full
// backlog, or a subscriber it just published to that could not take the
// message at once (socket buffer full, or in-flight window full). Holding is
// bounded: a subscriber that has not caught up within THROTTLE_MS is marked
// slow and stops holding anyone; from then on its QoS 0 messages beyond
// maxClientBufferBytes are dropped and its QoS 1/2 queue follows queueOverflow.

/** Longest a congested subscriber holds its publishers before it is treated as slow. */
const THROTTLE_MS = 1000

export interface FlowOwner {
  readonly socket: Duplex
  readonly isOpen: boolean
  /** messages waiting in the session queue */
  readonly queued: number
  /** no congested subscriber holds it any longer */
  unthrottled?(): void
}

export class Flow {
  private holds = 0
  /** holds from congested subscribers (throttle): while any, the publisher's decided messages wait too */
  congestion = 0
  /**
   * of those, holds from subscribers whose deliver hooks are behind: while any,
   * the publisher's packets already read wait as bytes too (Connection.accepting),
   * not as a read's worth of hook calls
   */
  parked = 0
  private throttled: Flow[] | null = null
  private parking: Flow[] | null = null
  private timer: NodeJS.Timeout | undefined = undefined
  slow = false

  constructor(readonly owner: FlowOwner) {}

  /** Stop reading (counted: reading resumes when every hold is released). */
  hold(): void {
    if (this.holds++ === 0) this.owner.socket.pause()
  }

  release(): void {
    if (--this.holds === 0 && this.owner.isOpen) this.owner.socket.resume()
  }

  /** A message to this client could not go out at once: hold `publisher` back until it catches up (`park`: and stop it parsing). */
  throttle(publisher: Flow, park = false): void {
    if (this.slow) return
    if (park && (this.parking === null || !this.parking.includes(publisher))) {
      ;(this.parking ??= []).push(publisher)
      publisher.parked++
    }
    if (this.throttled === null) {
      this.throttled = [publisher]
      this.timer = setTimeout(markSlow, THROTTLE_MS, this)
    } else if (!this.throttled.includes(publisher)) {
      this.throttled.push(publisher)
    } else return
    publisher.congestion++
    publisher.hold()
  }

  /** The socket drained or the session queue emptied: release publishers once both hold. */
  caughtUp(): void {
    if (this.owner.socket.writableNeedDrain || this.owner.queued > 0) return
    this.slow = false
    this.releaseAll()
  }

  releaseAll(): void {
    const list = this.throttled
    if (list === null) return
    this.throttled = null
    clearTimeout(this.timer)
    const parked = this.parking
    this.parking = null
    if (parked !== null) for (const p of parked) p.parked--
    for (const p of list) {
      p.release()
      if (--p.congestion === 0) p.owner.unthrottled?.()
    }
  }
}

function markSlow(flow: Flow): void {
  flow.slow = true
  flow.releaseAll()
}
