import type { Decision } from './hooks.js'
import { throttled, type Logger } from './logger.js'
import type { ClientInfo } from './types.js'

// Every publish or subscribe the hooks (or the defaults) deny is logged at info,
// as Mosquitto logs its denials: at most one line per client and kind every 10 s
// (logger.ts throttled), with how many were not logged since. A client denied a
// thousand times a second costs a counter, not a log line each. The line names
// the hook that denied (and its version), or `default` when every hook passed
// and defaults.publish / defaults.subscribe denied.

const EVERY_MS = 10000

type Line = (detail: unknown) => void

export class DenialLog {
  private readonly lines = { publish: new WeakMap<ClientInfo, Line>(), subscribe: new WeakMap<ClientInfo, Line>() }

  constructor(private readonly log: Logger) {}

  /** `what`: 'publish' or 'subscribe'; `target`: the topic or filter; `d`: the refusing decision (a deny, or a pass the default refused). */
  note(client: ClientInfo, what: 'publish' | 'subscribe', target: string, reasonCode: number, d: Decision): void {
    const lines = this.lines[what]
    let line = lines.get(client)
    if (line === undefined) {
      line = throttled(
        (detail, count) => this.log.info({ ...(detail as object), ...(count > 1 ? { deniedSinceLastLine: count - 1 } : {}) }, `${what} denied`),
        EVERY_MS,
      )
      lines.set(client, line)
    }
    const deny = d.result === 'deny'
    line({
      clientId: client.id,
      username: client.username,
      [what === 'publish' ? 'topic' : 'filter']: target,
      reasonCode,
      reason: deny ? d.reason : `no hook allowed it (defaults.${what}: deny)`,
      hook: deny ? d.hook : 'default',
      hookVersion: deny ? d.hookVersion : undefined,
    })
  }
}
