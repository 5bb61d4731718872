import net from 'node:net'
import { encodePacket } from './codec.js'
import type { Logger } from './logger.js'

// A freshly started process runs its publish path interpreted, then compiles
// it as it gets hot: at 2,000 msg/s the broker spent 170-200 µs of CPU per
// message in its first second and 115-135 µs in its second, against 75-80 µs
// from the fourth on (most of that the kernel's: sockets and wake-ups). So
// before the listeners open, a throwaway broker of the same code, on a
// loopback port of its own, with no hooks, plugins, listeners of the real
// one's, events or $SYS, is sent a few thousand messages by two raw clients
// (MQTT 3.1.1 and 5, QoS 0 and 1): V8 compiles the very functions the real
// broker will run. It takes a few hundred milliseconds of start-up, and
// nothing of it is seen by the real broker's hooks, listeners, stats or stores.

/** The broker class, given by the caller (broker.ts imports this file). */
interface WarmBroker {
  listen(): Promise<unknown>
  close(): Promise<void>
  readonly addresses: ReadonlyArray<{ port: number }>
}

const ROUNDS = 20
const PER_ROUND = 100

export async function warmUp(make: () => WarmBroker, log: Logger): Promise<void> {
  const t0 = performance.now()
  const broker = make()
  const sockets: net.Socket[] = []
  let messages = 0
  try {
    await broker.listen()
    const port = broker.addresses[0]!.port
    for (const protocolVersion of [4, 5] as const) {
      const sub = await client(port, `warmup-sub-${protocolVersion}`, protocolVersion, sockets)
      const pub = await client(port, `warmup-pub-${protocolVersion}`, protocolVersion, sockets)
      await exchange(sub, encodePacket({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'warmup/#', qos: 1 }] }, { protocolVersion }), 0x90)
      const payload = Buffer.alloc(64, 0x61)
      for (let round = 0; round < ROUNDS; round++) {
        const qos = round % 2 === 0 ? 0 : 1
        const chunks: Buffer[] = []
        for (let i = 0; i < PER_ROUND; i++)
          chunks.push(
            encodePacket(
              { cmd: 'publish', topic: `warmup/${i % 10}`, payload, qos, retain: false, dup: false, messageId: qos === 0 ? undefined : i + 1 },
              { protocolVersion },
            ),
          )
        const got = received(sub, PER_ROUND, qos === 1)
        pub.write(Buffer.concat(chunks))
        await got
        messages += PER_ROUND
      }
    }
  } catch (err) {
    log.warn({ err }, 'warm-up cut short (nothing depends on it: the first clients meet colder code)')
  } finally {
    for (const s of sockets) s.destroy()
    await broker.close().catch(() => {})
    log.info({ messages, ms: Math.round(performance.now() - t0) }, 'publish path warmed up')
  }
}

/** A connected raw client (CONNACK read). */
async function client(port: number, clientId: string, protocolVersion: 4 | 5, sockets: net.Socket[]): Promise<net.Socket> {
  const s = net.connect(port, '127.0.0.1')
  sockets.push(s)
  s.setNoDelay(true)
  await new Promise<void>((resolve, reject) => {
    s.once('connect', resolve)
    s.once('error', reject)
  })
  await exchange(s, encodePacket({ cmd: 'connect', protocolId: 'MQTT', protocolVersion, clean: true, clientId, keepalive: 0 }, { protocolVersion }), 0x20)
  return s
}

/** Writes `packet`, resolves when a packet of type `answer` (first byte's high nibble) arrives. */
function exchange(s: net.Socket, packet: Buffer, answer: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('warm-up: no answer')), 2000)
    const onData = (b: Buffer): void => {
      if ((b[0]! & 0xf0) !== answer) return
      clearTimeout(timer)
      s.off('data', onData)
      resolve()
    }
    s.on('data', onData)
    s.write(packet)
  })
}

/** Resolves once `n` PUBLISH packets arrived on `s` (acknowledging QoS 1 ones). Counts by walking the frames. */
function received(s: net.Socket, n: number, ack: boolean): Promise<void> {
  return new Promise((resolve, reject) => {
    let count = 0
    let rest: Buffer = Buffer.alloc(0)
    const timer = setTimeout(() => {
      s.off('data', onData)
      reject(new Error('warm-up: messages missing'))
    }, 2000)
    const onData = (chunk: Buffer): void => {
      let b = rest.length === 0 ? chunk : Buffer.concat([rest, chunk])
      const acks: Buffer[] = []
      for (;;) {
        if (b.length < 2) break
        let len = 0
        let mul = 1
        let i = 1
        for (; i < 5 && i < b.length; i++) {
          len += (b[i]! & 0x7f) * mul
          mul *= 128
          if ((b[i]! & 0x80) === 0) break
        }
        if (i >= b.length || i === 5) break
        const end = i + 1 + len
        if (b.length < end) break
        if ((b[0]! & 0xf0) === 0x30) {
          count++
          if (ack && (b[0]! & 0x06) !== 0) {
            // the packet id follows the topic
            const topicLength = b.readUInt16BE(i + 1)
            const at = i + 3 + topicLength
            acks.push(Buffer.from([0x40, 2, b[at]!, b[at + 1]!]))
          }
        }
        b = b.subarray(end)
      }
      rest = Buffer.from(b)
      if (acks.length > 0) s.write(Buffer.concat(acks))
      if (count >= n) {
        clearTimeout(timer)
        s.off('data', onData)
        resolve()
      }
    }
    s.on('data', onData)
  })
}
