// rate-limit.ts — how many messages, and how many payload bytes, a client may publish per second.
//
// Config (`hooks.rate-limit`):
//
//   {
//     "default": { "messagesPerSecond": 50, "bytesPerSecond": 100000 },
//     "users": {
//       "fleet":  { "messagesPerSecond": 5, "bytesPerSecond": 2000, "burstMessages": 20 },
//       "bridge": {}
//     }
//   }
//
// A limit is chosen by user name (`client.user.name` from an authenticate hook,
// else the CONNECT user name), else `default`; a rate left out is not limited
// (`"bridge": {}` is unlimited). Each client (by client id) has a token bucket
// per rate: it holds up to `burstMessages` / `burstBytes` (default: one second's
// worth) and refills at the rate. A message costs 1 message and its payload's
// length in bytes; one larger than `burstBytes` is never allowed. A message over
// either limit is refused and costs nothing.
//
// What the publisher is told: MQTT 5 defines 0x96 "Message rate too high" only
// for DISCONNECT; a PUBACK/PUBREC may carry 0x97 "Quota exceeded" (an
// administratively imposed limit), which this hook answers. An MQTT 5 client
// gets PUBACK/PUBREC 0x97 at QoS 1/2. An MQTT 3.1.1 client cannot be told a
// message was refused: at QoS 1/2 the broker closes its connection without
// acknowledging (the client sends the message again after reconnecting: a
// back-off); at QoS 0 the message is dropped, for either version. Denials are
// logged by the broker (throttled per client).
//
// Memory stays bounded: a disconnected client's buckets are dropped once they
// would be full again (so reconnecting does not reset a limit), and at most
// `maxClients` clients are tracked (the oldest is forgotten). Buckets live in
// this hook's memory: a reload of the hook, or another node, starts them full.
// It runs before acl.ts (order -10) and answers only denials: a message within
// its limits goes on to the next hook.
import { defineHook, type ClientInfo } from 'hookmq'
import { z } from 'zod'

const limits = z.object({
  messagesPerSecond: z.number().positive().optional(),
  bytesPerSecond: z.number().positive().optional(),
  /** most messages at once (default: messagesPerSecond) */
  burstMessages: z.number().positive().optional(),
  /** most bytes at once (default: bytesPerSecond) */
  burstBytes: z.number().positive().optional(),
})
type Limits = z.infer<typeof limits>

export default defineHook({
  name: 'rate-limit',
  order: -10,
  isolation: 'inline', // one small map lookup per message: the fastest place for it
  config: z.object({
    default: limits.default({}),
    users: z.record(z.string(), limits).default({}),
    maxClients: z.number().int().positive().default(100_000),
  }),

  setup({ config }) {
    maxClients = config.maxClients
    // every second, forget the buckets of clients gone that have refilled
    const sweep = setInterval(() => {
      const now = performance.now()
      for (const id of leaving) {
        const b = buckets.get(id)
        if (b === undefined || full(b, now)) forget(id)
      }
    }, 1000)
    sweep.unref()
    return () => clearInterval(sweep)
  },

  authorizePublish({ client, payload }, { config }) {
    const now = performance.now()
    let b = buckets.get(client.id)
    if (b === undefined) {
      const l = limitsOf(client, config.default, config.users)
      if (l.messagesPerSecond === undefined && l.bytesPerSecond === undefined) return undefined // unlimited: nothing to keep
      b = bucket(l, now)
      if (buckets.size >= maxClients) forget(buckets.keys().next().value!) // (a Map iterates oldest first)
      buckets.set(client.id, b)
    } else refill(b, now)
    if (b.messages < 1) return { deny: 'message rate too high', reasonCode: 0x97 }
    if (b.bytes < payload.length) return { deny: 'byte rate too high', reasonCode: 0x97 }
    b.messages -= 1
    b.bytes -= payload.length
    return undefined // within its limits: the next hook (or the default) decides
  },

  on: {
    clientDisconnected(client) {
      if (buckets.has(client.id)) leaving.add(client.id)
    },
  },
})

interface Bucket {
  messages: number
  bytes: number
  /** tokens per ms; Infinity where a rate is not limited */
  messageRate: number
  byteRate: number
  messageBurst: number
  byteBurst: number
  /** performance.now() of the last refill */
  at: number
}

/** client id → its buckets */
const buckets = new Map<string, Bucket>()
/** client ids disconnected whose buckets are not yet full */
const leaving = new Set<string>()
let maxClients = 100_000

function forget(id: string): void {
  buckets.delete(id)
  leaving.delete(id)
}

function limitsOf(client: ClientInfo, fallback: Limits, users: Record<string, Limits>): Limits {
  const name = (client.user as { name?: unknown } | undefined)?.name ?? client.username
  // own keys only: a user named "constructor" gets the default
  return typeof name === 'string' && Object.hasOwn(users, name) ? users[name]! : fallback
}

function bucket(l: Limits, now: number): Bucket {
  const messageBurst = l.messagesPerSecond === undefined ? Infinity : (l.burstMessages ?? l.messagesPerSecond)
  const byteBurst = l.bytesPerSecond === undefined ? Infinity : (l.burstBytes ?? l.bytesPerSecond)
  return {
    messages: messageBurst,
    bytes: byteBurst,
    messageRate: l.messagesPerSecond === undefined ? Infinity : l.messagesPerSecond / 1000,
    byteRate: l.bytesPerSecond === undefined ? Infinity : l.bytesPerSecond / 1000,
    messageBurst,
    byteBurst,
    at: now,
  }
}

function refill(b: Bucket, now: number): void {
  const ms = now - b.at
  if (ms <= 0) return
  b.at = now
  if (b.messages < b.messageBurst) b.messages = Math.min(b.messageBurst, b.messages + ms * b.messageRate)
  if (b.bytes < b.byteBurst) b.bytes = Math.min(b.byteBurst, b.bytes + ms * b.byteRate)
}

function full(b: Bucket, now: number): boolean {
  refill(b, now)
  return b.messages >= b.messageBurst && b.bytes >= b.byteBurst
}
