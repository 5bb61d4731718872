import type { Redis } from 'ioredis'
import type { Message, OutgoingEntry, QueuedEntry, RetainedStore, SessionState, SessionStore, StoredSession, Will } from '../../core/index.js'
import { newMessage } from '../../core/index.js'

// The core's session and retained stores on Redis. Keys (under the prefix):
//   session:<id>            JSON of the session (expiry, subscriptions, will)
//   session:<id>:queue      list of queued entries (JSON), oldest first
//   session:<id>:inflight   hash packet id -> entry (JSON)
//   session:<id>:incoming   set of QoS 2 packet ids awaiting PUBREL
//   sessions                set of session ids
//   retained:t:<topic>      a retained message (JSON), expiring with it
//   retained:topics         set of topics with a retained message
//   retained:c:<depth>:<path>  set of the levels below <path> (the wildcard index)

/** A message as JSON: payload and correlation data in base64; the encoding cache never stored. */
export function messageToJson(m: Message): string {
  return JSON.stringify(messageToObject(m))
}

/** The object messageToJson writes, for records that carry a message inside (encoded once, not as a string in a string). */
export function messageToObject(m: Message): MessageJson {
  const p = m.properties
  const properties = p === undefined ? undefined : { ...p, correlationData: p.correlationData?.toString('base64') }
  return { t: m.topic, p: m.payload.toString('base64'), q: m.qos, r: m.retain, pr: properties, e: m.expiresAt, o: m.origin }
}

export interface MessageJson { t: string; p: string; q: 0 | 1 | 2; r: boolean; pr?: Record<string, unknown> & { correlationData?: string }; e?: number; o?: string }

export function messageFromJson(s: string): Message {
  return messageFromObject(JSON.parse(s) as MessageJson)
}

export function messageFromObject(j: MessageJson): Message {
  const properties = j.pr === undefined ? undefined : { ...j.pr, correlationData: j.pr.correlationData === undefined ? undefined : Buffer.from(j.pr.correlationData, 'base64') }
  if (properties !== undefined && properties.correlationData === undefined) delete properties.correlationData
  const m = newMessage(j.t, Buffer.from(j.p, 'base64'), j.q, j.r, j.o, properties as Message['properties'])
  m.expiresAt = j.e
  return m
}

/** A will as stored: its payload in base64 (inside a session record, or on its own in a node's wills hash). */
type WillJson = Omit<Will, 'payload'> & { payload: string }

function willToObject(will: Will): WillJson {
  return { ...will, payload: will.payload.toString('base64') }
}

function willFromObject(j: WillJson): Will {
  return { ...j, payload: Buffer.from(j.payload, 'base64') }
}

export function willToJson(will: Will): string {
  return JSON.stringify(willToObject(will))
}

export function willFromJson(s: string): Will {
  return willFromObject(JSON.parse(s) as WillJson)
}

/** A session record as stored (meta key): the will in its stored form. */
function sessionFromJson(s: string): StoredSession {
  const stored = JSON.parse(s) as Omit<StoredSession, 'will'> & { will?: WillJson }
  return { ...stored, will: stored.will ? willFromObject(stored.will) : undefined }
}

/** `m`: the message (as a JSON string in records written before it was embedded) */
interface EntryJson { m: MessageJson | string; q: 0 | 1 | 2; r: boolean; s?: number[]; id?: number; st?: 'publish' | 'pubrel'; x?: number }

function entryToJson(e: QueuedEntry | OutgoingEntry): string {
  const o = e as OutgoingEntry & QueuedEntry
  const j: EntryJson = { m: messageToObject(e.message), q: e.qos, r: e.retain, s: e.subscriptionIds, id: o.packetId, st: o.state, x: o.expiresAt }
  return JSON.stringify(j)
}

function entryFromJson(s: string): OutgoingEntry & { expiresAt?: number } {
  const j = JSON.parse(s) as EntryJson
  const message = typeof j.m === 'string' ? messageFromJson(j.m) : messageFromObject(j.m)
  const e: OutgoingEntry & { expiresAt?: number } = { message, qos: j.q, retain: j.r, subscriptionIds: j.s, packetId: j.id ?? 0, state: j.st ?? 'publish' }
  if (j.x !== undefined) e.expiresAt = j.x
  return e
}

/** Keys outlive the session's expiry by this much, so that a node that is running ends it (and publishes a will) first. */
const KEY_GRACE_MS = 60_000

const DEQUEUE_TO_INFLIGHT = `
local v = redis.call('LPOP', KEYS[1])
if v then redis.call('HSET', KEYS[2], ARGV[1], v) end
return 1`

type SessionRedis = Redis & { hookmqDequeueToInflight(queue: string, inflight: string, packetId: string): Promise<number> }

export class RedisSessionStore implements SessionStore {
  /**
   * `ttl` (seconds): Redis lets an offline session's keys go after its expiry
   * (plus a minute) and a queue after `packets` without a new message, so that
   * nothing lingers when no node is running to end it.
   */
  private readonly redis: SessionRedis

  constructor(redis: Redis, private readonly prefix: string, private readonly ttl: { subscriptions?: number; packets?: number } = {}) {
    const r = redis as SessionRedis
    if (typeof r.hookmqDequeueToInflight !== 'function') r.defineCommand('hookmqDequeueToInflight', { numberOfKeys: 2, lua: DEQUEUE_TO_INFLIGHT })
    this.redis = r
  }

  private key(id: string, part = ''): string {
    return `${this.prefix}session:${id}${part}`
  }

  async load(clientId: string): Promise<SessionState | undefined> {
    const [[, meta], [, queue], [, inflight], [, incoming]] = (await this.redis.multi()
      .get(this.key(clientId))
      .lrange(this.key(clientId, ':queue'), 0, -1)
      .hgetall(this.key(clientId, ':inflight'))
      .smembers(this.key(clientId, ':incoming'))
      .exec())! as Array<[Error | null, unknown]>
    if (meta === null || meta === undefined) return undefined
    const stored = sessionFromJson(meta as string)
    // an entry moved from the queue keeps its queued JSON: its packet id is the field
    const entries = Object.entries(inflight as Record<string, string>).map(([id, json]) => {
      const { expiresAt: _x, ...e } = entryFromJson(json)
      return { ...e, packetId: Number(id) }
    }).sort((a, b) => a.packetId - b.packetId)
    return {
      ...stored,
      queue: (queue as string[]).map((s) => {
        const { packetId: _id, state: _st, ...q } = entryFromJson(s)
        return q
      }),
      inflight: entries,
      incoming: (incoming as string[]).map(Number),
    }
  }

  async list(): Promise<StoredSession[]> {
    const ids = await this.redis.smembers(`${this.prefix}sessions`)
    const out: StoredSession[] = []
    const metas: Array<string | null> = []
    for (let i = 0; i < ids.length; i += 1000) metas.push(...await this.redis.mget(ids.slice(i, i + 1000).map((id) => this.key(id))))
    const gone = ids.filter((_, i) => metas[i] === null) // expired in Redis (see ttl)
    if (gone.length > 0) await this.redis.srem(`${this.prefix}sessions`, ...gone)
    for (const meta of metas) {
      if (meta === null) continue
      out.push(sessionFromJson(meta))
    }
    return out
  }

  async save(session: StoredSession): Promise<void> {
    const will = session.will ? willToObject(session.will) : undefined
    const id = session.clientId
    const m = this.redis.multi().set(this.key(id), JSON.stringify({ ...session, will })).sadd(`${this.prefix}sessions`, id)
    const keys = [this.key(id), this.key(id, ':queue'), this.key(id, ':inflight'), this.key(id, ':incoming')]
    if (session.disconnectedAt !== undefined && session.expiryInterval !== 0xffffffff) {
      const left = session.disconnectedAt + session.expiryInterval * 1000 - Date.now() + KEY_GRACE_MS
      for (const k of keys) m.pexpire(k, Math.max(1, left))
    } else {
      for (const k of keys) m.persist(k)
    }
    await m.exec()
  }

  async delete(clientId: string): Promise<void> {
    await this.redis.multi()
      .del(this.key(clientId), this.key(clientId, ':queue'), this.key(clientId, ':inflight'), this.key(clientId, ':incoming'))
      .srem(`${this.prefix}sessions`, clientId)
      .exec()
  }

  async enqueue(clientId: string, entry: QueuedEntry, max: number): Promise<void> {
    const key = this.key(clientId, ':queue')
    const m = this.redis.multi().rpush(key, entryToJson(entry)).ltrim(key, -Math.max(1, max), -1)
    if (entry.expiresAt !== undefined) m.pexpire(key, Math.max(1, entry.expiresAt - Date.now()) + KEY_GRACE_MS)
    await m.exec()
  }

  async dequeue(clientId: string): Promise<void> {
    await this.redis.lpop(this.key(clientId, ':queue'))
  }

  async putInflight(clientId: string, entry: OutgoingEntry): Promise<void> {
    await this.redis.hset(this.key(clientId, ':inflight'), String(entry.packetId), entryToJson(entry))
  }

  /** moves the queued entry inside Redis (a script): its JSON is not sent again; the hash field is its packet id */
  async dequeueToInflight(clientId: string, entry: OutgoingEntry): Promise<void> {
    await this.redis.hookmqDequeueToInflight(this.key(clientId, ':queue'), this.key(clientId, ':inflight'), String(entry.packetId))
  }

  async deleteInflight(clientId: string, packetId: number): Promise<void> {
    await this.redis.hdel(this.key(clientId, ':inflight'), String(packetId))
  }

  async addIncoming(clientId: string, packetId: number): Promise<void> {
    await this.redis.sadd(this.key(clientId, ':incoming'), String(packetId))
  }

  async deleteIncoming(clientId: string, packetId: number): Promise<void> {
    await this.redis.srem(this.key(clientId, ':incoming'), String(packetId))
  }

  async close(): Promise<void> {}
}

const RETAIN_SET = `
local p, topic = ARGV[1], ARGV[2]
local key = p .. 'retained:t:' .. topic
if ARGV[4] ~= '' then redis.call('SET', key, ARGV[3], 'PX', ARGV[4]) else redis.call('SET', key, ARGV[3]) end
if redis.call('SADD', KEYS[1], topic) == 1 then
  local prefix, depth = '', 0
  for level in string.gmatch(topic .. '/', '([^/]*)/') do
    redis.call('SADD', p .. 'retained:c:' .. depth .. ':' .. prefix, level)
    if depth == 0 then prefix = level else prefix = prefix .. '/' .. level end
    depth = depth + 1
  end
end
return 1`

// clears a topic, then prunes the index upwards while a level has neither a message nor children
const RETAIN_CLEAR = `
local p, topic = ARGV[1], ARGV[2]
redis.call('DEL', p .. 'retained:t:' .. topic)
if redis.call('SREM', KEYS[1], topic) == 0 then return 0 end
local levels = {}
for level in string.gmatch(topic .. '/', '([^/]*)/') do table.insert(levels, level) end
for i = #levels, 1, -1 do
  local path = table.concat(levels, '/', 1, i)
  if redis.call('SISMEMBER', KEYS[1], path) == 1 then break end
  if redis.call('SCARD', p .. 'retained:c:' .. i .. ':' .. path) > 0 then break end
  redis.call('SREM', p .. 'retained:c:' .. (i - 1) .. ':' .. table.concat(levels, '/', 1, i - 1), levels[i])
end
return 1`

type RetainRedis = Redis & {
  hookmqRetainSet(topics: string, prefix: string, topic: string, json: string, px: string): Promise<number>
  hookmqRetainClear(topics: string, prefix: string, topic: string): Promise<number>
}

/**
 * Retained messages, one key per topic (`retained:t:<topic>`, expiring with the
 * message's expiry), with an index of topic levels (`retained:c:<depth>:<path>`:
 * the levels below a path) so that a wildcard subscription walks only the
 * branches it can match, one round trip per level; never KEYS or SCAN.
 */
export class RedisRetainedStore implements RetainedStore {
  private readonly redis: RetainRedis
  private readonly topicsKey: string

  constructor(redis: Redis, private readonly prefix: string) {
    const r = redis as RetainRedis
    if (typeof r.hookmqRetainSet !== 'function') {
      r.defineCommand('hookmqRetainSet', { numberOfKeys: 1, lua: RETAIN_SET })
      r.defineCommand('hookmqRetainClear', { numberOfKeys: 1, lua: RETAIN_CLEAR })
    }
    this.redis = r
    this.topicsKey = `${prefix}retained:topics`
  }

  async set(message: Message): Promise<void> {
    const left = message.expiresAt === undefined ? undefined : message.expiresAt - Date.now()
    if (message.payload.length === 0 || (left !== undefined && left <= 0)) { // [MQTT-3.3.1-6] an empty payload clears
      await this.redis.hookmqRetainClear(this.topicsKey, this.prefix, message.topic)
      return
    }
    await this.redis.hookmqRetainSet(this.topicsKey, this.prefix, message.topic, messageToJson(message), left === undefined ? '' : String(Math.ceil(left)))
  }

  private children(depth: number, path: string): Promise<string[]> {
    return this.redis.smembers(`${this.prefix}retained:c:${depth}:${path}`)
  }

  async match(filter: string): Promise<Message[]> {
    const levels = filter.split('/')
    let frontier = ['']
    const candidates: string[] = []
    for (let depth = 0; depth < levels.length && frontier.length > 0; depth++) {
      const level = levels[depth]!
      const join = (path: string, child: string): string => (depth === 0 ? child : `${path}/${child}`)
      if (level === '#') {
        if (depth > 0) candidates.push(...frontier) // 'a/#' matches 'a' too
        let nodes = frontier
        for (let d = depth; nodes.length > 0; d++) { // every branch below
          const kids = await Promise.all(nodes.map((n) => this.children(d, n)))
          const next: string[] = []
          nodes.forEach((n, i) => {
            for (const k of kids[i]!) if (!(d === 0 && k.startsWith('$'))) next.push(d === 0 ? k : `${n}/${k}`) // [MQTT-4.7.2-1]
          })
          candidates.push(...next)
          nodes = next
        }
        frontier = []
        break
      }
      if (level === '+') {
        const kids = await Promise.all(frontier.map((n) => this.children(depth, n)))
        frontier = frontier.flatMap((n, i) => kids[i]!.filter((k) => !(depth === 0 && k.startsWith('$'))).map((k) => join(n, k)))
      } else {
        frontier = frontier.map((n) => join(n, level))
      }
    }
    candidates.push(...frontier)
    const out: Message[] = []
    const now = Date.now()
    const missing: string[] = []
    for (let i = 0; i < candidates.length; i += 500) {
      const chunk = candidates.slice(i, i + 500)
      const found = await this.redis.mget(chunk.map((t) => `${this.prefix}retained:t:${t}`))
      for (let j = 0; j < chunk.length; j++) {
        const json = found[j]
        if (json === null || json === undefined) missing.push(chunk[j]!) // a branch only, or a message Redis expired
        else {
          const m = messageFromJson(json)
          if (m.expiresAt === undefined || m.expiresAt > now) out.push(m)
        }
      }
    }
    if (missing.length > 0) { // take expired messages out of the index and the count
      const listed = await this.redis.smismember(this.topicsKey, ...missing)
      for (let i = 0; i < missing.length; i++) if (listed[i] === 1) this.redis.hookmqRetainClear(this.topicsKey, this.prefix, missing[i]!).catch(() => {})
    }
    return out
  }

  async count(): Promise<number> {
    return this.redis.scard(this.topicsKey)
  }

  async close(): Promise<void> {}
}
