import type { Redis } from 'ioredis'
import type { Broker, BrokerPlugin, Cluster, ExistingSession, Identity, Logger, Message, MessageBus, Will } from '../../core/index.js'
import { sharedKey, throttled } from '../../core/index.js'
import { busMessageFromJson, busMessageToJson, clusterRedis, sleep, type ClusterRedis } from './cluster-redis.js'
import { groupField, RemoteGroups } from './groups.js'
import { Handover } from './handover.js'
import { StreamReader } from './streams.js'
import { willToJson } from './stores.js'
import { HookmqError, noop } from '../../core/index.js'

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
//   identities            hash client id -> owner of its session (JSON: the identity, or null for anonymous)
//   groups                hash `<node>\n<group>/<filter>` -> 1 for shared groups with members there
//
// A node appends a message to its stream only while it has peers, and
// acknowledges a QoS ≥ 1 message only once it is there: a node that reads it
// late (after a restart), or the node that adopts a dead one's sessions from
// its cursors, still delivers it. Each node reads the others' streams from its
// cursors (streams.ts) and routes to its own sessions only. Shared groups:
// groups.ts; sessions changing node: handover.ts; the scripts: cluster-redis.ts.

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

export class RedisCluster implements Cluster, MessageBus, BrokerPlugin {
  readonly name = 'redis-cluster'
  readonly redis: ClusterRedis
  /** reads the other nodes' streams (and the handover through it) */
  reader!: StreamReader
  broker!: Broker
  me = ''
  private handover!: Handover
  private groups!: RemoteGroups
  private readonly p: string
  readonly log: Logger
  private readonly handlers: Array<(message: Message) => unknown> = []
  private timer: NodeJS.Timeout | undefined
  private readySince = 0
  private registered = false
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

  /** live nodes other than this one, whose streams this node reads */
  get peers(): ReadonlySet<string> {
    return this.reader.peers
  }

  /** node ids this node reads from (for status) */
  get peerIds(): string[] {
    return [...this.peers]
  }

  key(...parts: string[]): string {
    return this.p + parts.join(':')
  }

  /** Stops reading `node`'s stream (its cursor is kept: a node only taken for dead, back, is read on from there). */
  forgetPeer(node: string): void {
    this.reader.unfollow(node)
    this.groups.forget(node)
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
    this.reader = new StreamReader({ redis: this.redis, key: this.key.bind(this), me: this.me, log: this.log, handle: this.handle.bind(this), available: () => this.available })
    await this.reader.open()
    await this.register()
    await this.groups.load()
    await this.tick(true)
    // heartbeats from now: waiting for the peers below may last longer than this node's timeout
    this.timer = setInterval(() => void this.tick(false), this.options.heartbeatMs)
    this.timer.unref()
    await this.awaitPeers()
    this.reader.run()
    broker.once('ready', () => void this.handover.publishLeftWills(this.me).catch((err: unknown) => this.log.error({ err }, 'wills of the last run could not be published')))
  }

  async stop(): Promise<void> {
    clearInterval(this.timer)
    await this.reader?.stop()
    // leave: the others notice the missing heartbeat and take this node's sessions over
    if (this.available) await this.redis.del(this.key('node', this.me)).catch(noop)
  }

  sys(): Record<string, string | number> {
    return { 'cluster/nodes': this.peers.size + 1, 'cluster/redis': this.available ? 'up' : 'down' }
  }

  // ---- MessageBus ----

  publish(message: Message): Promise<void> | undefined {
    if (this.peers.size === 0) return undefined // nobody reads this node's stream
    if (!this.available) return message.qos === 0 ? undefined : Promise.reject(new HookmqError('STORE_UNAVAILABLE', 'Redis is unavailable'))
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
    this.redis.hookmqRelease(this.key('owners'), this.key('identities'), clientId, this.me, this.key('node', '')).catch(noop)
  }

  /** the identity recorded for the client id; a session stored (stores.ts) without one was stored before owners were recorded */
  async sessionOwner(clientId: string): Promise<ExistingSession | undefined> {
    const [json, stored] = await Promise.all([this.redis.hget(this.key('identities'), clientId), this.redis.exists(this.key('session', clientId))])
    if (json !== null) return { owner: JSON.parse(json) as Identity }
    return stored === 1 ? { owner: undefined } : undefined
  }

  ownerSet(clientId: string, owner: Identity): void {
    if (this.available) this.redis.hookmqSetOwner(this.key('owners'), this.key('identities'), clientId, this.me, JSON.stringify(owner)).catch(noop)
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
    const last = await this.reader.lastEntry(this.me)
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
          await this.reader.follow(n)
        } else if (settled && await this.redis.srem(this.key('nodes'), n) === 1) {
          // this node won it: take its sessions over between two reads
          this.reader.between(() => this.handover.adoptDead(n).catch((err: unknown) => this.log.error({ err, node: n }, 'taking over a dead node failed')))
        } else if (settled && this.peers.has(n)) {
          this.forgetPeer(n)
        }
      }
      for (const n of this.peers) if (!others.includes(n)) this.forgetPeer(n) // taken over by another node
    } catch (err) {
      this.log.debug({ err }, 'cluster heartbeat failed')
    }
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
      if (s.owner !== undefined) m.hset(this.key('identities'), s.clientId, JSON.stringify(s.owner))
      s.persist()
    }
    for (const key of this.broker.router.localGroups()) m.hset(this.key('groups'), groupField(this.me, key), '1')
    await m.exec()
  }

  // ---- the streams ----

  append(kind: string, data: string): Promise<void> {
    return this.redis.xadd(this.stream, 'MAXLEN', '~', this.maxLen, '*', 'k', kind, 'd', data).then(noop)
  }

  /** Handles one entry of `node`'s stream (for the reader); a promise it answers must settle before the next entry. */
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
      const p = this.handover.takeover(node, data)
      if (p !== undefined) pending.push(p)
    } else if (kind === 'r') {
      return this.handover.released(node, data) // read nothing further until the session is loaded
    } else if (kind === 'g') {
      const { g, f, on } = JSON.parse(data) as { g: string; f: string; on: boolean }
      this.groups.set(node, sharedKey(g, f), on)
    }
  }
}
