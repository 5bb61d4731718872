import assert from 'node:assert/strict'
import { test, type TestContext } from 'node:test'
import type { Broker } from '../../core/index.js'
import { bystander } from '../bystander.js'
import { collect, connect, pingRoundTrip, RawClient, startBroker } from '../helpers.js'
import { varint } from './wire.js'

// One PUBLISH of 1 MB carrying ~150,000 MQTT 5 User Properties, sent to many
// MQTT 5 subscribers, used to freeze the broker for seconds (mqtt-packet parsed
// it in ~0.5 s, then encoded it again for every subscriber). Its property block
// is now measured and walked on the bytes, and refused unparsed.

/** A PUBLISH (MQTT 5) with `n` User Properties u=v, built on the bytes (mqtt-packet takes a second to generate it). */
function publishWithUserProperties(topic: string, n: number, qos: 0 | 1 | 2, messageId: number, extra: Buffer = Buffer.alloc(0)): Buffer {
  const one = Buffer.from([0x26, 0, 1, 0x75, 0, 1, 0x76])
  const props = Buffer.concat([extra, Buffer.alloc(one.length * n)])
  for (let i = 0; i < n; i++) one.copy(props, extra.length + i * one.length)
  const t = Buffer.from(topic)
  const id = qos > 0 ? Buffer.from([messageId >> 8, messageId & 0xff]) : Buffer.alloc(0)
  const body = Buffer.concat([Buffer.from([t.length >> 8, t.length & 0xff]), t, id, Buffer.from(varint(props.length)), props, Buffer.from('payload')])
  return Buffer.concat([Buffer.from([0x30 | (qos << 1)]), Buffer.from(varint(body.length)), body])
}

async function v5(t: TestContext, broker: Broker): Promise<RawClient> {
  const raw = await RawClient.open(t, broker, 5)
  assert.equal((await raw.connect({}, 5)).reasonCode, 0)
  return raw
}

test('a PUBLISH of 1 MB with 150,000 User Properties, sent 5 times, is refused with PUBACK 0x97 at once; subscribers get nothing; a bystander is not held up', async (t) => {
  const broker = await startBroker(t)
  const other = await bystander(t, broker)
  const roundTrip = (): Promise<number> => other.roundTrip(5000)
  const subscribers = await Promise.all(Array.from({ length: 5 }, () => connect(t, broker, { protocolVersion: 5 })))
  for (const [i, s] of subscribers.entries()) await s.subscribeAsync('amp/#', { qos: 1, properties: { subscriptionIdentifier: i + 1 } })
  const attacker = await v5(t, broker)
  const packets = [1, 2, 3, 4, 5].map((id) => publishWithUserProperties('amp/t', 149000, 1, id))
  assert.ok(packets[0]!.length > 1000000 && packets[0]!.length < 1048576, `${packets[0]!.length} bytes`)
  for (const p of packets) attacker.sendBytes(p)
  const during = await roundTrip() // while the broker reads and refuses them
  for (let id = 1; id <= 5; id++) {
    const ack = await attacker.expect('puback', 5000)
    assert.equal(ack.messageId, id)
    assert.equal(ack.reasonCode, 0x97) // Quota exceeded: MQTT 5 has no 0x95 for PUBACK
  }
  assert.equal(broker.stats.refused.properties, 5)
  // the publisher may go on: an ordinary message after the refused ones is the only one delivered
  attacker.send(
    {
      cmd: 'publish',
      topic: 'amp/t',
      payload: Buffer.from('fine'),
      qos: 1,
      messageId: 6,
      retain: false,
      dup: false,
      properties: { userProperties: { a: 'b' } },
    },
    5,
  )
  assert.equal((await attacker.expect('puback')).reasonCode ?? 0, 0)
  for (const s of subscribers) {
    const m = await collect(s).next()
    assert.equal(m.payload.toString(), 'fine')
    assert.deepEqual({ ...m.packet.properties?.userProperties }, { a: 'b' })
    await pingRoundTrip(s)
    assert.equal(collect(s).messages.length, 1)
  }
  const after = await roundTrip()
  assert.ok(during < 1000 && after < 1000, `bystander round trips ${during.toFixed(0)} ms during, ${after.toFixed(0)} ms after`)
})

test('a QoS 0 PUBLISH over the bound is dropped and counted, and the connection goes on', async (t) => {
  const broker = await startBroker(t, { limits: { maxUserProperties: 10 } })
  const other = await bystander(t, broker)
  const roundTrip = (): Promise<number> => other.roundTrip(5000)
  const sub = await connect(t, broker, { protocolVersion: 5 })
  await sub.subscribeAsync('q0/#')
  const attacker = await v5(t, broker)
  attacker.sendBytes(publishWithUserProperties('q0/t', 11, 0, 0))
  attacker.sendBytes(publishWithUserProperties('q0/t', 10, 0, 0))
  const m = await collect(sub).next()
  assert.equal(m.packet.properties?.userProperties?.u?.length, 10) // the one within the bound, unaltered
  attacker.sendBytes([0xc0, 0x00]) // PINGREQ
  await attacker.expect('pingresp')
  assert.equal(broker.stats.refused.properties, 1)
  assert.equal(collect(sub).messages.length, 1)
  await roundTrip()
})

test('a QoS 2 PUBLISH over the bound gets PUBREC 0x97 and leaves its packet id free', async (t) => {
  const broker = await startBroker(t, { limits: { maxPropertyBytes: 100 } })
  const sub = await connect(t, broker, { protocolVersion: 5 })
  await sub.subscribeAsync('q2/#', { qos: 2 })
  const attacker = await v5(t, broker)
  attacker.sendBytes(publishWithUserProperties('q2/t', 15, 2, 9)) // 105 bytes of properties
  const rec = await attacker.expect('pubrec')
  assert.deepEqual([rec.messageId, rec.reasonCode], [9, 0x97])
  // the same id again, within the bound: a new message, delivered
  attacker.sendBytes(publishWithUserProperties('q2/t', 14, 2, 9))
  assert.equal((await attacker.expect('pubrec')).reasonCode ?? 0, 0)
  attacker.send({ cmd: 'pubrel', messageId: 9 }, 5)
  await attacker.expect('pubcomp')
  assert.equal((await collect(sub).next()).packet.properties?.userProperties?.u?.length, 14)
})

test('[MQTT-3.3.2-12] a refused PUBLISH that sets a Topic Alias still maps it: the next PUBLISH may use the alias alone', async (t) => {
  const broker = await startBroker(t, { limits: { maxUserProperties: 5 } })
  const sub = await connect(t, broker, { protocolVersion: 5 })
  await sub.subscribeAsync('alias/#', { qos: 1 })
  const attacker = await v5(t, broker)
  attacker.sendBytes(publishWithUserProperties('alias/t', 6, 1, 1, Buffer.from([0x23, 0, 4]))) // Topic Alias 4
  assert.equal((await attacker.expect('puback')).reasonCode, 0x97)
  attacker.send(
    { cmd: 'publish', topic: '', payload: Buffer.from('by alias'), qos: 1, messageId: 2, retain: false, dup: false, properties: { topicAlias: 4 } },
    5,
  )
  assert.equal((await attacker.expect('puback')).reasonCode ?? 0, 0)
  const m = await collect(sub).next()
  assert.deepEqual([m.topic, m.payload.toString()], ['alias/t', 'by alias'])
})

test('[MQTT-3.3.2-17] [MQTT-3.3.2-18] User Properties up to the bound are forwarded unaltered and in order', async (t) => {
  const broker = await startBroker(t)
  const sub = await connect(t, broker, { protocolVersion: 5 })
  await sub.subscribeAsync('order/#')
  const pub = await connect(t, broker, { protocolVersion: 5 })
  const values = Array.from({ length: 256 }, (_, i) => `value ${i} ü`)
  await pub.publishAsync('order/t', 'x', { qos: 1, properties: { userProperties: { k: values } } })
  assert.deepEqual({ ...(await collect(sub).next()).packet.properties?.userProperties }, { k: values })
  assert.equal(broker.stats.refused.properties, 0)
})

test('a client that sends PINGREQs (or PUBRELs) without reading is not read either once its answers pass maxClientBufferBytes: the broker holds a bounded backlog, the client is held by TCP', async (t) => {
  const broker = await startBroker(t, { limits: { maxClientBufferBytes: 65536 } })
  const other = await bystander(t, broker)
  for (const packet of [Buffer.from([0xc0, 0]), Buffer.from([0x62, 2, 0, 7])]) {
    const raw = await v5(t, broker)
    raw.socket.pause() // reads nothing more: every answer waits on the broker's side
    const chunk = Buffer.alloc(packet.length * 32768)
    for (let i = 0; i < 32768; i++) packet.copy(chunk, i * packet.length)
    // what waits on the broker's side of the sockets (the connections are the broker's own: read here, not changed)
    const conns = (broker as unknown as { connections: Set<{ socket: { writableLength: number } }> }).connections
    let most = 0
    const sample = setInterval(() => {
      let n = 0
      for (const c of conns) n += c.socket.writableLength
      most = Math.max(most, n)
    }, 20)
    let accepted = 0
    const deadline = Date.now() + 3000
    while (Date.now() < deadline && accepted < 64 * 1024 * 1024) {
      if (raw.socket.write(chunk)) accepted += chunk.length
      else {
        const drained = await Promise.race([new Promise((r) => raw.socket.once('drain', () => r(true))), new Promise((r) => setTimeout(r, 500, false))])
        if (!drained) break
        accepted += chunk.length
      }
    }
    clearInterval(sample)
    // unheld, the broker read on and queued every answer (a run grew it by gigabytes)
    assert.ok(
      most < 4 * 65536,
      `${most} bytes waited on the broker's side while ${(accepted / 1048576).toFixed(1)} MB were taken from a client that reads nothing`,
    )
    await other.roundTrip()
    raw.socket.destroy()
  }
})
