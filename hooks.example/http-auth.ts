// http-auth.ts — ask an HTTP service who may connect (and, optionally, publish and subscribe).
//
// Config (`hooks.http-auth`):
//
//   {
//     "url": "https://auth.internal/mqtt/login",
//     "headers": { "authorization": "Bearer …" },
//     "acl": { "url": "https://auth.internal/mqtt/acl" }
//   }
//
// Login: POST `url` with JSON
//   { "clientId", "username", "password", "address", "protocolVersion", "listener" }
// ("password" is base64 of the bytes the client sent, or text with
// "password": "utf8"; null when the client sent none). The answer:
//   2xx             allowed; a JSON body's "user" becomes client.user (give it an
//                   "id" to name the session's owner), and a body
//                   { "result": "deny" } or { "result": "ignore" } denies (0x86)
//                   or passes to the next hook (as EMQX's HTTP auth does)
//   403             denied: "not authorized" (MQTT 5 0x87, 3.1.1 return code 5)
//   other 4xx       denied: "bad user name or password" (0x86, 3.1.1 code 4)
//   anything else,  denied: "server unavailable" (0x88, 3.1.1 code 3): the
//   no answer       service, not the client, is at fault; the client should try
//   within          again later. Fails closed: never a login (also without a
//   `timeoutMs`     "url": every login is refused, and the log says why).
//
// With "acl": POST `acl.url` with JSON
//   { "action": "publish" | "subscribe", "clientId", "username", "user", "topic", "qos", "retain" }
// (for a subscription "topic" is its filter) — 2xx (body as above) allows,
// 4xx denies (0x87); an error or timeout denies with 0x80 (an MQTT 3.1.1
// publisher at QoS 1/2 is then disconnected without an acknowledgement, so it
// sends the message again later, instead of losing it to a PUBACK).
//
// Answers are cached (allowed `cache.ttlMs`, denied `cache.denyTtlMs`; at most
// `cache.maxEntries` each, the oldest dropped): a reconnecting fleet or a busy
// topic does not call the service each time. Login entries are keyed by an
// HMAC (with a key made when the hook loads) of what was sent: no password is
// kept in memory longer than its request. Failures are never cached. Calls for
// the same key while one is on its way share it.
import { createHmac, randomBytes } from 'node:crypto'
import { defineHook, type ClientInfo, type Logger } from 'hookmq'
import { z } from 'zod'

const cacheConfig = z
  .object({
    ttlMs: z.number().int().nonnegative().default(60_000),
    denyTtlMs: z.number().int().nonnegative().default(5_000),
    maxEntries: z.number().int().positive().default(10_000),
  })
  .prefault({})

const config = z.object({
  url: z.url({ protocol: /^https?$/ }).optional(),
  headers: z.record(z.string(), z.string()).default({}),
  password: z.enum(['base64', 'utf8']).default('base64'),
  // below this hook's deadline (timeoutMs, 3000): a service that does not answer is a 0x88, not a timed-out call (0x87)
  timeoutMs: z.number().int().positive().max(2500).default(2000),
  cache: cacheConfig,
  acl: z.object({ url: z.url({ protocol: /^https?$/ }), cache: cacheConfig }).optional(),
})

export default defineHook({
  name: 'http-auth',
  order: 5,
  timeoutMs: 3000,
  config,

  setup({ config, log }) {
    if (config.url === undefined) log.warn('hooks.http-auth has no url: every login is refused (0x88) until it does')
    hmacKey = randomBytes(32)
    logins = new Cache(config.cache.maxEntries)
    acls = new Cache(config.acl?.cache.maxEntries ?? 1)
  },

  authenticate(input, { config, log }) {
    if (input.reauthenticate || input.authenticationMethod !== undefined) return undefined // MQTT 5 enhanced auth: not ours
    const url = config.url
    if (url === undefined) return { deny: 'auth service not configured', reasonCode: 0x88 }
    const password = input.password === undefined ? null : config.password === 'base64' ? input.password.toString('base64') : input.password.toString('utf8')
    const body = {
      clientId: input.clientId,
      username: input.username ?? null,
      password,
      address: input.remoteAddress,
      protocolVersion: input.protocolVersion,
      listener: input.listener,
    }
    const key = createHmac('sha256', hmacKey).update(JSON.stringify(body)).digest('base64')
    return logins.get(key, config.cache, () => ask(url, body, config, log, LOGIN))
  },

  authorizePublish({ client, topic, qos, retain }, { config, log }) {
    return config.acl === undefined ? undefined : authorize(config, log, client, 'publish', topic, qos, retain)
  },

  authorizeSubscribe({ client, filter, qos }, { config, log }) {
    return config.acl === undefined ? undefined : authorize(config, log, client, 'subscribe', filter, qos, false)
  },
})

type Config = z.output<typeof config>
type CacheConfig = z.output<typeof cacheConfig>
type Answer = { allow: true; user?: unknown } | { deny: string; reasonCode: number } | true | undefined

/** what each kind of answer means: for a login, or for a publish/subscribe */
const LOGIN = { forbidden: 0x87, rejected: 0x86, failed: 0x88, rejectedText: 'bad user name or password' }
const ACL = { forbidden: 0x87, rejected: 0x87, failed: 0x80, rejectedText: 'not authorized' }

let hmacKey: Buffer
let logins: Cache
let acls: Cache

function authorize(config: Config, log: Logger, client: ClientInfo, action: string, topic: string, qos: number, retain: boolean) {
  const acl = config.acl!
  const body = { action, clientId: client.id, username: client.username ?? null, user: client.user ?? null, topic, qos, retain }
  return acls.get(JSON.stringify(body), acl.cache, () => ask(acl.url, body, config, log, ACL))
}

/** One POST; the answer with how long to cache it (0: not at all). */
async function ask(url: string, body: object, config: Config, log: Logger, kind: typeof LOGIN): Promise<Asked> {
  let res: Response
  let text: string
  try {
    res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...config.headers },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(config.timeoutMs),
      redirect: 'error',
    })
    text = await res.text()
  } catch (err) {
    log.warn({ err: { message: (err as Error).message }, url }, 'auth service unreachable: denied')
    return { answer: { deny: 'auth service unavailable', reasonCode: kind.failed }, cache: 'no' }
  }
  if (res.status === 403) return { answer: { deny: 'not authorized', reasonCode: kind.forbidden }, cache: 'deny' }
  if (res.status >= 400 && res.status < 500) return { answer: { deny: kind.rejectedText, reasonCode: kind.rejected }, cache: 'deny' }
  if (res.status < 200 || res.status >= 300) {
    log.warn({ status: res.status, url }, 'auth service failed: denied')
    return { answer: { deny: 'auth service unavailable', reasonCode: kind.failed }, cache: 'no' }
  }
  let reply: { result?: unknown; user?: unknown } = {}
  if (text.trim().length > 0) {
    try {
      reply = JSON.parse(text) as typeof reply
    } catch {
      log.warn({ url }, 'auth service answered 2xx with a body that is not JSON: denied')
      return { answer: { deny: 'auth service unavailable', reasonCode: kind.failed }, cache: 'no' }
    }
  }
  if (reply.result === 'deny') return { answer: { deny: kind.rejectedText, reasonCode: kind.rejected }, cache: 'deny' }
  if (reply.result === 'ignore') return { answer: undefined, cache: 'allow' }
  return { answer: kind === LOGIN && reply.user !== undefined ? { allow: true, user: reply.user } : true, cache: 'allow' }
}

type Asked = { answer: Answer; cache: 'allow' | 'deny' | 'no' }

/** Answers by key for a while, bounded; concurrent misses of one key share a request. */
class Cache {
  private readonly entries = new Map<string, { answer: Answer; until: number }>()
  private readonly inFlight = new Map<string, Promise<Answer>>()

  constructor(private readonly max: number) {}

  get(key: string, ttl: CacheConfig, fetch: () => Promise<Asked>): Answer | Promise<Answer> {
    const hit = this.entries.get(key)
    if (hit !== undefined) {
      if (hit.until > Date.now()) return hit.answer // (synchronous: no tick for a cached answer)
      this.entries.delete(key)
    }
    let pending = this.inFlight.get(key)
    if (pending === undefined) {
      pending = fetch()
        .then(({ answer, cache }) => {
          const ms = cache === 'allow' ? ttl.ttlMs : cache === 'deny' ? ttl.denyTtlMs : 0
          if (ms > 0) this.set(key, answer, ms)
          return answer
        })
        .finally(() => this.inFlight.delete(key))
      this.inFlight.set(key, pending)
    }
    return pending
  }

  private set(key: string, answer: Answer, ms: number): void {
    if (this.entries.size >= this.max) this.entries.delete(this.entries.keys().next().value!) // the oldest (a Map iterates in insertion order)
    this.entries.set(key, { answer, until: Date.now() + ms })
  }
}
