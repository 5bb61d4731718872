// The webhook endpoint of the bench, in its own process so that parsing
// deliveries never delays the generator's event loop. Answers {count, lastAt}
// (lastAt on its own performance clock, as ms since its start) over IPC.
import http from 'node:http'
import type net from 'node:net'

let count = 0
let lastAt = 0
const t0 = Date.now()
const server = http.createServer((req, res) => {
  const chunks: Buffer[] = []
  req.on('data', (c: Buffer) => chunks.push(c))
  req.on('end', () => {
    count += (JSON.parse(Buffer.concat(chunks).toString()) as { deliveries: unknown[] }).deliveries.length
    lastAt = Date.now() - t0
    res.writeHead(204).end()
  })
})
server.listen(0, '127.0.0.1', () => process.send!({ port: (server.address() as net.AddressInfo).port, t0 }))
process.on('message', () => process.send!({ count, lastAt: lastAt + t0 }))
