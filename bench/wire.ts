import mqtt from 'mqtt-packet'
import net from 'node:net'

// The load generator's side of the wire: packets encoded once (only packet
// ids patched), writes batched with backpressure, and a framing-only parser
// that finds packet boundaries without decoding them.

export type OnPacket = (type: number, flags: number, buf: Buffer, start: number, length: number) => void

/** Splits a byte stream into MQTT packets; `buf[start .. start+length)` is the whole packet. */
export class Framer {
  private pending: Buffer | null = null

  constructor(private readonly onPacket: OnPacket) {}

  push(chunk: Buffer): void {
    let buf = chunk
    if (this.pending !== null) {
      buf = Buffer.concat([this.pending, chunk])
      this.pending = null
    }
    let pos = 0
    const end = buf.length
    while (pos < end) {
      if (end - pos < 2) break
      let len = 0
      let mul = 1
      let i = pos + 1
      let complete = false
      for (let n = 0; n < 4 && i < end; n++, i++) {
        const b = buf[i]!
        len += (b & 0x7f) * mul
        mul *= 128
        if ((b & 0x80) === 0) {
          complete = true
          i++
          break
        }
      }
      if (!complete) break
      const total = i - pos + len
      if (end - pos < total) break
      this.onPacket(buf[pos]! >> 4, buf[pos]! & 0x0f, buf, pos, total)
      pos += total
    }
    if (pos < end) this.pending = buf.subarray(pos)
  }
}

export const PUBLISH = 3
export const PUBACK = 4
export const PUBREC = 5
export const PUBREL = 6
export const PUBCOMP = 7
export const SUBACK = 9
export const CONNACK = 2

export function encode(packet: mqtt.Packet, protocolVersion: 4 | 5 = 4): Buffer {
  return mqtt.generate(packet, { protocolVersion })
}

/** Offset of the packet id inside an encoded PUBLISH (QoS > 0). */
export function packetIdOffset(buf: Buffer, start: number): number {
  let i = start + 1
  while (buf[i]! & 0x80) i++
  i++
  const topicLen = buf.readUInt16BE(i)
  return i + 2 + topicLen
}

/**
 * Connects and completes CONNECT/CONNACK. `readEveryMs`: the client handles
 * what it received at most once per that many ms, all of it in one turn, as a
 * client reading its socket in a polling loop or behind a busy event loop
 * does: its acknowledgements leave in batches.
 */
export function connectClient(port: number, clientId: string, onPacket?: OnPacket, clean = true, readEveryMs = 0, host = '127.0.0.1'): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, host)
    socket.setNoDelay(true)
    let connected = false
    const framer = new Framer((type, flags, buf, start, length) => {
      if (!connected && type === CONNACK) {
        connected = true
        resolve(socket)
        return
      }
      onPacket?.(type, flags, buf, start, length)
    })
    if (readEveryMs > 0) {
      // everything that arrived since the last turn is handled at once, a turn every readEveryMs
      let arrived: Buffer[] = []
      let timer: NodeJS.Timeout | undefined
      const turn = (): void => {
        timer = undefined
        const chunks = arrived
        arrived = []
        for (const c of chunks) framer.push(c)
      }
      socket.on('data', (c: Buffer) => {
        arrived.push(c)
        timer ??= setTimeout(turn, readEveryMs)
      })
      socket.once('close', () => clearTimeout(timer))
    } else socket.on('data', (c: Buffer) => framer.push(c))
    socket.once('error', reject)
    socket.once('connect', () => socket.write(encode({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId, clean, keepalive: 600 })))
  })
}

/** Writes `total` copies of a packet (built by `fill`) in chunks, honouring backpressure. */
export function pump(
  socket: net.Socket,
  total: number,
  perChunk: number,
  fill: (chunk: Buffer, index: number, count: number) => void,
  packetSize: number,
): Promise<void> {
  return new Promise((resolve) => {
    let sent = 0
    const write = (): void => {
      while (sent < total) {
        const n = Math.min(perChunk, total - sent)
        const chunk = Buffer.allocUnsafe(n * packetSize)
        fill(chunk, sent, n)
        sent += n
        if (!socket.write(chunk)) {
          socket.once('drain', write)
          return
        }
      }
      resolve()
    }
    write()
  })
}

/**
 * Resolves when `cond` holds (checked after each packet via `check`), or rejects after `ms`.
 * `what`: said on a timeout (a function: read then, for counts that moved meanwhile).
 */
export function waitFor(cond: () => boolean, ms: number, what: string | (() => string)): { promise: Promise<void>; check: () => void } {
  let resolve!: () => void
  let reject!: (e: Error) => void
  const promise = new Promise<void>((res, rej) => {
    resolve = res
    reject = rej
  })
  const timer = setTimeout(() => reject(new Error(`timed out: ${typeof what === 'function' ? what() : what}`)), ms)
  const check = (): void => {
    if (cond()) {
      clearTimeout(timer)
      resolve()
    }
  }
  return { promise, check }
}
