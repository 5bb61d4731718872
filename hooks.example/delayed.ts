// delayed.ts — publish later: a message to $delayed/<seconds>/<topic> goes to <topic> after <seconds>.
//
//   mosquitto_pub -t '$delayed/30/lights/porch/set' -m off    # reaches lights/porch/set in 30 s
//
// <seconds> is a number of seconds (decimals allowed: "0.5"), up to
// `maxDelaySeconds`. The message keeps its payload, QoS, retain flag and MQTT 5
// properties; a Message Expiry Interval keeps counting from when the broker got
// it (a message that would expire while it waits is dropped). It is published
// by the broker (as by a hook's ctx.publish: transforms apply, subscribers see
// no publisher), never to a topic starting with "$". The publisher's PUBACK
// means "accepted for later".
//
// Config (`hooks.delayed`):
//
//   { "maxDelaySeconds": 3600, "maxPending": 10000, "redisUrl": "redis://127.0.0.1:6379" }
//
// Without "redisUrl", waiting messages are kept in this hook's memory: they are
// lost when the broker restarts, when this hook is reloaded (file edit, config
// change) and when its worker is replaced. With "redisUrl" (a plain Redis, not
// a Cluster) they wait in a sorted set (`key`, default "hooks:delayed", scored
// by due time) and survive all of that: on load the
// hook picks up what is due, and every `pollMs` it looks for what has come due.
// Several broker nodes may share the set: each message is published by one node
// only, the one whose ZREM removes it (a node that dies between its ZREM and its
// publish loses that message: at most once). While Redis cannot be reached, new
// messages wait in memory instead (logged). The hook opens its own connection
// with ioredis (hookmq's own dependency: a hooks folder whose node_modules, or a
// parent's, does not have it needs `npm install ioredis`; only with "redisUrl").
//
// What a client needs: the broker itself refuses only $SYS topics, but an ACL
// must allow $delayed/... explicitly — in acl.ts a "#" or "+" as the first
// level does not match topics starting with "$" (as in MQTT). Allow exactly the
// topics a client may schedule, one level for the delay:
//
//   { "user": "*", "allow": "publish", "topics": ["$delayed/+/clients/%c/#"] }
//
// (the ACL decides on the whole $delayed topic: the delayed publish itself is
// not authorized again). This hook runs before acl.ts and refuses only what it
// cannot take: a malformed topic (0x90 Topic name invalid), a delay over the
// maximum or too many waiting messages (0x97 Quota exceeded). (An MQTT 3.1.1
// client publishing at QoS 1/2 is disconnected for those: it cannot be told.)
import { randomUUID } from 'node:crypto'
import { defineHook, type HookContext, type Logger, type MessageProperties, type PublishOptions, type QoS } from 'hookmq'
import { z } from 'zod'

const config = z.object({
  maxDelaySeconds: z
    .number()
    .positive()
    .max(30 * 86400)
    .default(3600),
  maxPending: z.number().int().positive().default(10_000),
  redisUrl: z.string().optional(),
  key: z.string().min(1).default('hooks:delayed'),
  pollMs: z.number().int().min(50).max(60_000).default(1000),
})
type Config = z.output<typeof config>

const TOPIC = /^\$delayed\/(\d+(?:\.\d+)?)\/(.+)$/s

export default defineHook({
  name: 'delayed',
  order: 5,
  timeoutMs: 3000,
  filter: { topics: ['$delayed/#'] },
  config,

  async setup(ctx) {
    scheduler = new Scheduler(ctx, await openRedis(ctx.config, ctx.log))
    scheduler.start()
    return () => scheduler!.stop()
  },

  async authorizePublish({ topic }, { config }) {
    const parsed = parse(topic)
    if (typeof parsed === 'string') return { deny: parsed, reasonCode: 0x90 }
    if (parsed.seconds > config.maxDelaySeconds) return { deny: `delay over ${config.maxDelaySeconds} s`, reasonCode: 0x97 }
    if ((await scheduler!.pending()) >= config.maxPending) return { deny: 'too many delayed messages waiting', reasonCode: 0x97 }
    return undefined // the next hook (acl.ts) decides whether this client may
  },

  async transform({ topic, payload, qos, retain, properties, client }, { config, log }) {
    const parsed = parse(topic)
    if (typeof parsed === 'string' || parsed.seconds > config.maxDelaySeconds) {
      // (published by the broker or a hook: a client's was refused by authorizePublish)
      log.warn({ topic, reason: typeof parsed === 'string' ? parsed : 'delay over maxDelaySeconds' }, 'delayed message dropped')
      return null
    }
    const now = Date.now()
    const due = now + Math.round(parsed.seconds * 1000)
    const expiry = properties?.messageExpiryInterval
    if (expiry !== undefined && now + expiry * 1000 <= due) return null // would expire while it waits
    await scheduler!.add({
      id: randomUUID(),
      due,
      topic: parsed.topic,
      payload: payload.toString('base64'),
      qos,
      retain,
      properties: properties && encodeProperties(properties),
      expiresAt: expiry === undefined ? undefined : now + expiry * 1000,
      from: client?.id,
    })
    return null // not routed now
  },
})

/** A waiting message as stored (JSON: the sorted set's member). */
interface Entry {
  id: string
  /** when to publish, ms since the epoch (the sorted set's score) */
  due: number
  topic: string
  /** base64 */
  payload: string
  qos: QoS
  retain: boolean
  properties: Record<string, unknown> | undefined
  /** ms since the epoch, when the message has a Message Expiry Interval */
  expiresAt: number | undefined
  /** publisher's client id (for the log) */
  from: string | undefined
}

/** The delay and the topic, or why the topic is not $delayed/<seconds>/<topic>. */
function parse(topic: string): { seconds: number; topic: string } | string {
  const m = TOPIC.exec(topic)
  if (m === null) return 'expected $delayed/<seconds>/<topic>'
  if (m[2]!.startsWith('$')) return 'a delayed message may not go to a $ topic'
  return { seconds: Number(m[1]), topic: m[2]! }
}

let scheduler: Scheduler | undefined

/** Where messages wait: this hook's memory, or a Redis sorted set. */
interface Store {
  add(e: Entry): Promise<void>
  /** removes and answers what is due (each entry to one caller only, across nodes) */
  claimDue(now: number, max: number): Promise<Entry[]>
  /** due time of the earliest entry */
  next(): Promise<number | undefined>
  size(): Promise<number>
}

class MemoryStore implements Store {
  private readonly entries: Entry[] = [] // by due time

  async add(e: Entry): Promise<void> {
    let i = this.entries.length
    while (i > 0 && this.entries[i - 1]!.due > e.due) i--
    this.entries.splice(i, 0, e)
  }

  async claimDue(now: number, max: number): Promise<Entry[]> {
    let n = 0
    while (n < this.entries.length && n < max && this.entries[n]!.due <= now) n++
    return this.entries.splice(0, n)
  }

  async next(): Promise<number | undefined> {
    return this.entries[0]?.due
  }

  async size(): Promise<number> {
    return this.entries.length
  }
}

/** The ioredis calls this hook makes (typed here, so that a hooks folder type-checks without ioredis). */
interface Redis {
  connect(): Promise<void>
  disconnect(): void
  on(event: 'error', listener: (err: Error) => void): unknown
  zadd(key: string, score: number, member: string): Promise<unknown>
  zrangebyscore(key: string, min: string, max: number, limit: 'LIMIT', offset: number, count: number): Promise<string[]>
  zrange(key: string, start: number, stop: number, scores: 'WITHSCORES'): Promise<string[]>
  zcard(key: string): Promise<number>
  pipeline(): { zrem(key: string, member: string): unknown; exec(): Promise<Array<[Error | null, unknown]> | null> }
}

class RedisStore implements Store {
  constructor(
    private readonly redis: Redis,
    private readonly key: string,
  ) {}

  async add(e: Entry): Promise<void> {
    await this.redis.zadd(this.key, e.due, JSON.stringify(e))
  }

  async claimDue(now: number, max: number): Promise<Entry[]> {
    const members = await this.redis.zrangebyscore(this.key, '-inf', now, 'LIMIT', 0, max)
    if (members.length === 0) return []
    const pipeline = this.redis.pipeline()
    for (const m of members) pipeline.zrem(this.key, m)
    const removed = (await pipeline.exec()) ?? []
    // ZREM answers 1 on the one node that removed it: that node publishes it
    return members.filter((_, i) => removed[i]?.[1] === 1).map((m) => JSON.parse(m) as Entry)
  }

  async next(): Promise<number | undefined> {
    const first = await this.redis.zrange(this.key, 0, 0, 'WITHSCORES')
    return first.length === 2 ? Number(first[1]) : undefined
  }

  size(): Promise<number> {
    return this.redis.zcard(this.key)
  }
}

/** ioredis, loaded only when a Redis URL is configured; connected within 2 s or not (it keeps trying). */
async function openRedis(c: Config, log: Logger): Promise<Redis | undefined> {
  if (c.redisUrl === undefined) return undefined
  // required here, not imported above: without "redisUrl" the hook needs no ioredis, to run or to type-check
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { Redis } = require('ioredis') as { Redis: new (url: string, options: object) => Redis }
  // no offline queue: while Redis is away a command fails at once, and the message waits in memory
  const redis = new Redis(c.redisUrl, { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 1 })
  let lastError = 0
  redis.on('error', (err: Error) => {
    if (Date.now() - lastError > 10_000) log.warn({ err: { message: err.message } }, 'delayed: Redis error')
    lastError = Date.now()
  })
  const connected = redis.connect().then(
    () => true,
    () => false,
  )
  const timeout = new Promise<boolean>((r) => setTimeout(r, 2000, false).unref())
  if (!(await Promise.race([connected, timeout]))) log.warn('delayed: Redis not reachable yet; new messages wait in memory until it is')
  return redis
}

/** Publishes what comes due: one timer, at the earliest known due time and at least every pollMs. */
class Scheduler {
  private readonly memory = new MemoryStore()
  private readonly redis: RedisStore | undefined
  private timer: NodeJS.Timeout | undefined
  private at = Infinity
  private ticking = false
  private stopped = false

  constructor(
    private readonly ctx: HookContext<Config>,
    private readonly connection: Redis | undefined,
  ) {
    this.redis = connection && new RedisStore(connection, ctx.config.key)
  }

  start(): void {
    void this.tick()
  }

  async stop(): Promise<void> {
    this.stopped = true
    clearTimeout(this.timer)
    const lost = await this.memory.size()
    if (lost > 0) this.ctx.log.warn({ lost }, 'delayed: messages waiting in memory are dropped (this version of the hook stops)')
    this.connection?.disconnect()
  }

  async add(e: Entry): Promise<void> {
    try {
      if (this.redis === undefined) await this.memory.add(e)
      else await this.redis.add(e)
    } catch (err) {
      this.ctx.log.warn({ err: { message: (err as Error).message } }, 'delayed: Redis unavailable, the message waits in memory')
      await this.memory.add(e)
    }
    if (e.due < this.at) this.wakeAt(e.due)
  }

  async pending(): Promise<number> {
    const local = await this.memory.size()
    return local + (this.redis === undefined ? 0 : await this.redis.size().catch(() => 0))
  }

  private async tick(): Promise<void> {
    if (this.ticking || this.stopped) return
    this.ticking = true
    this.at = Infinity
    let next = Date.now() + this.ctx.config.pollMs
    try {
      for (const store of this.redis === undefined ? [this.memory] : [this.memory, this.redis]) {
        try {
          let due: Entry[]
          do {
            due = await store.claimDue(Date.now(), 100)
            for (const e of due) this.publish(e)
          } while (due.length === 100)
          const first = await store.next()
          if (first !== undefined && first < next) next = first
        } catch (err) {
          this.ctx.log.warn({ err: { message: (err as Error).message } }, 'delayed: could not read waiting messages')
        }
      }
    } finally {
      this.ticking = false
    }
    this.wakeAt(Math.min(next, this.at)) // (this.at: what add() asked for meanwhile)
  }

  private wakeAt(when: number): void {
    if (this.stopped) return
    clearTimeout(this.timer)
    this.at = when
    this.timer = setTimeout(() => void this.tick(), Math.max(0, when - Date.now()))
    this.timer.unref()
  }

  private publish(e: Entry): void {
    const now = Date.now()
    const properties = e.properties && decodeProperties(e.properties)
    if (e.expiresAt !== undefined) {
      const left = Math.floor((e.expiresAt - now) / 1000)
      if (left <= 0) return // expired while it waited
      properties!.messageExpiryInterval = left
    }
    const message: PublishOptions = { topic: e.topic, payload: Buffer.from(e.payload, 'base64'), qos: e.qos, retain: e.retain, properties }
    this.ctx.publish(message).catch((err: unknown) => this.ctx.log.error({ err, topic: e.topic, from: e.from }, 'delayed: publish failed'))
  }
}

/** Properties as JSON (correlation data is bytes). */
function encodeProperties(p: MessageProperties): Record<string, unknown> {
  const { correlationData, ...rest } = p
  return correlationData === undefined ? rest : { ...rest, correlationData: correlationData.toString('base64') }
}

function decodeProperties(p: Record<string, unknown>): MessageProperties {
  const { correlationData, ...rest } = p
  return (typeof correlationData === 'string' ? { ...rest, correlationData: Buffer.from(correlationData, 'base64') } : rest) as MessageProperties
}
