import type { TestContext } from 'node:test'
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt'
import type { HookmqBroker } from '../../plugins/index.js'
import { startBroker } from './broker.js'
import { defer } from './lifecycle.js'

// Several hookmq nodes on one real redis-server (test/e2e/cluster*.test.ts).

/** heartbeats fast enough for a test to see a node die */
export const fast = { heartbeatMs: 100, nodeTimeoutMs: 600 }

export async function nodes(t: TestContext, url: string, ids: string[], extra: object = {}): Promise<HookmqBroker[]> {
  const out: HookmqBroker[] = []
  for (const id of ids) out.push(await startBroker(t, { id, ws: false, sys: { enabled: false }, redis: { url, ...fast }, ...extra }))
  return out
}

export function received(client: MqttClient): string[] {
  const got: string[] = []
  client.on('message', (_topic, payload) => got.push(payload.toString()))
  return got
}

export async function raw(t: TestContext, url: string, options: IClientOptions): Promise<MqttClient> {
  const c = await mqtt.connectAsync(url, { reconnectPeriod: 0, ...options })
  defer(t, () => c.endAsync(true).catch(() => {}))
  return c
}
