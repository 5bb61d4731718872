import type { Message, Router } from '../../core/index.js'
import { Matches, noop, TopicTree } from '../../core/index.js'
import { compareIds, sleep } from './cluster-redis.js'
import type { ClusterNode } from './node.js'

// Which topics each node can use, so that a message goes on this node's stream
// only when another node has a subscription it matches (a node-local message
// in a cluster then costs what it costs on one node). Each node keeps its plain
// filters (those one of its sessions holds, connected or not) in Redis and says
// on its stream when one comes or goes; shared groups travel on their own
// (groups.ts) and a message whose share was given to another node goes on the
// stream too, as does every retained message (the others count what the
// retained store holds).
//
//   node:<id>:interest    set of the node's plain filters
//   node:<id>:announces   '1': the node keeps that set (a node without it, an older
//                         version in a rolling upgrade, is sent every message)
//   stream entries        'i' {f, on}: a filter got its first session there, or lost
//                         its last; 'I': read my set anew (start-up, after Redis was away)
//
// The order of things, so that nothing a subscriber should get is skipped:
// - a filter new to a node is acknowledged (SUBACK) once every live node has
//   read its 'i' entry (their saved cursors passed it; at most ANNOUNCE_WAIT_MS);
// - a filter's removal, and a node's interest once it is gone, take effect only
//   after `graceMs`: a session moving to another node (handover, or the adoption
//   of a dead node's sessions) is announced there before then, so messages keep
//   going on the stream for it meanwhile; the same holds for this node's own
//   filters (a session it hands over is read from its stream by the new node);
// - a node whose set is not known yet (loading, or never kept) gets everything.

/** the longest a SUBACK waits for the other nodes to read a new filter's announcement */
const ANNOUNCE_WAIT_MS = 1000
const POLL_MS = 2

export class InterestSync {
  /** (filter, node) for every other node's filters */
  private readonly tree = new TopicTree<string>()
  private readonly found = new Matches<string>()
  /** each other node's filters, to take them out when it goes or reloads */
  private readonly byNode = new Map<string, Set<string>>()
  /** nodes whose set is loaded and kept up to date */
  private readonly known = new Set<string>()
  /** `<node>\n<filter>` removed there, and when: taken out after graceMs */
  private readonly removals = new Map<string, number>()
  /** this node's announcements that wait for the others to read them: [entry id, resolve] */
  private waiting: Array<[string, () => void]> = []
  private polling = false
  /** an announcement of this node failed (Redis away): its set is written anew when Redis is back */
  private stale = false
  private router!: Router
  private sweeper: NodeJS.Timeout | undefined = undefined

  constructor(
    private readonly self: ClusterNode,
    private readonly graceMs: number,
  ) {}

  /** Hears this node's filters come and go (before sessions are loaded). */
  attach(router: Router): void {
    this.router = router
    router.watchFilters((filter, present) => this.local(filter, present))
    this.self.redis.on('ready', () => {
      if (this.stale) this.publish().catch(noop)
    })
  }

  /** Start-up (this node registered): writes this node's set, says so, loads the others'. */
  async start(): Promise<void> {
    await this.publish()
    const { redis, me } = this.self
    for (const n of await redis.smembers(this.self.key('nodes'))) if (n !== me) await this.reload(n)
    this.sweeper = setInterval(() => this.sweep(), Math.max(250, this.graceMs / 4))
    this.sweeper.unref()
  }

  stop(): void {
    clearInterval(this.sweeper)
    for (const [, resolve] of this.waiting) resolve()
    this.waiting = []
  }

  /** Whether another node may need `message` (it goes on this node's stream). */
  needed(message: Message): boolean {
    if (message.retain) return true
    const shares = message.shares
    if (shares !== undefined) for (const k in shares) if (shares[k] !== this.self.me) return true
    for (const p of this.self.peers) if (!this.known.has(p)) return true
    this.tree.match(message.topic, this.found)
    const any = this.found.subCount > 0
    this.found.clear()
    return any
  }

  /** An 'i' or 'I' entry of `from`'s stream; a promise: read nothing further of it until it settles. */
  received(from: string, kind: string, data: string): Promise<void> | undefined {
    if (kind === 'I') return this.reload(from)
    const { f, on } = JSON.parse(data) as { f: string; on: boolean }
    if (on) {
      this.removals.delete(`${from}\n${f}`)
      this.add(from, f)
    } else this.removals.set(`${from}\n${f}`, Date.now())
    return undefined
  }

  /** `node` is gone (dead, taken over, left): its filters stop counting after graceMs. */
  forget(node: string): void {
    setTimeout(() => {
      if (this.self.peers.has(node)) return // back meanwhile
      this.known.delete(node)
      for (const f of this.byNode.get(node) ?? []) this.tree.remove(f, node)
      this.byNode.delete(node)
    }, this.graceMs).unref()
  }

  // ---- this node's side

  /** A filter got its first session here or lost its last: Redis and the stream; for a new one, when the others have read it. */
  private local(filter: string, present: boolean): Promise<unknown> | undefined {
    const { self } = this
    // a filter gone from here is still sent on for graceMs (a session handed over reads it from this node's stream)
    const mine = `${self.me}\n${filter}`
    if (present) {
      this.removals.delete(mine)
      if (this.byNode.get(self.me)?.delete(filter) === true) this.tree.remove(filter, self.me)
    } else {
      this.add(self.me, filter)
      this.removals.set(mine, Date.now())
    }
    if (!self.available) {
      this.stale = true
      return undefined
    }
    const key = self.key('node', self.me, 'interest')
    ;(present ? self.redis.sadd(key, filter) : self.redis.srem(key, filter)).catch(() => (this.stale = true))
    const appended = self.append('i', JSON.stringify({ f: filter, on: present })) as Promise<string>
    if (!present || self.peers.size === 0) {
      appended.catch(() => (this.stale = true))
      return undefined
    }
    return appended.then(
      (id) => this.readByPeers(id),
      () => {
        this.stale = true
      },
    )
  }

  /** Writes this node's set anew and tells the others to read it. */
  private async publish(): Promise<void> {
    const { self } = this
    this.stale = false
    const key = self.key('node', self.me, 'interest')
    const filters = this.router.watchedFilters()
    try {
      await self.redis.del(key)
      for (let i = 0; i < filters.length; i += 1000) await self.redis.sadd(key, ...filters.slice(i, i + 1000))
      await self.redis.set(self.key('node', self.me, 'announces'), '1')
      await self.append('I', '')
    } catch (err) {
      this.stale = true
      throw err
    }
  }

  /** Resolves when every live node's saved cursor of this node's stream has passed `id` (or ANNOUNCE_WAIT_MS went by). */
  private readByPeers(id: string): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ANNOUNCE_WAIT_MS)
      this.waiting.push([
        id,
        () => {
          clearTimeout(timer)
          resolve()
        },
      ])
      if (!this.polling) void this.poll()
    })
  }

  /** One loop for every waiting announcement: reads the others' cursors of this node's stream every POLL_MS. */
  private async poll(): Promise<void> {
    const { self } = this
    this.polling = true
    try {
      while (this.waiting.length > 0) {
        const peers = [...self.peers]
        let upTo: string | undefined // the least cursor of this node's stream among the peers
        if (peers.length > 0 && self.available) {
          const cursors = await Promise.all(peers.map((p) => self.redis.hget(self.key('node', p, 'cursors'), self.me)))
          for (const c of cursors) if (c === null || upTo === undefined || compareIds(c, upTo) < 0) upTo = c ?? '0-0'
        }
        const still: Array<[string, () => void]> = []
        for (const w of this.waiting) {
          if (peers.length === 0 || (upTo !== undefined && compareIds(upTo, w[0]) >= 0)) w[1]()
          else still.push(w)
        }
        this.waiting = still
        if (still.length > 0) await sleep(POLL_MS)
      }
    } catch {
      for (const [, resolve] of this.waiting) resolve()
      this.waiting = []
    } finally {
      this.polling = false
    }
  }

  // ---- the others' side

  private add(node: string, filter: string): void {
    let set = this.byNode.get(node)
    if (set === undefined) this.byNode.set(node, (set = new Set()))
    if (set.has(filter)) return
    set.add(filter)
    this.tree.add(filter, node, node)
  }

  /** Reads `node`'s set anew (unknown meanwhile: it gets every message). */
  private async reload(node: string): Promise<void> {
    const { redis } = this.self
    this.known.delete(node)
    try {
      if ((await redis.exists(this.self.key('node', node, 'announces'))) !== 1) return // keeps no set: sent everything
      const filters = await redis.smembers(this.self.key('node', node, 'interest'))
      const fresh = new Set(filters)
      for (const f of this.byNode.get(node) ?? []) if (!fresh.has(f)) this.removals.set(`${node}\n${f}`, Date.now())
      for (const f of filters) {
        this.removals.delete(`${node}\n${f}`)
        this.add(node, f)
      }
      this.known.add(node)
    } catch (err) {
      this.self.log.warn({ err, node }, "a node's subscriptions could not be read: it is sent every message")
    }
  }

  /** Takes out the removals older than graceMs. */
  private sweep(): void {
    const before = Date.now() - this.graceMs
    for (const [k, at] of this.removals) {
      if (at > before) continue
      this.removals.delete(k)
      const nl = k.indexOf('\n')
      const node = k.slice(0, nl)
      const filter = k.slice(nl + 1)
      const set = this.byNode.get(node)
      if (set?.delete(filter) === true) this.tree.remove(filter, node)
    }
  }
}
