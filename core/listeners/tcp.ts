import net from 'node:net'
import { isLoopback, listenServer, type Listener, type ListenerHost } from './common.js'

export async function startTcp(host: ListenerHost, address: string, port: number): Promise<Listener> {
  const info = { name: 'tcp', loopback: isLoopback(address) }
  const server = net.createServer((socket) => {
    socket.setNoDelay(true)
    host.accept(socket, info, socket.remoteAddress ?? '')
  })
  return listenServer(server, 'tcp', 'mqtt', address, port)
}
