import net from 'node:net'
import type { Packet } from 'mqtt-packet'
import { encodePacket } from './codec.js'
import type { ConfigInput } from './config.js'
import type { Logger } from './logger.js'
import { mqtt } from './mqtt-packet.js'

// A freshly started process runs its publish path interpreted, then compiles
// it as it gets hot. Profiled at 2,000 msg/s (--trace-opt, --trace-deopt):
// some fifty functions were compiled by TurboFan in the first 2-3 s, each
// taking 0.5-5 ms of a concurrent compiler thread on the broker's core, and
// the messages that met those compiles made the p99 of the first two seconds
// 2-3 ms against 0.2-0.3 ms from the third on. So before the listeners open,
// a throwaway twin broker (Broker.warmupTwin: the same class and config keys,
// on a loopback port of its own, with no hooks, plugins, listeners, events,
// stores or $SYS of the real one's) is sent traffic by raw clients until the
// publish path is compiled:
// - clients that connect and go (DISCONNECT, or the socket closed), first, so
//   that the close paths are in the feedback the compiled code is made from
//   (seen last, they threw the stream code of Node's sockets back to the
//   interpreter at the end of the warm-up);
// - messages many to a read (the per-message code);
// - messages one to a read from a few clients at once, as steady traffic
//   comes (the per-read code: socket reads and writes, ticks, timers);
// MQTT 3.1.1 and 5, QoS 0 and 1, one pass each, each on a twin of its own.
// The twin must be of the real broker's shape: a twin of another class or
// config left V8's code guarding objects of the wrong maps, thrown away by the
// first real message. So must the real broker's own objects that the code
// touches (see Matches and perQos: arrays born of another kind). Traced with
// --trace-deopt, the first real message now throws nothing away. It takes
// about 0.45 s of start-up, and nothing of it is seen by the real broker.

/** The broker class, given by the caller (broker.ts imports this file). */
interface WarmBroker {
  listen(): Promise<unknown>
  close(): Promise<void>
  readonly addresses: ReadonlyArray<{ port: number }>
}

const ROUNDS = 20
const PER_ROUND = 100
/** messages one to a read, per pair of clients */
const PACED = 1000
const PAIRS = 4
const CHURN = 6
/** what a whole warm-up sends: each phase, both protocol versions */
export const WARMUP_MESSAGES = 2 * (CHURN * 2 + ROUNDS * PER_ROUND + PAIRS * PACED)

/**
 * The config of a broker's warm-up twin: the same keys (an object with other
 * keys has another shape in V8), one TCP listener on a loopback port of its
 * own and no other, no $SYS, no bans, no warm-up of its own, and nothing of
 * the broker's policy that would refuse the warm-up's clients: every client,
 * publish and subscribe allowed, every limit at its default.
 */
export function twinConfig<T extends ConfigInput>(input: T): T {
  const twin: Record<string, unknown> = {
    ...input,
    host: '127.0.0.1',
    port: 0,
    tcp: true,
    ws: false,
    warmup: false,
    sys: { ...input.sys, enabled: false },
    defaults: { authenticate: 'allow', publish: 'allow', subscribe: 'allow' },
  }
  for (const key of ['tls', 'wss'] as const) if (key in input) twin[key] = undefined
  if ('allowAnonymous' in input) twin.allowAnonymous = true
  if ('bans' in input) twin.bans = []
  if ('id' in input) twin.id = 'warmup'
  if (input.limits !== undefined) twin.limits = Object.fromEntries(Object.keys(input.limits).map((k) => [k, undefined]))
  return twin as T
}

export async function warmUp(make: () => WarmBroker, log: Logger): Promise<void> {
  const t0 = performance.now()
  const clients: WarmClient[] = []
  let messages = 0
  const twins: WarmBroker[] = []
  const twin = async (): Promise<number> => {
    const t = make()
    twins.push(t)
    await t.listen()
    return t.addresses[0]!.port
  }
  try {
    const payload = Buffer.alloc(64, 0x61)
    let port = await twin()
    // each phase on topics of its own, and its clients gone before the next: a subscriber left unread would hold the next phase's publishers (core/flow.ts)
    for (const v of [4, 5] as const) {
      if (v === 5) {
        // Between the two passes a second twin starts and the first closes, so
        // that what the real broker does next (start, and one day close) comes
        // while the code is still being compiled, not after:
        // - closing writes again fields that starting wrote once (the hook
        //   host's pipelines, timers); V8 folds a field written once into its
        //   compiled code as a constant, so a close after the warm-up threw
        //   away the publish path's code (handlePublish, route, sendPublish) for
        //   every broker of the class, the real one's too;
        // - starting a listener takes paths of Node's (a DNS lookup answered on
        //   the next tick, with more arguments than the traffic's) that, met
        //   first by the real broker's listen, threw nextTick and the tick loop
        //   back to the interpreter.
        port = await twin()
        await twins[0]!.close()
      }
      // clients that come and go
      for (let i = 0; i < CHURN; i++) {
        const c = await WarmClient.connect(port, `warmup-churn-${v}-${i}`, v, clients)
        const topic = `warmup/${v}/churn/${i}`
        await c.exchange({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic, qos: 1 }] }, 'suback')
        const got = c.receive(2)
        c.socket.write(c.encode({ cmd: 'publish', topic, payload, qos: 0, retain: false, dup: false }))
        c.socket.write(c.encode({ cmd: 'publish', topic, payload, qos: 1, retain: false, dup: false, messageId: 2 }))
        await got
        messages += 2
        await c.leave(i % 2 === 0)
      }
      // many messages to a read
      const sub = await WarmClient.connect(port, `warmup-sub-${v}`, v, clients)
      const pub = await WarmClient.connect(port, `warmup-pub-${v}`, v, clients)
      await sub.exchange({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: `warmup/${v}/batch/#`, qos: 1 }] }, 'suback')
      for (let round = 0; round < ROUNDS; round++) {
        const qos = round % 2 === 0 ? 0 : 1
        const chunks: Buffer[] = []
        for (let i = 0; i < PER_ROUND; i++)
          chunks.push(
            pub.encode({
              cmd: 'publish',
              topic: `warmup/${v}/batch/${i % 10}`,
              payload,
              qos,
              retain: false,
              dup: false,
              messageId: qos === 0 ? undefined : i + 1,
            }),
          )
        const got = sub.receive(PER_ROUND)
        pub.socket.write(Buffer.concat(chunks))
        await got
        messages += PER_ROUND
      }
      await Promise.all([sub.leave(true), pub.leave(false)])
      // one message to a read, from a few clients at once (subscribed at QoS 0 and at QoS 1)
      const pairs = await Promise.all(
        Array.from({ length: PAIRS }, async (_, n) => {
          const topic = `warmup/${v}/paced/${n}`
          const s = await WarmClient.connect(port, `warmup-paced-sub-${v}-${n}`, v, clients)
          await s.exchange({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic, qos: n % 2 === 0 ? 0 : 1 }] }, 'suback')
          return { s, p: await WarmClient.connect(port, `warmup-paced-pub-${v}-${n}`, v, clients), topic }
        }),
      )
      await Promise.all(
        pairs.map(async ({ s, p, topic }) => {
          for (let i = 0; i < PACED; i++) {
            const qos = i % 4 === 3 ? 1 : 0
            const got = s.receive(1)
            p.socket.write(p.encode({ cmd: 'publish', topic, payload, qos, retain: false, dup: false, messageId: qos === 0 ? undefined : (i % 1000) + 1 }))
            await got
            messages++
          }
          await Promise.all([s.leave(true), p.leave(false)])
        }),
      )
    }
  } catch (err) {
    log.warn({ err }, 'warm-up cut short (nothing depends on it: the first clients meet colder code)')
  } finally {
    for (const c of clients) c.socket.destroy()
    await Promise.all(twins.map((t) => t.close().catch(() => {})))
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

  /** Goes: with a DISCONNECT, or by closing the socket; resolves once the broker closed it. */
  leave(politely: boolean): Promise<void> {
    const closed = new Promise<void>((resolve) => this.socket.once('close', () => resolve()))
    if (politely) this.socket.end(this.encode({ cmd: 'disconnect' }))
    else this.socket.end()
    return closed
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
