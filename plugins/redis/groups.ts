import type { RemoteGroups, Router } from '../../core/index.js'
import { noop, sharedKey, splitSharedKey } from '../../core/index.js'
import type { InterestSync } from './interest.js'
import type { ClusterNode } from './node.js'

// Shared subscription groups across nodes. Each node records in Redis (`groups`:
// `<node>\n<group>/<filter>`) and on its stream ('g' entries) which groups have
// members on it; every node tells its router the others' (RemoteGroups), and
// the node a message is published on picks the member node. A group new to a
// node is acknowledged (SUBACK) once the others have read of it; a group gone
// from a node still has matching messages sent on the stream for a grace
// period (interest.ts), for the session that may be moving to another node.
// Changes made while Redis was away are written when it is back.

/** the `groups` hash field saying `node` has members of the group `key` (`<group>/<filter>`) */
export function groupField(node: string, key: string): string {
  return `${node}\n${key}`
}

/** the node and group of a `groups` hash field */
function splitGroupField(field: string): { node: string; key: string } {
  const nl = field.indexOf('\n')
  return { node: field.slice(0, nl), key: field.slice(nl + 1) }
}

/** true when a `groups` hash field is `node`'s */
export function isGroupFieldOf(field: string, node: string): boolean {
  return splitGroupField(field).node === node
}

/** Keeps the router's RemoteGroups and the other nodes in step with the shared groups of each node. */
export class GroupSync {
  private remote!: RemoteGroups
  private router!: Router
  /** a change of this node's groups could not be written (Redis away): all are written when it is back */
  private stale = false

  constructor(
    private readonly self: ClusterNode,
    private readonly interest: InterestSync,
  ) {}

  /** Joins `router` to the cluster: this node's group changes go to Redis and its stream, the others' to the router. */
  attach(router: Router): void {
    const { self } = this
    this.router = router
    this.remote = router.joinCluster((group, filter, present) => {
      if (!present) this.interest.groupGone(self.me, filter)
      if (!self.available) {
        this.stale = true
        return undefined
      }
      const appended = this.write(group, filter, present)
      return present ? this.interest.announced(appended) : undefined
    })
    self.onReconnect.push(() => {
      if (this.stale) this.rewrite().catch(noop)
    })
  }

  /** One change of this node's groups: the `groups` hash and a 'g' entry (its promise: the entry's id). */
  private write(group: string, filter: string, present: boolean): Promise<unknown> {
    const { self } = this
    const field = groupField(self.me, sharedKey(group, filter))
    const write = present ? self.redis.hset(self.key('groups'), field, '1') : self.redis.hdel(self.key('groups'), field)
    write.catch(() => (this.stale = true))
    const appended = self.append('g', JSON.stringify({ g: group, f: filter, on: present }))
    appended.catch(() => (this.stale = true))
    return appended
  }

  /** After Redis was away: this node's groups as they are now, with a 'g' entry for each that changed meanwhile. */
  private async rewrite(): Promise<void> {
    const { self } = this
    this.stale = false
    const mine = new Set(this.router.localGroups())
    const stored = new Set<string>()
    for (const field of Object.keys(await self.redis.hgetall(self.key('groups')))) {
      const { node, key } = splitGroupField(field)
      if (node === self.me) stored.add(key)
    }
    const write = (key: string, present: boolean): void => {
      const { group, filter } = splitSharedKey(key)
      void this.write(group, filter, present)
    }
    for (const key of mine) if (!stored.has(key)) write(key, true)
    for (const key of stored) if (!mine.has(key)) write(key, false)
  }

  /** the other nodes' groups as Redis has them (start-up) */
  async load(): Promise<void> {
    for (const field of Object.keys(await this.self.redis.hgetall(this.self.key('groups')))) {
      const { node, key } = splitGroupField(field)
      if (node === this.self.me) continue
      const { group, filter } = splitSharedKey(key)
      this.set(node, group, filter, true)
    }
  }

  private set(node: string, group: string, filter: string, on: boolean): void {
    this.remote.set(node, group, filter, on)
    if (!on) this.interest.groupGone(node, filter)
  }

  /** A 'g' entry of `from`'s stream: it gained or lost its members of a group. */
  received(from: string, data: string): void {
    const { g, f, on } = JSON.parse(data) as { g: string; f: string; on: boolean }
    this.set(from, g, f, on)
  }

  forget(node: string): void {
    for (const filter of this.remote.forget(node)) this.interest.groupGone(node, filter)
  }
}
