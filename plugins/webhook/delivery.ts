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

let isoMs = -1
let isoText = ''

/** ISO time of `ms`; many deliveries share a millisecond, so the last one is kept. */
export function iso(ms: number): string {
  if (ms !== isoMs) {
    isoMs = ms
    isoText = new Date(ms).toISOString()
  }
  return isoText
}

/**
 * A published message waiting to become a delivery. Building the JSON (base64
 * payload, ISO time, id) is left to whoever takes it off the queue, so the
 * publish path only allocates this.
 */
export class PendingMessage {
  constructor(readonly message: Message, readonly clientId: string | null, readonly at: number) {}
}

export type Queued = Delivery | PendingMessage

/** The JSON text of a queued item's delivery; a PendingMessage gets its id now. */
export function toJson(item: Queued, node: string): string {
  if (!(item instanceof PendingMessage)) return JSON.stringify(item)
  const m = item.message
  const props = m.properties === undefined ? undefined : JSON.stringify(jsonProperties(m.properties as Record<string, unknown>))
  return messageJson(deliveryId(node), item.at, item.clientId, m.topic, m.qos, m.retain, m.payload.toString('base64'), props)
}

/** A published message's delivery as JSON, written out by hand: this runs for every forwarded message. */
export function messageJson(id: string, at: number, clientId: string | null, topic: string, qos: number, retain: boolean, payloadBase64: string, propertiesJson: string | undefined): string {
  const json = `{"id":"${id}","event":"published","timestamp":"${iso(at)}","clientId":${clientId === null ? 'null' : JSON.stringify(clientId)},` +
    `"topic":${JSON.stringify(topic)},"qos":${qos},"retain":${retain},"payload":"${payloadBase64}"`
  return propertiesJson === undefined ? json + '}' : `${json},"properties":${propertiesJson}}`
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

export function jsonProperties(p: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(p)) out[k] = Buffer.isBuffer(v) ? v.toString('base64') : v
  return out
}
