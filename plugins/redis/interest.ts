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
//   node:<id>:announces   the `since` of the run that wrote that set: a node whose
//                         current run did not write it (an older version in a
//                         rolling upgrade, or a run still restoring its sessions)
//                         is sent every message
//   stream entries        'i' {f, on}: a filter got its first session there, or lost
//                         its last; 'I': read my set anew (once the node's sessions
//                         are restored, and after Redis was away)
//
// The order of things, so that nothing a subscriber should get is skipped:
// - a filter (or shared group) new to a node is acknowledged (SUBACK) once every
//   live node has read its announcement (their saved cursors passed it);
// - a filter's removal, a shared group's, and a node's interest once it is gone,
//   take effect only after `graceMs`: a session moving to another node (handover,
//   or the adoption of a dead node's sessions) is announced there before then, so
//   messages keep going on the stream for it meanwhile; the same holds for this
//   node's own filters (a session it hands over is read from its stream);
// - a node whose set is not known (loading, or not kept) gets everything; so does
//   every node while this node reloads them after its own Redis connection was lost.

const POLL_MS = 2
/** the key of a shared group's grace entry in the tree, beside the node's plain filters */
const GROUP = '\u0000g'

export class InterestSync {
  /** (filter, node) for every other node's plain filters; (filter, node + GROUP) for shared groups within their grace */
  private readonly tree = new TopicTree<string>()
  private readonly found = new Matches<string>()
  /** each node's entries in the tree (node or node + GROUP), to take them out when it goes or reloads */
  private readonly byNode = new Map<string, Set<string>>()
  /** nodes whose set is loaded and kept up to date */
  private readonly known = new Set<string>()
  /** every peer is known (undefined: to be worked out again; peers or `known` changed) */
  private allKnown: boolean | undefined = undefined
  /** `<tree key>\n<filter>` removed, and when: taken out after graceMs */
  private readonly removals = new Map<string, number>()
  /** this node's announcements that wait for the others to read them */
  private waiting: Array<{ id: string; resolve: () => void; until: number }> = []
  private polling = false
  /** this node's set was written by this run (after its sessions were restored) */
  private published = false
  private router!: Router
  private sweeper: NodeJS.Timeout | undefined = undefined

  constructor(
    private readonly self: ClusterNode,
    private readonly graceMs: number,
    /** the longest a SUBACK waits for a live node to read an announcement */
    private readonly maxWaitMs: number,
  ) {}

  /** Hears this node's filters come and go (before sessions are restored). */
  attach(router: Router): void {
    this.router = router
    router.watchFilters((filter, present) => this.local(filter, present))
    this.self.onFollow.push((node) => void this.reload(node))
    this.self.onReconnect.push(() => {
      // entries may have been lost either way: write ours anew, and read the others' anew
      if (this.published) this.publish().catch(noop)
      for (const n of this.self.peers) void this.reload(n)
    })
  }

  /**
   * Start-up. The others' sets are read as their streams are followed (onFollow:
   * each peer is sent everything until then); this node's own is written once
   * its sessions are restored (ready).
   */
  start(): void {
    this.sweeper = setInterval(() => this.sweep(), Math.max(250, this.graceMs / 4))
    this.sweeper.unref()
  }

  /** The broker restored its sessions: this node's set, in one write, then the word to read it. */
  ready(): Promise<void> {
    this.published = true
    return this.publish()
  }

  stop(): void {
    clearInterval(this.sweeper)
    for (const w of this.waiting) w.resolve()
    this.waiting = []
  }

  /** Whether another node may need `message` (it goes on this node's stream). */
  needed(message: Message): boolean {
    if (message.retain) return true
    const shares = message.shares
    if (shares !== undefined) for (const k in shares) if (shares[k] !== this.self.me) return true
    if (!(this.allKnown ??= this.everyPeerKnown())) return true
    this.tree.match(message.topic, this.found)
    const any = this.found.subCount > 0
    this.found.clear()
    return any
  }

  /** An 'i' or 'I' entry of `from`'s stream; a promise: read nothing further of it until it settles. */
  received(from: string, kind: string, data: string): Promise<void> | undefined {
    if (kind === 'I') return this.reload(from)
    const { f, on } = JSON.parse(data) as { f: string; on: boolean }
    if (on) this.add(from, f)
    else this.removals.set(`${from}\n${f}`, Date.now())
    return undefined
  }

  /** `node` (this one included) no longer has members of a shared group on `filter`: messages matching it still go on the stream for graceMs. */
  groupGone(node: string, filter: string): void {
    this.add(node + GROUP, filter)
    this.removals.set(`${node + GROUP}\n${filter}`, Date.now())
  }

  /** `node` is gone (dead, taken over, left): its filters stop counting after graceMs. */
  forget(node: string): void {
    this.allKnown = undefined // (it is no longer a peer)
    setTimeout(() => {
      if (this.self.peers.has(node)) return // back meanwhile
      this.known.delete(node)
      this.drop(node)
    }, this.graceMs).unref()
  }

  /** What a SUBACK of a filter or group new to this node waits for: its announcement appended, then read by every live node. */
  announced(appended: Promise<unknown>): Promise<unknown> {
    return appended.then(
      (id) => (this.self.peers.size === 0 ? undefined : this.readByPeers(id as string)),
      noop, // (Redis away: the set is written anew when it is back)
    )
  }

  private everyPeerKnown(): boolean {
    for (const p of this.self.peers) if (!this.known.has(p)) return false
    return true
  }

  // ---- this node's side

  /** A filter got its first session here or lost its last: Redis and the stream; for a new one, when the others have read it. */
  private local(filter: string, present: boolean): Promise<unknown> | undefined {
    const { self } = this
    // a filter gone from here is still sent on for graceMs (a session handed over reads it from this node's stream)
    if (present) {
      this.removals.delete(`${self.me}\n${filter}`)
      if (this.byNode.get(self.me)?.delete(filter) === true) this.tree.remove(filter, self.me)
    } else {
      this.add(self.me, filter)
      this.removals.set(`${self.me}\n${filter}`, Date.now())
    }
    if (!this.published) return undefined // restoring: the whole set is written at once when that is done (the others send everything until then)
    if (!self.available) return undefined // written anew when Redis is back
    const key = self.key('node', self.me, 'interest')
    ;(present ? self.redis.sadd(key, filter) : self.redis.srem(key, filter)).catch(noop)
    const appended = self.append('i', JSON.stringify({ f: filter, on: present }))
    if (!present) {
      appended.catch(noop)
      return undefined
    }
    return this.announced(appended)
  }

  /** Writes this node's set anew (one transaction, marked with this run's `since`) and tells the others to read it. */
  private async publish(): Promise<void> {
    const { self } = this
    const key = self.key('node', self.me, 'interest')
    const filters = this.router.watchedFilters()
    const since = (await self.redis.get(self.key('node', self.me, 'since'))) ?? ''
    const m = self.redis.multi().del(key)
    for (let i = 0; i < filters.length; i += 1000) m.sadd(key, ...filters.slice(i, i + 1000))
    await m.set(self.key('node', self.me, 'announces'), since).exec()
    await self.append('I', '')
  }

  /** Resolves when every live node's saved cursor of this node's stream has passed `id` (a node that leaves meanwhile is not waited for). */
  private readByPeers(id: string): Promise<void> {
    return new Promise((resolve) => {
      this.waiting.push({ id, resolve, until: Date.now() + this.maxWaitMs })
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
          for (const c of cursors) if (upTo === undefined || compareIds(c ?? '0-0', upTo) < 0) upTo = c ?? '0-0'
        }
        const now = Date.now()
        const still: typeof this.waiting = []
        for (const w of this.waiting) {
          if (peers.length === 0 || (upTo !== undefined && compareIds(upTo, w.id) >= 0)) w.resolve()
          else if (now >= w.until) {
            self.log.warn({ peers }, 'a new subscription was acknowledged before every node read it (a node did not read its stream in time)')
            w.resolve()
          } else still.push(w)
        }
        this.waiting = still
        if (still.length > 0) await sleep(POLL_MS)
      }
    } catch {
      for (const w of this.waiting) w.resolve()
      this.waiting = []
    } finally {
      this.polling = false
    }
  }

  // ---- the others' side

  private add(node: string, filter: string): void {
    this.removals.delete(`${node}\n${filter}`)
    let set = this.byNode.get(node)
    if (set === undefined) this.byNode.set(node, (set = new Set()))
    if (set.has(filter)) return
    set.add(filter)
    this.tree.add(filter, node, node)
  }

  private drop(node: string): void {
    for (const f of this.byNode.get(node) ?? []) this.tree.remove(f, node)
    this.byNode.delete(node)
  }

  /** Reads `node`'s set anew (unknown meanwhile: it gets every message). */
  private async reload(node: string): Promise<void> {
    const { redis } = this.self
    this.known.delete(node)
    this.allKnown = undefined
    try {
      const [marker, since] = await redis.mget(this.self.key('node', node, 'announces'), this.self.key('node', node, 'since'))
      if (marker === null || marker !== since) return // this run of it keeps no set (yet): sent everything
      const filters = await redis.smembers(this.self.key('node', node, 'interest'))
      const fresh = new Set(filters)
      for (const f of this.byNode.get(node) ?? []) if (!fresh.has(f)) this.removals.set(`${node}\n${f}`, Date.now())
      for (const f of filters) this.add(node, f)
      this.known.add(node)
      this.allKnown = undefined
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
