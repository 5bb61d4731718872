import assert from 'node:assert/strict'
import { test, type TestContext } from 'node:test'
import type { Broker } from '../../core/index.js'
import { collect, connect, once, RawClient, startBroker } from '../helpers.js'
import { bystanders } from './wire.js'

async function v5(t: TestContext, broker: Broker): Promise<RawClient> {
  const raw = await RawClient.open(t, broker, 5)
  const ack = await raw.connect({}, 5)
  assert.equal(ack.reasonCode, 0)
  return raw
}

test('[MQTT-3.1.0-1] a first packet that is not CONNECT closes the connection', async (t) => {
  const broker = await startBroker(t)
  const check = await bystanders(t, broker)
  const raw = await RawClient.open(t, broker)
  raw.sendBytes([0xc0, 0x00]) // PINGREQ
  await raw.expectClosed()
  assert.equal(raw.packets.length, 0)
  await check()
})

test('[MQTT-3.1.0-2] a second CONNECT is a protocol error (DISCONNECT 0x82)', async (t) => {
  const broker = await startBroker(t)
  const check = await bystanders(t, broker)
  const raw = await v5(t, broker)
  raw.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId: 'again', clean: true, keepalive: 30 }, 5)
  assert.equal((await raw.expect('disconnect')).reasonCode, 0x82)
  await raw.expectClosed()
  await check()
})

test('[MQTT-2.2.2-2] reserved flag bits set: malformed packet (DISCONNECT 0x81)', async (t) => {
  const broker = await startBroker(t)
  const check = await bystanders(t, broker)
  const raw = await v5(t, broker)
  // SUBSCRIBE must have flags 0b0010; this one has 0b0000 (id 1, no properties, filter "a", QoS 0)
  raw.sendBytes([0x80, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, 0x61, 0x00])
  assert.equal((await raw.expect('disconnect')).reasonCode, 0x81)
  await raw.expectClosed()
  await check()
})

test('[MQTT-3.3.1-4] PUBLISH with both QoS bits set is malformed', async (t) => {
  const broker = await startBroker(t)
  const check = await bystanders(t, broker)
  const raw = await v5(t, broker)
  raw.sendBytes([0x36, 0x06, 0x00, 0x01, 0x61, 0x00, 0x01, 0x00])
  assert.equal((await raw.expect('disconnect')).reasonCode, 0x81)
  await check()
})

test('[MQTT-1.5.5-1] a malformed remaining length closes the connection (0x81)', async (t) => {
  const broker = await startBroker(t)
  const check = await bystanders(t, broker)
  const raw = await v5(t, broker)
  const errored = once(broker, 'clientError')
  raw.sendBytes([0x30, 0xff, 0xff, 0xff, 0xff, 0x7f])
  assert.equal((await raw.expect('disconnect')).reasonCode, 0x81)
  const [client, err] = (await errored) as [{ id: string } | undefined, Error & { code?: string }]
  assert.ok(client?.id.startsWith('raw-'))
  assert.equal(err.code, 'HOOKMQ_ERR_MALFORMED_PACKET')
  await raw.expectClosed()
  await check()
})

test('a truncated packet (fields longer than the packet) is malformed (0x81)', async (t) => {
  const broker = await startBroker(t)
  const check = await bystanders(t, broker)
  const raw = await v5(t, broker)
  // PUBLISH, remaining length 4, but the topic claims 50 bytes
  raw.sendBytes([0x30, 0x04, 0x00, 0x32, 0x61, 0x62])
  assert.equal((await raw.expect('disconnect')).reasonCode, 0x81)
  await raw.expectClosed()
  await check()
})

test('a packet cut off by the peer closing: the connection ends, its will is sent', async (t) => {
  const broker = await startBroker(t)
  const watcher = await connect(t, broker)
  await watcher.subscribeAsync('cut/will')
  const raw = await RawClient.open(t, broker, 4)
  await raw.connect({ clientId: 'cut', will: { topic: 'cut/will', payload: Buffer.from('cut'), qos: 0, retain: false } })
  raw.sendBytes([0x30, 0x10, 0x00, 0x03]) // half a PUBLISH
  raw.socket.end()
  assert.equal((await collect(watcher).next()).payload.toString(), 'cut')
})

test('[MQTT-1.5.4-1] an invalid UTF-8 topic is a malformed packet (0x81)', async (t) => {
  const broker = await startBroker(t)
  const check = await bystanders(t, broker)
  const raw = await v5(t, broker)
  // PUBLISH QoS 0, topic "a" 0xC3 0x28 (invalid sequence), empty properties, payload "x"
  raw.sendBytes([0x30, 0x07, 0x00, 0x03, 0x61, 0xc3, 0x28, 0x00, 0x78])
  assert.equal((await raw.expect('disconnect')).reasonCode, 0x81)
  await raw.expectClosed()
  await check()
})

test('[MQTT-3.3.2-2] a wildcard in a PUBLISH topic closes with 0x90', async (t) => {
  const broker = await startBroker(t)
  const check = await bystanders(t, broker)
  const raw = await v5(t, broker)
  raw.sendBytes([0x30, 0x06, 0x00, 0x03, 0x61, 0x2f, 0x23, 0x00]) // topic "a/#"
  assert.equal((await raw.expect('disconnect')).reasonCode, 0x90)
  await raw.expectClosed()
  await check()
})

test('[MQTT-3.2.2-15] an over-sized packet is refused from its header (0x95) before the body arrives', async (t) => {
  const broker = await startBroker(t, { limits: { maxPacketSize: 4096 } })
  const check = await bystanders(t, broker)
  const raw = await v5(t, broker)
  raw.sendBytes([0x30, 0x80, 0x80, 0x80, 0x01]) // remaining length 2 MiB, no body
  assert.equal((await raw.expect('disconnect')).reasonCode, 0x95)
  await raw.expectClosed()
  await check()
})

test('[MQTT-3.1.2-2] an unsupported protocol level gets CONNACK 0x01', async (t) => {
  const broker = await startBroker(t)
  const raw = await RawClient.open(t, broker, 4)
  raw.sendBytes([0x10, 0x0e, 0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x06, 0x02, 0x00, 0x1e, 0x00, 0x02, 0x69, 0x64])
  assert.equal((await raw.expect('connack')).returnCode, 1)
  await raw.expectClosed()
})

test('a v3.1.1 client with bad input is closed without DISCONNECT (3.1.1 has none from servers)', async (t) => {
  const broker = await startBroker(t)
  const check = await bystanders(t, broker)
  const raw = await RawClient.open(t, broker, 4)
  await raw.connect({}, 4)
  raw.sendBytes([0x30, 0x06, 0x00, 0x03, 0x61, 0x2f, 0x2b, 0x00]) // topic "a/+"
  await raw.expectClosed()
  assert.equal(raw.packets.filter((p) => p.cmd === 'disconnect').length, 0)
  await check()
})

test('a client that never sends CONNECT is closed after connectTimeoutMs', async (t) => {
  const broker = await startBroker(t, { limits: { connectTimeoutMs: 300 } })
  const raw = await RawClient.open(t, broker)
  await raw.expectClosed(3000)
})
