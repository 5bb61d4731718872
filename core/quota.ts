import type { Logger } from './logger.js'
import { throttled } from './logger.js'
import type { Message, MessageProperties } from './types.js'

// What each client may cost, and what the broker refused because a quota was
// reached: one counter per quota (exposed by /metrics as
// hookmq_quota_refused_total{quota}) and one throttled log line per quota.

export const QUOTA_NAMES = [
  'subscriptions',
  'retained_messages',
  'retained_bytes',
  'client_retained_messages',
  'client_retained_bytes',
  'queued_messages',
  'queued_bytes',
] as const

export type QuotaName = (typeof QUOTA_NAMES)[number]

export function quotaCounters(): Record<QuotaName, number> {
  const out = {} as Record<QuotaName, number>
  for (const q of QUOTA_NAMES) out[q] = 0
  return out
}

/** Counts refusals by quota; logs each quota at most once per 10 s, with how many it stands for. */
export class QuotaRefusals {
  private readonly logs: Record<QuotaName, (detail: unknown) => void>

  constructor(
    readonly counts: Record<QuotaName, number>,
    log: Logger,
  ) {
    this.logs = {} as Record<QuotaName, (detail: unknown) => void>
    for (const quota of QUOTA_NAMES) {
      this.logs[quota] = throttled((clientId, refused) => log.warn({ quota, clientId, refused }, 'quota reached: refused'))
    }
  }

  refuse(quota: QuotaName, clientId: string | undefined): void {
    this.counts[quota]++
    this.logs[quota](clientId)
  }
}

/**
 * What holding a message costs, in bytes: its topic, payload and properties
 * (string lengths: an estimate, not the encoded size). O(1) without properties.
 */
export function messageSize(m: Message): number {
  if (m.size !== undefined) return m.size
  const p = m.properties
  return (m.size = m.topic.length + m.payload.length + (p === undefined ? 0 : propertiesSize(p)))
}

function propertiesSize(p: MessageProperties): number {
  let n = 0
  if (p.contentType !== undefined) n += p.contentType.length
  if (p.responseTopic !== undefined) n += p.responseTopic.length
  if (p.correlationData !== undefined) n += p.correlationData.length
  const u = p.userProperties
  if (u !== undefined) {
    for (const key in u) {
      const v = u[key]
      n += key.length
      if (Array.isArray(v)) for (let i = 0; i < v.length; i++) n += key.length + String(v[i]).length
      else n += String(v).length
    }
  }
  return n
}
