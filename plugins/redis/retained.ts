import type { Redis } from 'ioredis'
import { messageSize, RETAINED_PAGE, type Message, type RetainedStore, type RetainedUsage } from '../../core/index.js'
import { messageFromJson, messageToJson } from './stores.js'

// The core's retained store on Redis. Keys (under the prefix):
//   retained:t:<topic>      a retained message (JSON), expiring with it
//   retained:topics         set of topics with a retained message
//   retained:usage          hash topic → [bytes, expiresAt, origin] (JSON): what the quotas count at start-up
//   retained:c:<depth>:<path>  set of the levels below <path> (the wildcard index)

// sets a topic's message and its usage and, for a new topic, adds its levels to the index
const RETAIN_SET = `
local p, topic = ARGV[1], ARGV[2]
local key = p .. 'retained:t:' .. topic
if ARGV[4] ~= '' then redis.call('SET', key, ARGV[3], 'PX', ARGV[4]) else redis.call('SET', key, ARGV[3]) end
redis.call('HSET', KEYS[2], topic, ARGV[5])
if redis.call('SADD', KEYS[1], topic) == 1 then
  local prefix, depth = '', 0
  for level in string.gmatch(topic .. '/', '([^/]*)/') do
    redis.call('SADD', p .. 'retained:c:' .. depth .. ':' .. prefix, level)
    if depth == 0 then prefix = level else prefix = prefix .. '/' .. level end
    depth = depth + 1
  end
end
return 1`

// clears a topic (with ARGV[3] = '1': only if its message has expired), then prunes the index
// upwards while a level has neither a message nor children
const RETAIN_CLEAR = `
local p, topic = ARGV[1], ARGV[2]
local key = p .. 'retained:t:' .. topic
if ARGV[3] == '1' and redis.call('EXISTS', key) == 1 then return 0 end
redis.call('DEL', key)
redis.call('HDEL', KEYS[2], topic)
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
  hookmqRetainSet(topics: string, usage: string, prefix: string, topic: string, json: string, px: string, cost: string): Promise<number>
  hookmqRetainClear(topics: string, usage: string, prefix: string, topic: string, ifExpired: '0' | '1'): Promise<number>
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
  private readonly usageKey: string

  constructor(
    redis: Redis,
    private readonly prefix: string,
  ) {
    const r = redis as RetainRedis
    if (typeof r.hookmqRetainSet !== 'function') {
      r.defineCommand('hookmqRetainSet', { numberOfKeys: 2, lua: RETAIN_SET })
      r.defineCommand('hookmqRetainClear', { numberOfKeys: 2, lua: RETAIN_CLEAR })
    }
    this.redis = r
    this.topicsKey = `${prefix}retained:topics`
    this.usageKey = `${prefix}retained:usage`
  }

  async set(message: Message): Promise<void> {
    const left = message.expiresAt === undefined ? undefined : message.expiresAt - Date.now()
    if (message.payload.length === 0 || (left !== undefined && left <= 0)) {
      // [MQTT-3.3.1-6] an empty payload clears
      await this.clear(message.topic, '0')
      return
    }
    const cost = JSON.stringify([messageSize(message), message.expiresAt ?? null, message.origin ?? null])
    await this.redis.hookmqRetainSet(
      this.topicsKey,
      this.usageKey,
      this.prefix,
      message.topic,
      messageToJson(message),
      left === undefined ? '' : String(Math.ceil(left)),
      cost,
    )
  }

  private clear(topic: string, ifExpired: '0' | '1'): Promise<number> {
    return this.redis.hookmqRetainClear(this.topicsKey, this.usageKey, this.prefix, topic, ifExpired)
  }

  async clearExpired(topic: string): Promise<void> {
    await this.clear(topic, '1')
  }

  /** every topic's cost, read in pages (HSCAN) */
  async usage(): Promise<RetainedUsage[]> {
    const out: RetainedUsage[] = []
    let cursor = '0'
    do {
      const [next, flat] = await this.redis.hscan(this.usageKey, cursor, 'COUNT', 1000)
      for (let i = 0; i + 1 < flat.length; i += 2) {
        const [bytes, expiresAt, origin] = JSON.parse(flat[i + 1]!) as [number, number | null, string | null]
        out.push({ topic: flat[i]!, bytes, ...(expiresAt !== null ? { expiresAt } : {}), ...(origin !== null ? { origin } : {}) })
      }
      cursor = next
    } while (cursor !== '0')
    return out
  }

  private children(depth: number, path: string): Promise<string[]> {
    return this.redis.smembers(`${this.prefix}retained:c:${depth}:${path}`)
  }

  async match(filter: string): Promise<Message[]> {
    const out: Message[] = []
    for (let it = this.pages(filter), r = await it.next(); r.done !== true; r = await it.next()) out.push(...r.value)
    return out
  }

  /** The topics the index has under `filter` (branches without a message among them). */
  private async candidates(filter: string): Promise<string[]> {
    const levels = filter.split('/')
    let frontier = ['']
    const candidates: string[] = []
    for (let depth = 0; depth < levels.length && frontier.length > 0; depth++) {
      const level = levels[depth]!
      const join = (path: string, child: string): string => (depth === 0 ? child : `${path}/${child}`)
      if (level === '#') {
        if (depth > 0) for (const f of frontier) candidates.push(f) // 'a/#' matches 'a' too
        let nodes = frontier
        for (let d = depth; nodes.length > 0; d++) {
          // every branch below
          const kids = await Promise.all(nodes.map((n) => this.children(d, n)))
          const next: string[] = []
          nodes.forEach((n, i) => {
            for (const k of kids[i]!) if (!(d === 0 && k.startsWith('$'))) next.push(d === 0 ? k : `${n}/${k}`) // [MQTT-4.7.2-1]
          })
          for (const n of next) candidates.push(n) // (a spread of a million arguments would throw)
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
    for (const f of frontier) candidates.push(f)
    return candidates
  }

  /** The messages a page at a time: one MGET of RETAINED_PAGE topics each. */
  async *pages(filter: string): AsyncGenerator<Message[]> {
    const candidates = await this.candidates(filter)
    const missing: string[] = []
    for (let i = 0; i < candidates.length; i += RETAINED_PAGE) {
      const chunk = candidates.slice(i, i + RETAINED_PAGE)
      const found = await this.redis.mget(chunk.map((t) => `${this.prefix}retained:t:${t}`))
      const now = Date.now()
      const page: Message[] = []
      for (let j = 0; j < chunk.length; j++) {
        const json = found[j]
        if (json === null || json === undefined)
          missing.push(chunk[j]!) // a branch only, or a message Redis expired
        else {
          const m = messageFromJson(json)
          if (m.expiresAt === undefined || m.expiresAt > now) page.push(m)
        }
      }
      if (page.length > 0) yield page
    }
    if (missing.length > 0) {
      // take expired messages out of the index and the count
      const listed = await this.redis.smismember(this.topicsKey, ...missing)
      for (let i = 0; i < missing.length; i++) if (listed[i] === 1) this.clear(missing[i]!, '1').catch(() => {}) // a message set since stays
    }
  }

  async count(): Promise<number> {
    return this.redis.scard(this.topicsKey)
  }

  async close(): Promise<void> {}
}
