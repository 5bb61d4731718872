import { randomBytes } from 'node:crypto'
import type { Redis } from 'ioredis'
import type { Broker } from '../../core/index.js'
import { localQueries, type ClusterQueries, type NodeQueries } from '../queries.js'
import type { ClusterNode } from './node.js'

// The admin API's cluster-wide questions (which clients are connected, kick
// one, who subscribes to a topic): asked on a Redis pub/sub channel every node
// listens to; each answers on the asker's own channel. Nothing is stored: a
// node that does not answer within the deadline is named as missing.
//   <prefix>admin:ask           {id, from, method, args}
//   <prefix>admin:answer:<node> {id, node, value}

const DEADLINE_MS = 1500

interface Waiting {
  answers: Array<{ node: string; value: unknown }>
  expected: Set<string>
  done(): void
}

export class AdminRpc implements ClusterQueries {
  private conn: Redis | undefined
  private local: NodeQueries | undefined
  private readonly waiting = new Map<string, Waiting>()

  constructor(private readonly self: ClusterNode) {}

  async start(broker: Broker): Promise<void> {
    this.local = localQueries(broker)
    const r = this.self.redis as unknown as Redis & { isCluster?: boolean; duplicate(a?: unknown, b?: unknown): Redis }
    const conn = r.isCluster === true ? r.duplicate(undefined, { enableOfflineQueue: true }) : r.duplicate({ enableOfflineQueue: true })
    conn.on('error', () => {}) // the main connection reports Redis errors
    conn.on('message', (channel: string, text: string) => this.received(channel, text))
    await conn.subscribe(this.self.key('admin', 'ask'), this.self.key('admin', 'answer', this.self.me))
    this.conn = conn
  }

  async stop(): Promise<void> {
    for (const w of this.waiting.values()) w.done()
    const conn = this.conn
    this.conn = undefined
    if (conn !== undefined) await conn.quit().catch(() => conn.disconnect())
  }

  async ask<K extends keyof NodeQueries>(
    method: K,
    args: Parameters<NodeQueries[K]>,
  ): Promise<{ answers: Array<{ node: string; value: ReturnType<NodeQueries[K]> }>; missing: string[] }> {
    const me = this.self.me
    const answers: Array<{ node: string; value: unknown }> = [{ node: me, value: this.run(method, args) }]
    const expected = new Set(this.self.peers)
    if (expected.size > 0 && this.self.available) {
      const id = randomBytes(8).toString('hex')
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, DEADLINE_MS)
        const waiting = this.waiting
        function done(): void {
          clearTimeout(timer)
          waiting.delete(id)
          resolve()
        }
        this.waiting.set(id, { answers, expected, done })
        this.self.redis.publish(this.self.key('admin', 'ask'), JSON.stringify({ id, from: me, method, args })).catch(done)
      })
    }
    return { answers: answers as Array<{ node: string; value: ReturnType<NodeQueries[K]> }>, missing: [...expected] }
  }

  private run(method: string, args: unknown): unknown {
    const fn = (this.local as unknown as Record<string, ((...a: unknown[]) => unknown) | undefined>)[method]
    if (typeof fn !== 'function' || !Array.isArray(args)) return undefined
    return fn(...args)
  }

  private received(channel: string, text: string): void {
    let m: { id?: string; from?: string; node?: string; method?: string; args?: unknown; value?: unknown }
    try {
      m = JSON.parse(text) as typeof m
    } catch {
      return
    }
    if (channel === this.self.key('admin', 'ask')) {
      if (m.from === this.self.me || typeof m.from !== 'string' || typeof m.method !== 'string') return
      let value: unknown
      try {
        value = this.run(m.method, m.args)
      } catch (err) {
        this.self.log.warn({ err, method: m.method }, 'admin question from another node failed')
        return
      }
      this.self.redis.publish(this.self.key('admin', 'answer', m.from), JSON.stringify({ id: m.id, node: this.self.me, value: value ?? null })).catch(() => {})
      return
    }
    const w = m.id === undefined ? undefined : this.waiting.get(m.id)
    if (w === undefined || typeof m.node !== 'string' || !w.expected.delete(m.node)) return
    w.answers.push({ node: m.node, value: m.value === null ? undefined : m.value })
    if (w.expected.size === 0) w.done()
  }
}
