import assert from 'node:assert/strict'
import { test } from 'node:test'
import { memoryStores } from '../../core/index.js'
import { collect, connect, once, RawClient, startBroker } from '../helpers.js'

// A second broker over the same stores stands for a restart: what the stores
// hold must be enough to carry persistent sessions on.

test('a persistent session survives a broker restart through its stores: queue, subscriptions, unacknowledged messages', async (t) => {
  const stores = memoryStores()
  const first = await startBroker(t, { stores })
  const raw = await RawClient.open(t, first, 5)
  await raw.connect({ clientId: 'survivor', clean: true, properties: { sessionExpiryInterval: 300 } }, 5)
  raw.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'keep/#', qos: 1 }] }, 5)
  await raw.expect('suback')
  await first.publish({ topic: 'keep/unacked', payload: 'in flight', qos: 1 })
  const unacked = await raw.expect('publish')
  await first.publish({ topic: 'keep/retained', payload: 'still here', qos: 1, retain: true })
  await raw.expect('publish')
  raw.socket.destroy()
  await once(first, 'clientDisconnected')
  await first.close()

  const second = await startBroker(t, { stores })
  await second.publish({ topic: 'keep/queued', payload: 'while restarted', qos: 1 })
  const again = await RawClient.open(t, second, 5)
  const ack = await again.connect({ clientId: 'survivor', clean: false, properties: { sessionExpiryInterval: 300 } }, 5)
  assert.equal(ack.sessionPresent, true)
  const p1 = await again.expect('publish')
  assert.equal(p1.payload.toString(), 'in flight')
  assert.equal(p1.dup, true)
  assert.equal(p1.messageId, unacked.messageId)
  const rest: string[] = []
  for (;;) {
    const p = await again.expect('publish')
    again.send({ cmd: 'puback', messageId: p.messageId! }, 5)
    rest.push(p.payload.toString())
    if (p.payload.toString() === 'while restarted') break
  }
  assert.ok(rest.includes('while restarted'))
  const c = await connect(t, second)
  await c.subscribeAsync('keep/retained')
  assert.equal((await collect(c).next()).payload.toString(), 'still here')
})

test('two brokers sharing a message bus: a message published on one reaches subscribers on the other', async (t) => {
  const shared = memoryStores()
  const a = await startBroker(t, { stores: { ...memoryStores(), bus: shared.bus } })
  const b = await startBroker(t, { stores: { ...memoryStores(), bus: shared.bus } })
  const onA = await connect(t, a)
  const onB = await connect(t, b)
  await onA.subscribeAsync('cluster/#', { qos: 1 })
  await onB.subscribeAsync('cluster/#', { qos: 1 })
  const pub = await connect(t, a)
  await pub.publishAsync('cluster/x', 'everywhere', { qos: 1 })
  assert.equal((await collect(onB).next()).payload.toString(), 'everywhere')
  assert.equal((await collect(onA).next()).payload.toString(), 'everywhere')
  await b.publish({ topic: 'cluster/y', payload: 'back' })
  assert.equal((await collect(onA).next()).topic, 'cluster/y')
})
