import type { Redis } from 'ioredis'
import { noop, type Logger } from '../../core/index.js'
import { compareIds, sleep, type ClusterRedis } from './cluster-redis.js'

// Reading the other nodes' streams: one blocking XREAD over all of them from
// this node's cursors (node -> id of the last entry handled), saved in
// `node:<me>:cursors` after each read once what was read is handled.

/** Handles one stream entry; a promise it answers must settle before the next entry is handled. */
export type EntryHandler = (node: string, fields: string[], pending: unknown[]) => Promise<void> | undefined

export interface StreamReaderOptions {
  redis: ClusterRedis
  key: (...parts: string[]) => string
  me: string
  log: Logger
  handle: EntryHandler
  available: () => boolean
  /** a node's stream is read from now on (a new node, or one read again) */
  followed?: (node: string) => void
}

const READ_BLOCK_MS = 200
const READ_COUNT = 1000

export class StreamReader {
  /** live nodes other than this one whose streams are read */
  readonly peers = new Set<string>()
  /** also of nodes no longer read: one only taken for dead, back, is read on from there */
  private readonly cursors = new Map<string, string>()
  private readonly dirty = new Set<string>()
  /** work to do between two reads, on the reader (taking over dead nodes) */
  private readonly chores: Array<() => Promise<void>> = []
  private conn: Redis | undefined
  private running = false
  private loop: Promise<void> | undefined
  private wake: (() => void) | undefined
  /** set when readUpTo handled entries: the read loop then skips those its current batch holds again */
  private readAhead = false

  constructor(private readonly o: StreamReaderOptions) {}

  /** Loads the saved cursors and opens the connection for the blocking reads. */
  async open(): Promise<void> {
    const { redis } = this.o
    // a connection of its own (Redis Cluster's duplicate() takes its seed nodes first)
    const r = redis as Redis & { isCluster?: boolean; duplicate(a?: unknown, b?: unknown): Redis }
    this.conn = r.isCluster === true ? r.duplicate(undefined, { enableOfflineQueue: true }) : redis.duplicate({ enableOfflineQueue: true })
    this.conn.on('error', () => {}) // the main connection reports Redis errors
    for (const [node, id] of Object.entries(await redis.hgetall(this.o.key('node', this.o.me, 'cursors')))) this.cursors.set(node, id)
  }

  run(): void {
    this.running = true
    this.loop = this.readLoop()
  }

  async stop(): Promise<void> {
    this.running = false
    this.wake?.()
    await this.loop
    if (this.o.available()) await this.save().catch(noop)
    this.conn?.disconnect()
  }

  /** the last entry of `node`'s stream this node handled */
  cursor(node: string): string | undefined {
    return this.cursors.get(node)
  }

  /** how far this node has read each live peer's stream */
  positions(): Record<string, string> {
    const out: Record<string, string> = {}
    for (const n of this.peers) out[n] = this.cursors.get(n)!
    return out
  }

  /** Starts reading `node`'s stream: from this node's cursor, or from where that node's run began. */
  async follow(node: string): Promise<void> {
    if (this.peers.has(node)) return
    if (!this.cursors.has(node)) {
      const since = await this.o.redis.get(this.o.key('node', node, 'since'))
      const last = since ?? (await this.lastEntry(node))
      this.cursors.set(node, last ?? '0-0')
    }
    this.peers.add(node)
    this.dirty.add(node)
    this.o.followed?.(node)
    await this.save()
    this.o.log.info({ node }, 'cluster node joined')
    this.wake?.()
  }

  /** Stops reading `node`'s stream. */
  unfollow(node: string): void {
    this.peers.delete(node)
    this.o.redis.hdel(this.o.key('node', this.o.me, 'cursors'), node).catch(noop)
  }

  /** the id of the last entry of `node`'s stream (undefined: empty) */
  async lastEntry(node: string): Promise<string | undefined> {
    return (await this.o.redis.xrevrange(this.o.key('bus', node), '+', '-', 'COUNT', 1))[0]?.[0]
  }

  /** Runs `chore` on the reader, between two reads. */
  between(chore: () => Promise<void>): void {
    this.chores.push(chore)
    this.wake?.()
  }

  /**
   * Handles now, as the reader would, every entry up to `upTo` (stream -> id)
   * of each live node's stream this node had not reached yet (one it had not
   * found yet is found first). Called on the reader, before a session that node
   * `from` had up to those cursors is loaded here: from then on the reader
   * brings the session only what `from` had not seen.
   */
  async readUpTo(upTo: Record<string, string>, from: string): Promise<void> {
    const { redis, key } = this.o
    const pending: unknown[] = []
    for (const [node, theirs] of Object.entries(upTo)) {
      if (node === from || node === this.o.me) continue
      if (!this.peers.has(node) && (await redis.sismember(key('nodes'), node)) === 1) await this.follow(node)
      for (let at = this.cursors.get(node); at !== undefined && compareIds(at, theirs) < 0; at = this.cursors.get(node)) {
        const entries = await redis.xrange(key('bus', node), '(' + at, theirs, 'COUNT', READ_COUNT)
        if (entries.length === 0) break
        this.readAhead = true
        await this.handleEntries(node, entries, pending)
      }
    }
    await Promise.allSettled(pending)
    await this.save()
  }

  private async readLoop(): Promise<void> {
    const busPrefix = this.o.key('bus', '')
    while (this.running) {
      while (this.chores.length > 0) await this.chores.shift()!()
      if (this.peers.size === 0 || !this.o.available()) {
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, READ_BLOCK_MS)
          this.wake = () => {
            clearTimeout(t)
            resolve()
          }
        })
        this.wake = undefined
        continue
      }
      const nodes = [...this.peers]
      let res: Array<[string, Array<[string, string[]]>]> | null
      try {
        res = (await this.conn!.xread(
          'COUNT',
          READ_COUNT,
          'BLOCK',
          READ_BLOCK_MS,
          'STREAMS',
          ...nodes.map((n) => busPrefix + n),
          ...nodes.map((n) => this.cursors.get(n)!),
        )) as typeof res
      } catch (err) {
        this.o.log.debug({ err }, 'reading the cluster streams failed')
        await sleep(READ_BLOCK_MS)
        continue
      }
      if (res === null) continue
      this.readAhead = false
      const pending: unknown[] = []
      for (const [key, entries] of res) {
        const node = key.slice(busPrefix.length)
        if (this.peers.has(node)) await this.handleEntries(node, entries, pending)
      }
      if (pending.length > 0) await Promise.allSettled(pending)
      await this.save().catch(noop)
    }
  }

  /** Handles `node`'s entries in order, each once: after a readUpTo, those it handled already are skipped. */
  private async handleEntries(node: string, entries: Array<[string, string[]]>, pending: unknown[]): Promise<void> {
    for (const [id, fields] of entries) {
      if (this.readAhead && compareIds(id, this.cursors.get(node)!) <= 0) continue
      const wait = this.handleEntry(node, id, fields, pending)
      if (wait !== undefined) await wait
    }
  }

  /** Handles one entry and moves the cursor past it; a promise only when the handler answered one (it must settle first). */
  private handleEntry(node: string, id: string, fields: string[], pending: unknown[]): Promise<void> | undefined {
    let wait: Promise<void> | undefined
    try {
      wait = this.o.handle(node, fields, pending)
    } catch (err) {
      this.failed(err, node, id)
    }
    if (wait === undefined) {
      this.passed(node, id)
      return undefined
    }
    return wait.then(
      () => this.passed(node, id),
      (err: unknown) => {
        this.failed(err, node, id)
        this.passed(node, id)
      },
    )
  }

  private passed(node: string, id: string): void {
    this.cursors.set(node, id)
    this.dirty.add(node)
  }

  private failed(err: unknown, node: string, id: string): void {
    this.o.log.error({ err, node, id }, 'cluster stream entry could not be handled')
  }

  private save(): Promise<unknown> {
    if (this.dirty.size === 0) return Promise.resolve()
    const flat: string[] = []
    for (const n of this.dirty) {
      const c = this.cursors.get(n)
      if (c !== undefined) flat.push(n, c)
    }
    this.dirty.clear()
    return flat.length === 0 ? Promise.resolve() : this.o.redis.hset(this.o.key('node', this.o.me, 'cursors'), ...flat)
  }
}
