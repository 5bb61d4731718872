import assert from 'node:assert/strict'
import { test } from 'node:test'
import { collect, connect, pingRoundTrip, RawClient, startBroker } from '../helpers.js'
import { bystanders, connectBytes, expectDisconnect, frame, props, str, v5 } from './wire.js'

// MQTT 5 properties: each may appear only in the packets the spec lists, and all
// but User Property at most once; the broker refuses the packet (0x82) rather
// than forwarding what the codec made of it.

const CONTENT_TYPE = (s: string): number[] => [0x03, ...str(s)]
const PFI = (v: number): number[] => [0x01, v]

test('[MQTT-3.8.2] a Session Expiry Interval in SUBSCRIBE (not allowed there): DISCONNECT 0x82', async (t) => {
  const broker = await startBroker(t)
  const check = await bystanders(t, broker)
  const raw = await v5(t, broker)
  raw.sendBytes(frame(0x82, [0x00, 0x01, ...props(0x11, 0, 0, 0, 10), ...str('a'), 0x00]))
  await expectDisconnect(raw, 0x82)
  assert.equal(raw.packets.filter((p) => p.cmd === 'suback').length, 0)
  await check()
})

test('a server-only property (Assigned Client Identifier) in a client PUBLISH: DISCONNECT 0x82, not routed', async (t) => {
  const broker = await startBroker(t)
  const check = await bystanders(t, broker)
  const watcher = await connect(t, broker, { protocolVersion: 5 })
  await watcher.subscribeAsync('props/x')
  const raw = await v5(t, broker)
  raw.sendBytes(frame(0x30, [...str('props/x'), ...props(0x12, ...str('me')), 0x78]))
  await expectDisconnect(raw, 0x82)
  await pingRoundTrip(watcher)
  assert.equal(collect(watcher).messages.length, 0)
  await check()
})

test('a Will Delay Interval in PUBLISH (a will property only): DISCONNECT 0x82', async (t) => {
  const broker = await startBroker(t)
  const check = await bystanders(t, broker)
  const raw = await v5(t, broker)
  raw.sendBytes(frame(0x30, [...str('props/x'), ...props(0x18, 0, 0, 0, 5), 0x78]))
  await expectDisconnect(raw, 0x82)
  await check()
})

test('two Content Types in a retained PUBLISH: DISCONNECT 0x82, nothing retained or forwarded', async (t) => {
  const broker = await startBroker(t)
  const check = await bystanders(t, broker)
  const raw = await v5(t, broker)
  raw.sendBytes(frame(0x31, [...str('poison/ct'), ...props(...CONTENT_TYPE('a'), ...CONTENT_TYPE('b')), 0x78]))
  await expectDisconnect(raw, 0x82)
  const late = await connect(t, broker, { protocolVersion: 5 })
  await late.subscribeAsync('poison/ct')
  await pingRoundTrip(late)
  assert.equal(collect(late).messages.length, 0)
  await check()
})

test('two Payload Format Indicators of 0 (a repeat the codec would keep silently): DISCONNECT 0x82', async (t) => {
  const broker = await startBroker(t)
  const check = await bystanders(t, broker)
  const raw = await v5(t, broker)
  raw.sendBytes(frame(0x30, [...str('props/x'), ...props(...PFI(0), ...PFI(0)), 0x78]))
  await expectDisconnect(raw, 0x82)
  await check()
})

test('User Property may repeat, with the same name too: forwarded in order', async (t) => {
  const broker = await startBroker(t)
  const sub = await connect(t, broker, { protocolVersion: 5 })
  await sub.subscribeAsync('props/up')
  const raw = await v5(t, broker)
  raw.sendBytes(frame(0x30, [...str('props/up'), ...props(0x26, ...str('k'), ...str('1'), 0x26, ...str('k'), ...str('2')), 0x78]))
  const got = await collect(sub).next()
  assert.deepEqual({ ...got.packet.properties?.userProperties }, { k: ['1', '2'] })
})

test('two Session Expiry Intervals in CONNECT: CONNACK 0x82, then closed', async (t) => {
  const broker = await startBroker(t)
  const check = await bystanders(t, broker)
  const raw = await RawClient.open(t, broker, 5)
  raw.sendBytes(connectBytes(5, { properties: props(0x11, 0, 0, 0, 10, 0x11, 0, 0, 0, 20) }))
  assert.equal((await raw.expect('connack')).reasonCode, 0x82)
  await raw.expectClosed()
  await check()
})

test('a Session Expiry Interval among the will properties: CONNACK 0x82, then closed', async (t) => {
  const broker = await startBroker(t)
  const check = await bystanders(t, broker)
  const raw = await RawClient.open(t, broker, 5)
  raw.sendBytes(connectBytes(5, { flags: 0x06, rest: [...props(0x11, 0, 0, 0, 10), ...str('will/t'), ...str('bye')] }))
  assert.equal((await raw.expect('connack')).reasonCode, 0x82)
  await raw.expectClosed()
  await check()
})

test('[MQTT-3.3.2-4] the Payload Format Indicator reaches subscribers unaltered (1, 0, absent)', async (t) => {
  const broker = await startBroker(t)
  const sub = await connect(t, broker, { protocolVersion: 5 })
  await sub.subscribeAsync('pfi/#')
  const raw = await v5(t, broker)
  raw.sendBytes(frame(0x30, [...str('pfi/one'), ...props(...PFI(1)), 0x78]))
  raw.sendBytes(frame(0x30, [...str('pfi/zero'), ...props(...PFI(0)), 0x78]))
  raw.sendBytes(frame(0x30, [...str('pfi/none'), ...props(), 0x78]))
  const got = await collect(sub).count(3)
  assert.deepEqual(
    got.map((m) => [m.topic, m.packet.properties?.payloadFormatIndicator]),
    [
      ['pfi/one', true],
      ['pfi/zero', false],
      ['pfi/none', undefined],
    ],
  )
})

test('a Payload Format Indicator other than 0 or 1 (it could not be forwarded unaltered): DISCONNECT 0x82', async (t) => {
  const broker = await startBroker(t)
  const check = await bystanders(t, broker)
  const raw = await v5(t, broker)
  raw.sendBytes(frame(0x30, [...str('pfi/two'), ...props(...PFI(2)), 0x78]))
  await expectDisconnect(raw, 0x82)
  await check()
})

test('a property length that runs past its entries is malformed: DISCONNECT 0x81', async (t) => {
  const broker = await startBroker(t)
  const check = await bystanders(t, broker)
  const raw = await v5(t, broker)
  // properties say 3 bytes: Content Type "ab" needs 5
  raw.sendBytes(frame(0x30, [...str('props/x'), 0x03, ...CONTENT_TYPE('ab'), 0x78]))
  await expectDisconnect(raw, 0x81)
  await check()
})
