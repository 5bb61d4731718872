import type { ChainableCommander, Redis } from 'ioredis'
import type {
  Message,
  OutgoingEntry,
  QueuedEntry,
  SessionState,
  SessionStore,
  StoredSession,
  Subscription,
  SubscriptionChange,
  Will,
} from '../../core/index.js'
import { newMessage } from '../../core/index.js'

// The core's session store on Redis, and how messages and wills are written
// as JSON there (retained messages: retained.ts). Keys (under the prefix):
//   session:<id>            JSON of the session (expiry, will, owner; no owner: stored before owners were recorded;
//                           subscriptions too in records written before they had a key of their own)
//   session:<id>:subs       hash filter -> subscription (JSON): a SUBSCRIBE writes its own filters, not every one
//   session:<id>:queue      list of queued entries (JSON), oldest first
//   session:<id>:inflight   hash packet id -> entry (JSON)
//   session:<id>:incoming   set of QoS 2 packet ids awaiting PUBREL
//   sessions                set of session ids

/** A message as JSON: payload and correlation data in base64; the encoding cache never stored. */
export function messageToJson(m: Message): string {
  return JSON.stringify(messageToObject(m))
}

/** The object messageToJson writes, for records that carry a message inside (encoded once, not as a string in a string). */
export function messageToObject(m: Message): MessageJson {
  return { t: m.topic, p: m.payload.toString('base64'), q: m.qos, r: m.retain, pr: propertiesToObject(m.properties), e: m.expiresAt, o: m.origin }
}

type PropertiesJson = Record<string, unknown> & { correlationData?: string }

/** MQTT 5 properties as JSON: the correlation data (binary) in base64 */
function propertiesToObject(p: Message['properties']): PropertiesJson | undefined {
  return p === undefined ? undefined : { ...p, correlationData: p.correlationData?.toString('base64') }
}

function propertiesFromObject(pr: PropertiesJson | undefined): Message['properties'] {
  if (pr === undefined) return undefined
  const properties = { ...pr, correlationData: pr.correlationData === undefined ? undefined : Buffer.from(pr.correlationData, 'base64') }
  if (properties.correlationData === undefined) delete properties.correlationData
  return properties as Message['properties']
}

export interface MessageJson {
  t: string
  p: string
  q: 0 | 1 | 2
  r: boolean
  pr?: PropertiesJson
  e?: number
  o?: string
}

export function messageFromJson(s: string): Message {
  return messageFromObject(JSON.parse(s) as MessageJson)
}

export function messageFromObject(j: MessageJson): Message {
  const m = newMessage(j.t, Buffer.from(j.p, 'base64'), j.q, j.r, j.o, propertiesFromObject(j.pr))
  m.expiresAt = j.e
  return m
}

/** A will as stored: its payload in base64 (inside a session record, or on its own in a node's wills hash). */
type WillJson = Omit<Will, 'payload' | 'properties'> & { payload: string; properties?: PropertiesJson }

function willToObject(will: Will): WillJson {
  return { ...will, payload: will.payload.toString('base64'), properties: propertiesToObject(will.properties) }
}

function willFromObject(j: WillJson): Will {
  return { ...j, payload: Buffer.from(j.payload, 'base64'), properties: propertiesFromObject(j.properties) }
}

export function willToJson(will: Will): string {
  return JSON.stringify(willToObject(will))
}

export function willFromJson(s: string): Will {
  return willFromObject(JSON.parse(s) as WillJson)
}

/**
 * A session record as stored (meta key, the will in its stored form) with its
 * subscriptions hash; a record written before that hash existed carries its
 * subscriptions itself (the hash's, written since, win).
 */
function sessionFromJson(s: string, subs: Record<string, string>): StoredSession {
  const stored = JSON.parse(s) as Omit<StoredSession, 'will' | 'subscriptions'> & { will?: WillJson; subscriptions?: Subscription[] }
  const byFilter = new Map((stored.subscriptions ?? []).map((sub) => [sub.filter, sub]))
  for (const json of Object.values(subs)) {
    const sub = JSON.parse(json) as Subscription
    byFilter.set(sub.filter, sub)
  }
  return { ...stored, subscriptions: [...byFilter.values()], will: stored.will ? willFromObject(stored.will) : undefined }
}

const subscriptionFields = (subs: Subscription[]): string[] => subs.flatMap((sub) => [sub.filter, JSON.stringify(sub)])

/** `m`: the message (as a JSON string in records written before it was embedded) */
interface EntryJson {
  m: MessageJson | string
  q: 0 | 1 | 2
  r: boolean
  s?: number[]
  id?: number
  st?: 'publish' | 'pubrel'
  x?: number
}

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

/** A session's keys expire as it does (plus KEY_GRACE_MS) while it is offline with an expiry, and never otherwise. */
function expire(m: ChainableCommander, keys: string[], session: { disconnectedAt?: number; expiryInterval: number }): void {
  if (session.disconnectedAt !== undefined && session.expiryInterval !== 0xffffffff) {
    const left = session.disconnectedAt + session.expiryInterval * 1000 - Date.now() + KEY_GRACE_MS
    for (const k of keys) m.pexpire(k, Math.max(1, left))
  } else {
    for (const k of keys) m.persist(k)
  }
}

const DEQUEUE_TO_INFLIGHT = `
local v = redis.call('LPOP', KEYS[1])
if v then redis.call('HSET', KEYS[2], ARGV[1], v) end
return 1`

type SessionRedis = Redis & { hookmqDequeueToInflight(queue: string, inflight: string, packetId: string): Promise<number> }

/**
 * Redis lets an offline session's keys go a minute after the session expires,
 * and a queue a minute after its newest message expires, so that nothing
 * lingers when no node is running to end them (`redis.ttl` reaches the store as
 * the core's session and message expiry).
 */
export class RedisSessionStore implements SessionStore {
  private readonly redis: SessionRedis

  constructor(
    redis: Redis,
    private readonly prefix: string,
  ) {
    const r = redis as SessionRedis
    if (typeof r.hookmqDequeueToInflight !== 'function') r.defineCommand('hookmqDequeueToInflight', { numberOfKeys: 2, lua: DEQUEUE_TO_INFLIGHT })
    this.redis = r
  }

  private key(id: string, part = ''): string {
    return `${this.prefix}session:${id}${part}`
  }

  async load(clientId: string): Promise<SessionState | undefined> {
    const [[, meta], [, queue], [, inflight], [, incoming], [, subs]] = (await this.redis
      .multi()
      .get(this.key(clientId))
      .lrange(this.key(clientId, ':queue'), 0, -1)
      .hgetall(this.key(clientId, ':inflight'))
      .smembers(this.key(clientId, ':incoming'))
      .hgetall(this.key(clientId, ':subs'))
      .exec())! as Array<[Error | null, unknown]>
    if (meta === null || meta === undefined) return undefined
    const stored = sessionFromJson(meta as string, subs as Record<string, string>)
    // an entry moved from the queue keeps its queued JSON: its packet id is the field
    const entries = Object.entries(inflight as Record<string, string>)
      .map(([id, json]) => {
        const { expiresAt: _x, ...e } = entryFromJson(json)
        return { ...e, packetId: Number(id) }
      })
      .sort((a, b) => a.packetId - b.packetId)
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
    for (let i = 0; i < ids.length; i += 1000) metas.push(...(await this.redis.mget(ids.slice(i, i + 1000).map((id) => this.key(id)))))
    const gone = ids.filter((_, i) => metas[i] === null) // expired in Redis (see save)
    if (gone.length > 0) await this.redis.srem(`${this.prefix}sessions`, ...gone)
    const live = ids.flatMap((id, i) => (metas[i] === null ? [] : [{ id, meta: metas[i]! }]))
    for (let i = 0; i < live.length; i += 1000) {
      const batch = live.slice(i, i + 1000)
      const p = this.redis.pipeline()
      for (const { id } of batch) p.hgetall(this.key(id, ':subs'))
      const subs = (await p.exec())! as Array<[Error | null, Record<string, string>]>
      batch.forEach(({ meta }, k) => out.push(sessionFromJson(meta, subs[k]![1] ?? {})))
    }
    return out
  }

  async save(session: StoredSession): Promise<void> {
    const { subscriptions, ...rest } = session
    const will = session.will ? willToObject(session.will) : undefined
    const id = session.clientId
    const subsKey = this.key(id, ':subs')
    const m = this.redis
      .multi()
      .set(this.key(id), JSON.stringify({ ...rest, will }))
      .del(subsKey)
    if (subscriptions.length > 0) m.hset(subsKey, ...subscriptionFields(subscriptions))
    m.sadd(`${this.prefix}sessions`, id)
    expire(m, [this.key(id), this.key(id, ':queue'), this.key(id, ':inflight'), this.key(id, ':incoming'), subsKey], session)
    await m.exec()
  }

  async updateSubscriptions(change: SubscriptionChange): Promise<void> {
    const key = this.key(change.clientId, ':subs')
    const m = this.redis.multi()
    if (change.set.length > 0) m.hset(key, ...subscriptionFields(change.set))
    if (change.removed.length > 0) m.hdel(key, ...change.removed)
    expire(m, [key], change) // (a revocation may reach an offline session, whose keys expire)
    await m.exec()
  }

  async delete(clientId: string): Promise<void> {
    await this.redis
      .multi()
      .del(this.key(clientId), this.key(clientId, ':queue'), this.key(clientId, ':inflight'), this.key(clientId, ':incoming'), this.key(clientId, ':subs'))
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

  async replaceQueue(clientId: string, entries: QueuedEntry[]): Promise<void> {
    const key = this.key(clientId, ':queue')
    const m = this.redis.multi().del(key)
    if (entries.length > 0) m.rpush(key, ...entries.map(entryToJson))
    await m.exec()
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
