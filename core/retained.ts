import type { Message } from './types.js'

// Retained messages in a trie of topic levels, so a wildcard subscribe visits
// only the branches its filter can match. What it holds per topic is the
// store's choice (MemoryRetainedStore keeps a compact record, not a Message).

/** what the tree needs of a stored value: when it expires */
interface Expiring {
  readonly expiresAt?: number | undefined
}

class Level<V> {
  /** made on first use: most levels are leaves, and an empty Map costs ~200 bytes */
  children: Map<string, Level<V>> | null = null
  message: V | undefined = undefined
}

const NONE: ReadonlyMap<string, never> = new Map<string, never>()

/** A level's children (an empty map for a leaf). */
function kids<V>(node: Level<V>): ReadonlyMap<string, Level<V>> {
  return node.children ?? NONE
}

export class RetainedTree<V extends Expiring = Message> {
  private readonly root = new Level<V>()
  private count = 0

  get size(): number {
    return this.count
  }

  set(topic: string, message: V): void {
    let node = this.root
    for (const part of topic.split('/')) {
      let next = node.children?.get(part)
      if (next === undefined) {
        next = new Level<V>()
        ;(node.children ??= new Map()).set(part, next)
      }
      node = next
    }
    if (node.message === undefined) this.count++
    node.message = message
  }

  get(topic: string): V | undefined {
    let node: Level<V> | undefined = this.root
    for (const part of topic.split('/')) {
      node = node.children?.get(part)
      if (node === undefined) return undefined
    }
    return node.message
  }

  /** every retained message, expired ones included */
  *messages(): Generator<V> {
    const stack: Array<Level<V>> = [this.root]
    while (stack.length > 0) {
      const node = stack.pop()!
      if (node.message !== undefined) yield node.message
      for (const child of kids(node).values()) stack.push(child)
    }
  }

  delete(topic: string): void {
    const parts = topic.split('/')
    const path: Array<Level<V>> = [this.root]
    let node: Level<V> | undefined = this.root
    for (const part of parts) {
      node = node.children?.get(part)
      if (node === undefined) return
      path.push(node)
    }
    if (node.message === undefined) return
    node.message = undefined
    this.count--
    for (let i = parts.length; i > 0; i--) {
      const n = path[i]!
      if (n.message !== undefined || (n.children !== null && n.children.size > 0)) break
      const parent = path[i - 1]!
      parent.children!.delete(parts[i - 1]!)
      if (parent.children!.size === 0) parent.children = null
    }
  }

  /** every retained message matching `filter`, at once */
  match(filter: string): V[] {
    for (const all of this.pages(filter, Infinity)) return all
    return []
  }

  /**
   * The retained messages matching `filter`, `size` at a time: the walk stops
   * after each page and goes on when the next is asked for (a million of them
   * are neither found in one go nor held at once). A message stored or cleared
   * meanwhile may or may not be in a later page.
   */
  *pages(filter: string, size: number): Generator<V[]> {
    const parts = filter.split('/')
    let page: V[] = []
    // [node, level index in parts, whether it is below a '#' (every descendant matches)]
    const stack: Array<[Level<V>, number, boolean]> = [[this.root, 0, false]]
    let now = Date.now() // (read again after each page: the walk may pause a while)
    while (stack.length > 0) {
      const [node, i, below] = stack.pop()!
      if (below) {
        push(node.message, page, now)
        for (const child of kids(node).values()) stack.push([child, i, true])
      } else if (i === parts.length) push(node.message, page, now)
      else {
        const part = parts[i]!
        if (part === '#') {
          if (i > 0) push(node.message, page, now) // "a/#" matches "a" too
          for (const [name, child] of kids(node)) if (!(i === 0 && name.startsWith('$'))) stack.push([child, i, true])
        } else if (part === '+') {
          for (const [name, child] of kids(node)) if (!(i === 0 && name.startsWith('$'))) stack.push([child, i + 1, false]) // [MQTT-4.7.2-1]
        } else {
          const child = node.children?.get(part)
          if (child !== undefined) stack.push([child, i + 1, false])
        }
      }
      if (page.length >= size) {
        yield page
        page = []
        now = Date.now()
      }
    }
    if (page.length > 0) yield page
  }
}

function push<V extends Expiring>(message: V | undefined, out: V[], now: number): void {
  if (message !== undefined && (message.expiresAt === undefined || message.expiresAt > now)) out.push(message)
}
