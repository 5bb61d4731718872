// Aedes as a bench subject: `node serve-aedes.js <port> [json options]`; in memory,
// or with `{ "redis": { "port": n } }` on aedes-persistence-redis + mqemitter-redis.
import net from 'node:net'
import { createRequire } from 'node:module'
import { Aedes } from 'aedes'
import { collectOnSignal } from './collect.js'

collectOnSignal() // SIGUSR2 (brokers.ts collectedRss)

const port = Number(process.argv[2])
const options = JSON.parse(process.argv[3] ?? '{}') as { redis?: { port: number }; host?: string }
const require = createRequire(import.meta.url)
const extra: Record<string, unknown> = {}
if (options.redis) {
  const redis = { host: '127.0.0.1', port: options.redis.port }
  extra.persistence = (require('aedes-persistence-redis') as (o: object) => unknown)(redis)
  extra.mq = (require('mqemitter-redis') as (o: object) => unknown)(redis)
}
const aedes = await (Aedes as { createBroker(o: object): Promise<{ handle: (socket: net.Socket) => void }> }).createBroker(extra)
// TCP_NODELAY, as hookmq and the Mosquitto config set it: latency figures compare brokers, not Nagle
net
  .createServer((socket) => {
    socket.setNoDelay(true)
    aedes.handle(socket)
  })
  .listen(port, options.host ?? '127.0.0.1')
