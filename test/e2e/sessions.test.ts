import assert from 'node:assert/strict'
import net from 'node:net'
import { test } from 'node:test'
import { collect, connect, once, pingRoundTrip, RawClient, startBroker, until } from '../helpers.js'

test('[MQTT-4.4.0-1] persistent session (v3.1.1) gets QoS 1 and 2 messages published while away, QoS 2 exactly once', async (t) => {
  const broker = await startBroker(t)
  const opts = { clientId: 'away-311', clean: false, protocolVersion: 4 as const }
  const first = await connect(t, broker, opts)
  await first.subscribeAsync('away/#', { qos: 2 })
  await first.endAsync()
  const pub = await connect(t, broker)
  await pub.publishAsync('away/1', 'q1', { qos: 1 })
  await pub.publishAsync('away/2', 'q2', { qos: 2 })
  await pub.publishAsync('away/0', 'q0', { qos: 0 }) // QoS 0 is not queued for an offline session
  const back = await connect(t, broker, opts)
  assert.equal(back.connected, true)
  const inbox = collect(back)
  const got = await inbox.count(2)
  assert.deepEqual(
    got.map((m) => `${m.topic}:${m.packet.qos}`),
    ['away/1:1', 'away/2:2'],
  )
  await pingRoundTrip(back)
  assert.equal(inbox.messages.length, 2)
})

test('[MQTT-4.4.0-1] v5 session with expiry: sessionPresent and unacknowledged QoS 2 redelivered with DUP exactly once', async (t) => {
  const broker = await startBroker(t)
  const raw = await RawClient.open(t, broker, 5)
  const connack = await raw.connect({ clientId: 'dup-v5', clean: true, properties: { sessionExpiryInterval: 60 } }, 5)
  assert.equal(connack.sessionPresent, false)
  raw.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'dup/x', qos: 2 }] }, 5)
  await raw.expect('suback')
  await broker.publish({ topic: 'dup/x', payload: 'once', qos: 2 })
  const first = await raw.expect('publish')
  assert.equal(first.dup, false)
  raw.socket.destroy() // gone without PUBREC
  await once(broker, 'clientDisconnected')
  const again = await RawClient.open(t, broker, 5)
  const ack2 = await again.connect({ clientId: 'dup-v5', clean: false, properties: { sessionExpiryInterval: 60 } }, 5)
  assert.equal(ack2.sessionPresent, true) // [MQTT-3.2.2-2]
  const resent = await again.expect('publish')
  assert.equal(resent.dup, true)
  assert.equal(resent.messageId, first.messageId)
  assert.equal(resent.payload.toString(), 'once')
  again.send({ cmd: 'pubrec', messageId: resent.messageId! }, 5)
  const rel = await again.expect('pubrel')
  assert.equal(rel.messageId, resent.messageId)
  // reconnect again between PUBREC and PUBCOMP: the PUBREL is resent, not the PUBLISH
  again.socket.destroy()
  await once(broker, 'clientDisconnected')
  const third = await RawClient.open(t, broker, 5)
  await third.connect({ clientId: 'dup-v5', clean: false, properties: { sessionExpiryInterval: 60 } }, 5)
  const rel2 = await third.expect('pubrel')
  assert.equal(rel2.messageId, resent.messageId)
  third.send({ cmd: 'pubcomp', messageId: rel2.messageId! }, 5)
  third.send({ cmd: 'pingreq' }, 5)
  await third.expect('pingresp')
  assert.equal(third.packets.filter((p) => p.cmd === 'publish').length, 0)
})

test('[MQTT-3.1.2-4] clean start discards the session', async (t) => {
  const broker = await startBroker(t)
  const first = await connect(t, broker, { clientId: 'cs', clean: false })
  await first.subscribeAsync('cs/t', { qos: 1 })
  await first.endAsync()
  await broker.publish({ topic: 'cs/t', payload: 'lost', qos: 1 })
  const back = await connect(t, broker, { clientId: 'cs', clean: true })
  const inbox = collect(back)
  await pingRoundTrip(back)
  assert.equal(inbox.messages.length, 0)
  await broker.publish({ topic: 'cs/t', payload: 'x', qos: 1 })
  await pingRoundTrip(back)
  assert.equal(inbox.messages.length, 0) // subscription went with the session
})

test('session expiry: a v5 session ends after its expiry interval', async (t) => {
  const broker = await startBroker(t)
  const opts = { clientId: 'exp', clean: false, protocolVersion: 5 as const, properties: { sessionExpiryInterval: 1 } }
  const c = await connect(t, broker, opts)
  await c.subscribeAsync('exp/t', { qos: 1 })
  await c.endAsync()
  const started = Date.now()
  await until(() => !broker.sessions.sessions.has('exp'), 4000, 'the session to expire')
  assert.equal(broker.sessions.sessions.has('exp'), false)
  assert.ok(Date.now() - started >= 900, 'session ended before its interval')
  const back = await connect(t, broker, opts)
  const connack = await new Promise((resolve) => resolve((back as unknown as { connackPacket?: { sessionPresent: boolean } }).connackPacket))
  assert.equal((connack as { sessionPresent: boolean } | undefined)?.sessionPresent ?? false, false)
})

test('a v5 session with expiry 0 ends with the connection', async (t) => {
  const broker = await startBroker(t)
  const c = await connect(t, broker, { clientId: 'e0', protocolVersion: 5, clean: false })
  await c.subscribeAsync('e0/t')
  const gone = once(broker, 'clientDisconnected')
  await c.endAsync()
  await gone
  assert.equal(broker.sessions.sessions.has('e0'), false)
})

test('[MQTT-3.3.2-5] message expiry: an expired queued message is not delivered, the remaining interval is sent', async (t) => {
  const broker = await startBroker(t)
  const opts = { clientId: 'mexp', clean: false, protocolVersion: 5 as const, properties: { sessionExpiryInterval: 60 } }
  const c = await connect(t, broker, opts)
  await c.subscribeAsync('mexp/#', { qos: 1 })
  await c.endAsync()
  const pub = await connect(t, broker, { protocolVersion: 5 })
  await pub.publishAsync('mexp/short', 'gone', { qos: 1, properties: { messageExpiryInterval: 1 } })
  await pub.publishAsync('mexp/long', 'kept', { qos: 1, properties: { messageExpiryInterval: 100 } })
  const wait = Date.now() + 1100
  while (Date.now() < wait) await new Promise((r) => setTimeout(r, 50))
  const back = await connect(t, broker, opts)
  const inbox = collect(back)
  const m = await inbox.next()
  assert.equal(m.topic, 'mexp/long')
  const left = m.packet.properties?.messageExpiryInterval ?? 0
  assert.ok(left >= 98 && left < 100, `remaining interval ${left}`) // [MQTT-3.3.2-6]
  await pingRoundTrip(back)
  assert.equal(inbox.messages.length, 1)
})

test('[MQTT-3.1.4-3] client-id takeover closes the old connection (v5 reason 0x8E)', async (t) => {
  const broker = await startBroker(t)
  const old = await connect(t, broker, { clientId: 'dup-id', protocolVersion: 5 })
  const reason = new Promise<number | undefined>((resolve) => old.on('disconnect', (p) => resolve(p.reasonCode)))
  const fresh = await connect(t, broker, { clientId: 'dup-id', protocolVersion: 5 })
  assert.equal(await reason, 0x8e)
  assert.equal(fresh.connected, true)
  const inbox = collect(fresh)
  await fresh.subscribeAsync('take/over')
  await broker.publish({ topic: 'take/over', payload: 'new' })
  assert.equal((await inbox.next()).payload.toString(), 'new')
})

test('[MQTT-3.1.3-6] an empty client id: v5 gets an assigned id, v3.1.1 needs clean session', async (t) => {
  const broker = await startBroker(t)
  const raw5 = await RawClient.open(t, broker, 5)
  const ack5 = await raw5.connect({ clientId: '' }, 5)
  assert.equal(ack5.reasonCode, 0)
  assert.match(ack5.properties?.assignedClientIdentifier ?? '', /^hookmq-/) // [MQTT-3.2.2-16]
  const raw4 = await RawClient.open(t, broker, 4)
  const ack4 = await raw4.connect({ clientId: '', clean: true }, 4)
  assert.equal(ack4.returnCode, 0)
  const raw4b = await RawClient.open(t, broker, 4)
  // CONNECT v3.1.1, clean session 0, keep-alive 30, empty client id (MQTT.js refuses to send it)
  raw4b.sendBytes([0x10, 12, 0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 0x00, 0, 30, 0, 0])
  const ack4b = await raw4b.expect('connack') // [MQTT-3.1.3-8]
  assert.equal(ack4b.returnCode, 2)
  await raw4b.expectClosed()
})

test('wills: sent on abrupt close, not on a clean DISCONNECT', async (t) => {
  const broker = await startBroker(t)
  const watcher = await connect(t, broker)
  const inbox = collect(watcher)
  await watcher.subscribeAsync('will/#', { qos: 1 })
  const polite = await connect(t, broker, { clientId: 'polite', will: { topic: 'will/polite', payload: Buffer.from('bye'), qos: 1, retain: false } })
  await polite.endAsync()
  const rude = await connect(t, broker, { clientId: 'rude', will: { topic: 'will/rude', payload: Buffer.from('dead'), qos: 1, retain: false } })
  ;(rude as unknown as { stream: net.Socket }).stream.destroy()
  const m = await inbox.next()
  assert.equal(m.topic, 'will/rude')
  assert.equal(m.payload.toString(), 'dead')
  await pingRoundTrip(watcher)
  assert.equal(inbox.messages.length, 1)
})

test('[MQTT-3.1.2-22] keep-alive: a silent client is closed after 1.5x and its will sent', async (t) => {
  const broker = await startBroker(t)
  const watcher = await connect(t, broker)
  const inbox = collect(watcher)
  await watcher.subscribeAsync('ka/will')
  const timedOut = once(broker, 'keepaliveTimeout')
  const raw = await RawClient.open(t, broker, 5)
  const started = Date.now()
  await raw.connect({ clientId: 'silent', keepalive: 1, will: { topic: 'ka/will', payload: Buffer.from('timeout'), qos: 0, retain: false } }, 5)
  await timedOut
  const d = await raw.expect('disconnect')
  assert.equal(d.reasonCode, 0x8d)
  assert.ok(Date.now() - started >= 1400, 'closed before 1.5x keep-alive')
  assert.equal((await inbox.next()).payload.toString(), 'timeout')
})

test('will delay: sent after the delay; not sent when the session resumes first', async (t) => {
  const broker = await startBroker(t)
  const watcher = await connect(t, broker)
  const inbox = collect(watcher)
  await watcher.subscribeAsync('wd/#')
  const delayed = (id: string) => ({
    clientId: id,
    protocolVersion: 5 as const,
    clean: false,
    properties: { sessionExpiryInterval: 60 },
    will: { topic: `wd/${id}`, payload: Buffer.from(id), qos: 0 as const, retain: false, properties: { willDelayInterval: 1 } },
  })
  const a = await connect(t, broker, delayed('late'))
  const b = await connect(t, broker, delayed('back'))
  const dropped = Date.now()
  ;(a as unknown as { stream: net.Socket }).stream.destroy()
  ;(b as unknown as { stream: net.Socket }).stream.destroy()
  await connect(t, broker, { ...delayed('back'), will: undefined }) // [MQTT-3.1.3-9] resumes: no will
  const m = await inbox.next(4000)
  assert.equal(m.topic, 'wd/late')
  assert.ok(Date.now() - dropped >= 900, 'will sent before its delay')
  await pingRoundTrip(watcher)
  assert.equal(inbox.messages.length, 1)
})

test('will delay longer than the session: the will goes when the session ends', async (t) => {
  const broker = await startBroker(t)
  const watcher = await connect(t, broker)
  const inbox = collect(watcher)
  await watcher.subscribeAsync('we/#')
  const c = await connect(t, broker, {
    clientId: 'we',
    protocolVersion: 5,
    clean: true,
    properties: { sessionExpiryInterval: 1 },
    will: { topic: 'we/x', payload: Buffer.from('end'), qos: 0, retain: false, properties: { willDelayInterval: 3600 } },
  })
  ;(c as unknown as { stream: net.Socket }).stream.destroy()
  const m = await inbox.next(4000)
  assert.equal(m.payload.toString(), 'end')
})

test('[MQTT-3.14.4-3] DISCONNECT with reason 0x04 sends the will; DISCONNECT may shorten the session expiry', async (t) => {
  const broker = await startBroker(t)
  const watcher = await connect(t, broker)
  await watcher.subscribeAsync('w4/#')
  const raw = await RawClient.open(t, broker, 5)
  await raw.connect(
    { clientId: 'w4', properties: { sessionExpiryInterval: 600 }, will: { topic: 'w4/will', payload: Buffer.from('asked'), qos: 0, retain: false } },
    5,
  )
  const gone = once(broker, 'clientDisconnected')
  raw.send({ cmd: 'disconnect', reasonCode: 0x04, properties: { sessionExpiryInterval: 0 } }, 5)
  assert.equal((await collect(watcher).next()).payload.toString(), 'asked')
  await gone
  assert.equal(broker.sessions.sessions.has('w4'), false)
})

test('[MQTT-3.14.2-2] DISCONNECT may not set a session expiry when CONNECT had 0 (0x82)', async (t) => {
  const broker = await startBroker(t)
  const raw = await RawClient.open(t, broker, 5)
  await raw.connect({ clientId: 'se0' }, 5)
  raw.send({ cmd: 'disconnect', reasonCode: 0, properties: { sessionExpiryInterval: 60 } }, 5)
  assert.equal((await raw.expect('disconnect')).reasonCode, 0x82)
})
