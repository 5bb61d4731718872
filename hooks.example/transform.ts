// transform.ts — enrich sensor readings.
//
// For every message on sensors/#: the payload must be a JSON object; the hook
// adds "receivedAt" (ISO time) and "clientId" (who published it) and passes it
// on. A payload that is not a JSON object is dropped (the publisher still gets
// its PUBACK: a transform decides what is routed, not whether it was received).
// `filter` means this hook never runs for other topics.
import { defineHook } from 'hookmq'

export default defineHook({
  name: 'transform',
  order: 20,
  filter: { topics: ['sensors/#'] },

  transform({ client, payload }) {
    let reading: unknown
    try {
      reading = JSON.parse(payload.toString('utf8'))
    } catch {
      return null // not JSON: drop
    }
    if (reading === null || typeof reading !== 'object' || Array.isArray(reading)) return null
    // the object was just parsed and is ours: add to it rather than copy it (this runs for every message)
    const enriched = reading as Record<string, unknown>
    enriched.receivedAt = isoNow()
    enriched.clientId = client?.id ?? null
    return { payload: JSON.stringify(enriched) }
  },
})

// One ISO timestamp per millisecond, not one Date per message.
let lastMs = 0
let lastIso = ''
function isoNow(): string {
  const now = Date.now()
  if (now !== lastMs) {
    lastMs = now
    lastIso = new Date(now).toISOString()
  }
  return lastIso
}
