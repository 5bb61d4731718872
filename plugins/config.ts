import { z } from 'zod'
import { checkTopicFilter, configSchema, isLoopback } from '../core/index.js'

// The whole configuration: the core's schema extended with the first-party
// plugins' keys. The CLI, the config file and createBroker all go through it.

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/
export const WEBHOOK_EVENTS = [
  'clientConnected',
  'clientDisconnected',
  'clientError',
  'keepaliveTimeout',
  'subscribed',
  'unsubscribed',
  'delivered',
  'decision',
] as const

const topicFilter = z.string().refine((f) => checkTopicFilter(f, { maxTopicLength: 65535, maxTopicLevels: 1024 }) === undefined, 'not a valid topic filter')

export const webhookSchema = z.strictObject({
  name: z.string().regex(NAME, 'letters, digits, "_", "-" and "." only').describe('name of the webhook (in payloads, metrics and ctx.forward)'),
  url: z.url({ protocol: /^https?$/ }).describe('where deliveries are POSTed'),
  topics: z.array(topicFilter).default([]).describe('topic filters of published messages to forward'),
  events: z
    .array(z.enum(WEBHOOK_EVENTS))
    .default([])
    .describe('lifecycle events to forward; `decision`: the audit records (every deny, and allows with audit.allows)'),
  headers: z.record(z.string(), z.string()).default({}).describe('extra HTTP headers'),
  secret: z.string().min(1).optional().describe('HMAC-SHA256 key for the X-Hookmq-Signature header'),
  batch: z
    .strictObject({
      maxSize: z.int().min(1).max(10000).default(100).describe('deliveries per request at most'),
      maxWaitMs: z.int().min(0).max(60000).default(50).describe('longest a delivery waits for its batch to fill'),
    })
    .prefault({})
    .describe('batching'),
  retry: z
    .strictObject({
      maxAttempts: z.int().min(1).max(100).default(12).describe('attempts before a batch goes to the dead letters'),
      minDelayMs: z.int().min(1).default(200).describe('first backoff (full jitter, doubling)'),
      maxDelayMs: z.int().min(1).default(60000).describe('longest backoff'),
    })
    .prefault({})
    .describe('retries'),
  timeoutMs: z.int().min(1).default(5000).describe('timeout of one request'),
  concurrency: z.int().min(1).max(64).default(4).describe('requests in flight at once (1: strictly ordered)'),
  maxQueue: z.int().min(1).default(100000).describe('in-memory outbox bound; the oldest deliveries go first'),
  maxQueueBytes: z
    .int()
    .min(65536)
    .default(134217728)
    .describe(
      'in-memory outbox bound in bytes (the deliveries as kept: topic, payload, properties, client id); the oldest go first. A dead endpoint with 20 KB bodies held 3.9 GB under maxQueue alone. (With Redis the stream holds the deliveries, in Redis: neither bound applies)',
    ),
})

const redisUrl = z.string().regex(/^rediss?:\/\//, 'a redis:// or rediss:// URL')

export const redisSchema = z
  .strictObject({
    url: redisUrl.default('redis://127.0.0.1:6379').describe('Redis URL (redis://, rediss://; user, password and db are used with sentinels too)'),
    sentinels: z.array(redisUrl).min(1).optional().describe('Sentinel addresses (redis://host:port); then `sentinelName` names the master'),
    sentinelName: z.string().min(1).default('mymaster').describe('master name the sentinels watch'),
    cluster: z
      .array(redisUrl)
      .min(1)
      .optional()
      .describe('Redis Cluster seed nodes (redis://host:port); keys then share one hash slot through the `{...}` in keyPrefix'),
    keyPrefix: z.string().optional().describe('prefix of every key hookmq writes (default `hookmq:`, with Redis Cluster `{hookmq}:`)'),
    ttl: z
      .strictObject({
        subscriptions: z
          .int()
          .min(1)
          .optional()
          .describe('seconds an offline MQTT 3.1.1 persistent session (and its subscriptions) is kept; MQTT 5 clients set their own Session Expiry'),
        packets: z.int().min(1).optional().describe("seconds a message waits in an offline session's queue; a Message Expiry Interval takes precedence"),
      })
      .prefault({})
      .describe('expiry of what offline clients leave in Redis (unset: limits.persistentSessionExpiry and limits.queuedMessageExpiry apply)'),
    heartbeatMs: z.int().min(100).default(1000).describe('how often a node renews its heartbeat'),
    nodeTimeoutMs: z
      .int()
      .min(300)
      .default(5000)
      .describe("a node whose heartbeat is older is dead: another takes its sessions and publishes its clients' wills (at least 2 × `heartbeatMs`)"),
    streamMaxLength: z.int().min(1000).default(100000).describe("entries kept in each node's cluster stream (a node further behind loses the oldest)"),
  })
  .refine((r) => r.cluster === undefined || r.keyPrefix === undefined || /\{[^}]+\}/.test(r.keyPrefix), {
    message: "with Redis Cluster, keyPrefix needs a hash tag such as {hookmq}: (hookmq's keys are used together)",
    path: ['keyPrefix'],
  })
  .refine((r) => r.nodeTimeoutMs >= 2 * r.heartbeatMs, {
    message: 'must be at least twice heartbeatMs (one late heartbeat would make a live node look dead)',
    path: ['nodeTimeoutMs'],
  })
  .transform((r) => ({ ...r, keyPrefix: r.keyPrefix ?? (r.cluster === undefined ? 'hookmq:' : '{hookmq}:') }))

export const hookmqConfigSchema = configSchema
  .extend({
    webhooks: z
      .array(webhookSchema)
      .default([])
      .refine((ws) => new Set(ws.map((w) => w.name)).size === ws.length, 'webhook names must be unique')
      .describe('webhook forwarding rules'),
    redis: redisSchema
      .optional()
      .describe('Redis: persistent sessions, retained messages and the durable webhook outbox; the nodes on one Redis form one broker'),
    http: z
      .union([
        z.literal(false),
        z.strictObject({
          port: z.int().min(0).max(65535).default(9883).describe('HTTP endpoint port (0 picks a free port)'),
          host: z.string().min(1).optional().describe('bind address; defaults to `host`'),
          token: z
            .string()
            .min(16, 'at least 16 characters')
            .regex(/^\S+$/, 'no spaces')
            .optional()
            .describe(
              'admin bearer token (`Authorization: Bearer <token>`) for /metrics, /hooks, the admin API and the dashboard; without any token the endpoint answers loopback only, and binding it beyond loopback is refused',
            ),
          tokens: z
            .array(
              z.strictObject({
                token: z.string().min(16, 'at least 16 characters').regex(/^\S+$/, 'no spaces'),
                role: z.enum(['read', 'admin']).describe('read: GET only; admin: everything'),
                name: z.string().optional().describe('who holds it (shown in the log of admin actions)'),
              }),
            )
            .optional()
            .describe('more tokens, each read-only or admin'),
        }),
      ])
      .default(false)
      .describe('HTTP endpoint with /health, /live, /metrics (Prometheus), /hooks, the admin API (/admin/) and the dashboard (/), or false'),
  })
  .superRefine((c, ctx) => {
    if (c.http === false || c.http.token !== undefined || (c.http.tokens?.length ?? 0) > 0) return
    const host = c.http.host ?? c.host
    if (!isLoopback(host)) ctx.addIssue({ code: 'custom', path: ['http', 'token'], message: `required when the HTTP endpoint binds beyond loopback (${host})` })
  })

export type WebhookConfig = z.output<typeof webhookSchema>
export type RedisConfig = z.output<typeof redisSchema>
export type HookmqConfigInput = z.input<typeof hookmqConfigSchema>
export type HookmqConfig = z.output<typeof hookmqConfigSchema>
