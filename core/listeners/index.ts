import type { Listener, ListenerHost } from './common.js'
import { startTcp } from './tcp.js'
import { startTls } from './tls.js'
import { startWs } from './ws.js'

export { isLoopback, type Listener, type ListenerHost } from './common.js'

/** Starts every configured listener; if one fails to bind, the others are closed. */
export async function startListeners(host: ListenerHost): Promise<Listener[]> {
  const c = host.config
  const starting: Array<Promise<Listener>> = []
  if (c.tcp) starting.push(startTcp(host, c.host, c.port))
  if (c.tls) starting.push(startTls(host, c.tls.host ?? c.host, c.tls.port, c.tls))
  if (c.ws) starting.push(startWs(host, 'ws', c.ws.host ?? c.host, c.ws.port, c.ws.path))
  if (c.wss) starting.push(startWs(host, 'wss', c.wss.host ?? c.host, c.wss.port, c.wss.path, c.wss))
  const results = await Promise.allSettled(starting)
  const failed = results.find((r) => r.status === 'rejected')
  const started = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []))
  if (failed) {
    await Promise.all(started.map((l) => l.close()))
    throw (failed as PromiseRejectedResult).reason
  }
  return started
}
