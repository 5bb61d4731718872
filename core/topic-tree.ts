import { sharedKey } from './topic.js'

// A trie of topic filters. Matching walks at most the levels of the topic plus
// the `+`/`#` branches, never every subscription.

export interface SharedGroup<T> {
  group: string
  filter: string
  /** `sharedKey(group, filter)`, made once */
  key: string
  members: Map<string, T>
  /** the members in order, kept with the map so picking one copies nothing */
  list: T[]
  /** round-robin cursor */
  next: number
}

/**
 * Where a match writes what it found. Reused from message to message: slots are
 * overwritten and cleared, never dropped, so a match allocates nothing (an array
 * emptied with `length = 0` gives its storage back and grows it again on the next push).
 */
export class Matches<T> {
  // Both born holding objects (one empty slot): an empty literal starts as an
  // array of small integers and changes kind at its first entry, and code that
  // V8 compiled on the warm-up twin's Matches (changed long before) was thrown
  // away at this broker's first message (core/warmup.ts).
  readonly subs: Array<T | undefined> = Array.of<T | undefined>(undefined)
  subCount = 0
  readonly groups: Array<SharedGroup<T> | undefined> = Array.of<SharedGroup<T> | undefined>(undefined)
  groupCount = 0

  sub(i: number): T {
    return this.subs[i]!
  }

  group(i: number): SharedGroup<T> {
    return this.groups[i]!
  }

  /** lets go of the entries (so they can be collected), keeps the storage */
  clear(): void {
    for (let i = 0; i < this.subCount; i++) this.subs[i] = undefined
    for (let i = 0; i < this.groupCount; i++) this.groups[i] = undefined
    this.subCount = 0
    this.groupCount = 0
  }
}

class Node<T> {
  children: Map<string, Node<T>> | null = null
  /** the only subscriber, kept without a Map (most filters have one) */
  soloKey: string | null = null
  solo: T | undefined = undefined
  subs: Map<string, T> | null = null
  shared: Map<string, SharedGroup<T>> | null = null

  child(level: string): Node<T> | undefined {
    return this.children === null ? undefined : this.children.get(level)
  }

  isEmpty(): boolean {
    return (
      this.soloKey === null &&
      (this.children === null || this.children.size === 0) &&
      (this.subs === null || this.subs.size === 0) &&
      (this.shared === null || this.shared.size === 0)
    )
  }
}

export class TopicTree<T> {
  private readonly root = new Node<T>()
  private count = 0

  /** Number of (client, filter) subscriptions, shared ones included. */
  get size(): number {
    return this.count
  }

  /** Adds or replaces `key`'s subscription to `filter`. Returns true when new. */
  add(filter: string, key: string, value: T, group?: string): boolean {
    let node = this.root
    for (const level of filter.split('/')) {
      if (node.children === null) node.children = new Map()
      let next = node.children.get(level)
      if (next === undefined) {
        next = new Node<T>()
        node.children.set(level, next)
      }
      node = next
    }
    let map: Map<string, T>
    if (group === undefined) {
      if (node.soloKey === key || (node.soloKey === null && node.subs === null)) {
        const isNew = node.soloKey === null
        node.soloKey = key
        node.solo = value
        if (isNew) this.count++
        return isNew
      }
      if (node.subs === null) node.subs = new Map()
      if (node.soloKey !== null) {
        // a second subscriber: both go to the Map
        node.subs.set(node.soloKey, node.solo!)
        node.soloKey = null
        node.solo = undefined
      }
      map = node.subs
    } else {
      if (node.shared === null) node.shared = new Map()
      let g = node.shared.get(group)
      if (g === undefined) {
        g = { group, filter, key: sharedKey(group, filter), members: new Map(), list: [], next: 0 }
        node.shared.set(group, g)
      }
      const old = g.members.get(key)
      if (old === undefined) g.list.push(value)
      else g.list[g.list.indexOf(old)] = value
      map = g.members
    }
    const isNew = !map.has(key)
    map.set(key, value)
    if (isNew) this.count++
    return isNew
  }

  /** How many keys hold a plain (not shared) subscription to exactly `filter`. */
  holders(filter: string): number {
    let node: Node<T> | undefined = this.root
    for (const level of filter.split('/')) {
      node = node.child(level)
      if (node === undefined) return 0
    }
    return node.soloKey !== null ? 1 : (node.subs?.size ?? 0)
  }

  /** Every filter some key holds a plain subscription to. */
  plainFilters(): string[] {
    const out: string[] = []
    const walk = (node: Node<T>, path: string | null): void => {
      if (path !== null && (node.soloKey !== null || (node.subs !== null && node.subs.size > 0))) out.push(path)
      if (node.children !== null) for (const [level, child] of node.children) walk(child, path === null ? level : `${path}/${level}`)
    }
    walk(this.root, null)
    return out
  }

  /** Removes `key`'s subscription to `filter`. Returns true when it existed. */
  remove(filter: string, key: string, group?: string): boolean {
    const path: Node<T>[] = [this.root]
    const levels = filter.split('/')
    let node: Node<T> | undefined = this.root
    for (const level of levels) {
      node = node.child(level)
      if (node === undefined) return false
      path.push(node)
    }
    let removed = false
    if (group === undefined) {
      if (node.soloKey === key) {
        node.soloKey = null
        node.solo = undefined
        removed = true
      } else removed = node.subs !== null && node.subs.delete(key)
    } else if (node.shared !== null) {
      const g = node.shared.get(group)
      if (g !== undefined) {
        const old = g.members.get(key)
        if (old !== undefined) g.list.splice(g.list.indexOf(old), 1)
        removed = g.members.delete(key)
        if (g.members.size === 0) node.shared.delete(group)
      }
    }
    if (removed) this.count--
    for (let i = levels.length; i > 0; i--) {
      if (!path[i]!.isEmpty()) break
      path[i - 1]!.children!.delete(levels[i - 1]!)
    }
    return removed
  }

  /** Collects the subscriptions and shared groups matching `topic` into `out` (after what it holds). */
  match(topic: string, out: Matches<T>): void {
    const levels = topic.split('/')
    // [MQTT-4.7.2-1] topics beginning with $ are not matched by a leading wildcard
    const dollar = topic.charCodeAt(0) === 0x24
    this.walk(this.root, levels, 0, out, dollar)
  }

  private walk(node: Node<T>, levels: string[], i: number, out: Matches<T>, dollar: boolean): void {
    const children = node.children
    if (children === null) return
    const wild = !(dollar && i === 0)
    if (wild) {
      const hash = children.get('#')
      if (hash !== undefined) collect(hash, out)
    }
    if (i === levels.length) return
    const exact = children.get(levels[i]!)
    if (exact !== undefined) this.visit(exact, levels, i + 1, out, dollar)
    if (wild) {
      const plus = children.get('+')
      if (plus !== undefined) this.visit(plus, levels, i + 1, out, dollar)
    }
  }

  private visit(node: Node<T>, levels: string[], i: number, out: Matches<T>, dollar: boolean): void {
    if (i === levels.length) collect(node, out)
    this.walk(node, levels, i, out, dollar)
  }
}

function collect<T>(node: Node<T>, out: Matches<T>): void {
  if (node.soloKey !== null) out.subs[out.subCount++] = node.solo!
  if (node.subs !== null) for (const v of node.subs.values()) out.subs[out.subCount++] = v
  if (node.shared !== null) for (const g of node.shared.values()) out.groups[out.groupCount++] = g
}
