import type { ClientInfo, Message } from '../../core/index.js'

/** One item of a webhook request's `deliveries` array. `id` stays the same across retries. */
export interface Delivery {
  id: string
  event: string
  timestamp: string
  clientId?: string | null
  topic?: string
  qos?: number
  retain?: boolean
  /** base64 */
  payload?: string
  properties?: Record<string, unknown>
  /** for `ctx.forward` deliveries */
  hook?: string
  body?: unknown
  [key: string]: unknown
}

/** A batch that exhausted its attempts or was refused for good. */
export interface DeadBatch {
  id: string
  webhook: string
  deliveries: Delivery[]
  reason: string
  attempts: number
  at: string
}

let seq = 0
let idMs = 0
let idPrefix = ''

/** Unique, roughly time-ordered ids: node, milliseconds, counter. */
export function deliveryId(node: string): string {
  seq = (seq + 1) % 0x7fffffff
  const now = Date.now()
  if (now !== idMs || !idPrefix.startsWith(node + '-')) {
    idMs = now
    idPrefix = `${node}-${now.toString(36)}-`
  }
  return idPrefix + seq.toString(36)
}

export function fromEvent(id: string, event: string, args: unknown[]): Delivery {
  const d: Delivery = { id, event, timestamp: new Date().toISOString() }
  for (const arg of args) {
    if (arg === null || typeof arg !== 'object') continue
    if (isClient(arg)) {
      d.clientId = arg.id
      if (arg.username !== undefined) d.username = arg.username
      d.remoteAddress = arg.remoteAddress
      d.protocolVersion = arg.protocolVersion
    } else if (arg instanceof Error) {
      d.error = arg.message
      const code = (arg as { code?: unknown }).code
      if (typeof code === 'string') d.code = code
    } else if ('topic' in arg && 'payload' in arg) {
      const m = arg as Message
      d.topic = m.topic
      d.qos = m.qos
    } else {
      Object.assign(d, arg)
    }
  }
  return d
}

function isClient(v: object): v is ClientInfo {
  return 'id' in v && 'remoteAddress' in v && 'protocolVersion' in v
}
