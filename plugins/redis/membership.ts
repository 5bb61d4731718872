import type { Broker, ClaimIdentity, Cluster, ExistingSession, Identity, SysRecord, Will } from '../../core/index.js'
import { noop } from '../../core/index.js'
import { sleep } from './cluster-redis.js'
import { groupField, type GroupSync } from './groups.js'
import type { InterestSync } from './interest.js'
import { Handover } from './handover.js'
import type { ClusterNode } from './node.js'
import { shareSys } from './sys.js'
import { willToJson } from './stores.js'

// The cluster's Cluster: which node serves which session (owners, identities,
// wills), heartbeats that find the live nodes and the dead ones, and the
// handover of sessions between nodes (handover.ts).

export interface MembershipOptions {
  heartbeatMs: number
  /** a node whose heartbeat is older than this is dead */
  nodeTimeoutMs: number
}

export class RedisMembership implements Cluster {
  /** sessions changing node (made by join) */
  handover!: Handover
  private broker!: Broker
  private timer: NodeJS.Timeout | undefined
  private registered = false

  constructor(
    private readonly self: ClusterNode,
    private readonly groups: GroupSync,
    private readonly interest: InterestSync,
    private readonly options: MembershipOptions,
  ) {}

  get available(): boolean {
    return this.self.available
  }

  /** node ids this node reads from (for status) */
  get peerIds(): string[] {
    return [...this.self.peers]
  }

  /** Stops reading `node`'s stream (its cursor is kept: a node only taken for dead, back, is read on from there). */
  forgetPeer(node: string): void {
    this.self.reader.unfollow(node)
    this.groups.forget(node)
    this.interest.forget(node)
  }

  // ---- Cluster ----

  async owned(): Promise<Set<string>> {
    const { redis, me } = this.self
    const key = this.self.key.bind(this.self)
    const mine = new Set(await redis.smembers(key('node', me, 'owned')))
    // sessions stored without an owner (written by a single node before it had peers) are anyone's: first come
    const all = await redis.smembers(key('sessions'))
    const owners = all.length === 0 ? [] : await redis.hmget(key('owners'), ...all)
    for (let i = 0; i < all.length; i++) {
      if (owners[i] !== null) continue
      if ((await redis.hsetnx(key('owners'), all[i]!, me)) === 1) {
        await redis.sadd(key('node', me, 'owned'), all[i]!)
        mine.add(all[i]!)
      }
    }
    return mine
  }

  claim(clientId: string, load: () => Promise<void>, identity?: ClaimIdentity): Promise<void> {
    return this.handover.claim(clientId, load, identity)
  }

  released(clientId: string): void {
    if (!this.available) return
    const { redis, me } = this.self
    redis.hookmqRelease(this.self.key('owners'), this.self.key('identities'), clientId, me, this.self.key('node', '')).catch(noop)
  }

  /** the identity recorded for the client id; a session stored (stores.ts) without one was stored before owners were recorded */
  async sessionOwner(clientId: string): Promise<ExistingSession | undefined> {
    const { redis } = this.self
    const [json, stored] = await Promise.all([redis.hget(this.self.key('identities'), clientId), redis.exists(this.self.key('session', clientId))])
    if (json !== null) return { owner: JSON.parse(json) as Identity }
    return stored === 1 ? { owner: undefined } : undefined
  }

  ownerSet(clientId: string, owner: Identity): void {
    if (this.available)
      this.self.redis.hookmqSetOwner(this.self.key('owners'), this.self.key('identities'), clientId, this.self.me, JSON.stringify(owner)).catch(noop)
  }

  willSet(clientId: string, will: Will): void {
    if (this.available) this.self.redis.hset(this.self.key('node', this.self.me, 'wills'), clientId, willToJson(will)).catch(noop)
  }

  willCleared(clientId: string): void {
    if (this.available) this.self.redis.hdel(this.self.key('node', this.self.me, 'wills'), clientId).catch(noop)
  }

  shareSys(record: SysRecord, ttlMs: number): Promise<{ records: SysRecord[]; publisher: boolean }> {
    return shareSys(this.self, record, ttlMs)
  }

  // ---- membership ----

  /** Registers this node (its reader open): from here on others find it, and read its stream from where this run starts. */
  async join(broker: Broker): Promise<void> {
    this.broker = broker
    this.handover = new Handover(this.self, broker, this)
    const { redis, me } = this.self
    const key = this.self.key.bind(this.self)
    const last = await this.self.reader.lastEntry(me)
    await redis
      .multi()
      .set(key('node', me, 'since'), last ?? '0-0')
      .set(key('node', me), String(Date.now()), 'PX', this.options.nodeTimeoutMs)
      .sadd(key('nodes'), me)
      .del(key('node', me, 'adopted'))
      .exec()
    this.registered = true
  }

  /** The first heartbeat, then one every `heartbeatMs`. */
  async beat(): Promise<void> {
    await this.tick(true)
    // heartbeats from now: waiting for the peers (awaitPeers) may last longer than this node's timeout
    this.timer = setInterval(() => void this.tick(false), this.options.heartbeatMs)
    this.timer.unref()
  }

  /** Stops the heartbeats and the reading, and leaves: the others notice the missing heartbeat and take this node's sessions over. */
  async leave(): Promise<void> {
    clearInterval(this.timer)
    await this.self.reader?.stop()
    if (this.available) await this.self.redis.del(this.self.key('node', this.self.me), this.self.key('node', this.self.me, 'sys')).catch(noop)
  }

  /** Heartbeat; finds new peers and dead nodes. */
  private async tick(first: boolean): Promise<void> {
    if (!this.available) return
    const { redis, me, reader } = this.self
    const key = this.self.key.bind(this.self)
    try {
      const [[, ,], [, added], [, adopted], [, members]] = (await redis
        .multi()
        .set(key('node', me), String(Date.now()), 'PX', this.options.nodeTimeoutMs)
        .sadd(key('nodes'), me)
        .exists(key('node', me, 'adopted'))
        .smembers(key('nodes'))
        .exec())! as Array<[Error | null, unknown]>
      if (!first && this.registered && added === 1) await this.rejoin(adopted === 1)
      const others = (members as string[]).filter((n) => n !== me)
      const alive = others.length === 0 ? [] : await Promise.all(others.map((n) => redis.exists(key('node', n))))
      // after Redis was away every heartbeat lapsed: give the others time to renew theirs before judging
      const settled = Date.now() - this.self.readySince > this.options.nodeTimeoutMs + this.options.heartbeatMs
      for (let i = 0; i < others.length; i++) {
        const n = others[i]!
        if (alive[i] === 1) {
          await reader.follow(n)
        } else if (settled && (await redis.srem(key('nodes'), n)) === 1) {
          // this node won it: take its sessions over between two reads
          reader.between(() => this.handover.adoptDead(n).catch((err: unknown) => this.self.log.error({ err, node: n }, 'taking over a dead node failed')))
        } else if (settled && this.self.peers.has(n)) {
          this.forgetPeer(n)
        }
      }
      for (const n of this.self.peers) if (!others.includes(n)) this.forgetPeer(n) // taken over by another node
    } catch (err) {
      this.self.log.debug({ err }, 'cluster heartbeat failed')
    }
  }

  /** A new node waits (a little) until the running ones read its stream, so nothing they publish misses its clients. */
  async awaitPeers(): Promise<void> {
    const { redis, me, peers } = this.self
    const deadline = Date.now() + this.options.heartbeatMs * 2 + 500
    while (peers.size > 0 && Date.now() < deadline) {
      const seen = await Promise.all([...peers].map((n) => redis.hexists(this.self.key('node', n, 'cursors'), me)))
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
    const { redis, me, log } = this.self
    const key = this.self.key.bind(this.self)
    const sessions = this.broker.sessions
    if (adopted) {
      log.warn('this node was taken for dead and its sessions taken over; dropping its connections')
      for (const id of [...sessions.sessions.keys()]) sessions.forget(id)
      await redis.del(key('node', me, 'adopted'))
      return
    }
    log.warn("Redis lost this node's state; writing it back")
    const m = redis.multi()
    for (const s of sessions.sessions.values()) {
      m.hset(key('owners'), s.clientId, me).sadd(key('node', me, 'owned'), s.clientId)
      if (s.owner !== undefined) m.hset(key('identities'), s.clientId, JSON.stringify(s.owner))
      s.persist()
    }
    for (const group of this.broker.router.localGroups()) m.hset(key('groups'), groupField(me, group), '1')
    await m.exec()
  }
}
