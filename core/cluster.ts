import type { ExistingSession } from './hooks.js'
import type { Identity } from './identity.js'
import type { Will } from './stores.js'

/**
 * The identity a claim records with the client id, in the same step: `owner`
 * opens the session, and `seen` is the session's owner as the CONNECT found it
 * before authenticating (undefined: none). When another identity was recorded
 * meanwhile (its CONNECT came between), the claim fails with
 * CLIENT_ID_TAKEN and changes nothing: the check and the claim are one.
 */
export interface ClaimIdentity {
  owner: Identity
  seen: ExistingSession | undefined
}

/**
 * What the core asks of a cluster of nodes sharing one state (the Redis plugin
 * gives one). Without it the broker is a single node and its memory is the
 * truth; with it, a session lives on one node at a time, which this interface
 * moves between nodes.
 */
export interface Cluster {
  /**
   * False while the shared state cannot be written: what would need it (QoS ≥ 1
   * publishes, persistent sessions) is refused rather than acknowledged and lost.
   */
  readonly available: boolean
  /** client ids of the stored sessions this node serves (read once at start-up) */
  owned(): Promise<Set<string>>
  /**
   * Makes `clientId` this node's: a connection or session of it on another node
   * is closed (0x8E) and handed over first; then `load` reads what is stored of
   * it, before this node handles anything the old node sent after letting it go.
   */
  claim(clientId: string, load: () => Promise<void>, identity?: ClaimIdentity): Promise<void>
  /** the session of `clientId` no longer lives on this node */
  released(clientId: string): void
  /** the owner of the session `clientId` has on any node; undefined when no node has one */
  sessionOwner(clientId: string): Promise<ExistingSession | undefined>
  /** a session of `clientId` was opened here by `owner` (recorded while this node is still its node) */
  ownerSet(clientId: string, owner: Identity): void
  /** a client with a will is connected here: others publish it should this node die */
  willSet(clientId: string, will: Will): void
  /** that client's will is no longer pending on this node */
  willCleared(clientId: string): void
  /**
   * $SYS (core/sys.ts): keeps this node's record where the other nodes read it,
   * for `ttlMs` (it is renewed every sys interval); answers the live records of
   * every node (this one's included), and whether this node is the one that
   * publishes the broker-wide $SYS/broker/... now. Without it, each node
   * publishes its own figures there.
   */
  shareSys?(record: SysRecord, ttlMs: number): Promise<{ records: SysRecord[]; publisher: boolean }>
}

/** One node's $SYS figures, as the other nodes read them. */
export interface SysRecord {
  node: string
  /** keyed relative to $SYS/broker/, as sysSnapshot() gives them */
  figures: Record<string, string | number>
  /** the broker-wide peak of connected clients that node has seen */
  peak: number
}

/**
 * The other nodes' shared subscription groups, as the router keeps them
 * (Router.joinCluster): a message published on this node goes to one member
 * node of each matching group, round robin. The cluster keeps it up to date.
 */
export interface RemoteGroups {
  /** (node, group) pairs known */
  readonly size: number
  /** `node` has members of the shared group `group` on `filter` (present), or no longer has any */
  set(node: string, group: string, filter: string, present: boolean): void
  /** `node` is gone: none of its groups is picked any more; answers their filters */
  forget(node: string): string[]
}

/** A shared group got its first member on this node (present) or lost its last; a promise: when the other nodes know (a SUBACK waits for it). */
export type LocalGroupChange = (group: string, filter: string, present: boolean) => Promise<unknown> | void

/** A plain filter got its first session on this node (present) or lost its last; a promise: when the other nodes know (an added filter's SUBACK waits for it). */
export type FilterChange = (filter: string, present: boolean) => Promise<unknown> | undefined
