import type { Logger } from './logger.js'
import type { ClientInfo } from './types.js'

// Every publish or subscribe the hooks (or the defaults) deny is logged at info,
// as Mosquitto logs its denials: at most one line per client and kind every 10 s, with
// how many were not logged since. A client denied a thousand times a second
// costs a counter, not a log line each.

const EVERY_MS = 10000

interface Seen {
  last: number
  suppressed: number
}

export class DenialLog {
  private readonly seen = { publish: new WeakMap<ClientInfo, Seen>(), subscribe: new WeakMap<ClientInfo, Seen>() }

  constructor(private readonly log: Logger) {}

  /** `what`: 'publish' or 'subscribe'; `target`: the topic or filter. */
  note(client: ClientInfo, what: 'publish' | 'subscribe', target: string, reasonCode: number, reason: string | undefined): void {
    const now = Date.now()
    const seen = this.seen[what]
    let s = seen.get(client)
    if (s === undefined) seen.set(client, (s = { last: 0, suppressed: 0 }))
    if (now - s.last < EVERY_MS) {
      s.suppressed++
      return
    }
    this.log.info(
      {
        clientId: client.id,
        username: client.username,
        [what === 'publish' ? 'topic' : 'filter']: target,
        reasonCode,
        reason,
        ...(s.suppressed > 0 ? { deniedSinceLastLine: s.suppressed } : {}),
      },
      `${what} denied`,
    )
    s.last = now
    s.suppressed = 0
  }
}
