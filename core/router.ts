import type { Session } from './session.js'
import { Matches, TopicTree, type SharedGroup } from './topic-tree.js'
import type { Message, QoS, Subscription } from './types.js'
import { parseShared, sharedKey } from './topic.js'

export interface SubEntry {
  session: Session
  sub: Subscription
  /** `[sub.id]`, made once here instead of for every message */
  ids: number[] | undefined
}

/**
 * Matches a message against the subscription tree and hands one copy to each
 * session: overlapping subscriptions of one client merge into the highest QoS
 * with every matching subscription identifier; a shared group gets one copy.
 */
export class Router {
  readonly tree = new TopicTree<SubEntry>()
  private seq = 0
  /** store writes the last route() started; null when there were none (read it right after route()) */
  pending: Array<Promise<void>> | null = null
  // match results, reused from message to message; a route() inside a route()
  // (a 'delivered' listener publishing) gets its own
  private readonly found = new Matches<SubEntry>()
  private depth = 0
  private merged = 0
  /** this node's id (set by the broker) */
  nodeId = ''
  /**
   * In a cluster: the shared groups with members on other nodes, keyed by node
   * id. A message published here goes to one member of a group cluster-wide,
   * round robin over the nodes that have members.
   */
  remote: TopicTree<string> | null = null
  /** a shared group got its first member on this node (true) or lost its last (false) */
  onGroupChange: ((group: string, filter: string, present: boolean) => void) | null = null
  private readonly groupCounts = new Map<string, number>()
  private readonly remoteFound = new Matches<string>()
  private readonly targets: Array<Session | undefined> = []

  add(session: Session, sub: Subscription): boolean {
    const entry: SubEntry = { session, sub, ids: sub.id === undefined ? undefined : [sub.id] }
    const shared = parseShared(sub.filter)
    if (shared !== null && typeof shared === 'object') {
      const isNew = this.tree.add(shared.filter, session.clientId, entry, shared.group)
      if (isNew) this.countMember(shared.group, shared.filter, 1)
      return isNew
    }
    return this.tree.add(sub.filter, session.clientId, entry)
  }

  remove(session: Session, filter: string): boolean {
    const shared = parseShared(filter)
    if (shared !== null && typeof shared === 'object') {
      const removed = this.tree.remove(shared.filter, session.clientId, shared.group)
      if (removed) this.countMember(shared.group, shared.filter, -1)
      return removed
    }
    return this.tree.remove(filter, session.clientId)
  }

  /** the shared groups with at least one member on this node, as `sharedKey`s */
  localGroups(): string[] {
    return [...this.groupCounts.keys()]
  }

  private countMember(group: string, filter: string, delta: 1 | -1): void {
    const key = sharedKey(group, filter)
    const n = (this.groupCounts.get(key) ?? 0) + delta
    if (n <= 0) this.groupCounts.delete(key)
    else this.groupCounts.set(key, n)
    if (this.onGroupChange !== null && (n === 0 || (n === 1 && delta === 1))) this.onGroupChange(group, filter, n > 0)
  }

  /**
   * Delivers `message` to every matching session. Returns the number of sessions
   * it went to; `pending` then holds the store writes that must finish before
   * the publisher is acknowledged (null when none).
   */
  route(message: Message): number {
    const nested = this.depth++ > 0
    const found = nested ? new Matches<SubEntry>() : this.found
    let pending: Array<Promise<void>> | null = null
    let count = 0
    try {
      this.tree.match(message.topic, found)
      if (found.subCount === 1) {
        const { session, sub, ids } = found.sub(0)
        if (!(sub.nl && message.origin === session.clientId)) {
          count++
          const p = session.deliver(message, minQos(message.qos, sub.qos), sub.rap && message.retain, ids)
          if (p !== undefined) (pending ??= []).push(p)
        }
      } else if (found.subCount > 1) {
        pending = this.merge(message, found, nested)
        count += this.merged
      }
      if (this.remote !== null && message.node === this.nodeId && (found.groupCount > 0 || this.remote.size > 0)) this.assignShares(message, found, nested)
      for (let i = 0; i < found.groupCount; i++) {
        const g = found.group(i)
        if (message.shares !== undefined) { // in a cluster: only the node picked for this group delivers
          const chosen = message.shares[g.key]
          if (chosen !== undefined && chosen !== this.nodeId) continue
        }
        const entry = pickMember(g)
        if (entry === undefined) continue
        count++
        const p = entry.session.deliver(message, minQos(message.qos, entry.sub.qos), false, entry.ids)
        if (p !== undefined) (pending ??= []).push(p)
      }
    } finally {
      this.depth--
      found.clear() // let the entries go
    }
    this.pending = pending
    return count
  }

  /**
   * For a message published on this node, picks the node whose member of each
   * matching shared group gets it, round robin over the nodes with members (this
   * one included), and writes the choices into `message.shares` for the others.
   */
  private assignShares(message: Message, found: Matches<SubEntry>, nested: boolean): void {
    const remote = nested ? new Matches<string>() : this.remoteFound
    try {
      this.remote!.match(message.topic, remote)
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
      for (let j = 0; j < found.groupCount; j++) { // groups only this node has: ours, and said so
        const key = found.group(j).key
        if (shares === undefined || shares[key] === undefined) (shares ??= {})[key] = this.nodeId
      }
      message.shares = shares
    } finally {
      remote.clear()
    }
  }

  /** One copy per session for overlapping subscriptions; answers the store writes, the count in `merged`. */
  private merge(message: Message, found: Matches<SubEntry>, nested: boolean): Array<Promise<void>> | null {
    const mark = ++this.seq
    const targets: Array<Session | undefined> = nested ? [] : this.targets
    let t = 0
    for (let i = 0; i < found.subCount; i++) {
      const { session, sub } = found.sub(i)
      if (sub.nl && message.origin === session.clientId) continue // [MQTT-3.8.3-3]
      if (session.routeMark !== mark) {
        session.routeMark = mark
        session.routeQos = sub.qos
        session.routeRetain = sub.rap
        session.routeIds = sub.id === undefined ? undefined : [sub.id]
        targets[t++] = session
      } else {
        if (sub.qos > session.routeQos) session.routeQos = sub.qos
        if (sub.rap) session.routeRetain = true
        if (sub.id !== undefined) (session.routeIds ??= []).push(sub.id) // [MQTT-3.3.4-3]
      }
    }
    let pending: Array<Promise<void>> | null = null
    for (let i = 0; i < t; i++) {
      const s = targets[i]!
      targets[i] = undefined
      const p = s.deliver(message, minQos(message.qos, s.routeQos), s.routeRetain && message.retain, s.routeIds)
      if (p !== undefined) (pending ??= []).push(p)
    }
    this.merged = t
    return pending
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
