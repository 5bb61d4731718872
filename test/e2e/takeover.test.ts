import assert from 'node:assert/strict'
import { test, type TestContext } from 'node:test'
import type { Broker } from '../../core/index.js'
import { collect, connect, RawClient, startBroker, until } from '../helpers.js'

// Client-id takeover: one live connection per client id, and a taken-over
// session that ended with its connection is not presented as resumed.

/** A raw client that does not close its side when the broker closes its own: the broker holds it as "closing" meanwhile. */
async function lingering(t: TestContext, broker: Broker, v: 4 | 5): Promise<RawClient> {
  const raw = await RawClient.open(t, broker, v)
  raw.socket.allowHalfOpen = true
  return raw
}

/** A publish/subscribe round trip of a client that has nothing to do with the test. */
async function bystanderWorks(t: TestContext, broker: Broker): Promise<void> {
  const c = await connect(t, broker, { clientId: 'bystander-' + Math.random().toString(36).slice(2) })
  await c.subscribeAsync('bystander/x', { qos: 1 })
  await c.publishAsync('bystander/x', 'ok', { qos: 1 })
  assert.equal((await collect(c).next()).payload.toString(), 'ok')
}

/** True when `raw` works as a connection: a SUBSCRIBE and a message to it. */
async function works(raw: RawClient, broker: Broker, topic: string, v: 4 | 5): Promise<void> {
  raw.send({ cmd: 'subscribe', messageId: 7, subscriptions: [{ topic, qos: 0 }] }, v)
  await raw.expect('suback')
  await broker.publish({ topic, payload: 'hi' })
  assert.equal((await raw.expect('publish')).topic, topic)
}

test('[MQTT-3.1.4-3] [MQTT-3.2.2-2] taking over a session with expiry 0: Session Present 0, and a third CONNECT closes the second connection', async (t) => {
  const broker = await startBroker(t)
  const first = await RawClient.open(t, broker, 5)
  assert.equal((await first.connect({ clientId: 'twice', clean: false }, 5)).sessionPresent, false) // expiry 0: ends with the connection
  first.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'old/x', qos: 1 }] }, 5)
  await first.expect('suback')
  const second = await RawClient.open(t, broker, 5)
  const ack2 = await second.connect({ clientId: 'twice', clean: false }, 5)
  assert.equal((await first.expect('disconnect')).reasonCode, 0x8e)
  await first.expectClosed()
  assert.equal(ack2.sessionPresent, false) // the session ended with the connection taken over
  await works(second, broker, 'second/x', 5)
  const third = await RawClient.open(t, broker, 5)
  await third.connect({ clientId: 'twice', clean: false }, 5)
  assert.equal((await second.expect('disconnect')).reasonCode, 0x8e) // [MQTT-3.1.4-3]
  await second.expectClosed()
  await works(third, broker, 'third/x', 5)
  assert.deepEqual(
    third.packets.filter((p) => p.cmd === 'publish'),
    [],
  ) // nothing of old/x: that session is gone
  await until(() => broker.connectionCount === 1, 3000, 'the broker to count one connection')
  await bystanderWorks(t, broker)
})

test('[MQTT-3.1.2-6] [MQTT-3.1.4-2] [MQTT-3.2.2-2] MQTT 3.1.1: a clean session taken over is not present; the next takeover closes the connection that took it', async (t) => {
  const broker = await startBroker(t)
  const first = await RawClient.open(t, broker, 4)
  await first.connect({ clientId: 'v4-twice', clean: true })
  const second = await RawClient.open(t, broker, 4)
  assert.equal((await second.connect({ clientId: 'v4-twice', clean: false })).sessionPresent, false)
  await first.expectClosed()
  second.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'v4/q', qos: 1 }] })
  await second.expect('suback')
  const third = await RawClient.open(t, broker, 4)
  assert.equal((await third.connect({ clientId: 'v4-twice', clean: false })).sessionPresent, true) // second's session is persistent
  await second.expectClosed()
  await broker.publish({ topic: 'v4/q', payload: 'for third', qos: 1 })
  assert.equal((await third.expect('publish')).payload.toString(), 'for third')
  await until(() => broker.connectionCount === 1, 3000, 'the broker to count one connection')
  await bystanderWorks(t, broker)
})

test('[MQTT-3.2.2-2] DISCONNECT with Session Expiry 0 and an immediate reconnect: Session Present 0, nothing of the old session', async (t) => {
  const broker = await startBroker(t)
  const first = await lingering(t, broker, 5)
  await first.connect({ clientId: 'quick', clean: true, properties: { sessionExpiryInterval: 300 } }, 5)
  first.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'quick/#', qos: 1 }] }, 5)
  await first.expect('suback')
  first.send({ cmd: 'disconnect', reasonCode: 0, properties: { sessionExpiryInterval: 0 } }, 5)
  await until(() => first.socket.readableEnded, 3000, 'the broker to close its side') // the broker holds the connection as closing now
  const again = await RawClient.open(t, broker, 5)
  const ack = await again.connect({ clientId: 'quick', clean: false, properties: { sessionExpiryInterval: 300 } }, 5)
  assert.equal(ack.sessionPresent, false)
  await broker.publish({ topic: 'quick/1', payload: 'not subscribed any more', qos: 1 })
  again.send({ cmd: 'pingreq' }, 5)
  await again.expect('pingresp')
  assert.deepEqual(
    again.packets.filter((p) => p.cmd === 'publish'),
    [],
  )
  await works(again, broker, 'quick-again/x', 5)
  await bystanderWorks(t, broker)
})

/**
 * What an interoperability suite does (paho's test_redelivery_on_reconnect),
 * right after a previous connection of the same client id with expiry 0:
 * subscribe, publish to itself at QoS 1 and 2, acknowledge nothing, DISCONNECT,
 * reconnect at once: both messages come again.
 */
test('[MQTT-4.4.0-1] MQTT 5 (expiry > 0, Clean Start 0): unacknowledged QoS 1 and QoS 2 messages come again after DISCONNECT and an immediate reconnect', async (t) => {
  const broker = await startBroker(t)
  const session = { clientId: 'interop', clean: false, properties: { sessionExpiryInterval: 99999 } }
  const cleanup = await lingering(t, broker, 5)
  await cleanup.connect({ clientId: 'interop', clean: true }, 5)
  cleanup.send({ cmd: 'disconnect', reasonCode: 0 }, 5)
  await until(() => cleanup.socket.readableEnded, 3000, 'the broker to close the clean-up connection')
  const paused = await lingering(t, broker, 5)
  await paused.connect(session, 5)
  paused.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'TopicA/#', qos: 2 }] }, 5)
  await paused.expect('suback')
  paused.send({ cmd: 'publish', topic: 'TopicA/B', payload: Buffer.from('q1'), qos: 1, retain: false, dup: false, messageId: 2 }, 5)
  paused.send({ cmd: 'publish', topic: 'TopicA/C', payload: Buffer.from('q2'), qos: 2, retain: false, dup: false, messageId: 3 }, 5)
  const sent = [await paused.expect('publish'), await paused.expect('publish')] // delivered to itself, never acknowledged
  assert.deepEqual(sent.map((p) => `${p.topic}:${p.qos}`).sort(), ['TopicA/B:1', 'TopicA/C:2'])
  paused.send({ cmd: 'disconnect', reasonCode: 0 }, 5)
  await until(() => paused.socket.readableEnded, 3000, 'the broker to close its side')
  const back = await RawClient.open(t, broker, 5)
  assert.equal((await back.connect(session, 5)).sessionPresent, true)
  const again = [await back.expect('publish'), await back.expect('publish')]
  assert.deepEqual(again.map((p) => `${p.topic}:${p.qos}:${p.dup}`).sort(), ['TopicA/B:1:true', 'TopicA/C:2:true'])
  for (const p of again) back.send(p.qos === 1 ? { cmd: 'puback', messageId: p.messageId! } : { cmd: 'pubrec', messageId: p.messageId! }, 5)
  await back.expect('pubrel')
  await bystanderWorks(t, broker)
})

test('[MQTT-3.1.4-3] never two live connections with one client id: 24 CONNECTs of every kind in a burst leave one, which works', async (t) => {
  const broker = await startBroker(t)
  const version = (i: number): 4 | 5 => (i % 2 === 0 ? 4 : 5)
  const clients: RawClient[] = []
  for (let i = 0; i < 24; i++) clients.push(await RawClient.open(t, broker, version(i)))
  // sent together: 3.1.1 and 5, clean or not, expiry 0 or 60
  await Promise.all(
    clients.map((c, i) =>
      c.connect(
        { clientId: 'crowd', clean: i % 3 === 0, properties: version(i) === 5 ? { sessionExpiryInterval: i % 4 === 1 ? 0 : 60 } : undefined },
        version(i),
      ),
    ),
  )
  await until(() => clients.filter((c) => !c.closed).length <= 1, 5000, `one connection left (${clients.filter((c) => !c.closed).length} open)`)
  const survivors = clients.filter((c) => !c.closed)
  assert.equal(survivors.length, 1)
  const survivor = survivors[0]!
  await works(survivor, broker, 'crowd/1', version(clients.indexOf(survivor)))
  const check = await RawClient.open(t, broker, 5)
  await check.connect({ clientId: 'crowd', clean: false, properties: { sessionExpiryInterval: 60 } }, 5)
  await survivor.expectClosed()
  await works(check, broker, 'crowd/2', 5)
  await bystanderWorks(t, broker)
})

test('[MQTT-3.1.2-24] a client whose Maximum Packet Size is smaller than the CONNACK gets no CONNACK: it is closed, and takes nothing over', async (t) => {
  const broker = await startBroker(t)
  const owner = await RawClient.open(t, broker, 5)
  await owner.connect({ clientId: 'tiny', clean: false, properties: { sessionExpiryInterval: 60 } }, 5)
  const tiny = await RawClient.open(t, broker, 5)
  tiny.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId: 'tiny', clean: false, keepalive: 30, properties: { maximumPacketSize: 16 } }, 5)
  await tiny.expectClosed()
  assert.deepEqual(tiny.packets, []) // a CONNACK here is at least 24 bytes
  await works(owner, broker, 'tiny/x', 5) // the connection with that client id carries on
  const roomy = await RawClient.open(t, broker, 5)
  const ack = await roomy.connect({ clientId: 'roomy', properties: { maximumPacketSize: 64 } }, 5)
  assert.equal(ack.reasonCode, 0)
  await bystanderWorks(t, broker)
})
