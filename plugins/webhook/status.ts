// A webhook's counters as the admin API and /hooks answer them: a file of its
// own, with no imports, so that the dashboard's browser code reads the same type.

export interface WebhookStatus {
  name: string
  url: string
  queued: number
  inFlight: number
  delivered: number
  retried: number
  failed: number
  deadLettered: number
  dropped: number
  p99LatencyMs: number
}
