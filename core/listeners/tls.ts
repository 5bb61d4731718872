import type net from 'node:net'
import tls from 'node:tls'
import { HookmqError } from '../errors.js'
import { isLoopback, listenServer, type Listener, type ListenerHost } from './common.js'

export interface TlsFiles {
  key: string
  cert: string
  ca?: string | undefined
  requestCert: boolean
  rejectUnauthorized: boolean
}

export function tlsOptions(host: ListenerHost, files: TlsFiles, key: string): tls.TlsOptions {
  const read = (file: string, what: string): Buffer => {
    try {
      return host.readFile(file)
    } catch (err) {
      throw new HookmqError('CONFIG_INVALID', `config error: ${key}.${what} = ${JSON.stringify(file)}: ${(err as Error).message}`)
    }
  }
  return {
    key: read(files.key, 'key'),
    cert: read(files.cert, 'cert'),
    ca: files.ca ? read(files.ca, 'ca') : undefined,
    requestCert: files.requestCert,
    rejectUnauthorized: files.requestCert ? files.rejectUnauthorized : false,
  }
}

export async function startTls(host: ListenerHost, address: string, port: number, files: TlsFiles): Promise<Listener> {
  const server = tls.createServer(tlsOptions(host, files, 'tls'), (socket) => {
    socket.setNoDelay(true)
    const info = { name: 'tls', loopback: isLoopback(address), certificate: () => peerCertificate(socket) }
    host.accept(socket, info, socket.remoteAddress ?? '')
  })
  const pendingInfo = { name: 'tls', loopback: isLoopback(address) }
  // counted and timed from the TCP accept: a socket that never finishes its handshake is closed after connectTimeoutMs
  server.on('connection', (raw: net.Socket) => host.admitPending(raw, pendingInfo, raw.remoteAddress ?? ''))
  server.on('tlsClientError', (err) => host.log.debug({ err }, 'TLS handshake failed'))
  return listenServer(server, 'tls', 'mqtts', address, port)
}

export function peerCertificate(socket: tls.TLSSocket): object | undefined {
  const cert = socket.getPeerCertificate()
  return cert && Object.keys(cert).length > 0 ? cert : undefined
}
