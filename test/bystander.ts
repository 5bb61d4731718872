import assert from 'node:assert/strict'
import type { TestContext } from 'node:test'
import type { IClientOptions } from 'mqtt'
import type { Broker } from '../core/index.js'
import { collect, connect } from './helpers.js'

/**
 * A client that has nothing to do with the attack: after each attack the test
 * asks it for a publish/subscribe round trip, which must come back promptly.
 */
export async function bystander(
  t: TestContext,
  broker: Broker,
  options: IClientOptions = {},
  listener = 'tcp',
): Promise<{ roundTrip(maxMs?: number): Promise<number> }> {
  const topic = `bystander/${Math.random().toString(36).slice(2)}`
  const client = await connect(t, broker, { protocolVersion: 5, ...options }, listener)
  await client.subscribeAsync(topic, { qos: 1 })
  const inbox = collect(client)
  let n = 0
  return {
    async roundTrip(maxMs = 1000) {
      const payload = String(++n)
      const t0 = performance.now()
      await client.publishAsync(topic, payload, { qos: 1 })
      for (;;) {
        const m = await inbox.next(maxMs + 2000)
        if (m.payload.toString() === payload) break
      }
      const ms = performance.now() - t0
      assert.ok(ms < maxMs, `the bystander's round trip took ${ms.toFixed(0)} ms (at most ${maxMs})`)
      return ms
    },
  }
}
