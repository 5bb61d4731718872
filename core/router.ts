import type { Session } from './session.js'
import { TopicTree, type SharedGroup } from './topic-tree.js'
import type { Message, QoS, Subscription } from './types.js'
import { parseShared } from './topic.js'

export interface SubEntry {
  session: Session
  sub: Subscription
}

/**
 * Matches a message against the subscription tree and hands one copy to each
 * session: overlapping subscriptions of one client merge into the highest QoS
 * with every matching subscription identifier; a shared group gets one copy.
 */
export class Router {
  readonly tree = new TopicTree<SubEntry>()
  private seq = 0

  add(session: Session, sub: Subscription): boolean {
    const shared = parseShared(sub.filter)
    if (shared !== null && typeof shared === 'object') return this.tree.add(shared.filter, session.clientId, { session, sub }, shared.group)
    return this.tree.add(sub.filter, session.clientId, { session, sub })
  }

  remove(session: Session, filter: string): boolean {
    const shared = parseShared(filter)
    if (shared !== null && typeof shared === 'object') return this.tree.remove(shared.filter, session.clientId, shared.group)
    return this.tree.remove(filter, session.clientId)
  }

  /**
   * Delivers `message` to every matching session. Returns the number of sessions
   * it went to and, in `pending`, store writes that must finish before the
   * publisher is acknowledged.
   */
  route(message: Message, pending: Array<Promise<void>>): number {
    const matches: SubEntry[] = []
    const groups: SharedGroup<SubEntry>[] = []
    this.tree.match(message.topic, matches, groups)
    let count = 0
    if (matches.length === 1) {
      const { session, sub } = matches[0]!
      if (!(sub.nl && message.origin === session.clientId)) {
        count++
        push(pending, session.deliver(message, minQos(message.qos, sub.qos), sub.rap && message.retain, ids(sub)))
      }
    } else if (matches.length > 1) {
      count += this.merge(message, matches, pending)
    }
    for (let i = 0; i < groups.length; i++) {
      const entry = pickMember(groups[i]!)
      if (entry === undefined) continue
      count++
      push(pending, entry.session.deliver(message, minQos(message.qos, entry.sub.qos), false, ids(entry.sub)))
    }
    return count
  }

  private merge(message: Message, matches: SubEntry[], pending: Array<Promise<void>>): number {
    const mark = ++this.seq
    const targets: Session[] = []
    for (let i = 0; i < matches.length; i++) {
      const { session, sub } = matches[i]!
      if (sub.nl && message.origin === session.clientId) continue // [MQTT-3.8.3-3]
      if (session.routeMark !== mark) {
        session.routeMark = mark
        session.routeQos = sub.qos
        session.routeRetain = sub.rap
        session.routeIds = sub.id === undefined ? undefined : [sub.id]
        targets.push(session)
      } else {
        if (sub.qos > session.routeQos) session.routeQos = sub.qos
        if (sub.rap) session.routeRetain = true
        if (sub.id !== undefined) (session.routeIds ??= []).push(sub.id) // [MQTT-3.3.4-3]
      }
    }
    for (let i = 0; i < targets.length; i++) {
      const s = targets[i]!
      push(pending, s.deliver(message, minQos(message.qos, s.routeQos), s.routeRetain && message.retain, s.routeIds))
    }
    return targets.length
  }
}

function push(pending: Array<Promise<void>>, p: Promise<void> | undefined): void {
  if (p !== undefined) pending.push(p)
}

function minQos(a: QoS, b: QoS): QoS {
  return a < b ? a : b
}

function ids(sub: Subscription): number[] | undefined {
  return sub.id === undefined ? undefined : [sub.id]
}

/** Round robin over the group, preferring members that are connected. */
function pickMember(group: SharedGroup<SubEntry>): SubEntry | undefined {
  const members = [...group.members.values()]
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
