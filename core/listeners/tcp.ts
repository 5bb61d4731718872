import net from 'node:net'
import type { Broker } from '../broker.js'
import { formatHost, isLoopback, type Listener } from './index.js'

export async function startTcp(broker: Broker, host: string, port: number): Promise<Listener> {
  const info = { name: 'tcp', loopback: isLoopback(host) }
  const server = net.createServer((socket) => {
    socket.setNoDelay(true)
    broker.accept(socket, info, socket.remoteAddress ?? '')
  })
  return listenServer(server, 'tcp', 'mqtt', host, port)
}

/** Binds `server` and wraps it as a Listener. */
export function listenServer(server: net.Server, name: string, scheme: string, host: string, port: number, path = ''): Promise<Listener> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => {
      server.off('error', reject)
      const bound = (server.address() as net.AddressInfo).port
      resolve({
        name,
        address: () => ({ name, host, port: bound, url: `${scheme}://${formatHost(host)}:${bound}${path}` }),
        close: () => new Promise<void>((done) => server.close(() => done())),
      })
    })
  })
}
