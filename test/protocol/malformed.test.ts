import assert from 'node:assert/strict'
import { test } from 'node:test'
import { collect, connect, pingRoundTrip, RawClient, startBroker } from '../helpers.js'
import { bystanders, connectBytes, expectClosedSilently, expectDisconnect, frame, props, str, v4, v5 } from './wire.js'

// Malformed packets and protocol errors (issue #12, item 3): each closes only the
// offending connection, with DISCONNECT 0x81/0x82 under MQTT 5 (CONNACK for a
// CONNECT) and a plain close under 3.1.1, and the bystanders carry on.

const BAD_UTF8 = [0x61, 0xc3, 0x28] // "a", then a lead byte followed by a non-continuation
const SURROGATE = [0x61, 0xed, 0xa0, 0x80] // U+D800 encoded
const NUL = [0x61, 0x00, 0x62]

test('[MQTT-1.5.4-2] U+0000 in a 3.1.1 client id: closed without CONNACK', async (t) => {
  const broker = await startBroker(t)
  const check = await bystanders(t, broker)
  const raw = await RawClient.open(t, broker, 4)
  raw.sendBytes(connectBytes(4, { clientId: NUL }))
  await expectClosedSilently(raw)
  assert.equal(broker.stats.refused.malformedPacket, 1)
  await check()
})

test('[MQTT-1.5.4-1] ill-formed UTF-8 in a 3.1.1 client id: closed without CONNACK', async (t) => {
  const broker = await startBroker(t)
  const check = await bystanders(t, broker)
  const raw = await RawClient.open(t, broker, 4)
  raw.sendBytes(connectBytes(4, { clientId: SURROGATE }))
  await expectClosedSilently(raw)
  await check()
})

test('[MQTT-1.5.4-1] ill-formed UTF-8 in an MQTT 5 user name: CONNACK 0x81, then closed', async (t) => {
  const broker = await startBroker(t)
  const check = await bystanders(t, broker)
  const raw = await RawClient.open(t, broker, 5)
  raw.sendBytes(connectBytes(5, { flags: 0x82, rest: str(BAD_UTF8) }))
  assert.equal((await raw.expect('connack')).reasonCode, 0x81)
  await raw.expectClosed()
  await check()
})

test('[MQTT-1.5.4-2] U+0000 in a 3.1.1 will topic: closed without CONNACK', async (t) => {
  const broker = await startBroker(t)
  const check = await bystanders(t, broker)
  const raw = await RawClient.open(t, broker, 4)
  raw.sendBytes(connectBytes(4, { flags: 0x06, rest: [...str(NUL), ...str('bye')] }))
  await expectClosedSilently(raw)
  await check()
})

test('[MQTT-1.5.4-2] U+0000 in a PUBLISH topic name: DISCONNECT 0x81', async (t) => {
  const broker = await startBroker(t)
  const check = await bystanders(t, broker)
  const raw = await v5(t, broker)
  raw.sendBytes(frame(0x30, [...str(NUL), ...props(), 0x78]))
  await expectDisconnect(raw, 0x81)
  await check()
})

test('[MQTT-1.5.4-1] a SUBSCRIBE with an ill-formed UTF-8 filter closes the connection (0x81), no SUBACK', async (t) => {
  const broker = await startBroker(t)
  const check = await bystanders(t, broker)
  const raw = await v5(t, broker)
  raw.sendBytes(frame(0x82, [0x00, 0x01, ...props(), ...str(BAD_UTF8), 0x00]))
  await expectDisconnect(raw, 0x81)
  assert.equal(raw.packets.filter((p) => p.cmd === 'suback').length, 0)
  await check()
})

test('[MQTT-1.5.4-2] a 3.1.1 SUBSCRIBE with U+0000 in its filter closes the connection, no SUBACK', async (t) => {
  const broker = await startBroker(t)
  const check = await bystanders(t, broker)
  const raw = await v4(t, broker)
  raw.sendBytes(frame(0x82, [0x00, 0x01, ...str(NUL), 0x00]))
  await expectClosedSilently(raw)
  await check()
})

test('[MQTT-1.5.4-1] a well-formed U+FFFD is a valid character: a topic holding one is delivered', async (t) => {
  const broker = await startBroker(t)
  const sub = await connect(t, broker, { protocolVersion: 5 })
  await sub.subscribeAsync('odd/\ufffd')
  const pub = await connect(t, broker, { protocolVersion: 5 })
  await pub.publishAsync('odd/\ufffd', 'ok', { qos: 1 })
  const got = await collect(sub).next()
  assert.equal(got.topic, 'odd/\ufffd')
})

test('[MQTT-3.1.2-18] 3.1.1: a user name present with the User Name Flag 0: closed without CONNACK', async (t) => {
  const broker = await startBroker(t)
  const check = await bystanders(t, broker)
  const raw = await RawClient.open(t, broker, 4)
  raw.sendBytes(connectBytes(4, { flags: 0x02, rest: str('alice') }))
  await expectClosedSilently(raw)
  await check()
})

test('[MQTT-3.1.2-22] 3.1.1: the Password Flag without the User Name Flag: closed without CONNACK', async (t) => {
  const broker = await startBroker(t)
  const check = await bystanders(t, broker)
  const raw = await RawClient.open(t, broker, 4)
  raw.sendBytes(connectBytes(4, { flags: 0x42, rest: str('secret') }))
  await expectClosedSilently(raw)
  await check()
})

test('MQTT 5 allows a password without a user name (3.1.1 rule [MQTT-3.1.2-22] only)', async (t) => {
  const broker = await startBroker(t)
  const raw = await RawClient.open(t, broker, 5)
  raw.sendBytes(connectBytes(5, { flags: 0x42, rest: str('secret') }))
  assert.equal((await raw.expect('connack')).reasonCode, 0)
})

test('bytes left over after an MQTT 5 CONNECT payload: CONNACK 0x81, then closed', async (t) => {
  const broker = await startBroker(t)
  const check = await bystanders(t, broker)
  const raw = await RawClient.open(t, broker, 5)
  raw.sendBytes(connectBytes(5, { rest: [0x01, 0x02, 0x03] }))
  assert.equal((await raw.expect('connack')).reasonCode, 0x81)
  await raw.expectClosed()
  await check()
})

test('[MQTT-3.8.3-2] an MQTT 5 SUBSCRIBE without a topic filter: DISCONNECT 0x82', async (t) => {
  const broker = await startBroker(t)
  const check = await bystanders(t, broker)
  const raw = await v5(t, broker)
  raw.sendBytes(frame(0x82, [0x00, 0x01, ...props()]))
  await expectDisconnect(raw, 0x82)
  assert.equal(broker.stats.refused.protocolError, 1)
  await check()
})

test('[MQTT-3.8.3-3] a 3.1.1 SUBSCRIBE without a topic filter closes the connection, no SUBACK', async (t) => {
  const broker = await startBroker(t)
  const check = await bystanders(t, broker)
  const raw = await v4(t, broker)
  raw.sendBytes(frame(0x82, [0x00, 0x01]))
  await expectClosedSilently(raw)
  await check()
})

test('[MQTT-3.10.3-2] an UNSUBSCRIBE without a topic filter: DISCONNECT 0x82', async (t) => {
  const broker = await startBroker(t)
  const check = await bystanders(t, broker)
  const raw = await v5(t, broker)
  raw.sendBytes(frame(0xa2, [0x00, 0x01, ...props()]))
  await expectDisconnect(raw, 0x82)
  await check()
})

test('[MQTT-2.2.1-3] SUBSCRIBE with packet identifier 0: DISCONNECT 0x82', async (t) => {
  const broker = await startBroker(t)
  const check = await bystanders(t, broker)
  const raw = await v5(t, broker)
  raw.sendBytes(frame(0x82, [0x00, 0x00, ...props(), ...str('a'), 0x00]))
  await expectDisconnect(raw, 0x82)
  await check()
})

test('[MQTT-2.2.1-3] UNSUBSCRIBE with packet identifier 0: DISCONNECT 0x82', async (t) => {
  const broker = await startBroker(t)
  const check = await bystanders(t, broker)
  const raw = await v5(t, broker)
  raw.sendBytes(frame(0xa2, [0x00, 0x00, ...props(), ...str('a')]))
  await expectDisconnect(raw, 0x82)
  await check()
})

test('[MQTT-2.2.1-3] a QoS 1 PUBLISH with packet identifier 0: DISCONNECT 0x82, not routed', async (t) => {
  const broker = await startBroker(t)
  const check = await bystanders(t, broker)
  const watcher = await connect(t, broker, { protocolVersion: 5 })
  await watcher.subscribeAsync('zero/id')
  const raw = await v5(t, broker)
  raw.sendBytes(frame(0x32, [...str('zero/id'), 0x00, 0x00, ...props(), 0x78]))
  await expectDisconnect(raw, 0x82)
  await pingRoundTrip(watcher)
  assert.equal(collect(watcher).messages.length, 0)
  await check()
})

test('[MQTT-2.2.1-3] a 3.1.1 QoS 2 PUBLISH with packet identifier 0 closes the connection', async (t) => {
  const broker = await startBroker(t)
  const check = await bystanders(t, broker)
  const raw = await v4(t, broker)
  raw.sendBytes(frame(0x34, [...str('zero/id'), 0x00, 0x00, 0x78]))
  await expectClosedSilently(raw)
  await check()
})

test('a reserved packet type 0 is refused from its fixed header, before its body arrives (0x81)', async (t) => {
  const broker = await startBroker(t)
  const check = await bystanders(t, broker)
  const raw = await v5(t, broker)
  raw.sendBytes([0x00, 0x64]) // declares 100 bytes that never come
  await expectDisconnect(raw, 0x81)
  await check()
})

test('packet type 15 (AUTH in MQTT 5) is reserved in 3.1.1: refused from its fixed header', async (t) => {
  const broker = await startBroker(t)
  const check = await bystanders(t, broker)
  const raw = await v4(t, broker)
  raw.sendBytes([0xf0, 0x64])
  await expectClosedSilently(raw)
  await check()
})

test('[MQTT-3.3.1-2] a QoS 0 PUBLISH with the DUP flag set: DISCONNECT 0x81 (MQTT 5) / closed (3.1.1), not routed', async (t) => {
  const broker = await startBroker(t)
  const check = await bystanders(t, broker)
  const watcher = await connect(t, broker, { protocolVersion: 5 })
  await watcher.subscribeAsync('dup/zero')
  const raw = await v5(t, broker)
  raw.sendBytes(frame(0x38, [...str('dup/zero'), ...props(), 0x78]))
  await expectDisconnect(raw, 0x81)
  const old = await v4(t, broker)
  old.sendBytes(frame(0x38, [...str('dup/zero'), 0x78]))
  await expectClosedSilently(old)
  await pingRoundTrip(watcher)
  assert.equal(collect(watcher).messages.length, 0)
  await check()
})

test('[MQTT-3.3.2-14] a Response Topic holding a wildcard: DISCONNECT 0x82, not routed', async (t) => {
  const broker = await startBroker(t)
  const check = await bystanders(t, broker)
  const watcher = await connect(t, broker, { protocolVersion: 5 })
  await watcher.subscribeAsync('ask')
  for (const responseTopic of ['replies/#', 'replies/+/x']) {
    const raw = await v5(t, broker)
    raw.sendBytes(frame(0x30, [...str('ask'), ...props(0x08, ...str(responseTopic)), 0x78]))
    await expectDisconnect(raw, 0x82)
  }
  const fine = await v5(t, broker)
  fine.sendBytes(frame(0x30, [...str('ask'), ...props(0x08, ...str('replies/me')), 0x78]))
  const got = await collect(watcher).next()
  assert.equal(got.packet.properties?.responseTopic, 'replies/me')
  await pingRoundTrip(watcher)
  assert.equal(collect(watcher).messages.length, 1)
  await check()
})

test('[MQTT-3.1.2-12] an MQTT 5 CONNECT with Will QoS 3: CONNACK 0x81; [MQTT-3.1.2-14] in 3.1.1: closed without CONNACK', async (t) => {
  const broker = await startBroker(t)
  const check = await bystanders(t, broker)
  const raw5 = await RawClient.open(t, broker, 5)
  raw5.sendBytes(connectBytes(5, { flags: 0x1e, rest: [...props(), ...str('will/t'), ...str('bye')] }))
  assert.equal((await raw5.expect('connack')).reasonCode, 0x81)
  await raw5.expectClosed()
  const raw4 = await RawClient.open(t, broker, 4)
  raw4.sendBytes(connectBytes(4, { flags: 0x1e, rest: [...str('will/t'), ...str('bye')] }))
  await expectClosedSilently(raw4)
  await check()
})

test('[MQTT-2.2.1-5] a PUBACK, PUBREC, PUBREL or PUBCOMP without its packet identifier, and a PINGREQ with a body: DISCONNECT 0x81', async (t) => {
  const broker = await startBroker(t)
  const check = await bystanders(t, broker)
  for (const [first, body] of [
    [0x40, []],
    [0x50, [0]],
    [0x62, []],
    [0x70, [0]],
    [0xc0, [1, 2, 3]],
  ] as Array<[number, number[]]>) {
    const raw = await v5(t, broker)
    raw.sendBytes(frame(first, body))
    await expectDisconnect(raw, 0x81)
  }
  await check()
})

test('User Properties past maxUserProperties on a packet other than PUBLISH (SUBSCRIBE, PUBACK) close the connection with 0x97, unparsed', async (t) => {
  const broker = await startBroker(t, { limits: { maxUserProperties: 2 } })
  const check = await bystanders(t, broker)
  const user = (n: number): number[] => Array.from({ length: n }, (_, i) => [0x26, ...str(`k${i}`), ...str('v')]).flat()
  const sub = await v5(t, broker)
  sub.sendBytes(frame(0x82, [0, 1, ...props(...user(3)), ...str('a/b'), 0]))
  await expectDisconnect(sub, 0x97)
  const ack = await v5(t, broker)
  ack.sendBytes(frame(0x40, [0, 9, 0x10, ...props(...user(3))]))
  await expectDisconnect(ack, 0x97)
  const fine = await v5(t, broker)
  fine.sendBytes(frame(0x82, [0, 1, ...props(...user(2)), ...str('a/b'), 0]))
  assert.deepEqual((await fine.expect('suback')).granted, [0])
  await check()
})

test('a property block over maxPropertyBytes on a CONNECT is not held against it (Authentication Data may be large): the method is answered, not the size', async (t) => {
  const broker = await startBroker(t, { limits: { maxConnectPacketSize: 262144 } })
  const raw = await RawClient.open(t, broker, 5)
  const data = Array.from({ length: 65535 }, () => 7)
  raw.sendBytes(connectBytes(5, { properties: props(0x15, ...str('big-token'), 0x16, 0xff, 0xff, ...data) }))
  assert.equal((await raw.expect('connack')).reasonCode, 0x8c) // no hook takes the method [MQTT-4.12.0-1]; not 0x97
})
