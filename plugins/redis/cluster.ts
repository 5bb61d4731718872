import type { Redis } from 'ioredis'
import type { BanStore, Broker, BrokerPlugin, Cluster, Logger, MessageBus } from '../../core/index.js'
import { AdminRpc } from './admin-rpc.js'
import { RedisBanStore } from './bans.js'
import { RedisBus } from './bus.js'
import { GroupSync } from './groups.js'
import { InterestSync } from './interest.js'
import { RedisMembership } from './membership.js'
import { ClusterNode } from './node.js'

// Several hookmq nodes on one Redis as one broker. What Redis holds (prefix first):
//   nodes                 set of registered node ids
//   node:<id>             heartbeat, expires after `nodeTimeoutMs` unless renewed
//   node:<id>:owned       set of client ids whose session lives on that node
//   node:<id>:wills       hash client id -> will of a client connected there
//   node:<id>:cursors     hash node -> id of the last entry of that node's stream it handled
//   node:<id>:adopted     set (for an hour) when another node took over a dead node
//   node:<id>:since       the id its stream had when the node started: others read it from there
//   node:<id>:sys         its $SYS figures (JSON), expiring a little after the sys interval unless renewed (sys.ts)
//   bus:<id>              the node's stream: messages for the others, takeovers, shared-group changes, ban changes
//   owners                hash client id -> node serving its session
//   identities            hash client id -> owner of its session (JSON: the identity, or null for anonymous)
//   groups                hash `<node>\n<group>/<filter>` -> 1 for shared groups with members there
//   node:<id>:interest    set of the plain filters of that node's sessions; node:<id>:announces (interest.ts)
//   bans                  hash ban id -> JSON of a ban added at run time (bans.ts; 'b' stream entries announce changes)
//
// A node appends a message to its stream only while it has peers and one of
// them can use it (a subscription there matches, a shared group's member
// there was picked, or it is retained: interest.ts), and
// acknowledges a QoS ≥ 1 message only once it is there: a node that reads it
// late (after a restart), or the node that adopts a dead one's sessions from
// its cursors, still delivers it. Each node reads the others' streams from its
// cursors (streams.ts) and routes to its own sessions only.
//
// One object per role, sharing this node's Redis side (node.ts): the message
// bus (bus.ts), the membership and session handover (membership.ts,
// handover.ts), the shared groups (groups.ts), and the plugin below that
// starts and stops them in order. The scripts: cluster-redis.ts.

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

/** The cluster's faces, for the broker's `cluster`, `stores.bus`, `stores.bans` and `use()`. */
export interface RedisCluster {
  cluster: Cluster
  bus: MessageBus
  bans: BanStore
  plugin: BrokerPlugin
  /** the admin API's questions to every node */
  queries: AdminRpc
}

export function redisCluster(options: RedisClusterOptions): RedisCluster {
  const self = new ClusterNode(options.redis, options.prefix, options.log, options.streamMaxLength)
  const interest = new InterestSync(self, Math.max(30000, 4 * options.nodeTimeoutMs), 2 * options.nodeTimeoutMs + options.heartbeatMs)
  const groups = new GroupSync(self, interest)
  const membership = new RedisMembership(self, groups, interest, options)
  const bus = new RedisBus(self, interest)
  const queries = new AdminRpc(self)
  const bans = new RedisBanStore(self)
  return { cluster: membership, bus, bans, queries, plugin: new ClusterLifecycle(self, membership, bus, groups, interest, bans, queries) }
}

/** Starts the parts in order (before the listeners open) and stops them; hands each stream entry to its part. */
class ClusterLifecycle implements BrokerPlugin {
  readonly name = 'redis-cluster'

  constructor(
    private readonly self: ClusterNode,
    private readonly membership: RedisMembership,
    private readonly bus: RedisBus,
    private readonly groups: GroupSync,
    private readonly interest: InterestSync,
    private readonly bans: RedisBanStore,
    private readonly queries: AdminRpc,
  ) {}

  async start(broker: Broker): Promise<void> {
    const { self, membership } = this
    self.begin(broker.id, this.handle.bind(this))
    this.groups.attach(broker.router)
    this.interest.attach(broker.router)
    await self.reader.open()
    await membership.join(broker)
    await this.groups.load()
    this.interest.start()
    await membership.beat()
    await membership.awaitPeers()
    self.reader.run()
    await this.queries.start(broker)
    broker.once('ready', () => {
      this.interest.ready().catch((err: unknown) => self.log.warn({ err }, "this node's subscriptions could not be written: the others send it every message"))
      void membership.handover.publishLeftWills(self.me).catch((err: unknown) => self.log.error({ err }, 'wills of the last run could not be published'))
    })
  }

  async stop(): Promise<void> {
    this.interest.stop()
    await this.queries.stop()
    return this.membership.leave()
  }

  sys(): Record<string, string | number> {
    return { 'cluster/nodes': this.self.peers.size + 1, 'cluster/redis': this.self.available ? 'up' : 'down' }
  }

  /** Handles one entry of `node`'s stream (for the reader); a promise it answers must settle before the next entry. */
  private handle(node: string, fields: string[], pending: unknown[]): Promise<void> | undefined {
    const kind = fields[1]
    const data = fields[3]!
    if (kind === 'm') {
      this.bus.received(node, data, pending)
    } else if (kind === 't') {
      const p = this.membership.handover.takeover(node, data)
      if (p !== undefined) pending.push(p)
    } else if (kind === 'r') {
      return this.membership.handover.released(node, data) // read nothing further until the session is loaded
    } else if (kind === 'g') {
      this.groups.received(node, data)
    } else if (kind === 'i' || kind === 'I') {
      return this.interest.received(node, kind, data)
    } else if (kind === 'b') {
      this.bans.received(data)
    }
  }
}
