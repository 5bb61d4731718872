import { randomBytes } from 'node:crypto'
import type { Redis } from 'ioredis'
import type { Broker, TraceEvent, TraceFilter } from '../../core/index.js'
import { localQueries, type ClusterQueries, type NodeQueries } from '../queries.js'
import type { ClusterNode } from './node.js'

// The admin API's cluster-wide questions (which clients are connected, kick
// one, who subscribes to a topic, end a session) and traces: asked on a Redis
// pub/sub channel every node listens to; each answers on the asker's own
// channel. Nothing is stored: a node that does not answer within the deadline
// is named as missing.
//   <prefix>admin:ask           {id, from, method, args}
//   <prefix>admin:answer:<node> {id, node, value}
//   <prefix>admin:trace:<id>    the trace events of every other node, one JSON each
// A trace on another node is a lease: renewed every TRACE_RENEW_MS by the
// node that asked, ended by it, or dropped when it stops renewing (it died).

const DEADLINE_MS = 1500
const TRACE_RENEW_MS = 5000
const TRACE_LEASE_MS = 3 * TRACE_RENEW_MS
/** events a node sends to another's trace per second at most; the rest are counted and said */
const TRACE_RATE = 2000

interface Waiting {
  answers: Array<{ node: string; value: unknown }>
  expected: Set<string>
  done(): void
}

interface RemoteTrace {
  stop(): void
  lease: NodeJS.Timeout
}

export class AdminRpc implements ClusterQueries {
  private conn: Redis | undefined
  private broker: Broker | undefined
  private local: NodeQueries | undefined
  private readonly waiting = new Map<string, Waiting>()
  /** traces this node runs for another node's reader, by trace id */
  private readonly remoteTraces = new Map<string, RemoteTrace>()
  /** traces this node's readers follow: their senders, by trace id */
  private readonly traces = new Map<string, (event: TraceEvent) => void>()

  constructor(private readonly self: ClusterNode) {}

  async start(broker: Broker): Promise<void> {
    this.broker = broker
    this.local = localQueries(broker)
    const r = this.self.redis as unknown as Redis & { isCluster?: boolean; duplicate(a?: unknown, b?: unknown): Redis }
    const conn = r.isCluster === true ? r.duplicate(undefined, { enableOfflineQueue: true }) : r.duplicate({ enableOfflineQueue: true })
    conn.on('error', () => {}) // the main connection reports Redis errors
    conn.on('message', (channel: string, text: string) => this.received(channel, text))
    await conn.subscribe(this.askChannel, this.self.key('admin', 'answer', this.self.me))
    this.conn = conn
  }

  async stop(): Promise<void> {
    for (const w of this.waiting.values()) w.done()
    for (const id of [...this.remoteTraces.keys()]) this.endRemote(id)
    const conn = this.conn
    this.conn = undefined
    if (conn !== undefined) await conn.quit().catch(() => conn.disconnect())
  }

  private get askChannel(): string {
    return this.self.key('admin', 'ask')
  }

  async ask<K extends keyof NodeQueries>(
    method: K,
    args: Parameters<NodeQueries[K]>,
  ): Promise<{ answers: Array<{ node: string; value: Awaited<ReturnType<NodeQueries[K]>> }>; missing: string[] }> {
    const me = this.self.me
    const expected = new Set(this.self.peers)
    const answers: Array<{ node: string; value: unknown }> = []
    const asked =
      expected.size > 0 && this.self.available
        ? new Promise<void>((resolve) => {
            const id = randomBytes(8).toString('hex')
            const timer = setTimeout(done, DEADLINE_MS)
            const waiting = this.waiting
            function done(): void {
              clearTimeout(timer)
              waiting.delete(id)
              resolve()
            }
            this.waiting.set(id, { answers, expected, done })
            this.self.redis.publish(this.askChannel, JSON.stringify({ id, from: me, method, args })).catch(done)
          })
        : undefined
    const mine = await this.run(method, args)
    await asked
    answers.unshift({ node: me, value: mine })
    return { answers: answers as Array<{ node: string; value: Awaited<ReturnType<NodeQueries[K]>> }>, missing: [...expected] }
  }

  trace(filter: TraceFilter, send: (event: TraceEvent) => void): () => void {
    const id = randomBytes(8).toString('hex')
    const channel = this.self.key('admin', 'trace', id)
    const stopLocal = this.broker!.tracer.watch(filter, send)
    this.traces.set(id, send)
    const tell = (method: string): void => {
      this.self.redis.publish(this.askChannel, JSON.stringify({ id, from: this.self.me, method, args: [filter] })).catch(() => {})
    }
    void this.conn?.subscribe(channel).then(
      () => tell('traceStart'),
      () => {},
    )
    const renew = setInterval(() => tell('traceStart'), TRACE_RENEW_MS)
    renew.unref()
    return () => {
      clearInterval(renew)
      stopLocal()
      this.traces.delete(id)
      tell('traceStop')
      void this.conn?.unsubscribe(channel).catch(() => {})
    }
  }

  private async run(method: string, args: unknown): Promise<unknown> {
    const fn = (this.local as unknown as Record<string, ((...a: unknown[]) => unknown) | undefined>)[method]
    if (typeof fn !== 'function' || !Array.isArray(args)) return undefined
    return fn(...args)
  }

  /** Starts (or renews the lease of) a trace another node's reader follows; its events go to that trace's channel. */
  private startRemote(id: string, filter: TraceFilter): void {
    const known = this.remoteTraces.get(id)
    if (known !== undefined) {
      known.lease.refresh()
      return
    }
    const channel = this.self.key('admin', 'trace', id)
    let second = 0
    let sent = 0
    let dropped = 0
    const stop = this.broker!.tracer.watch(filter, (e) => {
      const now = Math.floor(Date.now() / 1000)
      if (now !== second) {
        second = now
        sent = 0
        if (dropped > 0) {
          this.self.redis.publish(channel, JSON.stringify({ dropped, node: this.self.me })).catch(() => {})
          dropped = 0
        }
      }
      if (++sent > TRACE_RATE) {
        dropped++
        return
      }
      this.self.redis.publish(channel, JSON.stringify(e)).catch(() => {})
    })
    const lease = setTimeout(() => this.endRemote(id), TRACE_LEASE_MS)
    lease.unref()
    this.remoteTraces.set(id, { stop, lease })
  }

  private endRemote(id: string): void {
    const t = this.remoteTraces.get(id)
    if (t === undefined) return
    clearTimeout(t.lease)
    t.stop()
    this.remoteTraces.delete(id)
  }

  private received(channel: string, text: string): void {
    let m: { id?: string; from?: string; node?: string; method?: string; args?: unknown; value?: unknown; at?: number; dropped?: number }
    try {
      m = JSON.parse(text) as typeof m
    } catch {
      return
    }
    if (channel === this.askChannel) {
      if (m.from === this.self.me || typeof m.from !== 'string' || typeof m.method !== 'string' || typeof m.id !== 'string') return
      if (m.method === 'traceStart' && Array.isArray(m.args)) return this.startRemote(m.id, m.args[0] as TraceFilter)
      if (m.method === 'traceStop') return this.endRemote(m.id)
      const from = m.from
      const id = m.id
      this.run(m.method, m.args).then(
        (value) =>
          this.self.redis.publish(this.self.key('admin', 'answer', from), JSON.stringify({ id, node: this.self.me, value: value ?? null })).catch(() => {}),
        (err: unknown) => this.self.log.warn({ err, method: m.method }, 'admin question from another node failed'),
      )
      return
    }
    const traceId = channel.startsWith(this.self.key('admin', 'trace', '')) ? channel.slice(this.self.key('admin', 'trace', '').length) : undefined
    if (traceId !== undefined) {
      const send = this.traces.get(traceId)
      if (send !== undefined && m.dropped === undefined) send(m as unknown as TraceEvent)
      return
    }
    const w = m.id === undefined ? undefined : this.waiting.get(m.id)
    if (w === undefined || typeof m.node !== 'string' || !w.expected.delete(m.node)) return
    w.answers.push({ node: m.node, value: m.value === null ? undefined : m.value })
    if (w.expected.size === 0) w.done()
  }
}
