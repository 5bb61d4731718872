// The admin API's answers as the page reads them. Where the server's type is
// the JSON itself and lives in a file with no imports, the page reads that one;
// the others live with Node's types in plugins/ (test/e2e/dashboard.test.ts
// holds the two together).

export type { TraceEvent } from '../../../core/trace-event.js'
export type { WebhookStatus as WebhookRow } from '../../webhook/status.js'

export interface Stats {
  node: string
  at: number
  uptimeSeconds: number
  /** sockets */
  connections: number
  /** clients that were sent a CONNACK */
  clients?: number
  messagesIn: number
  messagesOut: number
  dropped: number
  subscriptions: number
  hookCalls: number
  hookDenies: number
  hookErrors: number
  webhookQueued: number
  webhookDeadLettered: number
}

export interface ClientRow {
  clientId: string
  username?: string
  address: string
  node: string
  listener: string
  protocolVersion: number
  connectedAt: string
}

export interface ClientDetail extends ClientRow {
  keepaliveSeconds: number
  subscriptions: Array<{ filter: string; qos: number }>
  inflight: number
  queued: number
  bytesIn: number
  bytesOut: number
  sessionExpirySeconds: number
}

export interface Ban {
  id: string
  kind: 'clientId' | 'username' | 'address'
  value: string
  reason?: string
  createdAt?: number
  expiresAt?: number
  by?: string
}

export interface HookRow {
  name: string
  file?: string
  state: 'loaded' | 'failed' | 'tripped' | 'disabled'
  version: number
  loadedAt?: number
  error?: { message: string; file?: string; line?: number; column?: number }
  isolation?: 'inline' | 'worker'
  quarantined?: { reason: string }
  calls: number
  denies: number
  errors: number
  timeouts: number
  p99Ms: number
}

export interface DeadLetter {
  id: string
  webhook: string
  deliveries: Array<{ id: string; event: string; topic?: string; clientId?: string | null }>
  reason: string
  attempts: number
  at: string
}

export interface RetainedRow {
  topic: string
  qos: number
  payload: string
  encoding: 'utf8' | 'base64'
  bytes: number
  truncated: boolean
}

export interface RetainedMessage extends RetainedRow {
  properties: Record<string, unknown>
}
