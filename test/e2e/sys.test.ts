import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { MqttClient } from 'mqtt'
import net from 'node:net'
import { connect, portOf, startBroker, startRedis, until } from '../helpers.js'
import { nodes } from '../support/cluster.js'

// $SYS topics: on one node, and across the nodes of a cluster.

/** Every message `client` receives, in order, as [topic, payload]. */
function messages(client: MqttClient): Array<[string, string]> {
  const got: Array<[string, string]> = []
  client.on('message', (topic, payload) => got.push([topic, payload.toString()]))
  return got
}

const valuesOf = (got: Array<[string, string]>, topic: string): string[] => got.filter(([t]) => t === topic).map(([, v]) => v)
const last = (got: Array<[string, string]>, topic: string): string | undefined => valuesOf(got, topic).at(-1)

test('$SYS/broker/clients/maximum is the peak of connected clients since start (as Mosquitto), not the configured limit; one node publishes no $SYS/brokers/', async (t) => {
  const broker = await startBroker(t, { sys: { enabled: true, intervalMs: 100 } })
  const sub = await connect(t, broker)
  const got = messages(sub)
  await sub.subscribeAsync('$SYS/broker/clients/+')
  const others = await Promise.all([1, 2, 3].map(() => connect(t, broker)))
  await until(() => last(got, '$SYS/broker/clients/connected') === '4', 5000, 'four clients connected')
  for (const c of others) await c.endAsync()
  // a socket that has not sent CONNECT is not a client
  const bare = net.connect(portOf(broker), '127.0.0.1')
  t.after(() => bare.destroy())
  await new Promise((resolve) => bare.once('connect', resolve))
  await until(() => broker.connectionCount === 2, 5000, 'the bare socket accepted')
  const seen = got.length
  await until(() => got.length > seen + 2, 5000, 'a round of $SYS values with the bare socket open')
  assert.equal(last(got, '$SYS/broker/clients/connected'), '1')
  assert.equal(last(got, '$SYS/broker/clients/maximum'), '4')
  assert.deepEqual(await broker.stores.retained.match('$SYS/brokers/#'), [])
})

test('$SYS in a cluster: each node under $SYS/brokers/<id>/, broker-wide sums under $SYS/broker/ that do not flap; a node that leaves takes its figures along', async (t) => {
  const redis = await startRedis(t)
  const [a, b] = await nodes(t, redis.url, ['a', 'b'], { sys: { enabled: true, intervalMs: 100 } })
  const sub = await connect(t, a!) // the one client on A
  const got = messages(sub)
  await sub.subscribeAsync(['$SYS/broker/clients/connected', '$SYS/broker/clients/maximum', '$SYS/brokers/+/clients/connected', '$SYS/broker/uptime'])
  await connect(t, b!) // the one client on B
  const wide = (): string[] => valuesOf(got, '$SYS/broker/clients/connected')
  await until(() => wide().includes('2'), 5000, 'the broker-wide count to be 2')
  const from = wide().indexOf('2')
  await until(() => wide().length >= from + 15, 5000, 'fifteen more broker-wide counts')
  assert.deepEqual(wide().slice(from), Array(wide().length - from).fill('2'), `flapped: ${wide().join(',')}`)
  assert.equal(last(got, '$SYS/brokers/a/clients/connected'), '1')
  assert.equal(last(got, '$SYS/brokers/b/clients/connected'), '1')
  assert.equal(last(got, '$SYS/broker/clients/maximum'), '2')
  assert.match(last(got, '$SYS/broker/uptime')!, /^\d+$/)

  await b!.close()
  await until(() => wide().at(-1) === '1', 5000, 'the broker-wide count without B')
  assert.equal(last(got, '$SYS/broker/clients/maximum'), '2') // a peak
  assert.deepEqual(await a!.stores.retained.match('$SYS/brokers/b/#'), []) // B cleared its own topics
  assert.notDeepEqual(await a!.stores.retained.match('$SYS/brokers/a/#'), [])
})
