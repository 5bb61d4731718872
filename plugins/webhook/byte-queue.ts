import type { Message } from '../../core/index.js'
import { jsonProperties, messageJson } from './delivery.js'

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

  /** Appends a published message (fields copied: the message itself is not retained). */
  pushMessage(m: Message, clientId: string | null, at: number): void {
    const props = m.properties === undefined ? '' : JSON.stringify(jsonProperties(m.properties as Record<string, unknown>))
    // room for the worst case (3 bytes per UTF-16 unit); the real size is known after writing
    const most = 4 + 1 + 8 + 1 + 2 + m.topic.length * 3 + 2 + (clientId === null ? 0 : clientId.length * 3) + 4 + m.payload.length + 4 + props.length * 3
    const buf = this.reserve(most)
    const start = this.writePos
    let p = start + 4
    buf[p++] = KIND_MESSAGE
    buf.writeDoubleLE(at, p); p += 8
    buf[p++] = m.qos | (m.retain ? 4 : 0) | (clientId === null ? 8 : 0)
    const topicLen = buf.write(m.topic, p + 2, 'utf8')
    buf.writeUInt16LE(topicLen, p); p += 2 + topicLen
    const clientLen = clientId === null ? 0 : buf.write(clientId, p + 2, 'utf8')
    buf.writeUInt16LE(clientLen, p); p += 2 + clientLen
    buf.writeUInt32LE(m.payload.length, p); p += 4
    p += m.payload.copy(buf, p)
    const propsLen = props.length === 0 ? 0 : buf.write(props, p + 4, 'utf8')
    buf.writeUInt32LE(propsLen, p); p += 4 + propsLen
    buf.writeUInt32LE(p - start, start)
    this.writePos = p
    this.length++
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
  }

  /** Removes the oldest record and answers its delivery JSON (the id is made now). */
  shift(makeId: () => string): string | undefined {
    if (this.length === 0) return undefined
    const buf = this.advance()
    const start = this.recordStart
    const size = buf.readUInt32LE(start)
    if (buf[start + 4] === KIND_JSON) return buf.toString('utf8', start + 5, start + size)
    let p = start + 5
    const at = buf.readDoubleLE(p); p += 8
    const flags = buf[p++]!
    const topicLen = buf.readUInt16LE(p); p += 2
    const topic = buf.toString('utf8', p, p + topicLen); p += topicLen
    const clientLen = buf.readUInt16LE(p); p += 2
    const clientId = flags & 8 ? null : buf.toString('utf8', p, p + clientLen); p += clientLen
    const payloadLen = buf.readUInt32LE(p); p += 4
    const payload = buf.toString('base64', p, p + payloadLen); p += payloadLen
    const propsLen = buf.readUInt32LE(p); p += 4
    return messageJson(makeId(), at, clientId, topic, flags & 3, (flags & 4) !== 0, payload, propsLen > 0 ? buf.toString('utf8', p, p + propsLen) : undefined)
  }

  /** Drops the oldest record without decoding it. */
  drop(): void {
    if (this.length > 0) this.advance()
  }

  private recordStart = 0

  /** Steps past the oldest record; answers its chunk, its offset in `recordStart`. */
  private advance(): Buffer {
    let buf = this.chunks[this.readChunk]!
    if (this.readPos + 4 > buf.length || buf.readUInt32LE(this.readPos) === 0) { // rest of this chunk unused
      this.readChunk++
      this.readPos = 0
      buf = this.chunks[this.readChunk]!
    }
    this.recordStart = this.readPos
    this.readPos += buf.readUInt32LE(this.readPos)
    this.length--
    if (this.readChunk > 0 && this.readChunk * 2 >= this.chunks.length) { // let read chunks go
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

