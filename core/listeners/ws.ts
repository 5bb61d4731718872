import http from 'node:http'
import https from 'node:https'
import type net from 'node:net'
import type tls from 'node:tls'
import { isLoopback, listenServer, type Listener, type ListenerHost } from './common.js'
import { peerCertificate, tlsOptions, type TlsFiles } from './tls.js'

const SUBPROTOCOLS = ['mqtt', 'mqttv3.1']

/** WebSocket (and, with TLS files, secure WebSocket) listener; frames feed the same connection code. */
export async function startWs(host: ListenerHost, name: 'ws' | 'wss', address: string, port: number, path: string, files?: TlsFiles): Promise<Listener> {
  // loaded with the first WebSocket listener: a broker without one does not carry ws
  const { WebSocketServer, createWebSocketStream } = await import('ws')
  const server = files ? https.createServer(tlsOptions(host, files, 'wss')) : http.createServer()
  const pendingInfo = { name, loopback: isLoopback(address) }
  // an HTTP socket counts toward maxConnections from its accept and is closed if it has not
  // upgraded (and then sent CONNECT) within connectTimeoutMs
  server.on('connection', (raw: net.Socket) => host.admitPending(raw, pendingInfo, raw.remoteAddress ?? ''))
  server.on('request', (_req, res) => {
    res.writeHead(426, { 'content-type': 'text/plain' }).end(`MQTT over WebSocket: connect to ${path} with subprotocol "mqtt"\n`)
  })
  const wss = new WebSocketServer({
    server,
    path,
    maxPayload: host.config.limits.maxPacketSize + 5,
    perMessageDeflate: false,
    handleProtocols: (protocols) => SUBPROTOCOLS.find((p) => protocols.has(p)) ?? false,
  })
  wss.on('connection', (ws, req) => {
    const socket = req.socket as tls.TLSSocket
    const info = { name, loopback: isLoopback(address), certificate: files ? () => peerCertificate(socket) : undefined }
    // [MQTT-6.0.0-1] MQTT goes in binary frames: a text frame closes the connection (this listener runs before the stream's, which then pushes into a destroyed stream)
    ws.on('message', (_data, isBinary) => {
      if (isBinary) return
      ws.close(1003, 'MQTT is sent in binary frames')
      stream.destroy()
    })
    const stream = createWebSocketStream(ws)
    host.accept(stream, info, req.socket.remoteAddress ?? '', req.socket)
  })
  wss.on('error', (err) => host.log.error({ err }, 'WebSocket server error'))
  const listener = await listenServer(server, name, name, address, port, path)
  return {
    ...listener,
    close: async () => {
      for (const ws of wss.clients) ws.terminate()
      await new Promise<void>((done) => wss.close(() => done()))
      await listener.close()
    },
  }
}
