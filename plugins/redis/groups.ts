import type { Router } from '../../core/index.js'
import { noop, sharedKey, splitSharedKey, TopicTree } from '../../core/index.js'
import type { ClusterRedis } from './cluster-redis.js'

// Shared subscription groups across nodes. Each node records in Redis (`groups`:
// `<node>\n<group>/<filter>`) and on its stream which groups have members on it;
// every node keeps the others' in the router's `remote` tree, where the node a
// message is published on picks the member node.

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

export class RemoteGroups {
  /** the groups each other node has members of, to forget them when it goes */
  private readonly byNode = new Map<string, Set<string>>()
  private readonly remote = new TopicTree<string>()

  constructor(private readonly redis: ClusterRedis, private readonly groupsKey: string, private readonly me: string) {}

  /** Wires into the router: its remote tree, and its local membership changes (told to the others by `announce`). */
  attach(router: Router, announce: (group: string, filter: string, present: boolean) => void, available: () => boolean): void {
    router.remote = this.remote
    router.onGroupChange = (group, filter, present) => {
      if (!available()) return
      const field = groupField(this.me, sharedKey(group, filter))
      const write = present ? this.redis.hset(this.groupsKey, field, '1') : this.redis.hdel(this.groupsKey, field)
      write.catch(noop)
      announce(group, filter, present)
    }
  }

  /** the other nodes' groups as Redis has them (start-up) */
  async load(): Promise<void> {
    for (const field of Object.keys(await this.redis.hgetall(this.groupsKey))) {
      const { node, key } = splitGroupField(field)
      if (node !== this.me) this.set(node, key, true)
    }
  }

  /** `node` gained (on) or lost its members of `key` (`<group>/<filter>`) */
  set(node: string, key: string, on: boolean): void {
    const { group, filter } = splitSharedKey(key)
    let keys = this.byNode.get(node)
    if (on) {
      this.remote.add(filter, node, node, group)
      if (keys === undefined) this.byNode.set(node, (keys = new Set()))
      keys.add(key)
    } else {
      this.remote.remove(filter, node, group)
      keys?.delete(key)
    }
  }

  forget(node: string): void {
    for (const key of this.byNode.get(node) ?? []) this.set(node, key, false)
    this.byNode.delete(node)
  }
}
