import type { Ban, BanChange, BanStore } from '../../core/index.js'
import { HookmqError, noop } from '../../core/index.js'
import type { ClusterNode } from './node.js'

// The bans added at run time, shared by the nodes on one Redis: the hash
// `bans` (id -> JSON of the ban) holds them across restarts, and each change
// goes on this node's cluster stream as a 'b' entry ({"a": ban} or {"r": id}),
// which the other nodes read within their next read (streams.ts). After Redis
// was away a node reads the hash again (changes may have been missed); while
// it is away, the bans it knew keep applying. Expired bans are dropped from
// the hash by the nodes' expiry timers and when it is read.

export class RedisBanStore implements BanStore {
  private watchers: Array<(change: BanChange) => void> = []

  constructor(private readonly self: ClusterNode) {
    self.onReconnect.push(() => this.tell({ kind: 'reload' }))
  }

  private get key(): string {
    return this.self.key('bans')
  }

  async load(): Promise<Ban[]> {
    const now = Date.now()
    const out: Ban[] = []
    const gone: string[] = []
    for (const [id, json] of Object.entries(await this.self.redis.hgetall(this.key))) {
      let ban: Ban
      try {
        ban = JSON.parse(json) as Ban
      } catch {
        this.self.log.warn({ id }, 'a stored ban is not JSON: ignored')
        continue
      }
      if (ban.expiresAt !== undefined && ban.expiresAt <= now) gone.push(id)
      else out.push(ban)
    }
    this.forget(gone)
    return out
  }

  async add(ban: Ban): Promise<void> {
    this.writable()
    try {
      await this.self.redis.hset(this.key, ban.id, JSON.stringify(ban))
      await this.self.append('b', JSON.stringify({ a: ban }))
    } catch (err) {
      throw new HookmqError('STORE_UNAVAILABLE', `the ban could not be stored in Redis: ${(err as Error).message}`)
    }
  }

  async remove(id: string): Promise<boolean> {
    this.writable()
    try {
      const removed = (await this.self.redis.hdel(this.key, id)) === 1
      if (removed) await this.self.append('b', JSON.stringify({ r: id }))
      return removed
    } catch (err) {
      throw new HookmqError('STORE_UNAVAILABLE', `the ban could not be removed from Redis: ${(err as Error).message}`)
    }
  }

  forget(ids: string[]): void {
    if (ids.length > 0 && this.self.available) this.self.redis.hdel(this.key, ...ids).catch(noop)
  }

  watch(onChange: (change: BanChange) => void): () => void {
    this.watchers = [...this.watchers, onChange]
    return () => {
      this.watchers = this.watchers.filter((w) => w !== onChange)
    }
  }

  async close(): Promise<void> {}

  /** A 'b' entry of another node's stream. */
  received(data: string): void {
    const entry = JSON.parse(data) as { a?: Ban; r?: string }
    if (entry.a !== undefined) this.tell({ kind: 'added', ban: entry.a })
    else if (typeof entry.r === 'string') this.tell({ kind: 'removed', id: entry.r })
  }

  private writable(): void {
    if (!this.self.available) throw new HookmqError('STORE_UNAVAILABLE', 'Redis is unavailable: bans cannot be changed until it is back')
  }

  private tell(change: BanChange): void {
    for (const w of this.watchers) w(change)
  }
}
