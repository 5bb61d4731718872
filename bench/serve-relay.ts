// The generator's ceiling: a "broker" that only frames packets. It answers
// CONNECT and SUBSCRIBE and copies every PUBLISH's bytes to the subscribers,
// with no parsing, routing or state. Whatever rate the generator reaches
// against it, no broker can be measured above it.
import net from 'node:net'
import { Framer } from './wire.js'

const subscribers = new Set<net.Socket>()
net
  .createServer((socket) => {
    socket.setNoDelay(true)
    // the PUBLISH packets of one read are contiguous: copied on as one write
    let run: { buf: Buffer; start: number; end: number } | null = null
    const framer = new Framer((type, _flags, buf, start, length) => {
      if (type === 1)
        socket.write(Buffer.from([0x20, 2, 0, 0])) // CONNACK
      else if (type === 8) {
        // SUBSCRIBE: SUBACK granting QoS 0
        socket.write(Buffer.from([0x90, 3, buf[start + 2]!, buf[start + 3]!, 0]))
        subscribers.add(socket)
      } else if (type === 3) {
        if (run !== null && run.buf === buf && run.end === start) run.end = start + length
        else {
          flush()
          run = { buf, start, end: start + length }
        }
      } else if (type === 12) socket.write(Buffer.from([0xd0, 0]))
    })
    const flush = (): void => {
      if (run === null) return
      for (const s of subscribers) s.write(run.buf.subarray(run.start, run.end))
      run = null
    }
    socket.on('data', (c: Buffer) => {
      framer.push(c)
      flush()
    })
    socket.on('close', () => subscribers.delete(socket))
    socket.on('error', () => {})
  })
  .listen(Number(process.argv[2]), '127.0.0.1')
