import assert from 'node:assert/strict'
import { test, type TestContext } from 'node:test'
import type { Broker } from '../../core/index.js'
import { RawClient, startBroker } from '../helpers.js'
import { bystanders, expectDisconnect, frame, v4, v5 } from './wire.js'

// Acknowledgements must fit the flow of their packet id (MQTT 5 §4.3.2, §4.3.3):
// a known id in the wrong phase is a Protocol Error (DISCONNECT 0x82); an id the
// broker does not know may be a duplicate after a reconnect and is tolerated.

/** A raw client subscribed to `acks` that has just been sent one message at `qos`: answers its packet id. */
async function delivered(t: TestContext, broker: Broker, qos: 1 | 2, raw?: RawClient): Promise<{ raw: RawClient; id: number }> {
  raw ??= await v5(t, broker)
  raw.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'acks', qos }] }, 5)
  await raw.expect('suback')
  await broker.publish({ topic: 'acks', payload: 'm', qos })
  const p = await raw.expect('publish')
  return { raw, id: p.messageId! }
}

const ack = (type: number, id: number): Buffer => frame(type, [id >> 8, id & 0xff])

test('PUBREC for a QoS 1 message: DISCONNECT 0x82 (MQTT 5 §4.3.2)', async (t) => {
  const broker = await startBroker(t)
  const check = await bystanders(t, broker)
  const { raw, id } = await delivered(t, broker, 1)
  raw.sendBytes(ack(0x50, id))
  await expectDisconnect(raw, 0x82)
  await check()
})

test('PUBACK for a QoS 2 message: DISCONNECT 0x82 (MQTT 5 §4.3.3)', async (t) => {
  const broker = await startBroker(t)
  const check = await bystanders(t, broker)
  const { raw, id } = await delivered(t, broker, 2)
  raw.sendBytes(ack(0x40, id))
  await expectDisconnect(raw, 0x82)
  await check()
})

test('PUBCOMP before PUBREL: DISCONNECT 0x82 (MQTT 5 §4.3.3)', async (t) => {
  const broker = await startBroker(t)
  const check = await bystanders(t, broker)
  const { raw, id } = await delivered(t, broker, 2)
  raw.sendBytes(ack(0x70, id))
  await expectDisconnect(raw, 0x82)
  await check()
})

test('3.1.1: PUBACK for a QoS 2 message closes the connection', async (t) => {
  const broker = await startBroker(t)
  const check = await bystanders(t, broker)
  const raw4 = await v4(t, broker)
  raw4.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'acks', qos: 2 }] })
  await raw4.expect('suback')
  await broker.publish({ topic: 'acks', payload: 'm', qos: 2 })
  const p = await raw4.expect('publish')
  raw4.sendBytes(ack(0x40, p.messageId!))
  await raw4.expectClosed()
  assert.equal(raw4.packets.filter((x) => x.cmd === 'disconnect').length, 0)
  await check()
})

test('the QoS 2 flow in order completes, and unknown ids are tolerated (PUBREC gets PUBREL 0x92)', async (t) => {
  const broker = await startBroker(t)
  const { raw, id } = await delivered(t, broker, 2)
  raw.sendBytes(ack(0x50, id)) // PUBREC
  assert.equal((await raw.expect('pubrel')).messageId, id)
  raw.sendBytes(ack(0x70, id)) // PUBCOMP
  raw.sendBytes(ack(0x40, 999)) // PUBACK for an id never sent
  raw.sendBytes(ack(0x70, 998)) // PUBCOMP for an id never sent
  raw.sendBytes(ack(0x50, 997)) // PUBREC for an id never sent
  const rel = await raw.expect('pubrel')
  assert.equal(rel.messageId, 997)
  assert.equal(rel.reasonCode, 0x92)
  raw.send({ cmd: 'pingreq' }, 5)
  await raw.expect('pingresp')
  assert.equal(raw.closed, false)
})
