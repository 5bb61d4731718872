import type net from 'node:net'
import { quantile } from './stats.js'
import { connectClient, encode, packetIdOffset, pump, waitFor, PUBACK, PUBCOMP, PUBLISH, PUBREC, PUBREL, SUBACK } from './wire.js'

// The scenarios. Each takes a broker's port and answers what it measured; the
// runner adds CPU figures and repeats them.

export interface FanInOptions {
  publishers: number
  perPublisher: number
  qos: 0 | 1 | 2
  payload: number
  /** topic of publisher i: `${prefix}${i}` */
  prefix?: string
  body?: Buffer
  window?: number
  /** port of the subscriber's node (another node of a cluster); `port` by default */
  subPort?: number
  /** the subscriber keeps a persistent session (clean session false) */
  persistent?: boolean
  /** every client handles what it received at most once per this many ms (wire.ts connectClient) */
  readEveryMs?: number
  /** the broker's address (127.0.0.1 by default; another when it runs behind a delayed link, netem.ts) */
  host?: string
}

export interface Measured {
  /** messages (or deliveries) per second */
  rate: number
  expected: number
  received: number
  seconds: number
}

let run = 0

async function subscribe(
  port: number,
  filter: string,
  qos: 0 | 1 | 2,
  onPublish: (buf: Buffer, start: number, length: number, flags: number, socket: net.Socket) => void,
  clean = true,
  readEveryMs = 0,
  host?: string,
): Promise<net.Socket> {
  const subacked = waitFor(() => gotSuback, 10000, 'SUBACK')
  let gotSuback = false
  const socket: net.Socket = await connectClient(
    port,
    `sub-${process.pid}-${++run}`,
    (type, flags, buf, start, length) => {
      if (type === PUBLISH) onPublish(buf, start, length, flags, socket)
      else if (type === PUBREL)
        socket.write(Buffer.from([0x70, 2, buf[start + 2]!, buf[start + 3]!])) // PUBCOMP
      else if (type === SUBACK) {
        gotSuback = true
        subacked.check()
      }
    },
    clean,
    readEveryMs,
    host,
  )
  socket.write(encode({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: filter, qos }] }))
  await subacked.promise
  return socket
}

/** n publishers → one subscriber on `${prefix}#`. */
export async function fanIn(port: number, o: FanInOptions): Promise<Measured> {
  const prefix = o.prefix ?? 'bench/'
  const expected = o.publishers * o.perPublisher
  let received = 0
  let last = 0
  const done = waitFor(
    () => received >= expected,
    120000,
    () => `fan-in: ${received}/${expected}`,
  )
  const sub = await subscribe(
    o.subPort ?? port,
    `${prefix}#`,
    o.qos,
    (buf, start, _length, flags, socket) => {
      received++
      last = performance.now()
      const qos = (flags >> 1) & 3
      if (qos > 0) {
        const at = packetIdOffset(buf, start)
        socket.write(Buffer.from([qos === 1 ? 0x40 : 0x50, 2, buf[at]!, buf[at + 1]!])) // PUBACK / PUBREC
      }
      if (received >= expected) done.check()
    },
    !o.persistent,
    o.readEveryMs,
    o.host,
  )
  const payload = o.body ?? Buffer.alloc(o.payload, 0x61)
  const pubs: net.Socket[] = []
  for (let i = 0; i < o.publishers; i++)
    pubs.push(await connectClient(port, `pub-${process.pid}-${++run}-${i}`, o.qos > 0 ? acker(i) : undefined, true, o.readEveryMs, o.host))
  const windows: Array<() => void> = []
  function acker(i: number) {
    return (type: number, _flags: number, buf: Buffer, start: number): void => {
      if (type === PUBREC)
        pubs[i]!.write(Buffer.from([0x62, 2, buf[start + 2]!, buf[start + 3]!])) // PUBREL
      else if (type === PUBACK || type === PUBCOMP) windows[i]?.()
    }
  }
  const started = performance.now()
  await Promise.all(
    pubs.map((socket, i) => {
      const template = encode({ cmd: 'publish', topic: `${prefix}${i}`, payload, qos: o.qos, retain: false, dup: false, messageId: o.qos > 0 ? 1 : undefined })
      if (o.qos === 0)
        return pump(
          socket,
          o.perPublisher,
          Math.max(1, Math.floor(65536 / template.length)),
          (chunk, _index, count) => {
            for (let k = 0; k < count; k++) template.copy(chunk, k * template.length)
          },
          template.length,
        )
      return windowed(socket, template, o.perPublisher, o.window ?? 100, (fn) => {
        windows[i] = fn
      })
    }),
  )
  await done.promise
  const seconds = (last - started) / 1000
  sub.destroy()
  for (const p of pubs) p.destroy()
  return { rate: expected / seconds, expected, received, seconds }
}

/** Sends `total` QoS 1/2 messages keeping at most `window` unacknowledged. */
function windowed(socket: net.Socket, template: Buffer, total: number, window: number, onAck: (fn: () => void) => void): Promise<void> {
  const idAt = packetIdOffset(template, 0)
  let sent = 0
  let acked = 0
  let id = 0
  return new Promise((resolve) => {
    const send = (): void => {
      const n = Math.min(window - (sent - acked), total - sent)
      if (n <= 0) return
      const chunk = Buffer.allocUnsafe(n * template.length)
      for (let k = 0; k < n; k++) {
        template.copy(chunk, k * template.length)
        id = id === 65535 ? 1 : id + 1
        chunk.writeUInt16BE(id, k * template.length + idAt)
      }
      sent += n
      socket.write(chunk)
    }
    let pendingAcks = 0
    onAck(() => {
      acked++
      pendingAcks++
      if (acked >= total) return resolve()
      if (pendingAcks >= 10 || sent - acked < window / 2) {
        // refill in batches
        pendingAcks = 0
        send()
      }
    })
    send()
  })
}

/** One publisher → `subscribers` subscribers on one topic; answers deliveries per second. */
export async function fanOut(port: number, subscribers: number, messages: number, payloadSize: number): Promise<Measured> {
  const expected = subscribers * messages
  let received = 0
  let last = 0
  const done = waitFor(
    () => received >= expected,
    120000,
    () => `fan-out: ${received}/${expected}`,
  )
  const subs: net.Socket[] = []
  for (let i = 0; i < subscribers; i++) {
    subs.push(
      await subscribe(port, 'fan/out', 0, () => {
        received++
        last = performance.now()
        if (received >= expected) done.check()
      }),
    )
  }
  const pub = await connectClient(port, `fanout-pub-${process.pid}-${++run}`)
  const template = encode({ cmd: 'publish', topic: 'fan/out', payload: Buffer.alloc(payloadSize, 0x62), qos: 0, retain: false, dup: false })
  const started = performance.now()
  await pump(
    pub,
    messages,
    256,
    (chunk, _i, count) => {
      for (let k = 0; k < count; k++) template.copy(chunk, k * template.length)
    },
    template.length,
  )
  await done.promise
  const seconds = (last - started) / 1000
  for (const s of subs) s.destroy()
  pub.destroy()
  return { rate: expected / seconds, expected, received, seconds }
}

/**
 * QoS 0 at `rate` msg/s for `seconds`, after `warmup` seconds at the same rate
 * that are not counted (JIT compilation and first heap growth, for every broker
 * alike, and the generator's own); answers latency percentiles in ms. At 2,000
 * msg/s, second by second, even the framing-only relay shows a p99 of ~2 ms in
 * the first second and ~0.6-1 ms in the second before it settles near 0.1 ms:
 * the generator's and the machine's warm-up, not any broker's.
 */
export async function latency(
  port: number,
  rate: number,
  seconds: number,
  warmup = 1,
): Promise<{ p50: number; p99: number; max: number; received: number; expected: number; perSecond: number[] }> {
  const samples: number[] = []
  /** when each sample was sent, in s from the first counted one */
  const sentAts: number[] = []
  const skip = rate * warmup
  let seen = 0
  const expected = rate * seconds
  let started = process.hrtime.bigint()
  const done = waitFor(
    () => samples.length >= expected,
    (seconds + warmup) * 1000 + 10000,
    () => `latency: ${samples.length}/${expected}`,
  )
  const sub = await subscribe(port, 'lat/t', 0, (buf, start, length) => {
    const sentAt = buf.readBigUInt64BE(start + length - 64)
    if (++seen > skip) {
      samples.push(Number(process.hrtime.bigint() - sentAt) / 1e6)
      sentAts.push(Number(sentAt - started) / 1e9 - warmup)
    }
    done.check()
  })
  const pub = await connectClient(port, `lat-pub-${process.pid}-${++run}`)
  const template = encode({ cmd: 'publish', topic: 'lat/t', payload: Buffer.alloc(64), qos: 0, retain: false, dup: false })
  const stampAt = template.length - 64
  started = process.hrtime.bigint()
  const interval = 1e9 / rate
  const total = expected + skip
  let sent = 0
  await new Promise<void>((resolve) => {
    const tick = (): void => {
      const now = process.hrtime.bigint()
      const due = Math.min(total, Math.floor(Number(now - started) / interval) + 1)
      while (sent < due) {
        const b = Buffer.from(template)
        b.writeBigUInt64BE(process.hrtime.bigint(), stampAt)
        pub.write(b)
        sent++
      }
      if (sent >= total) resolve()
      else setImmediate(tick)
    }
    tick()
  })
  await done.promise
  sub.destroy()
  pub.destroy()
  // the p99 of each second of sending
  const windows: number[][] = Array.from({ length: seconds }, () => [])
  for (let i = 0; i < samples.length; i++) windows[Math.min(seconds - 1, Math.max(0, Math.floor(sentAts[i]!)))]!.push(samples[i]!)
  const perSecond = windows.map((w) =>
    quantile(
      w.sort((a, b) => a - b),
      0.99,
    ),
  )
  samples.sort((a, b) => a - b)
  const q = (p: number): number => quantile(samples, p)
  return { p50: q(0.5), p99: q(0.99), max: samples[samples.length - 1]!, received: samples.length, expected, perSecond }
}

/** Opens `n` clients that each CONNECT and SUBSCRIBE a unique topic; answers the sockets (to close). */
export async function idleClients(port: number, n: number): Promise<net.Socket[]> {
  const sockets: net.Socket[] = []
  const batch = 200
  for (let i = 0; i < n; i += batch) {
    const opened = await Promise.all(
      Array.from({ length: Math.min(batch, n - i) }, async (_, k) => {
        const id = `idle-${process.pid}-${++run}-${i + k}`
        let acked!: () => void
        const suback = new Promise<void>((r) => {
          acked = r
        })
        const s = await connectClient(port, id, (type) => {
          if (type === SUBACK) acked()
        })
        s.write(encode({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: `idle/${id}`, qos: 1 }] }))
        await suback
        return s
      }),
    )
    sockets.push(...opened)
  }
  return sockets
}

/**
 * One persistent session (clean start off) subscribing `n` filters, one per
 * SUBSCRIBE, `inFlight` unanswered at a time, as a gateway subscribing its
 * devices' topics does; answers SUBSCRIBEs answered per second.
 */
export async function subscribeOneByOne(port: number, n: number, inFlight = 100): Promise<{ rate: number }> {
  let acked = 0
  const done = waitFor(
    () => acked >= n,
    120000,
    () => `SUBACKs: ${acked}/${n}`,
  )
  let sent = 0
  const more = (socket: net.Socket): void => {
    const chunks: Buffer[] = []
    while (sent < n && sent - acked < inFlight) {
      sent++
      chunks.push(encode({ cmd: 'subscribe', messageId: (sent % 65535) + 1, subscriptions: [{ topic: `gw/${run}/${sent}/cmd`, qos: 1 }] }))
    }
    if (chunks.length > 0) socket.write(Buffer.concat(chunks))
  }
  const s: net.Socket = await connectClient(
    port,
    `gw-${process.pid}-${++run}`,
    (type) => {
      if (type !== SUBACK) return
      acked++
      done.check()
      more(s) // (a SUBACK comes only after the first SUBSCRIBEs, sent below)
    },
    false,
  )
  const t0 = process.hrtime.bigint()
  more(s)
  await done.promise
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9
  s.destroy()
  return { rate: n / seconds }
}

/** A local webhook endpoint counting deliveries, in its own process (see serve-sink.ts). */
export async function startSink(): Promise<{ url: string; count: () => Promise<number>; lastAt: () => Promise<number>; close(): Promise<void> }> {
  const { fork } = await import('node:child_process')
  const child = fork(new URL('./serve-sink.js', import.meta.url), [], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] })
  // the endpoint shares the generator's core: at the lowest priority it takes only what the generator leaves idle
  const { setPriority } = await import('node:os')
  setPriority(child.pid!, 19)
  const { port } = await new Promise<{ port: number }>((resolve) => child.once('message', (m) => resolve(m as { port: number })))
  const ask = (): Promise<{ count: number; lastAt: number }> =>
    new Promise((resolve) => {
      child.once('message', (m) => resolve(m as { count: number; lastAt: number }))
      child.send('stats')
    })
  return {
    url: `http://127.0.0.1:${port}/in`,
    count: async () => (await ask()).count,
    lastAt: async () => (await ask()).lastAt,
    close: async () => {
      child.kill()
    },
  }
}
