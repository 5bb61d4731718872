import type { Config } from './config.js'

// Which limits a running broker takes from a config reload. Every part reads the
// one `config.limits` object when it needs a value (per packet, per connection,
// per queued message), so a live limit changes by a new value in that object:
// nothing is added to the publish path. The others were told to clients
// (CONNACK: Receive Maximum, Topic Alias Maximum, Maximum Packet Size) or are
// fixed in a listener (the WebSocket server's maxPayload): they need a restart.
// A limit in neither list needs a restart too (test/unit/config.test.ts asks
// that each is in one).

export type Limits = Config['limits']

/** limits a reload applies at once: to the next packet, connection, subscription or queued message */
export const LIVE_LIMITS: ReadonlySet<keyof Limits> = new Set<keyof Limits>([
  'maxInflightMessages', // (new connections: a connection's window is set at CONNECT)
  'maxInflightBytes',
  'maxQueuedMessages',
  'maxQueuedBytes',
  'queueOverflow',
  'maxSubscriptionsPerClient',
  'maxSubscriptionBytesPerClient',
  'maxRetainedMessages',
  'maxRetainedBytes',
  'maxRetainedMessagesPerClient',
  'maxRetainedBytesPerClient',
  'maxClientBufferBytes',
  'maxConnections',
  'maxTopicLength',
  'maxTopicLevels',
  'maxUserProperties',
  'maxPropertyBytes',
  'maxKeepalive', // (new connections)
  'maxSessionExpiryInterval',
  'persistentSessionExpiry', // (new sessions)
  'queuedMessageExpiry',
  'connectTimeoutMs',
  'maxConnectPacketSize',
  'maxPreLoginBytes',
])

/** limits told to clients in CONNACK or fixed in a listener: a change waits for the next start */
export const RESTART_LIMITS: ReadonlySet<keyof Limits> = new Set<keyof Limits>(['maxPacketSize', 'receiveMaximum', 'topicAliasMaximum'])

/** The limits that differ between `prev` and `next`: live ones, and ones that need a restart. */
export function changedLimits(prev: Limits, next: Limits): { live: Array<keyof Limits>; restart: Array<keyof Limits> } {
  const live: Array<keyof Limits> = []
  const restart: Array<keyof Limits> = []
  for (const k of new Set([...Object.keys(prev), ...Object.keys(next)]) as Set<keyof Limits>) {
    if (prev[k] === next[k]) continue
    if (LIVE_LIMITS.has(k)) live.push(k)
    else restart.push(k)
  }
  return { live, restart }
}
