import type { Redis } from 'ioredis'
import type { Logger } from '../../core/index.js'
import { clusterRedis, type ClusterRedis } from './cluster-redis.js'
import { StreamReader, type EntryHandler } from './streams.js'

/**
 * What the cluster's parts (bus, membership, handover, groups) share: the Redis
 * client and keys, this node's id and stream, and the reader of the others' streams.
 */
export class ClusterNode {
  readonly redis: ClusterRedis
  /** this node's id: the broker's, set when it starts (begin) */
  me = ''
  /** reads the other nodes' streams (made by begin) */
  reader!: StreamReader
  /** when the Redis connection last became ready */
  readySince = 0
  /** called when a node's stream is read from now on (a new peer, or one read again) */
  readonly onFollow: Array<(node: string) => void> = []
  /** called when the Redis connection is ready again after it was lost */
  readonly onReconnect: Array<() => void> = []
  /** this node's stream and its XADD trim length, made once (begin) rather than per message */
  private stream = ''
  private maxLen = ''

  constructor(
    redis: Redis,
    private readonly prefix: string,
    readonly log: Logger,
    private readonly streamMaxLength: number,
  ) {
    this.redis = clusterRedis(redis)
    let connected = this.redis.status === 'ready'
    this.redis.on('ready', () => {
      this.readySince = Date.now()
      if (connected) for (const fn of this.onReconnect) fn()
      connected = true
    })
  }

  get available(): boolean {
    return this.redis.status === 'ready'
  }

  /** live nodes other than this one, whose streams this node reads */
  get peers(): ReadonlySet<string> {
    return this.reader.peers
  }

  key(...parts: string[]): string {
    return this.prefix + parts.join(':')
  }

  /** Names this node `me` and makes the reader of the others' streams, which hands each entry to `handle`. */
  begin(me: string, handle: EntryHandler): void {
    this.me = me
    this.stream = this.key('bus', me)
    this.maxLen = String(this.streamMaxLength)
    this.readySince = Date.now()
    this.reader = new StreamReader({
      redis: this.redis,
      key: this.key.bind(this),
      me,
      log: this.log,
      handle,
      available: () => this.available,
      followed: (node) => {
        for (const fn of this.onFollow) fn(node)
      },
    })
  }

  /** appends an entry to this node's stream (its promise as is: a published message's write is waited for, not wrapped) */
  append(kind: string, data: string): Promise<unknown> {
    return this.redis.xadd(this.stream, 'MAXLEN', '~', this.maxLen, '*', 'k', kind, 'd', data)
  }
}
