/**
 * A first-in first-out queue with O(1) take: Array#shift copies the whole array
 * once it is large, and a session queue can hold a million messages.
 */
export class Fifo<T> {
  private items: Array<T | undefined> = []
  private head = 0

  get length(): number {
    return this.items.length - this.head
  }

  push(item: T): void {
    this.items.push(item)
  }

  shift(): T | undefined {
    if (this.head === this.items.length) return undefined
    const item = this.items[this.head]
    this.items[this.head++] = undefined // let it go
    if (this.head === this.items.length) {
      this.items = []
      this.head = 0
    } else if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head) // compact now and then: amortised O(1)
      this.head = 0
    }
    return item
  }

  /** The item `i` places from the oldest (0: the oldest), left in place. */
  at(i: number): T | undefined {
    return this.items[this.head + i]
  }

  /** The oldest item, left in place. */
  peek(): T | undefined {
    return this.head === this.items.length ? undefined : this.items[this.head]
  }

  toArray(): T[] {
    return this.items.slice(this.head) as T[]
  }

  static from<T>(items: Iterable<T>): Fifo<T> {
    const f = new Fifo<T>()
    for (const item of items) f.push(item)
    return f
  }
}
