import type { RemoteGroups } from './cluster.js'
import { sharedKey, splitSharedKey } from './topic.js'
import { TopicTree } from './topic-tree.js'

/** The router's RemoteGroups: a tree of filters whose group members are node ids. */
export class RemoteGroupTree implements RemoteGroups {
  /** what Router.route matches a message against */
  readonly tree = new TopicTree<string>()
  /** the groups (`sharedKey`s) each node has members of, to forget them when it goes */
  private readonly byNode = new Map<string, Set<string>>()

  get size(): number {
    return this.tree.size
  }

  set(node: string, group: string, filter: string, present: boolean): void {
    let keys = this.byNode.get(node)
    if (present) {
      this.tree.add(filter, node, node, group)
      if (keys === undefined) this.byNode.set(node, (keys = new Set()))
      keys.add(sharedKey(group, filter))
    } else {
      this.tree.remove(filter, node, group)
      keys?.delete(sharedKey(group, filter))
    }
  }

  forget(node: string): string[] {
    const filters: string[] = []
    for (const key of this.byNode.get(node) ?? []) {
      const { group, filter } = splitSharedKey(key)
      this.tree.remove(filter, node, group)
      filters.push(filter)
    }
    this.byNode.delete(node)
    return filters
  }
}
