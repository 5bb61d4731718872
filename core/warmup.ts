import net from 'node:net'
import type { Packet } from 'mqtt-packet'
import { encodePacket } from './codec.js'
import type { Logger } from './logger.js'
import { mqtt } from './mqtt-packet.js'

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
  const clients: WarmClient[] = []
  let messages = 0
  try {
    await broker.listen()
    const port = broker.addresses[0]!.port
    for (const protocolVersion of [4, 5] as const) {
      const sub = await WarmClient.connect(port, `warmup-sub-${protocolVersion}`, protocolVersion, clients)
      const pub = await WarmClient.connect(port, `warmup-pub-${protocolVersion}`, protocolVersion, clients)
      await sub.exchange({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'warmup/#', qos: 1 }] }, 'suback')
      const payload = Buffer.alloc(64, 0x61)
      for (let round = 0; round < ROUNDS; round++) {
        const qos = round % 2 === 0 ? 0 : 1
        const chunks: Buffer[] = []
        for (let i = 0; i < PER_ROUND; i++)
          chunks.push(
            pub.encode({ cmd: 'publish', topic: `warmup/${i % 10}`, payload, qos, retain: false, dup: false, messageId: qos === 0 ? undefined : i + 1 }),
          )
        const got = sub.receive(PER_ROUND)
        pub.socket.write(Buffer.concat(chunks))
        await got
        messages += PER_ROUND
      }
    }
  } catch (err) {
    log.warn({ err }, 'warm-up cut short (nothing depends on it: the first clients meet colder code)')
  } finally {
    for (const c of clients) c.socket.destroy()
    await broker.close().catch(() => {})
    log.info({ messages, ms: Math.round(performance.now() - t0) }, 'publish path warmed up')
  }
}

/** A raw client of the throwaway broker: packets encoded and parsed by the codec, each handed to the current `onPacket`. */
class WarmClient {
  private onPacket: (p: Packet) => void = () => {}

  private constructor(
    readonly socket: net.Socket,
    private readonly protocolVersion: 4 | 5,
  ) {
    const parser = mqtt.parser({ protocolVersion })
    parser.on('packet', (p: Packet) => this.onPacket(p))
    socket.on('data', (b: Buffer) => parser.parse(b))
  }

  static async connect(port: number, clientId: string, protocolVersion: 4 | 5, all: WarmClient[]): Promise<WarmClient> {
    const socket = net.connect(port, '127.0.0.1')
    const c = new WarmClient(socket, protocolVersion)
    all.push(c)
    socket.setNoDelay(true)
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve)
      socket.once('error', reject)
    })
    await c.exchange({ cmd: 'connect', protocolId: 'MQTT', protocolVersion, clean: true, clientId, keepalive: 0 }, 'connack')
    return c
  }

  encode(packet: Packet): Buffer {
    return encodePacket(packet, { protocolVersion: this.protocolVersion })
  }

  /** Sends `packet`; resolves when a packet of kind `answer` arrives. */
  exchange(packet: Packet, answer: Packet['cmd']): Promise<void> {
    return this.until(
      (p) => p.cmd === answer,
      () => this.socket.write(this.encode(packet)),
    )
  }

  /** Resolves once `n` PUBLISH packets arrived (QoS 1 ones acknowledged). */
  receive(n: number): Promise<void> {
    let count = 0
    return this.until((p) => {
      if (p.cmd !== 'publish') return false
      if (p.qos > 0) this.socket.write(this.encode({ cmd: 'puback', messageId: p.messageId! }))
      return ++count >= n
    })
  }

  private until(done: (p: Packet) => boolean, start?: () => void): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('warm-up: no answer in time')), 2000)
      this.onPacket = (p) => {
        if (!done(p)) return
        clearTimeout(timer)
        this.onPacket = () => {}
        resolve()
      }
      start?.()
    })
  }
}
