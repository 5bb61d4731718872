// webhook.ts — send an alert to a webhook when a temperature is too high.
//
// Readings on sensors/<room>/temperature carry a JSON body { "celsius": 21.5 }.
// When one exceeds the threshold, this hook queues a custom delivery to the
// webhook named in its config; it goes through the same outbox as forwarded
// messages: batched, signed, retried, dead-lettered if it never gets through.
// The hook never refuses anything (it answers undefined): it only watches.
//
// Main config:
//
//   "webhooks": [{ "name": "alerts", "url": "https://ops.example.com/hooks/mqtt", "secret": "…" }],
//   "hooks": { "webhook": { "webhook": "alerts", "thresholdCelsius": 30 } }
import { defineHook } from 'hookmq'
import { z } from 'zod'

export default defineHook({
  name: 'webhook',
  config: z.object({
    webhook: z.string().default('alerts'),
    thresholdCelsius: z.number().default(30),
  }),
  filter: { topics: ['sensors/+/temperature'] },

  authorizePublish({ client, topic, payload }, { config, forward, log }) {
    let celsius: unknown
    try {
      celsius = (JSON.parse(payload.toString('utf8')) as { celsius?: unknown }).celsius
    } catch {
      return undefined // not JSON: not our business here
    }
    if (typeof celsius === 'number' && celsius > config.thresholdCelsius) {
      const room = topic.split('/')[1]
      forward(config.webhook, { alert: 'temperature', room, celsius, threshold: config.thresholdCelsius, clientId: client.id }).catch((err: unknown) =>
        log.error({ err }, 'could not queue the alert'),
      )
    }
    return undefined
  },
})
