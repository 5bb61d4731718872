import type { FilterChange, LocalGroupChange, RemoteGroups } from './cluster.js'
import type { Flow } from './flow.js'
import { RemoteGroupTree } from './remote-groups.js'
import type { Session } from './session.js'
import { Matches, TopicTree, type SharedGroup } from './topic-tree.js'
import type { Message, QoS, Subscription } from './types.js'
import { parseShared, sharedKey } from './topic.js'

export interface SubEntry {
  session: Session
  sub: Subscription
  /** `[sub.id]`, made once here instead of for every message */
  ids: number[] | undefined
  /** the router's merge state for this entry's session, shared by its entries */
  target: Target
}

/** What route() did when some delivery has a store write to wait for (else it answers just the count). */
export interface Routed {
  /** sessions the message went to */
  count: number
  /** store writes that must finish before the publisher is acknowledged */
  writes: Array<Promise<void>>
}

/**
 * One session's delivery while a message is merged over its overlapping
 * subscriptions (merge()): one per session with subscriptions, kept by the
 * router, so merging allocates nothing per message.
 */
interface Target {
  session: Session
  /** the merge that last touched it */
  mark: number
  qos: QoS
  retain: boolean
  ids: number[] | undefined
  /** the session's entries in the tree */
  refs: number
}

/**
 * Matches a message against the subscription tree and hands one copy to each
 * session: overlapping subscriptions of one client merge into the highest QoS
 * with every matching subscription identifier; a shared group gets one copy.
 */
export class Router {
  readonly tree = new TopicTree<SubEntry>()
  // match results, reused from message to message; a route() inside a route()
  // (a 'delivered' listener publishing) gets its own
  private readonly found = new Matches<SubEntry>()
  private depth = 0
  /**
   * In a cluster (joinCluster): the shared groups with members on other nodes,
   * keyed by node id. A message published here goes to one member of a group
   * cluster-wide, round robin over the nodes that have members.
   */
  private remoteGroups: RemoteGroupTree | null = null
  /** remoteGroups' tree, which route() reads directly */
  private remoteTree: TopicTree<string> | null = null
  private onGroupChange: LocalGroupChange | null = null
  private readonly groupCounts = new Map<string, number>()
  private readonly remoteFound = new Matches<string>()
  /** every session's Target (see SubEntry.target) */
  private readonly sessionTargets = new Map<Session, Target>()
  private seq = 0
  /** merge()'s result, reused (a nested route() gets its own); slots past the last merge are undefined */
  private readonly merged: Array<Target | undefined> = Array.of<Target | undefined>(undefined) // born holding objects, as Matches' arrays

  /**
   * In a cluster (watchFilters): told when a plain filter gets its first
   * session here or loses its last (the tree holds who has it), so the other
   * nodes send this node only what matches (plugins/redis/interest.ts).
   */
  private onFilterChange: FilterChange | null = null

  /** `nodeId`: this node's id, in a cluster what `message.node` and `message.shares` name it by */
  constructor(readonly nodeId = '') {}

  /** the other nodes' shared groups; null on a single node */
  get remote(): RemoteGroups | null {
    return this.remoteGroups
  }

  /**
   * Makes this router one node of a cluster: a shared group gets each message
   * once cluster-wide. `onLocalChange` hears when a group gets its first member
   * on this node or loses its last; the cluster tells the router the other
   * nodes' groups through the answer.
   */
  joinCluster(onLocalChange: LocalGroupChange): RemoteGroups {
    this.remoteGroups ??= new RemoteGroupTree()
    this.remoteTree = this.remoteGroups.tree
    this.onGroupChange = onLocalChange
    return this.remoteGroups
  }

  /**
   * Calls `onChange` from now on when a plain (not shared) filter gets its
   * first session here or loses its last. A promise it answers for an added
   * filter is what a SUBACK waits for (add's `announced`).
   */
  watchFilters(onChange: FilterChange): void {
    this.onFilterChange = onChange
  }

  /** the plain filters held here */
  watchedFilters(): string[] {
    return this.tree.plainFilters()
  }

  /** `announced`: gets what telling the other nodes of a filter new to this node waits for (a SUBACK waits for it). */
  add(session: Session, sub: Subscription, announced?: Array<Promise<unknown>>): boolean {
    let target = this.sessionTargets.get(session)
    if (target === undefined) {
      target = { session, mark: 0, qos: 0, retain: false, ids: undefined, refs: 0 }
      this.sessionTargets.set(session, target)
    }
    const entry: SubEntry = { session, sub, ids: sub.id === undefined ? undefined : [sub.id], target }
    const shared = parseShared(sub.filter)
    let isNew: boolean
    if (shared !== null && typeof shared === 'object') {
      isNew = this.tree.add(shared.filter, session.clientId, entry, shared.group)
      if (isNew) this.countMember(shared.group, shared.filter, 1, announced)
    } else {
      isNew = this.tree.add(sub.filter, session.clientId, entry)
      if (isNew && this.onFilterChange !== null && this.tree.holders(sub.filter) === 1) {
        const p = this.onFilterChange(sub.filter, true)
        if (p !== undefined) announced?.push(p)
      }
    }
    if (isNew) target.refs++
    else if (target.refs === 0) this.sessionTargets.delete(session)
    return isNew
  }

  remove(session: Session, filter: string): boolean {
    const shared = parseShared(filter)
    let removed: boolean
    if (shared !== null && typeof shared === 'object') {
      removed = this.tree.remove(shared.filter, session.clientId, shared.group)
      if (removed) this.countMember(shared.group, shared.filter, -1)
    } else {
      removed = this.tree.remove(filter, session.clientId)
      if (removed && this.onFilterChange !== null && this.tree.holders(filter) === 0) void this.onFilterChange(filter, false)
    }
    if (removed) {
      const target = this.sessionTargets.get(session)
      if (target !== undefined && --target.refs === 0) this.sessionTargets.delete(session)
    }
    return removed
  }

  /** the shared groups with at least one member on this node, as `sharedKey`s */
  localGroups(): string[] {
    return [...this.groupCounts.keys()]
  }

  private countMember(group: string, filter: string, delta: 1 | -1, announced?: Array<Promise<unknown>>): void {
    const key = sharedKey(group, filter)
    const n = (this.groupCounts.get(key) ?? 0) + delta
    if (n <= 0) this.groupCounts.delete(key)
    else this.groupCounts.set(key, n)
    if (this.onGroupChange !== null && (n === 0 || (n === 1 && delta === 1))) {
      const p = this.onGroupChange(group, filter, n > 0)
      if (p !== undefined && n > 0) announced?.push(p)
    }
  }

  /**
   * Delivers `message` to every matching session. Answers the number of
   * sessions it went to, or, when some delivery started a store write the
   * publisher's acknowledgement must wait for, that count with the writes.
   * `from`: the publisher's flow control (a subscriber that cannot take the
   * message at once holds it back); null for messages from code or other nodes.
   */
  route(message: Message, from: Flow | null): number | Routed {
    const nested = this.depth++ > 0
    const found = nested ? new Matches<SubEntry>() : this.found
    let writes: Array<Promise<void>> | null = null
    let count = 0
    try {
      this.tree.match(message.topic, found)
      if (found.subCount === 1) {
        const { session, sub, ids } = found.sub(0)
        if (!(sub.nl && message.origin === session.clientId)) {
          count++
          const p = session.deliver(message, minQos(message.qos, sub.qos), sub.rap && message.retain, ids, from)
          if (p !== undefined) (writes ??= []).push(p)
        }
      } else if (found.subCount > 1) {
        const targets = nested ? [] : this.merged
        const n = this.merge(message, found, targets, nested)
        count += n
        for (let i = 0; i < n; i++) {
          const t = targets[i]!
          targets[i] = undefined // let it go (the array keeps its size: no regrowing it for every message)
          const p = t.session.deliver(message, minQos(message.qos, t.qos), t.retain && message.retain, t.ids, from)
          if (p !== undefined) (writes ??= []).push(p)
        }
      }
      if (this.remoteTree !== null && message.node === this.nodeId && (found.groupCount > 0 || this.remoteTree.size > 0))
        this.assignShares(message, found, nested)
      for (let i = 0; i < found.groupCount; i++) {
        const g = found.group(i)
        if (message.shares !== undefined) {
          // in a cluster: only the node picked for this group delivers
          const chosen = message.shares[g.key]
          if (chosen !== undefined && chosen !== this.nodeId) continue
        }
        const entry = pickMember(g)
        if (entry === undefined) continue
        count++
        const p = entry.session.deliver(message, minQos(message.qos, entry.sub.qos), false, entry.ids, from)
        if (p !== undefined) (writes ??= []).push(p)
      }
    } finally {
      this.depth--
      found.clear() // let the entries go
    }
    return writes === null ? count : { count, writes }
  }

  /**
   * For a message published on this node, picks the node whose member of each
   * matching shared group gets it, round robin over the nodes with members (this
   * one included), and writes the choices into `message.shares` for the others.
   */
  private assignShares(message: Message, found: Matches<SubEntry>, nested: boolean): void {
    const remote = nested ? new Matches<string>() : this.remoteFound
    try {
      this.remoteTree!.match(message.topic, remote)
      let shares: Record<string, string> | undefined
      for (let i = 0; i < remote.groupCount; i++) {
        const r = remote.group(i)
        let local = false
        for (let j = 0; j < found.groupCount; j++) if (found.group(j).key === r.key) local = true
        const n = r.list.length + (local ? 1 : 0)
        const pick = r.next % n
        r.next = (r.next + 1) % n
        ;(shares ??= {})[r.key] = pick === r.list.length ? this.nodeId : r.list[pick]!
      }
      for (let j = 0; j < found.groupCount; j++) {
        // groups only this node has: ours, and said so
        const key = found.group(j).key
        if (shares === undefined || shares[key] === undefined) (shares ??= {})[key] = this.nodeId
      }
      message.shares = shares
    } finally {
      remote.clear()
    }
  }

  /**
   * One copy per session for overlapping subscriptions: the highest QoS, retain
   * as published if any asks for it, every subscription identifier
   * [MQTT-3.3.4-3]. A route() inside a route() (a 'delivered' listener
   * publishing) merges into Targets of its own, not the ones being delivered.
   */
  private merge(message: Message, found: Matches<SubEntry>, out: Array<Target | undefined>, nested: boolean): number {
    const mark = ++this.seq
    const own = nested ? new Map<Session, Target>() : null
    let n = 0
    for (let i = 0; i < found.subCount; i++) {
      const entry = found.sub(i)
      const { session, sub } = entry
      if (sub.nl && message.origin === session.clientId) continue // [MQTT-3.8.3-3]
      let t = own === null ? (entry.target.mark === mark ? entry.target : undefined) : own.get(session)
      if (t === undefined) {
        if (own === null) t = entry.target
        else own.set(session, (t = { session, mark, qos: sub.qos, retain: sub.rap, ids: undefined, refs: 0 }))
        t.mark = mark
        t.qos = sub.qos
        t.retain = sub.rap
        t.ids = sub.id === undefined ? undefined : [sub.id]
        out[n++] = t
      } else {
        if (sub.qos > t.qos) t.qos = sub.qos
        if (sub.rap) t.retain = true
        if (sub.id !== undefined) (t.ids ??= []).push(sub.id)
      }
    }
    return n
  }
}

function minQos(a: QoS, b: QoS): QoS {
  return a < b ? a : b
}

/** Round robin over the group, preferring members that are connected. */
function pickMember(group: SharedGroup<SubEntry>): SubEntry | undefined {
  const members = group.list
  if (members.length === 0) return undefined
  for (let n = 0; n < members.length; n++) {
    const entry = members[(group.next + n) % members.length]!
    if (entry.session.outlet !== null) {
      group.next = (group.next + n + 1) % members.length
      return entry
    }
  }
  const entry = members[group.next % members.length]!
  group.next = (group.next + 1) % members.length
  return entry
}
