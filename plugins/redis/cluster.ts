import type { Redis } from 'ioredis'
import type { Broker, BrokerPlugin, Cluster, Logger, Message, MessageBus, Will } from '../../core/index.js'
import { sharedKey, throttled } from '../../core/index.js'
import { busMessageFromJson, busMessageToJson, clusterRedis, compareIds, noop, sleep, type ClusterRedis } from './cluster-redis.js'
import { groupField, RemoteGroups } from './groups.js'
import { Handover } from './handover.js'
import { willToJson } from './stores.js'

// Several hookmq nodes on one Redis as one broker. What Redis holds (prefix first):
//   nodes                 set of registered node ids
//   node:<id>             heartbeat, expires after `nodeTimeoutMs` unless renewed
//   node:<id>:owned       set of client ids whose session lives on that node
//   node:<id>:wills       hash client id -> will of a client connected there
//   node:<id>:cursors     hash node -> id of the last entry of that node's stream it handled
//   node:<id>:adopted     set (for an hour) when another node took over a dead node
//   node:<id>:since       the id its stream had when the node started: others read it from there
//   bus:<id>              the node's stream: messages for the others, takeovers, shared-group changes
//   owners                hash client id -> node serving its session
//   groups                hash `<node>\n<group>/<filter>` -> 1 for shared groups with members there
//
// A node appends a message to its stream only while it has peers, and
// acknowledges a QoS ≥ 1 message only once it is there: a node that reads it
// late (after a restart), or the node that adopts a dead one's sessions from
// its cursors, still delivers it. Each node reads the others' streams from its
// cursors and routes to its own sessions only. Shared groups: groups.ts;
// sessions changing node: handover.ts; the scripts: cluster-redis.ts.

export interface RedisClusterOptions {
  redis: Redis
  prefix: string
  log: Logger
  heartbeatMs: number
  /** a node whose heartbeat is older than this is dead */
  nodeTimeoutMs: number
  /** entries kept in each node's stream (approximately) */
  streamMaxLength: number
}

const READ_BLOCK_MS = 200
const READ_COUNT = 1000

export class RedisCluster implements Cluster, MessageBus, BrokerPlugin {
  readonly name = 'redis-cluster'
  readonly redis: ClusterRedis
  private reader: Redis | undefined
  broker!: Broker
  me = ''
  private handover!: Handover
  private groups!: RemoteGroups
  private readonly p: string
  readonly log: Logger
  /** live nodes other than this one whose streams are read */
  readonly peers = new Set<string>()
  private readonly cursors = new Map<string, string>()
  private readonly dirty = new Set<string>()
  private readonly handlers: Array<(message: Message) => unknown> = []
  /** dead nodes this node won, to take over between two reads */
  private readonly adoptions: string[] = []
  private running = false
  private loop: Promise<void> | undefined
  private timer: NodeJS.Timeout | undefined
  private readySince = 0
  private registered = false
  private wake: (() => void) | undefined
  /** this node's stream and its XADD trim length, made once (start) rather than per message */
  private stream = ''
  private maxLen = ''
  private readonly busFailed = throttled((err, lost) => this.log.warn({ err, lost }, 'QoS 0 messages not passed to the other nodes'))

  constructor(private readonly options: RedisClusterOptions) {
    this.p = options.prefix
    this.log = options.log
    const redis = clusterRedis(options.redis)
    this.redis = redis
    redis.on('ready', () => { this.readySince = Date.now() })
  }

  get available(): boolean {
    return this.redis.status === 'ready'
  }

  /** node ids this node reads from (for status) */
  get peerIds(): string[] {
    return [...this.peers]
  }

  key(...parts: string[]): string {
    return this.p + parts.join(':')
  }

  /** the last entry of `node`'s stream this node handled */
  cursor(node: string): string | undefined {
    return this.cursors.get(node)
  }

  // ---- BrokerPlugin ----

  async start(broker: Broker): Promise<void> {
    this.broker = broker
    this.me = broker.id
    this.stream = this.key('bus', this.me)
    this.maxLen = String(this.options.streamMaxLength)
    this.handover = new Handover(this)
    this.readySince = Date.now()
    this.groups = new RemoteGroups(this.redis, this.key('groups'), this.me)
    this.groups.attach(broker.router, (g, f, on) => void this.append('g', JSON.stringify({ g, f, on })).catch(noop), () => this.available)
    // a connection of its own for the blocking reads (Redis Cluster's duplicate() takes its seed nodes first)
    const r = this.redis as Redis & { isCluster?: boolean; duplicate(a?: unknown, b?: unknown): Redis }
    this.reader = r.isCluster === true ? r.duplicate(undefined, { enableOfflineQueue: true }) : this.redis.duplicate({ enableOfflineQueue: true })
    this.reader.on('error', () => {}) // the main connection reports Redis errors
    const saved = await this.redis.hgetall(this.key('node', this.me, 'cursors'))
    for (const [node, id] of Object.entries(saved)) this.cursors.set(node, id)
    await this.register()
    await this.groups.load()
    await this.tick(true)
    // heartbeats from now: waiting for the peers below may last longer than this node's timeout
    this.timer = setInterval(() => void this.tick(false), this.options.heartbeatMs)
    this.timer.unref()
    await this.awaitPeers()
    this.running = true
    this.loop = this.readLoop()
    broker.once('ready', () => void this.handover.publishLeftWills(this.me).catch((err: unknown) => this.log.error({ err }, 'wills of the last run could not be published')))
  }

  async stop(): Promise<void> {
    this.running = false
    clearInterval(this.timer)
    this.wake?.()
    await this.loop
    if (this.available) {
      // leave: the others notice the missing heartbeat and take this node's sessions over
      await this.redis.del(this.key('node', this.me)).catch(() => {})
      await this.saveCursors().catch(() => {})
    }
    this.reader?.disconnect()
  }

  sys(): Record<string, string | number> {
    return { 'cluster/nodes': this.peers.size + 1, 'cluster/redis': this.available ? 'up' : 'down' }
  }

  // ---- MessageBus ----

  publish(message: Message): Promise<void> | undefined {
    if (this.peers.size === 0) return undefined // nobody reads this node's stream
    if (!this.available) return message.qos === 0 ? undefined : Promise.reject(new Error('Redis is unavailable'))
    const p = this.append('m', busMessageToJson(message))
    if (message.qos > 0) return p
    p.catch(this.busFailed)
    return undefined
  }

  subscribe(handler: (message: Message) => unknown): () => void {
    this.handlers.push(handler)
    return () => { this.handlers.splice(this.handlers.indexOf(handler), 1) }
  }

  async close(): Promise<void> {}

  // ---- Cluster ----

  async owned(): Promise<Set<string>> {
    const mine = new Set(await this.redis.smembers(this.key('node', this.me, 'owned')))
    // sessions stored without an owner (written by a single node before it had peers) are anyone's: first come
    const all = await this.redis.smembers(this.key('sessions'))
    const owners = all.length === 0 ? [] : await this.redis.hmget(this.key('owners'), ...all)
    for (let i = 0; i < all.length; i++) {
      if (owners[i] !== null) continue
      if (await this.redis.hsetnx(this.key('owners'), all[i]!, this.me) === 1) {
        await this.redis.sadd(this.key('node', this.me, 'owned'), all[i]!)
        mine.add(all[i]!)
      }
    }
    return mine
  }

  claim(clientId: string, load: () => Promise<void>): Promise<void> {
    return this.handover.claim(clientId, load)
  }

  released(clientId: string): void {
    if (!this.available) return
    this.redis.hookmqRelease(this.key('owners'), clientId, this.me, this.key('node', '')).catch(noop)
  }

  willSet(clientId: string, will: Will): void {
    if (this.available) this.redis.hset(this.key('node', this.me, 'wills'), clientId, willToJson(will)).catch(noop)
  }

  willCleared(clientId: string): void {
    if (this.available) this.redis.hdel(this.key('node', this.me, 'wills'), clientId).catch(noop)
  }

  // ---- membership ----

  private async register(): Promise<void> {
    // where this run's entries start: a node that finds this one later reads from here, so it misses none
    const last = await this.lastEntry(this.me)
    await this.redis.multi()
      .set(this.key('node', this.me, 'since'), last ?? '0-0')
      .set(this.key('node', this.me), String(Date.now()), 'PX', this.options.nodeTimeoutMs)
      .sadd(this.key('nodes'), this.me)
      .del(this.key('node', this.me, 'adopted'))
      .exec()
    this.registered = true
  }

  /** Heartbeat; finds new peers and dead nodes. */
  private async tick(first: boolean): Promise<void> {
    if (!this.available) return
    try {
      const [[, , ], [, added], [, adopted], [, members]] = (await this.redis.multi()
        .set(this.key('node', this.me), String(Date.now()), 'PX', this.options.nodeTimeoutMs)
        .sadd(this.key('nodes'), this.me)
        .exists(this.key('node', this.me, 'adopted'))
        .smembers(this.key('nodes'))
        .exec())! as Array<[Error | null, unknown]>
      if (!first && this.registered && added === 1) await this.rejoin(adopted === 1)
      const others = (members as string[]).filter((n) => n !== this.me)
      const alive = others.length === 0 ? [] : await Promise.all(others.map((n) => this.redis.exists(this.key('node', n))))
      // after Redis was away every heartbeat lapsed: give the others time to renew theirs before judging
      const settled = Date.now() - this.readySince > this.options.nodeTimeoutMs + this.options.heartbeatMs
      for (let i = 0; i < others.length; i++) {
        const n = others[i]!
        if (alive[i] === 1) {
          if (!this.peers.has(n)) await this.discover(n)
        } else if (settled && await this.redis.srem(this.key('nodes'), n) === 1) {
          this.adoptions.push(n) // this node won it: take its sessions over between two reads
          this.wake?.()
        } else if (settled && this.peers.has(n)) {
          this.forgetPeer(n)
        }
      }
      for (const n of this.peers) if (!others.includes(n)) this.forgetPeer(n) // taken over by another node
    } catch (err) {
      this.log.debug({ err }, 'cluster heartbeat failed')
    }
  }

  /** the id of the last entry of `node`'s stream (undefined: empty) */
  async lastEntry(node: string): Promise<string | undefined> {
    return (await this.redis.xrevrange(this.key('bus', node), '+', '-', 'COUNT', 1))[0]?.[0]
  }

  /** Starts reading a node's stream: from the saved cursor, or from where that node's run began. */
  async discover(node: string): Promise<void> {
    if (this.peers.has(node)) return
    if (!this.cursors.has(node)) {
      const since = await this.redis.get(this.key('node', node, 'since'))
      const last = since ?? await this.lastEntry(node)
      this.cursors.set(node, last ?? '0-0')
    }
    this.peers.add(node)
    this.dirty.add(node)
    await this.saveCursors()
    this.log.info({ node }, 'cluster node joined')
    this.wake?.()
  }

  /** Stops reading `node`'s stream. Its cursor stays in memory: a node only taken for dead, back, is read on from there, not again from its start. */
  forgetPeer(node: string): void {
    this.peers.delete(node)
    this.redis.hdel(this.key('node', this.me, 'cursors'), node).catch(noop)
    this.groups.forget(node)
  }

  /** A new node waits (a little) until the running ones read its stream, so nothing they publish misses its clients. */
  private async awaitPeers(): Promise<void> {
    const deadline = Date.now() + this.options.heartbeatMs * 2 + 500
    while (this.peers.size > 0 && Date.now() < deadline) {
      const seen = await Promise.all([...this.peers].map((n) => this.redis.hexists(this.key('node', n, 'cursors'), this.me)))
      if (seen.every((s) => s === 1)) return
      await sleep(50)
    }
  }

  /**
   * Redis lost this node's registration. If another node took its sessions over
   * (it was thought dead), everything here is stale: drop it, clients reconnect.
   * If Redis itself lost its data, write this node's state back.
   */
  private async rejoin(adopted: boolean): Promise<void> {
    const sessions = this.broker.sessions
    if (adopted) {
      this.log.warn('this node was taken for dead and its sessions taken over; dropping its connections')
      for (const id of [...sessions.sessions.keys()]) sessions.forget(id)
      await this.redis.del(this.key('node', this.me, 'adopted'))
      return
    }
    this.log.warn('Redis lost this node\'s state; writing it back')
    const m = this.redis.multi()
    for (const s of sessions.sessions.values()) {
      m.hset(this.key('owners'), s.clientId, this.me).sadd(this.key('node', this.me, 'owned'), s.clientId)
      if (s.persistent) this.broker.stores.sessions.save(s.toStored())
    }
    for (const key of this.broker.router.localGroups()) m.hset(this.key('groups'), groupField(this.me, key), '1')
    await m.exec()
  }

  // ---- the streams ----

  append(kind: string, data: string): Promise<void> {
    return this.redis.xadd(this.stream, 'MAXLEN', '~', this.maxLen, '*', 'k', kind, 'd', data).then(noop)
  }

  private async readLoop(): Promise<void> {
    while (this.running) {
      while (this.adoptions.length > 0) {
        const node = this.adoptions.shift()!
        try {
          await this.handover.adoptDead(node)
        } catch (err) {
          this.log.error({ err, node }, 'taking over a dead node failed')
        }
      }
      if (this.peers.size === 0 || !this.available) {
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, READ_BLOCK_MS)
          this.wake = () => { clearTimeout(t); resolve() }
        })
        this.wake = undefined
        continue
      }
      const nodes = [...this.peers]
      let res: Array<[string, Array<[string, string[]]>]> | null
      try {
        res = await this.reader!.xread('COUNT', READ_COUNT, 'BLOCK', READ_BLOCK_MS, 'STREAMS', ...nodes.map((n) => this.key('bus', n)), ...nodes.map((n) => this.cursors.get(n)!)) as typeof res
      } catch (err) {
        this.log.debug({ err }, 'reading the cluster streams failed')
        await sleep(READ_BLOCK_MS)
        continue
      }
      if (res === null) continue
      const pending: unknown[] = []
      const busPrefix = this.key('bus', '')
      for (const [key, entries] of res) {
        const node = key.slice(busPrefix.length)
        if (!this.peers.has(node)) continue
        for (const [id, fields] of entries) {
          const at = this.cursors.get(node)
          if (at !== undefined && compareIds(id, at) <= 0) continue // handled already: a handover read ahead (readUpTo)
          await this.handleEntry(node, id, fields, pending)
        }
      }
      if (pending.length > 0) await Promise.allSettled(pending)
      await this.saveCursors().catch(noop)
    }
  }

  private async handleEntry(node: string, id: string, fields: string[], pending: unknown[]): Promise<void> {
    try {
      const wait = this.handle(node, fields, pending)
      if (wait !== undefined) await wait
    } catch (err) {
      this.log.error({ err, node, id }, 'cluster stream entry could not be handled')
    }
    this.cursors.set(node, id)
    this.dirty.add(node)
  }

  /**
   * Handles now, as the reader would, every entry up to `upTo` (stream -> id)
   * of each live node's stream this node had not reached yet (one it had not
   * found yet is found first). Called by the reader itself, before a session
   * that node `from` had up to those cursors is loaded here: from then on the
   * reader brings the session only what `from` had not seen.
   */
  async readUpTo(upTo: Record<string, string>, from: string): Promise<void> {
    const pending: unknown[] = []
    for (const [node, theirs] of Object.entries(upTo)) {
      if (node === from || node === this.me) continue
      if (!this.peers.has(node) && await this.redis.sismember(this.key('nodes'), node) === 1) await this.discover(node)
      for (let at = this.cursors.get(node); at !== undefined && compareIds(at, theirs) < 0; at = this.cursors.get(node)) {
        const entries = await this.redis.xrange(this.key('bus', node), '(' + at, theirs, 'COUNT', READ_COUNT)
        if (entries.length === 0) break
        for (const [id, fields] of entries) await this.handleEntry(node, id, fields, pending)
      }
    }
    await Promise.allSettled(pending)
    await this.saveCursors()
  }

  private saveCursors(): Promise<unknown> {
    if (this.dirty.size === 0) return Promise.resolve()
    const flat: string[] = []
    for (const n of this.dirty) {
      const c = this.cursors.get(n)
      if (c !== undefined) flat.push(n, c)
    }
    this.dirty.clear()
    return flat.length === 0 ? Promise.resolve() : this.redis.hset(this.key('node', this.me, 'cursors'), ...flat)
  }

  /** Handles one stream entry; a promise it answers must settle before the next entry. */
  private handle(node: string, fields: string[], pending: unknown[]): Promise<void> | undefined {
    const kind = fields[1]
    const data = fields[3]!
    if (kind === 'm') {
      const message = busMessageFromJson(data)
      message.node = node
      for (const h of this.handlers) {
        const r = h(message)
        if (r instanceof Promise) pending.push(r)
      }
    } else if (kind === 't') {
      const p = this.handover.takeover(node, data, this.cursors)
      if (p !== undefined) pending.push(p)
    } else if (kind === 'r') {
      return this.handover.released(node, data) // read nothing further until the session is loaded
    } else if (kind === 'g') {
      const { g, f, on } = JSON.parse(data) as { g: string; f: string; on: boolean }
      this.groups.set(node, sharedKey(g, f), on)
    }
  }
}
