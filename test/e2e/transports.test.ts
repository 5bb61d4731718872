import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { collect, connect, pingRoundTrip, startBroker } from '../helpers.js'

const fixtures = fileURLToPath(new URL('../../../test/fixtures/tls/', import.meta.url))
const file = (name: string): string => fixtures + name
const tlsFiles = { key: file('server.key'), cert: file('server.crt') }

for (const protocolVersion of [4, 5] as const) {
  test(`WebSocket (v${protocolVersion}): QoS 0/1/2, retained and a will over ws://…/mqtt`, async (t) => {
    const broker = await startBroker(t)
    const sub = await connect(t, broker, { protocolVersion }, 'ws')
    const inbox = collect(sub)
    await sub.subscribeAsync('ws/#', { qos: 2 })
    const pub = await connect(t, broker, { protocolVersion, will: { topic: 'ws/will', payload: Buffer.from('gone'), qos: 1, retain: false } }, 'ws')
    for (const qos of [0, 1, 2] as const) await pub.publishAsync(`ws/${qos}`, `q${qos}`, { qos })
    await pub.publishAsync('ws/kept', 'r', { qos: 1, retain: true })
    assert.deepEqual(
      (await inbox.count(4)).map((m) => `${m.topic}:${m.packet.qos}`),
      ['ws/0:0', 'ws/1:1', 'ws/2:2', 'ws/kept:1'],
    )
    ;(pub as unknown as { stream: { destroy(): void } }).stream.destroy()
    assert.equal((await inbox.next()).topic, 'ws/will')
    const late = await connect(t, broker, { protocolVersion }, 'ws')
    await late.subscribeAsync('ws/kept')
    assert.equal((await collect(late).next()).packet.retain, true)
  })
}

test('WebSocket and TCP clients talk to each other', async (t) => {
  const broker = await startBroker(t)
  const wsClient = await connect(t, broker, { protocolVersion: 5 }, 'ws')
  const tcpClient = await connect(t, broker, { protocolVersion: 4 })
  await wsClient.subscribeAsync('mix')
  await tcpClient.publishAsync('mix', 'from tcp', { qos: 1 })
  assert.equal((await collect(wsClient).next()).payload.toString(), 'from tcp')
})

test('WebSocket: a plain HTTP request is answered 426 and the broker carries on', async (t) => {
  const broker = await startBroker(t)
  const url = broker.addresses.find((a) => a.name === 'ws')!.url.replace('ws://', 'http://')
  const res = await fetch(url)
  assert.equal(res.status, 426)
  await res.text()
})

test('TLS: QoS 1 and 2 over mqtts with the server certificate verified', async (t) => {
  const broker = await startBroker(t, { tls: { port: 0, ...tlsFiles } })
  const ca = readFileSync(file('ca.crt'))
  const sub = await connect(t, broker, { protocolVersion: 5, ca, servername: 'localhost' }, 'tls')
  await sub.subscribeAsync('tls/#', { qos: 2 })
  const pub = await connect(t, broker, { protocolVersion: 4, ca, servername: 'localhost' }, 'tls')
  await pub.publishAsync('tls/1', 'one', { qos: 1 })
  await pub.publishAsync('tls/2', 'two', { qos: 2 })
  assert.deepEqual(
    (await collect(sub).count(2)).map((m) => m.payload.toString()),
    ['one', 'two'],
  )
})

test('TLS with requestCert: the client certificate is checked and reaches authenticate', async (t) => {
  let seen: { subject?: { CN?: string } } | undefined
  const broker = await startBroker(t, {
    tls: { port: 0, ...tlsFiles, ca: file('ca.crt'), requestCert: true },
    hookRunner: {
      authenticate: (input) => {
        seen = input.certificate as typeof seen
        return { result: 'pass' }
      },
      authorizePublish: () => ({ result: 'pass' }),
      authorizeSubscribe: () => ({ result: 'pass' }),
      transform: (_c, m) => m,
      appliesToPublish: () => false,
    },
  })
  const ca = readFileSync(file('ca.crt'))
  const c = await connect(t, broker, { ca, servername: 'localhost', key: readFileSync(file('client.key')), cert: readFileSync(file('client.crt')) }, 'tls')
  await pingRoundTrip(c)
  assert.equal(seen?.subject?.CN, 'test-client')
  await assert.rejects(connect(t, broker, { ca, servername: 'localhost' }, 'tls')) // no certificate: refused
})

test('secure WebSocket: wss://…/mqtt', async (t) => {
  const broker = await startBroker(t, { wss: { port: 0, ...tlsFiles } })
  const ca = readFileSync(file('ca.crt'))
  const c = await connect(t, broker, { protocolVersion: 5, ca, servername: 'localhost' } as object, 'wss')
  await c.subscribeAsync('wss/t', { qos: 1 })
  await broker.publish({ topic: 'wss/t', payload: 'secure', qos: 1 })
  assert.equal((await collect(c).next()).payload.toString(), 'secure')
})

test('[security] a non-loopback listener refuses anonymous clients unless allowAnonymous', async (t) => {
  const refusing = await startBroker(t, { host: '0.0.0.0' })
  await assert.rejects(connect(t, refusing, { protocolVersion: 5 }), /Not authorized|not authorized|0x87|135/i)
  const open = await startBroker(t, { host: '0.0.0.0', allowAnonymous: true })
  const c = await connect(t, open)
  assert.equal(c.connected, true)
})

test('[MQTT-6.0.0-1] a CONNECT sent in a WebSocket text frame closes the connection (1003) without a CONNACK', async (t) => {
  const { WebSocket } = await import('ws')
  const mqttPacket = (await import('mqtt-packet')).default
  const broker = await startBroker(t, { ws: { port: 0, path: '/mqtt' } })
  const url = broker.addresses.find((a) => a.name === 'ws')!.url
  const ws = new WebSocket(url, 'mqtt')
  await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject))
  const got: Buffer[] = []
  ws.on('message', (data) => got.push(data as Buffer))
  const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)))
  ws.send(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: 'texty', keepalive: 30 }), { binary: false })
  assert.equal(await closed, 1003)
  assert.equal(got.length, 0, 'no CONNACK')
  const c = await connect(t, broker)
  await pingRoundTrip(c)
})
