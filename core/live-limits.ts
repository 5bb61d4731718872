import type { Config } from './config.js'

// Which limits a running broker takes from a config reload. Every part reads the
// one `config.limits` object when it needs a value (per packet, per connection,
// per queued message), so a live limit changes by a new value in that object:
// nothing is added to the publish path. The others were told to clients
// (CONNACK: Receive Maximum, Topic Alias Maximum, Maximum Packet Size) or are
// fixed in a listener (the WebSocket server's maxPayload): they need a restart.

export type Limits = Config['limits']

/** the limits that need a restart; every other limit applies at once, to the next packet, connection or queued message */
export const RESTART_LIMITS: ReadonlySet<keyof Limits> = new Set<keyof Limits>(['maxPacketSize', 'receiveMaximum', 'topicAliasMaximum'])

/** The limits that differ between `prev` and `next`, live ones and ones that need a restart. */
export function changedLimits(prev: Limits, next: Limits): { live: Array<keyof Limits>; restart: Array<keyof Limits> } {
  const live: Array<keyof Limits> = []
  const restart: Array<keyof Limits> = []
  for (const k of new Set([...Object.keys(prev), ...Object.keys(next)]) as Set<keyof Limits>) {
    if (prev[k] === next[k]) continue
    if (RESTART_LIMITS.has(k)) restart.push(k)
    else live.push(k)
  }
  return { live, restart }
}
