import assert from 'node:assert/strict'
import net from 'node:net'
import { test, type TestContext } from 'node:test'
import { fileURLToPath } from 'node:url'
import { WebSocket } from 'ws'
import type { Broker } from '../../core/index.js'
import { connect, defer, once, pingRoundTrip, portOf, RawClient, startBroker, until, urlOf } from '../helpers.js'
import { bystanders } from '../protocol/wire.js'

// Cost bounded per client before login (issue #12, item 4): idle and trickling
// sockets on every listener, maxConnections across listeners, CONNECT size and
// the bytes all partial CONNECTs may hold together.

const fixtures = fileURLToPath(new URL('../../../test/fixtures/tls/', import.meta.url))
const tlsFiles = { key: fixtures + 'server.key', cert: fixtures + 'server.crt' }

/** A plain TCP socket to `port`, destroyed after the test; `closed` resolves with when the server closed it. */
async function socketTo(t: TestContext, port: number): Promise<{ socket: net.Socket; closed: Promise<number> }> {
  const socket = net.connect(port, '127.0.0.1')
  socket.on('error', () => {})
  socket.resume() // read (and drop) what the server says, so its close is seen
  defer(t, () => socket.destroy())
  const closed = new Promise<number>((resolve) => socket.once('close', () => resolve(Date.now())))
  await once(socket, 'connect')
  return { socket, closed }
}

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([p, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`timed out: ${what}`)), ms).unref())])
}

/** An MQTT.js client over WebSocket. */
function wsClient(t: TestContext, broker: Broker): Promise<import('mqtt').MqttClient> {
  return connect(t, broker, {}, 'ws')
}

test('WebSocket: a socket that never sends an HTTP upgrade is closed after connectTimeoutMs, and counted', async (t) => {
  const broker = await startBroker(t, { limits: { connectTimeoutMs: 300 } })
  const check = await bystanders(t, broker)
  const started = Date.now()
  const silent = await socketTo(t, portOf(broker, 'ws'))
  const trickling = await socketTo(t, portOf(broker, 'ws'))
  trickling.socket.write('GET /mqtt HTTP/1.1\r\n')
  const timer = setInterval(() => trickling.socket.write('X-A: b\r\n'), 50)
  defer(t, () => clearInterval(timer))
  const closedAt = await within(silent.closed, 3000, 'the silent socket to close')
  await within(trickling.closed, 3000, 'the trickling socket to close')
  assert.ok(closedAt - started >= 250, 'not before connectTimeoutMs')
  assert.equal(broker.stats.refused.connectTimeout, 2)
  await check()
})

test('WebSocket: an HTTP request answered 426 does not keep its socket past connectTimeoutMs', async (t) => {
  const broker = await startBroker(t, { limits: { connectTimeoutMs: 300 } })
  const { socket, closed } = await socketTo(t, portOf(broker, 'ws'))
  socket.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n')
  await within(closed, 3000, 'the keep-alive HTTP socket to close')
})

test('WebSocket: an upgraded socket that sends no CONNECT is closed after connectTimeoutMs; a connected one stays', async (t) => {
  const broker = await startBroker(t, { limits: { connectTimeoutMs: 300 } })
  const client = await wsClient(t, broker) // accepted, upgraded and connected: no longer pending
  const ws = new WebSocket(urlOf(broker, 'ws'), 'mqtt')
  defer(t, () => ws.terminate())
  await once(ws, 'open')
  const started = Date.now()
  await within(once(ws, 'close'), 4000, 'the upgraded socket without CONNECT to close')
  assert.ok(Date.now() - started >= 200)
  await pingRoundTrip(client) // past the deadline and a sweep: the connected client is still served
})

test('TLS: a socket that never completes its handshake is closed after connectTimeoutMs; a TLS client that did stays', async (t) => {
  const broker = await startBroker(t, { ws: false, tls: { port: 0, ...tlsFiles }, limits: { connectTimeoutMs: 300 } })
  const client = await connect(t, broker, { rejectUnauthorized: false }, 'tls')
  const { closed } = await socketTo(t, portOf(broker, 'tls'))
  await within(closed, 3000, 'the socket without handshake to close')
  assert.equal(broker.stats.refused.connectTimeout, 1)
  await pingRoundTrip(client) // its TCP socket was taken off the pending list when the handshake completed
})

test('maxConnections counts every listener, WebSocket sockets before their upgrade included', async (t) => {
  const broker = await startBroker(t, { limits: { maxConnections: 3 } })
  await connect(t, broker) // TCP
  await wsClient(t, broker) // WebSocket
  const idle = await socketTo(t, portOf(broker, 'ws')) // WebSocket, not upgraded: counts too
  await until(() => broker.openSockets === 3, 2000, 'three sockets open')
  const tcp = await RawClient.open(t, broker, 4)
  await tcp.expectClosed()
  assert.equal(tcp.packets.length, 0)
  const ws = await socketTo(t, portOf(broker, 'ws'))
  await within(ws.closed, 3000, 'a fourth WebSocket socket to be closed')
  assert.equal(broker.stats.refused.maxConnections, 2)
  idle.socket.destroy()
  await until(() => broker.openSockets === 2, 2000, 'the idle socket to be gone')
  await connect(t, broker) // room again
})

test('a CONNECT larger than maxConnectPacketSize is refused from its fixed header', async (t) => {
  const broker = await startBroker(t)
  const check = await bystanders(t, broker)
  const { socket, closed } = await socketTo(t, portOf(broker))
  socket.write(Buffer.from([0x10, 0x80, 0x80, 0x40])) // CONNECT of 1 MiB (within maxPacketSize), no body
  await within(closed, 2000, 'the oversized CONNECT to be refused')
  assert.equal(broker.stats.refused.connectTooLarge, 1)
  await check()
})

test('pre-login bytes are bounded: partial 1 MiB CONNECTs past maxPreLoginBytes are closed, memory stays bounded, bystanders are served', async (t) => {
  const MiB = 1024 * 1024
  const bound = 8 * MiB
  const broker = await startBroker(t, { limits: { maxConnectPacketSize: 2 * MiB, maxPreLoginBytes: bound, connectTimeoutMs: 60000 } })
  const check = await bystanders(t, broker)
  const N = 200
  const body = MiB - 16 // sent of a CONNECT declaring 1 MiB: it never completes
  const partial = Buffer.concat([Buffer.from([0x10, 0x80, 0x80, 0x40]), Buffer.alloc(body, 0x61)])
  global.gc?.()
  const rssBefore = process.memoryUsage().rss
  let peakHeld = 0
  let closed = 0
  const sockets = await Promise.all(Array.from({ length: N }, () => socketTo(t, portOf(broker))))
  for (const s of sockets) {
    void s.closed.then(() => closed++)
    s.socket.write(partial)
  }
  await check() // while the flood is being read
  await until(
    () => {
      peakHeld = Math.max(peakHeld, broker.preLoginBytes)
      return broker.preLoginBytes === (N - closed) * body
    },
    30000,
    'every flood socket to be held whole or closed',
  )
  const rssGrowth = process.memoryUsage().rss - rssBefore
  assert.ok(peakHeld <= bound, `held ${peakHeld} bytes before login`)
  assert.ok(N - closed <= bound / body, `${N - closed} partial CONNECTs held`)
  assert.ok(closed >= N - bound / body)
  assert.ok(broker.stats.refused.preLoginBytes >= closed)
  assert.ok(rssGrowth < 100 * MiB, `RSS grew ${Math.round(rssGrowth / MiB)} MiB for ${N} MiB sent`)
  await check()
  for (const s of sockets) s.socket.destroy()
  await until(() => broker.preLoginBytes === 0, 5000, 'the held bytes to be released')
})

test('[MQTT-3.1.2-24] keep-alive counts complete packets: a client trickling a partial one is closed', async (t) => {
  const broker = await startBroker(t)
  const check = await bystanders(t, broker)
  const raw = await RawClient.open(t, broker, 4)
  await raw.connect({ keepalive: 1 }, 4)
  const started = Date.now()
  raw.sendBytes([0x30, 0x7f]) // a PUBLISH of 127 bytes, then one byte at a time
  const timer = setInterval(() => raw.sendBytes([0x61]), 100)
  defer(t, () => clearInterval(timer))
  await raw.expectClosed(4000)
  assert.ok(Date.now() - started >= 1400, 'not before 1.5 times the keep-alive')
  assert.equal(broker.stats.refused.keepaliveTimeout, 1)
  await check()
})

test('[MQTT-3.1.2-22] MQTT 5: a client trickling a partial packet gets DISCONNECT 0x8D; one sending PINGREQs stays', async (t) => {
  const broker = await startBroker(t)
  const raw = await RawClient.open(t, broker, 5)
  await raw.connect({ keepalive: 1 }, 5)
  const pinger = await RawClient.open(t, broker, 5)
  await pinger.connect({ keepalive: 1 }, 5)
  raw.sendBytes([0x30, 0x7f])
  const timer = setInterval(() => {
    raw.sendBytes([0x61])
    pinger.send({ cmd: 'pingreq' }, 5)
  }, 100)
  defer(t, () => clearInterval(timer))
  assert.equal((await raw.expect('disconnect', 4000)).reasonCode, 0x8d)
  await raw.expectClosed()
  assert.equal(pinger.closed, false)
})
