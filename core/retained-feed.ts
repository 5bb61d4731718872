import type { Logger } from './logger.js'
import type { Outlet, Session } from './session.js'
import type { Message, Subscription } from './types.js'

// The retained messages of a new subscription, sent a slice at a time and only
// as fast as the client takes them: at most SLICE messages a turn of the event
// loop (the broker's other clients are served between two slices), and none
// while the client's socket wants a drain or, at QoS 1/2, while its in-flight
// window is full (they wait, unsent, for room, instead of filling the session
// queue and being dropped at its bound). A million retained messages reach a
// `#` subscriber in full, in bounded memory, without holding anyone else up.
// What is not sent yet when the connection closes, or when the subscription is
// replaced or removed, is not sent.

/** messages sent in one turn of the event loop, at most */
const SLICE = 256

/** The connection a feed writes to (the session's outlet while it serves it). */
export interface FeedOutlet extends Outlet {
  readonly isOpen: boolean
  /** its socket wants a drain */
  readonly backedUp: boolean
  /** Calls `feed.resume()` (once, soon) when the client may take more: its socket drained or a message in flight was acknowledged. */
  awaitRoom(feed: RetainedFeed): void
}

export class RetainedFeed {
  private page: Message[] = []
  private at = 0
  private scheduled = false
  private readonly ids: number[] | undefined

  constructor(
    private readonly outlet: FeedOutlet,
    private readonly session: Session,
    private readonly sub: Subscription,
    private readonly pages: AsyncIterator<Message[]>,
    private readonly log: Logger,
  ) {
    this.ids = sub.id === undefined ? undefined : [sub.id] // one array for all of them, as the router shares its own
  }

  start(): void {
    this.next()
  }

  /** Goes on in a later turn of the event loop (once, however often it is asked). */
  resume(): void {
    if (this.scheduled) return
    this.scheduled = true
    setImmediate(runFeed, this)
  }

  /** Sends from where it stopped until the slice is used up, the client has no room, or the messages end. */
  run(): void {
    this.scheduled = false
    const { session, sub, outlet } = this
    for (let sent = 0; ; ) {
      // the client went away, or the subscription was replaced or removed: the rest is not sent
      if (!outlet.isOpen || session.outlet !== outlet || session.subscriptions.get(sub.filter) !== sub) return this.stop()
      if (this.at === this.page.length) return this.next()
      if (sent === SLICE) return this.resume()
      const m = this.page[this.at]!
      const qos = m.qos < sub.qos ? m.qos : sub.qos
      if (outlet.backedUp || !session.hasRoomNow(qos)) return outlet.awaitRoom(this)
      this.page[this.at++] = undefined as unknown as Message // (sent: let it go)
      sent++
      // [MQTT-3.3.1-9] retained messages sent on subscribe keep the retain flag
      const p = session.deliver(m, qos, true, this.ids, null)
      if (p !== undefined) session.track(p)
    }
  }

  /** The next page, in a later turn (a store that answers at once would otherwise send every page in this one). */
  private next(): void {
    this.pages.next().then(
      (r) => {
        if (r.done === true) return
        this.page = r.value
        this.at = 0
        this.resume()
      },
      (err: unknown) => this.log.error({ err, filter: this.sub.filter }, 'retained lookup failed'),
    )
  }

  private stop(): void {
    this.page = []
    this.pages.return?.(undefined).catch(() => {})
  }
}

function runFeed(feed: RetainedFeed): void {
  feed.run()
}
