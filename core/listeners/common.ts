import type net from 'node:net'
import type { Duplex } from 'node:stream'
import type { Config } from '../config.js'
import type { ListenerInfo } from '../connection.js'
import type { Logger } from '../logger.js'

/** An open listener. */
export interface Listener {
  name: string
  address(): { name: string; host: string; port: number; url: string }
  close(): Promise<void>
}

/** What a listener needs of the broker: where its sockets go, and the bytes of its TLS files. */
export interface ListenerHost {
  readonly config: Config
  readonly log: Logger
  /** a transport connection to speak MQTT on (`carrier`: the socket under a WebSocket stream) */
  accept(socket: Duplex, listener: ListenerInfo, remoteAddress: string, carrier?: Duplex): void
  /** a socket that is not a connection yet (TLS handshake, WebSocket upgrade); false when refused */
  admitPending(socket: Duplex, listener: ListenerInfo, remoteAddress: string): boolean
  /** reads a file the config names (a TLS key, certificate or CA) */
  readFile(path: string): Buffer
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.') || host === '::ffff:127.0.0.1'
}

function formatHost(host: string): string {
  return host.includes(':') ? `[${host}]` : host
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
