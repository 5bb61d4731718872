import type { Message } from '../../core/index.js'
import { propertiesJson, writeMessageJson, type JsonOut } from './message-json.js'

// A FIFO of delivery records kept as bytes in large buffers, outside the
// JavaScript heap the garbage collector walks. A queue of a million waiting
// messages then costs the collector nothing, where a million small objects
// would be copied and promoted on every scavenge while the endpoint is slow.

const CHUNK = 1 << 20
const KIND_MESSAGE = 1
const KIND_JSON = 2

export class ByteQueue {
  private chunks: Buffer[] = []
  private readChunk = 0
  private readPos = 0
  private writePos = CHUNK // forces a first chunk
  length = 0
  /** bytes of the records held */
  bytes = 0

  /** Appends a published message (fields copied: the message itself is not retained). */
  pushMessage(m: Message, clientId: string | null, at: number): void {
    const props = propertiesJson(m) ?? ''
    // room for the worst case (3 bytes per UTF-16 unit); the real size is known after writing
    const most = 4 + 1 + 8 + 1 + 2 + m.topic.length * 3 + 2 + (clientId === null ? 0 : clientId.length * 3) + 4 + m.payload.length + 4 + props.length * 3
    const buf = this.reserve(most)
    const start = this.writePos
    let p = start + 4
    // integers written by hand: the Buffer methods' range checks cost more than the stores here
    buf[p++] = KIND_MESSAGE
    const hi = Math.floor(at / 0x100000000)
    u32(buf, p, at - hi * 0x100000000)
    u32(buf, p + 4, hi)
    p += 8
    buf[p++] = m.qos | (m.retain ? 4 : 0) | (clientId === null ? 8 : 0)
    const topicLen = writeString(buf, m.topic, p + 2)
    buf[p] = topicLen & 255
    buf[p + 1] = topicLen >>> 8
    p += 2 + topicLen
    const clientLen = clientId === null ? 0 : writeString(buf, clientId, p + 2)
    buf[p] = clientLen & 255
    buf[p + 1] = clientLen >>> 8
    p += 2 + clientLen
    const payload = m.payload
    u32(buf, p, payload.length)
    p += 4
    buf.set(payload, p) // TypedArray#set: no native-call wrapper, faster than copy() or a loop even for 64 bytes
    p += payload.length
    const propsLen = props.length === 0 ? 0 : buf.write(props, p + 4, 'utf8')
    u32(buf, p, propsLen)
    p += 4 + propsLen
    u32(buf, start, p - start)
    this.writePos = p
    this.length++
    this.bytes += p - start
  }

  /** Appends a delivery that is already JSON (events, custom deliveries, replays). */
  pushJson(json: string): void {
    const len = Buffer.byteLength(json)
    const size = 4 + 1 + len
    const buf = this.reserve(size)
    buf.writeUInt32LE(size, this.writePos)
    buf[this.writePos + 4] = KIND_JSON
    buf.write(json, this.writePos + 5, 'utf8')
    this.writePos += size
    this.length++
    this.bytes += size
  }

  /**
   * Removes the oldest record and writes its delivery JSON straight into `out`,
   * through writeMessageJson() as the durable outbox does, without a string per
   * field.
   */
  shiftInto(out: JsonWriter, makeId: () => string): boolean {
    if (this.length === 0) return false
    const buf = this.advance()
    const start = this.recordStart
    const size = buf.readUInt32LE(start)
    if (buf[start + 4] === KIND_JSON) {
      out.bytes(buf, start + 5, start + size)
      return true
    }
    let p = start + 5
    const at = buf.readUInt32LE(p) + buf.readUInt32LE(p + 4) * 0x100000000
    p += 8
    const flags = buf[p++]!
    const topicAt = p
    p += 2 + buf.readUInt16LE(p)
    const clientAt = p
    p += 2 + buf.readUInt16LE(p)
    const payloadAt = p
    p += 4 + buf.readUInt32LE(p)
    const propsAt = buf.readUInt32LE(p) === 0 ? undefined : p
    recordJson.src = buf
    recordJson.out = out
    writeMessageJson(recordJson, makeId(), at, flags & 8 ? null : clientAt, topicAt, flags & 3, (flags & 4) !== 0, payloadAt, propsAt)
    return true
  }

  /** Drops the oldest record without decoding it. */
  drop(): void {
    if (this.length > 0) this.advance()
  }

  private recordStart = 0

  /** Steps past the oldest record; answers its chunk, its offset in `recordStart`. */
  private advance(): Buffer {
    let buf = this.chunks[this.readChunk]!
    if (this.readPos + 4 > buf.length || buf.readUInt32LE(this.readPos) === 0) {
      // rest of this chunk unused
      this.readChunk++
      this.readPos = 0
      buf = this.chunks[this.readChunk]!
    }
    this.recordStart = this.readPos
    const size = buf.readUInt32LE(this.readPos)
    this.readPos += size
    this.bytes -= size
    this.length--
    if (this.readChunk > 0 && this.readChunk * 2 >= this.chunks.length) {
      // let read chunks go
      this.chunks = this.chunks.slice(this.readChunk)
      this.readChunk = 0
    }
    return buf
  }

  private reserve(size: number): Buffer {
    let buf = this.chunks[this.chunks.length - 1]
    if (buf === undefined || this.writePos + size > buf.length) {
      if (buf !== undefined && this.writePos + 4 <= buf.length) buf.writeUInt32LE(0, this.writePos) // end marker
      buf = Buffer.allocUnsafe(Math.max(CHUNK, size))
      this.chunks.push(buf)
      this.writePos = 0
    }
    return buf
  }
}

function u32(buf: Buffer, at: number, v: number): void {
  buf[at] = v & 255
  buf[at + 1] = (v >>> 8) & 255
  buf[at + 2] = (v >>> 16) & 255
  buf[at + 3] = v >>> 24
}

/** UTF-8 of `s` at `at`; answers the byte length. ASCII (topics, client ids) is copied in JS, without a native call. */
function writeString(buf: Buffer, s: string, at: number): number {
  const n = s.length
  if (n > 64) return buf.write(s, at, 'utf8')
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i)
    if (c >= 0x80) return buf.write(s, at, 'utf8')
    buf[at + i] = c
  }
  return n
}

const B64 = Buffer.from('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/')
const HEX = '0123456789abcdef'

/**
 * writeMessageJson() from a message record: a value is the offset of its
 * length prefix in `src` (16 bits before the topic and the client id, 32 before
 * the payload and the properties).
 */
class RecordJson implements JsonOut<number, number> {
  src: Buffer = Buffer.alloc(0)
  out = new JsonWriter(0)

  ascii(text: string): void {
    this.out.ascii(text)
  }
  string(at: number): void {
    this.out.jsonString(this.src, at + 2, at + 2 + this.src.readUInt16LE(at))
  }
  base64(at: number): void {
    this.out.base64(this.src, at + 4, at + 4 + this.src.readUInt32LE(at))
  }
  json(at: number): void {
    this.out.bytes(this.src, at + 4, at + 4 + this.src.readUInt32LE(at))
  }
}

/** A growing byte buffer that JSON is written into (ASCII, escaped strings, base64). */
export class JsonWriter {
  buf: Buffer
  pos = 0

  constructor(size = 64 * 1024) {
    this.buf = Buffer.allocUnsafe(size)
  }

  private room(n: number): void {
    if (this.pos + n <= this.buf.length) return
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n))
    this.buf.copy(next, 0, 0, this.pos)
    this.buf = next
  }

  /** text known to be ASCII */
  ascii(s: string): void {
    this.room(s.length)
    const buf = this.buf
    let p = this.pos
    for (let i = 0; i < s.length; i++) buf[p++] = s.charCodeAt(i)
    this.pos = p
  }

  bytes(src: Buffer, start: number, end: number): void {
    this.room(end - start)
    this.buf.set(src.subarray(start, end), this.pos)
    this.pos += end - start
  }

  /** UTF-8 bytes as a JSON string, escaped as JSON.stringify escapes them */
  jsonString(src: Buffer, start: number, end: number): void {
    this.room((end - start) * 6 + 2)
    const buf = this.buf
    let p = this.pos
    buf[p++] = 0x22
    for (let i = start; i < end; i++) {
      const c = src[i]!
      if (c === 0x22 || c === 0x5c) {
        buf[p++] = 0x5c
        buf[p++] = c
      } else if (c >= 0x20) buf[p++] = c
      else if (c === 0x0a) {
        buf[p++] = 0x5c
        buf[p++] = 0x6e
      } else if (c === 0x0d) {
        buf[p++] = 0x5c
        buf[p++] = 0x72
      } else if (c === 0x09) {
        buf[p++] = 0x5c
        buf[p++] = 0x74
      } else if (c === 0x08) {
        buf[p++] = 0x5c
        buf[p++] = 0x62
      } else if (c === 0x0c) {
        buf[p++] = 0x5c
        buf[p++] = 0x66
      } else {
        buf[p++] = 0x5c
        buf[p++] = 0x75
        buf[p++] = 0x30
        buf[p++] = 0x30
        buf[p++] = HEX.charCodeAt(c >> 4)
        buf[p++] = HEX.charCodeAt(c & 15)
      }
    }
    buf[p++] = 0x22
    this.pos = p
  }

  base64(src: Buffer, start: number, end: number): void {
    const n = end - start
    if (n > 1024) {
      this.ascii(src.toString('base64', start, end))
      return
    }
    this.room(Math.ceil(n / 3) * 4)
    const buf = this.buf
    let p = this.pos
    let i = start
    for (; i + 2 < end; i += 3) {
      const v = (src[i]! << 16) | (src[i + 1]! << 8) | src[i + 2]!
      buf[p++] = B64[v >> 18]!
      buf[p++] = B64[(v >> 12) & 63]!
      buf[p++] = B64[(v >> 6) & 63]!
      buf[p++] = B64[v & 63]!
    }
    if (i < end) {
      const v = (src[i]! << 16) | (i + 1 < end ? src[i + 1]! << 8 : 0)
      buf[p++] = B64[v >> 18]!
      buf[p++] = B64[(v >> 12) & 63]!
      buf[p++] = i + 1 < end ? B64[(v >> 6) & 63]! : 0x3d
      buf[p++] = 0x3d
    }
    this.pos = p
  }

  /** the bytes written, copied out; the writer starts over */
  take(): Buffer {
    const out = Buffer.from(this.buf.subarray(0, this.pos))
    this.pos = 0
    return out
  }
}

const recordJson = new RecordJson()
