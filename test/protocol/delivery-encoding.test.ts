import assert from 'node:assert/strict'
import net from 'node:net'
import { test, type TestContext } from 'node:test'
import mqttPacket, { type IPublishPacket, type Packet } from 'mqtt-packet'
import type { Broker } from '../../core/index.js'
import { newMessage } from '../../core/types.js'
import { collect, connect, defer, once, pingRoundTrip, portOf, startBroker, until } from '../helpers.js'

// What each subscriber receives is checked on the bytes: the message's own
// properties are encoded once and copied into every MQTT 5 subscriber's
// PUBLISH beside that subscriber's own (subscription identifiers, topic alias,
// message expiry left). Every packet must be what mqtt-packet would write for
// what it parses out of it, and must carry the right properties for its client.

/** A raw subscriber keeping every byte it receives, split into packets. */
class Wire {
  readonly frames: Buffer[] = []
  readonly packets: Packet[] = []
  private pending = Buffer.alloc(0)
  private readonly parser: ReturnType<typeof mqttPacket.parser>

  constructor(
    readonly socket: net.Socket,
    readonly version: 4 | 5,
  ) {
    this.parser = mqttPacket.parser({ protocolVersion: version })
    this.parser.on('packet', (p: Packet) => this.packets.push(p))
    socket.on('data', (b: Buffer) => {
      this.parser.parse(b)
      this.pending = Buffer.concat([this.pending, b])
      for (;;) {
        let i = 1
        let len = 0
        let mul = 1
        for (; i < this.pending.length; i++, mul *= 128) {
          len += (this.pending[i]! & 0x7f) * mul
          if ((this.pending[i]! & 0x80) === 0) break
        }
        if (i >= this.pending.length || this.pending.length < i + 1 + len) return
        this.frames.push(this.pending.subarray(0, i + 1 + len))
        this.pending = this.pending.subarray(i + 1 + len)
      }
    })
  }

  static async open(
    t: TestContext,
    broker: Broker,
    version: 4 | 5,
    connect: Partial<mqttPacket.IConnectPacket>,
    subscriptions: Array<{ topic: string; qos: 0 | 1 | 2; id?: number }>,
  ): Promise<Wire> {
    const socket = net.connect(portOf(broker), '127.0.0.1')
    defer(t, () => socket.destroy())
    await once(socket, 'connect')
    const w = new Wire(socket, version)
    w.send({
      cmd: 'connect',
      protocolId: 'MQTT',
      protocolVersion: version,
      clientId: `wire-${Math.random().toString(36).slice(2)}`,
      clean: true,
      keepalive: 30,
      ...connect,
    })
    for (const [i, s] of subscriptions.entries()) {
      w.send({
        cmd: 'subscribe',
        messageId: i + 1,
        subscriptions: [{ topic: s.topic, qos: s.qos }],
        properties: s.id === undefined ? undefined : { subscriptionIdentifier: s.id },
      })
    }
    await until(() => w.packets.filter((p) => p.cmd === 'suback').length === subscriptions.length, 3000, 'SUBACKs')
    return w
  }

  send(p: Packet): void {
    this.socket.write(mqttPacket.generate(p, { protocolVersion: this.version }))
  }

  /** The PUBLISH packets received, each with its bytes. */
  publishes(): Array<{ packet: IPublishPacket; bytes: Buffer }> {
    const all = this.packets.map((packet, i) => ({ packet, bytes: this.frames[i]! }))
    return all.filter((x): x is { packet: IPublishPacket; bytes: Buffer } => x.packet.cmd === 'publish')
  }
}

const shared = {
  payloadFormatIndicator: true,
  contentType: 'application/json; ü',
  responseTopic: 'reply/温度',
  correlationData: Buffer.from([0, 1, 2, 254, 255]),
  userProperties: { z: ['1', '2', ''], ключ: 'значение', a: 'b' },
}

test("[MQTT-3.3.2-17] [MQTT-3.3.4-3] [MQTT-3.3.2-6] each subscriber's PUBLISH is byte-correct, with the message's properties and its own (subscription ids, topic alias, expiry left)", async (t) => {
  const broker = await startBroker(t)
  const aliased = await Wire.open(t, broker, 5, { properties: { topicAliasMaximum: 5 } }, [
    { topic: 'enc/#', qos: 1, id: 7 },
    { topic: 'enc/+/x', qos: 0, id: 300000 },
  ])
  const plain = await Wire.open(t, broker, 5, {}, [{ topic: 'enc/#', qos: 0 }])
  const plain2 = await Wire.open(t, broker, 5, {}, [{ topic: 'enc/#', qos: 0 }])
  const qos2 = await Wire.open(t, broker, 5, {}, [{ topic: 'enc/a/x', qos: 2, id: 1 }])
  const v311 = await Wire.open(t, broker, 4, {}, [{ topic: 'enc/#', qos: 1 }])
  const pub = await connect(t, broker, { protocolVersion: 5 })
  await pub.publishAsync('enc/a/x', 'first', { qos: 1, properties: { ...shared, messageExpiryInterval: 600 } })
  await pub.publishAsync('enc/a/x', 'second', { qos: 1, properties: shared })
  const all = [aliased, plain, plain2, qos2, v311]
  await until(() => all.every((w) => w.publishes().length === 2), 3000, 'two messages on every subscriber')

  for (const w of all) {
    for (const { packet, bytes } of w.publishes()) {
      // what mqtt-packet writes for what it read is what arrived
      assert.ok(mqttPacket.generate(packet, { protocolVersion: w.version }).equals(bytes), `${w.version} ${packet.payload.toString()}`)
    }
  }
  const props = (p: IPublishPacket): Record<string, unknown> => {
    const { userProperties, ...rest } = p.properties ?? {}
    return userProperties === undefined ? rest : { ...rest, userProperties: { ...userProperties } }
  }
  const [a1, a2] = aliased.publishes().map((x) => x.packet)
  assert.equal(a1!.topic, 'enc/a/x')
  assert.equal(a2!.topic, '') // the alias stands for it [MQTT-3.3.2-12]
  const expiry = a1!.properties!.messageExpiryInterval!
  assert.ok(expiry >= 599 && expiry <= 600, `expiry left ${expiry}`)
  assert.deepEqual(props(a1!), { ...shared, messageExpiryInterval: expiry, topicAlias: 1, subscriptionIdentifier: [7, 300000] })
  assert.deepEqual(props(a2!), { ...shared, topicAlias: 1, subscriptionIdentifier: [7, 300000] })
  assert.equal(a1!.qos, 1)
  for (const w of [plain, plain2]) {
    const [p1, p2] = w.publishes().map((x) => x.packet)
    assert.deepEqual(props(p1!), { ...shared, messageExpiryInterval: p1!.properties!.messageExpiryInterval })
    assert.deepEqual(props(p2!), shared)
    assert.deepEqual([p1!.topic, p1!.qos, p2!.topic], ['enc/a/x', 0, 'enc/a/x'])
  }
  const [q1] = qos2.publishes().map((x) => x.packet)
  assert.deepEqual([q1!.qos, props(q1!).subscriptionIdentifier], [1, 1]) // the message's QoS: the subscription allows more
  for (const { packet } of v311.publishes()) assert.deepEqual([packet.topic, packet.properties], ['enc/a/x', undefined]) // MQTT 3.1.1 has no properties
  assert.deepEqual(
    v311.publishes().map((x) => x.packet.payload.toString()),
    ['first', 'second'],
  )
})

test("a message's properties are encoded once, whatever the number of MQTT 5 subscribers", async (t) => {
  const broker = await startBroker(t)
  const subscribers = await Promise.all(Array.from({ length: 20 }, () => connect(t, broker, { protocolVersion: 5 })))
  for (const [i, s] of subscribers.entries()) await s.subscribeAsync('once/#', { qos: (i % 2) as 0 | 1, properties: { subscriptionIdentifier: i + 1 } })
  let reads = 0
  const userProperties = { plain: 'p' } as Record<string, string>
  Object.defineProperty(userProperties, 'counted', {
    enumerable: true,
    get: () => {
      reads++
      return 'c'
    },
  })
  await broker.publish({ topic: 'once/t', payload: 'x', qos: 1, properties: { userProperties } })
  for (const [i, s] of subscribers.entries()) {
    const m = await collect(s).next()
    assert.deepEqual({ ...m.packet.properties?.userProperties }, { plain: 'p', counted: 'c' })
    assert.equal(m.packet.properties?.subscriptionIdentifier, i + 1)
  }
  // once to encode the property block, once to size the message for the in-flight windows: not once per subscriber (20 here)
  assert.ok(reads <= 2, `user properties read ${reads} times`)
})

test('(MQTT 1.5.4) a message MQTT cannot represent (topic over 65,535 bytes) is not delivered; nobody is disconnected; it is counted', async (t) => {
  const broker = await startBroker(t)
  const v5 = await connect(t, broker, { protocolVersion: 5 })
  const v5aliased = await connect(t, broker, { protocolVersion: 5, properties: { topicAliasMaximum: 3 } })
  const v4 = await connect(t, broker)
  for (const c of [v5, v5aliased, v4]) await c.subscribeAsync('#')
  // broker.publish refuses such a topic now; routed as it is, the codec still must not write it
  await broker.pipeline.route(newMessage('x'.repeat(70000), Buffer.from('too long'), 0, false, undefined), undefined, null)
  // a user property over 65,535 bytes: MQTT 3.1.1 clients get no properties and so get the message
  await broker.publish({ topic: 'long/property', payload: 'v4 only', properties: { userProperties: { k: 'v'.repeat(70000) } } })
  await broker.publish({ topic: 'after', payload: 'fine' })
  for (const c of [v5, v5aliased]) {
    assert.equal((await collect(c).next()).payload.toString(), 'fine')
    await pingRoundTrip(c)
    assert.equal(collect(c).messages.length, 1)
    assert.ok(c.connected)
  }
  assert.deepEqual(
    (await collect(v4).count(2)).map((m) => m.payload.toString()),
    ['v4 only', 'fine'],
  )
  assert.equal(broker.stats.unencodable, 5) // 3 clients x the long topic, 2 MQTT 5 clients x the long property
})

test('outbound topic aliases: no more than limits.topicAliasMaximum whatever the client allows, and none once the aliased topics hold 64 KiB', async (t) => {
  const broker = await startBroker(t, { limits: { topicAliasMaximum: 3 } })
  const w = await Wire.open(t, broker, 5, { properties: { topicAliasMaximum: 65535 } }, [{ topic: 'al/#', qos: 0 }])
  const pub = await connect(t, broker, { protocolVersion: 5 })
  const topics = ['al/1', 'al/2', 'al/3', 'al/4', 'al/5']
  for (let round = 0; round < 2; round++) for (const topic of topics) await pub.publishAsync(topic, 'x', { qos: 1 })
  await until(() => w.publishes().length === 10, 3000, 'ten messages')
  const second = w
    .publishes()
    .slice(5)
    .map((x) => x.packet)
  assert.deepEqual(
    second.map((p) => [p.topic, p.properties?.topicAlias]),
    [
      ['', 1],
      ['', 2],
      ['', 3],
      ['al/4', undefined],
      ['al/5', undefined],
    ],
  )

  const wide = await startBroker(t, { limits: { topicAliasMaximum: 100 } })
  const w2 = await Wire.open(t, wide, 5, { properties: { topicAliasMaximum: 100 } }, [{ topic: '#', qos: 0 }])
  const pub2 = await connect(t, wide, { protocolVersion: 5 })
  const long = [0, 1, 2].map((i) => `${i}/${'x'.repeat(30000)}`)
  for (let round = 0; round < 2; round++) for (const topic of long) await pub2.publishAsync(topic, 'x', { qos: 1 })
  await until(() => w2.publishes().length === 6, 3000, 'six messages')
  assert.deepEqual(
    w2
      .publishes()
      .slice(3)
      .map((x) => [x.packet.topic.length, x.packet.properties?.topicAlias]),
    [
      [0, 1],
      [0, 2],
      [30002, undefined], // a third would pass 64 KiB of aliased topics
    ],
  )
})
