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
    const enriched = { ...reading, receivedAt: new Date().toISOString(), clientId: client?.id ?? null }
    return { payload: JSON.stringify(enriched) }
  },
})
