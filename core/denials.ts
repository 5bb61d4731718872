import { throttled, type Logger } from './logger.js'
import type { ClientInfo } from './types.js'

// Every publish or subscribe the hooks (or the defaults) deny is logged at info,
// as Mosquitto logs its denials: at most one line per client and kind every 10 s
// (logger.ts throttled), with how many were not logged since. A client denied a
// thousand times a second costs a counter, not a log line each.

const EVERY_MS = 10000

type Line = (detail: unknown) => void

export class DenialLog {
  private readonly lines = { publish: new WeakMap<ClientInfo, Line>(), subscribe: new WeakMap<ClientInfo, Line>() }

  constructor(private readonly log: Logger) {}

  /** `what`: 'publish' or 'subscribe'; `target`: the topic or filter. */
  note(client: ClientInfo, what: 'publish' | 'subscribe', target: string, reasonCode: number, reason: string | undefined): void {
    const lines = this.lines[what]
    let line = lines.get(client)
    if (line === undefined) {
      line = throttled(
        (detail, count) => this.log.info({ ...(detail as object), ...(count > 1 ? { deniedSinceLastLine: count - 1 } : {}) }, `${what} denied`),
        EVERY_MS,
      )
      lines.set(client, line)
    }
    line({ clientId: client.id, username: client.username, [what === 'publish' ? 'topic' : 'filter']: target, reasonCode, reason })
  }
}
