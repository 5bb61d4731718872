import { z } from 'zod'
import { matchesFilter, splitSharedKey, type Broker, type Connection, type TraceEvent, type TraceFilter } from '../core/index.js'

// What one node answers about its own clients, for the admin API: on a single
// node it asks itself; in a cluster (plugins/redis/admin-rpc.ts) every node is
// asked and the answers are gathered.

export const clientFilter = z.strictObject({
  clientId: z.string().optional().describe('client id prefix'),
  username: z.string().optional().describe('username prefix'),
  address: z.string().optional().describe('remote address prefix'),
})
export type ClientFilter = z.infer<typeof clientFilter>

/** What a node answers about its own clients; asked of every node in a cluster. */
export interface NodeQueries {
  clients(filter: ClientFilter): ClientSummary[]
  client(clientId: string): ClientDetail | undefined
  kick(clientId: string, reason: string): boolean
  subscribers(topic: string): SubscriberRow[]
  /** ends the session `clientId` has on this node (its client, if connected, is disconnected first); true if there was one */
  endSession(clientId: string): Promise<boolean>
}

/** Asks every live node (this one included) and gathers the answers; a node that does not answer in time is named in `missing`. */
export interface ClusterQueries {
  ask<K extends keyof NodeQueries>(
    method: K,
    args: Parameters<NodeQueries[K]>,
  ): Promise<{ answers: Array<{ node: string; value: Awaited<ReturnType<NodeQueries[K]>> }>; missing: string[] }>
  /** traces on every node (the others' events come through Redis); answers the function that stops it */
  trace(filter: TraceFilter, send: (event: TraceEvent) => void): () => void
}

export interface ClientSummary {
  clientId: string
  username: string | undefined
  address: string
  node: string
  listener: string
  protocolVersion: number
  connectedAt: string
}

export interface ClientDetail extends ClientSummary {
  keepaliveSeconds: number
  user: unknown
  subscriptions: Array<{ filter: string; qos: number }>
  inflight: number
  queued: number
  bytesIn: number
  bytesOut: number
  sessionExpirySeconds: number
}

export interface SubscriberRow {
  clientId: string
  node: string
  filter: string
  qos: number
  connected: boolean
}

/** This node's answers (each node runs these for a cluster-wide question). */
export function localQueries(broker: Broker): NodeQueries {
  const summary = (c: Connection): ClientSummary => ({
    clientId: c.client.id,
    username: c.client.username,
    address: c.client.remoteAddress,
    node: broker.id,
    listener: c.client.listener,
    protocolVersion: c.protocolVersion,
    connectedAt: new Date(c.connectedAt).toISOString(),
  })
  return {
    clients(f) {
      const out: ClientSummary[] = []
      for (const c of broker.connectedClients()) {
        if (f.clientId !== undefined && !c.client.id.startsWith(f.clientId)) continue
        if (f.username !== undefined && !(c.client.username ?? '').startsWith(f.username)) continue
        if (f.address !== undefined && !c.client.remoteAddress.startsWith(f.address)) continue
        out.push(summary(c))
      }
      return out
    },
    client(clientId) {
      const c = broker.connectionOf(clientId)
      const s = c?.session
      if (c === undefined || s === undefined) return undefined
      return {
        ...summary(c),
        keepaliveSeconds: c.keepaliveMs / 1500, // kept as 1.5 × the keep-alive
        user: c.client.user,
        subscriptions: [...s.subscriptions.values()].map((sub) => ({ filter: sub.filter, qos: sub.qos })),
        inflight: s.inflight.size,
        queued: s.queued,
        bytesIn: c.bytesIn,
        bytesOut: c.bytesOut,
        sessionExpirySeconds: s.expiryInterval,
      }
    },
    kick: (clientId, reason) => broker.kick(clientId, reason),
    async endSession(clientId) {
      const session = broker.sessions.sessions.get(clientId)
      if (session === undefined) return false
      if (broker.kick(clientId, 'session deleted by an administrator')) {
        // its connection closes (and, for a persistent session, saves it once more): end it after that
        const until = Date.now() + 3000
        while (session.outlet !== null && Date.now() < until) await new Promise((r) => setTimeout(r, 10))
      }
      if (broker.sessions.sessions.get(clientId) === session) broker.sessions.end(session)
      return true
    },
    subscribers(topic) {
      const out: SubscriberRow[] = []
      for (const row of broker.subscriptions()) {
        const filter = row.subscription.filter
        const plain = filter.startsWith('$share/') ? splitSharedKey(filter.slice(7)).filter : filter
        if (matchesFilter(plain, topic)) out.push({ clientId: row.clientId, node: broker.id, filter, qos: row.subscription.qos, connected: row.connected })
      }
      return out
    },
  }
}
