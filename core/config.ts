import { z } from 'zod'
import { addressProblem } from './ban-index.js'
import { HookmqError } from './errors.js'
import { isSecretKey, maskCredentials } from './secrets.js'

// One schema for every option: config file, CLI flags and createBroker(options)
// all go through parseConfig(). Defaults live here and nowhere else.

const port = z.int().min(0).max(65535)
const seconds = z.int().min(0).max(0xffffffff)

const tlsFiles = {
  key: z.string().min(1).describe('path to the PEM private key'),
  cert: z.string().min(1).describe('path to the PEM certificate chain'),
  ca: z.string().min(1).optional().describe('path to PEM CA certificates used to verify client certificates'),
  requestCert: z.boolean().default(false).describe('ask clients for a certificate'),
  rejectUnauthorized: z.boolean().default(true).describe('refuse clients whose certificate does not verify (with requestCert)'),
}

const wsSchema = z.strictObject({
  port: port.default(8083).describe('WebSocket port'),
  host: z.string().optional().describe('bind address; defaults to `host`'),
  path: z.string().startsWith('/').default('/mqtt').describe('HTTP path of the WebSocket endpoint'),
})

const isolation = z.enum(['inline', 'worker'])

const banSchema = z
  .strictObject({
    clientId: z.string().min(1).optional().describe('ban this client id'),
    username: z.string().min(1).optional().describe('ban this user name'),
    address: z
      .string()
      .refine((a) => addressProblem(a) === undefined, 'not an IP address or a CIDR (such as 10.0.0.0/8 or fd00::/8)')
      .optional()
      .describe('ban this IP address or CIDR (an IPv4 ban also matches its IPv4-mapped IPv6 form)'),
    reason: z.string().optional().describe('why (in the log and the admin API; not told to the client)'),
    expires: z
      .union([z.iso.datetime({ offset: true }), z.int().min(0)])
      .optional()
      .describe('when it lifts: an ISO 8601 time (`2030-01-01T00:00:00Z`) or ms since the epoch; never when unset'),
  })
  .refine((b) => [b.clientId, b.username, b.address].filter((v) => v !== undefined).length === 1, 'give exactly one of clientId, username or address')

/** Keys of `hooks` that are the host's own settings; no hook may take one as its name. */
export const HOOK_SETTINGS = ['isolation', 'memoryMb', 'blockedLoopMs', 'onStartupFailure', 'preflightMs', 'breaker', 'overrides', 'record'] as const

const hooksSchema = z
  .object({
    isolation: isolation
      .default('worker')
      .describe(
        "where hook code runs unless a hook says otherwise: `worker` (a thread of its own: deadlines hold even on synchronous loops, heap limit, crashes contained) or `inline` (in the broker's thread: fastest; a watchdog ends a process a hook has hung)",
      ),
    memoryMb: z
      .int()
      .min(16)
      .max(65536)
      .default(128)
      .describe(
        'memory (heap and Buffers) a worker-isolated hook may use, in MiB, unless the hook sets `memoryMb`: past it, its worker is replaced (also when one synchronous run grows the process that much).',
      ),
    blockedLoopMs: z
      .int()
      .min(100)
      .default(2000)
      .describe(
        'an inline hook blocking the event loop this long ends the process (exit code 70); the hook then runs quarantined in a worker until its file changes',
      ),
    onStartupFailure: z
      .enum(['exit', 'deny'])
      .default('exit')
      .describe(
        'a hook that fails to load at start-up: `exit` (code 1, naming file:line) or `deny` (start, and deny every authenticate/authorize decision until the folder loads cleanly)',
      ),
    preflightMs: z.int().min(50).default(3000).describe("time a new hook version's top level has to evaluate in a throwaway worker before it is refused"),
    breaker: z
      .strictObject({
        maxFailures: z
          .int()
          .min(1)
          .default(10)
          .describe('failures (throws, rejections, timeouts, invalid answers, worker crashes) within `windowMs` that trip a hook'),
        windowMs: z.int().min(100).default(10000).describe('window of the failure count'),
        backoffMs: z.int().min(10).default(5000).describe('a tripped hook is tried again after this long (doubling while it keeps failing)'),
        maxBackoffMs: z.int().min(10).default(60000).describe('longest back-off'),
      })
      .prefault({})
      .describe("circuit breaker: a tripped hook's decisions deny at once, its transforms pass messages unchanged, its event handlers are skipped"),
    overrides: z
      .record(
        z.string(),
        z.strictObject({
          isolation: isolation.optional(),
          memoryMb: z.int().min(16).max(65536).optional(),
          timeoutMs: z.int().min(1).max(600000).optional(),
        }),
      )
      .default({})
      .describe('per hook name: `isolation`, `memoryMb` and `timeoutMs` over what the hook file says'),
    record: z
      .strictObject({
        file: z.string().min(1).describe('JSONL file the records are appended to (for `hookmq replay`; relative to the working directory)'),
        sample: z.number().min(0).max(1).default(0.01).describe('share of decisions recorded (0..1)'),
        maxBytes: z
          .int()
          .min(1024)
          .default(100 * 1024 * 1024)
          .describe('past this size the file is rotated to `<file>.1` (the previous `.1` is replaced): at most twice this on disk'),
        payloadBytes: z.int().min(0).default(0).describe('bytes of each publish payload recorded (base64); 0: none'),
        user: z.boolean().default(false).describe("record `client.user` (what the authenticate hook attached: it may hold a login's claims)"),
      })
      .optional()
      .describe(
        'record the inputs and outcomes of authenticate/authorizePublish/authorizeSubscribe decisions, sampled, never a password or authentication data (read at start-up)',
      ),
  })
  .catchall(z.unknown())

export const configSchema = z.strictObject({
  host: z.string().min(1).default('127.0.0.1').describe('bind address of every listener without its own host'),
  port: port.default(1883).describe('MQTT over TCP port (0 picks a free port)'),
  tcp: z.boolean().default(true).describe('open the plain TCP listener'),
  warmup: z
    .boolean()
    .default(true)
    .describe(
      'before the listeners open, send about 12,000 messages through a throwaway twin broker on a loopback port, so the first clients meet compiled code (about half a second of start-up)',
    ),
  ws: z
    .union([z.literal(false), wsSchema])
    .default({ port: 8083, path: '/mqtt' })
    .describe('WebSocket listener, or false'),
  tls: z
    .strictObject({
      port: port.default(8883).describe('MQTT over TLS port'),
      host: z.string().optional().describe('bind address; defaults to `host`'),
      ...tlsFiles,
    })
    .optional()
    .describe('TLS listener (off unless configured)'),
  wss: z
    .strictObject({
      port: port.default(8084).describe('secure WebSocket port'),
      host: z.string().optional().describe('bind address; defaults to `host`'),
      path: z.string().startsWith('/').default('/mqtt').describe('HTTP path of the WebSocket endpoint'),
      ...tlsFiles,
    })
    .optional()
    .describe('secure WebSocket listener (off unless configured)'),
  hooksDir: z.string().min(1).default('./hooks').describe('folder of hook files, watched and hot-reloaded (created if missing)'),
  hooks: hooksSchema
    .prefault({})
    .describe("the hook host's settings below, and per-hook config values: `hooks.<name>` is parsed by that hook's `config` schema"),
  hookTimeoutMs: z.int().min(1).default(1000).describe('deadline of one hook call unless the hook sets `timeoutMs`'),
  allowAnonymous: z.boolean().optional().describe('accept clients no authenticate hook accepted (shorthand for defaults.authenticate allow/deny)'),
  defaults: z
    .strictObject({
      authenticate: z
        .enum(['loopback', 'allow', 'deny'])
        .default('loopback')
        .describe('when every authenticate hook passes: allow only on loopback listeners, allow, or deny'),
      publish: z.enum(['allow', 'deny']).default('allow').describe('when every authorizePublish hook passes'),
      subscribe: z.enum(['allow', 'deny']).default('allow').describe('when every authorizeSubscribe hook passes'),
    })
    .prefault({})
    .describe('answers when every hook passes'),
  audit: z
    .strictObject({
      allows: z
        .boolean()
        .default(false)
        .describe('make an audit record of every allow too (every deny of authenticate, authorizePublish and authorizeSubscribe makes one)'),
      maxPerSecond: z
        .int()
        .min(1)
        .default(1000)
        .describe('audit records emitted per second at most (the `audit` event, webhooks with the `decision` event); those over it are counted as dropped'),
    })
    .prefault({})
    .describe('audit records of enforced decisions: the `audit` event, webhook event `decision`, hookmq_audit_* metrics'),
  revokedSubscriptions: z
    .enum(['remove', 'disconnect'])
    .default('remove')
    .describe('when a hook reload denies an existing subscription: remove it, or also disconnect the client (MQTT 5: 0x87)'),
  sessions: z
    .strictObject({
      identityMismatch: z
        .enum(['refuse', 'fresh'])
        .default('refuse')
        .describe(
          "a CONNECT for a client id whose session another identity owns: refuse it (CONNACK 0x85, MQTT 3.1.1 return code 2; the owner's connection stays), or discard that session and start a fresh one (the owner's connection is closed with 0x8E); an authenticate hook may decide instead",
        ),
    })
    .prefault({})
    .describe('session ownership'),
  limits: z
    .strictObject({
      maxPacketSize: z.int().min(64).max(268435455).default(1048576).describe('largest packet accepted, in bytes (MQTT 5 Maximum Packet Size)'),
      maxInflightMessages: z
        .int()
        .min(1)
        .max(65535)
        .default(1000)
        .describe(
          "unacknowledged QoS 1/2 messages sent to one client (an MQTT 5 client's Receive Maximum lowers it): its throughput is at most this per round trip",
        ),
      maxInflightBytes: z
        .int()
        .min(0)
        .default(16777216)
        .describe('bytes (topic + payload + properties) of the unacknowledged QoS 1/2 messages sent to one client; one message goes even when larger'),
      receiveMaximum: z.int().min(1).max(65535).default(100).describe('unacknowledged QoS 1/2 messages a client may send (advertised to MQTT 5 clients)'),
      maxQueuedMessages: z.int().min(0).default(1000).describe('offline / pending messages kept per session'),
      maxQueuedBytes: z.int().min(0).default(16777216).describe('bytes (topic + payload + properties) of the messages kept per session queue'),
      queueOverflow: z
        .enum(['dropOldest', 'dropNewest'])
        .default('dropOldest')
        .describe('which message goes when a session queue is full (in messages or bytes)'),
      maxSubscriptionsPerClient: z
        .int()
        .min(1)
        .default(10000)
        .describe('subscriptions one session may hold; each filter beyond gets SUBACK 0x97 (3.1.1: 0x80)'),
      maxSubscriptionBytesPerClient: z
        .int()
        .min(1024)
        .default(4194304)
        .describe(
          'characters of topic filters one session may hold (10,000 filters of 65,000 characters each held about 1 GB); a new filter past it gets SUBACK 0x97 (3.1.1: 0x80), counted as the subscriptions quota',
        ),
      maxRetainedMessages: z.int().min(0).default(1000000).describe('retained messages held broker-wide (with Redis: across the nodes, approximately)'),
      maxRetainedBytes: z.int().min(0).default(1073741824).describe('bytes (topic + payload + properties) of the retained messages held broker-wide'),
      maxRetainedMessagesPerClient: z.int().min(0).default(10000).describe('retained messages one client (by client id) may have set'),
      maxRetainedBytesPerClient: z.int().min(0).default(16777216).describe('bytes of the retained messages one client (by client id) may have set'),
      maxClientBufferBytes: z.int().min(65536).default(1048576).describe('bytes waiting on one client socket beyond which QoS 0 messages to it are dropped'),
      maxConnections: z
        .int()
        .min(1)
        .default(100000)
        .describe('client sockets open at once on all listeners together (TLS handshakes and WebSocket upgrades included); one more is closed at accept'),
      maxTopicLength: z.int().min(1).max(65535).default(65535).describe('longest topic name or filter, in bytes'),
      maxTopicLevels: z.int().min(1).default(128).describe('most `/`-separated levels in a topic'),
      maxUserProperties: z
        .int()
        .min(0)
        .max(1000000)
        .default(256)
        .describe(
          'most MQTT 5 User Properties in one PUBLISH; more: PUBACK/PUBREC 0x97 (QoS 1/2) or dropped (QoS 0), checked before they are parsed. More in any other packet (CONNECT, SUBSCRIBE, PUBACK...) closes the connection with 0x97, unparsed',
        ),
      maxPropertyBytes: z
        .int()
        .min(0)
        .max(268435455)
        .default(65536)
        .describe('largest MQTT 5 property block (Property Length) of one PUBLISH, in bytes; larger: refused as for maxUserProperties'),
      topicAliasMaximum: z
        .int()
        .min(0)
        .max(65535)
        .default(100)
        .describe(
          'topic aliases an MQTT 5 client may set, and the most the broker sets towards one (fewer when the client allows fewer, and no more once they hold 64 KiB of topics)',
        ),
      maxKeepalive: z.int().min(1).max(65535).default(65535).describe('longest keep-alive granted, in seconds (MQTT 5 Server Keep Alive)'),
      maxSessionExpiryInterval: seconds
        .default(0xffffffff)
        .describe('longest session expiry granted, in seconds (an MQTT 5 client asking for more, or 0xFFFFFFFF: never, gets this)'),
      persistentSessionExpiry: seconds
        .min(1)
        .default(7200)
        .describe(
          'seconds an offline MQTT 3.1.1 session with clean session false is kept (4294967295: until the client cleans it); MQTT 5 clients set their own',
        ),
      queuedMessageExpiry: z
        .int()
        .min(1)
        .optional()
        .describe('seconds a message waits for an offline client before it is dropped (unset: no limit); a Message Expiry Interval takes precedence'),
      connectTimeoutMs: z
        .int()
        .min(100)
        .default(10000)
        .describe('time a new socket has to send CONNECT (on TLS and WebSocket listeners, counted from the TCP accept: handshake and upgrade included)'),
      maxConnectPacketSize: z
        .int()
        .min(64)
        .max(268435455)
        .default(65536)
        .describe('largest CONNECT accepted, in bytes; a bigger one is refused from its fixed header and the socket closed'),
      maxPreLoginBytes: z
        .int()
        .min(65536)
        .default(33554432)
        .describe('bytes all connections together may hold for CONNECT packets not yet complete; the connection that would pass it is closed'),
      flapping: z
        .strictObject({
          connects: z.int().min(2).describe('CONNECTs of one client id that trip the rule'),
          windowSeconds: z.int().min(1).describe('counted within this many seconds of the first of them'),
          banSeconds: z.int().min(1).describe('seconds the client id is then banned (reason `flapping`)'),
        })
        .optional()
        .describe('ban a client id that keeps reconnecting (off unless set)'),
    })
    .prefault({})
    .describe('protocol limits'),
  bans: z
    .array(banSchema)
    .default([])
    .describe('bans of this node (a CONNECT they match is refused with 0x8A, MQTT 3.1.1: 5); those added through the admin API are shared through Redis'),
  sys: z
    .strictObject({
      enabled: z.boolean().default(true).describe("publish $SYS/broker/... topics (in a cluster, each node's under $SYS/brokers/<id>/... too)"),
      intervalMs: z.int().min(100).default(10000).describe('how often $SYS topics are published'),
    })
    .prefault({})
    .describe('$SYS topics'),
  log: z
    .strictObject({
      level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info').describe('log level'),
      format: z
        .enum(['auto', 'json', 'pretty'])
        .default('auto')
        .describe('`pretty`: lines for a human with local times (pino-pretty); `json`: one JSON object a line; `auto`: pretty when stdout is a terminal'),
    })
    .prefault({})
    .describe('logging'),
  id: z.string().min(1).optional().describe('node id (defaults to a random one)'),
})

export type ConfigInput = z.input<typeof configSchema>

export type Config = z.output<typeof configSchema>

/** Parse options; a bad key or value throws one line naming key, value and why. */
export function parseConfig(input: unknown): Config {
  return parseConfigWith(configSchema, input)
}

/** The same, against a schema that extends the core's (plugins add their keys). */
export function parseConfigWith<S extends z.ZodType>(schema: S, input: unknown): z.output<S> {
  const result = schema.safeParse(input ?? {})
  if (result.success) return result.data
  throw new HookmqError('CONFIG_INVALID', describeIssue(result.error.issues[0]!, input))
}

function describeIssue(issue: z.core.$ZodIssue, input: unknown): string {
  const path = issue.path.map(String)
  if (issue.code === 'unrecognized_keys') {
    const key = [...path, issue.keys[0]!].join('.')
    return `config error: unknown key "${key}"`
  }
  const key = path.join('.') || '(root)'
  const value = valueAt(input, issue.path)
  return maskCredentials(`config error: ${key} = ${isSecretKey(issue.path) && value !== undefined ? '***' : showValue(value)}: ${issue.message}`)
}

function valueAt(input: unknown, path: PropertyKey[]): unknown {
  let cur: unknown = input
  for (const p of path) {
    if (cur === null || typeof cur !== 'object') return undefined
    cur = (cur as Record<PropertyKey, unknown>)[p]
  }
  return cur
}

function showValue(v: unknown): string {
  if (v === undefined) return '(missing)'
  const s = maskCredentials(JSON.stringify(v) ?? String(v)) // before shortening: a cut URL would no longer look like one
  return s.length > 60 ? s.slice(0, 57) + '...' : s
}

/** The JSON Schema of a config file's input (what a user writes), from the zod schema. */
export function configJsonSchema(schema: z.ZodType = configSchema): JsonSchema {
  return z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as JsonSchema
}

/** The parts of a JSON Schema the config reference reads. */
export interface JsonSchema {
  type?: string | string[]
  properties?: Record<string, JsonSchema>
  items?: JsonSchema
  anyOf?: JsonSchema[]
  oneOf?: JsonSchema[]
  default?: unknown
  description?: string
}

/** Rows of the config reference (README): key, default, description; read from the JSON Schema. */
export function configReference(schema: z.ZodType = configSchema): Array<{ key: string; default: string; description: string }> {
  const rows: Array<{ key: string; default: string; description: string }> = []
  walk(configJsonSchema(schema), '', rows)
  return rows
}

function walk(schema: JsonSchema, prefix: string, rows: Array<{ key: string; default: string; description: string }>): void {
  for (const [name, field] of Object.entries(objectOf(schema)?.properties ?? {})) {
    const key = prefix ? `${prefix}.${name}` : name
    const inner = objectOf(field)
    // a section's own default ({}, its keys' defaults apply) says nothing the rows below it do not
    const shown = field.default === undefined || (inner !== undefined && isEmptyObject(field.default)) ? '' : JSON.stringify(field.default)
    rows.push({ key, default: shown, description: field.description ?? '' })
    if (inner) walk(inner, key, rows)
    const element = arrayOf(field)?.items
    if (element && objectOf(element)) walk(element, `${key}[]`, rows)
  }
}

/** `schema` when it describes an object with properties, or its first option that does. */
function objectOf(schema: JsonSchema): JsonSchema | undefined {
  if (schema.properties !== undefined) return schema
  return (schema.anyOf ?? schema.oneOf)?.find((o) => o.properties !== undefined)
}

function isEmptyObject(v: unknown): boolean {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && Object.keys(v).length === 0
}

function arrayOf(schema: JsonSchema): JsonSchema | undefined {
  if (schema.items !== undefined) return schema
  return (schema.anyOf ?? schema.oneOf)?.find((o) => o.items !== undefined)
}
