import type { RemoteGroups, Router } from '../../core/index.js'
import { noop, sharedKey, splitSharedKey } from '../../core/index.js'
import type { ClusterNode } from './node.js'

// Shared subscription groups across nodes. Each node records in Redis (`groups`:
// `<node>\n<group>/<filter>`) and on its stream ('g' entries) which groups have
// members on it; every node tells its router the others' (RemoteGroups), and
// the node a message is published on picks the member node.

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

  constructor(private readonly self: ClusterNode) {}

  /** Joins `router` to the cluster: this node's group changes go to Redis and its stream, the others' to the router. */
  attach(router: Router): void {
    const { self } = this
    const groupsKey = self.key('groups')
    this.remote = router.joinCluster((group, filter, present) => {
      if (!self.available) return
      const field = groupField(self.me, sharedKey(group, filter))
      const write = present ? self.redis.hset(groupsKey, field, '1') : self.redis.hdel(groupsKey, field)
      write.catch(noop)
      self.append('g', JSON.stringify({ g: group, f: filter, on: present })).catch(noop)
    })
  }

  /** the other nodes' groups as Redis has them (start-up) */
  async load(): Promise<void> {
    for (const field of Object.keys(await this.self.redis.hgetall(this.self.key('groups')))) {
      const { node, key } = splitGroupField(field)
      if (node === this.self.me) continue
      const { group, filter } = splitSharedKey(key)
      this.remote.set(node, group, filter, true)
    }
  }

  /** A 'g' entry of `from`'s stream: it gained or lost its members of a group. */
  received(from: string, data: string): void {
    const { g, f, on } = JSON.parse(data) as { g: string; f: string; on: boolean }
    this.remote.set(from, g, f, on)
  }

  forget(node: string): void {
    this.remote.forget(node)
  }
}
