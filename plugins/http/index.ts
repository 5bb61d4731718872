import http from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Broker, BrokerPlugin, Logger } from '../../core/index.js'
import { BearerToken, relativeHookStatus } from './access.js'
import { createMetrics, type MetricSources } from './metrics.js'

// The operator's HTTP endpoint (off unless configured, loopback unless a host
// is given): /health (ready to serve: for load balancers and readiness probes),
// /live (the process answers: for liveness probes, which must not restart a
// node because Redis is away), /metrics for Prometheus, /hooks for the state
// of every hook. With a token, /metrics and /hooks need `Authorization: Bearer
// <token>`; /health and /live stay open for probes (they show no paths).

export interface HttpConfig {
  port: number
  host?: string
  /** bearer token /metrics and /hooks require */
  token?: string
}

export interface HttpSources extends Omit<MetricSources, 'broker'> {
  /** the hooks folder (absolute): /hooks shows file paths relative to it */
  hooksDir?: string
}

export class HttpEndpoint implements BrokerPlugin {
  readonly name = 'http'
  private server: http.Server | undefined
  private ready = false
  private readonly token: BearerToken | undefined

  constructor(
    private readonly config: HttpConfig,
    private readonly sources: HttpSources,
    private readonly log: Logger,
  ) {
    this.token = config.token === undefined ? undefined : new BearerToken(config.token)
  }

  async start(broker: Broker): Promise<void> {
    const metrics = createMetrics(await import('prom-client'), { broker, ...this.sources })
    broker.once('ready', () => {
      this.ready = true
    })
    const server = http.createServer((req, res) => {
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { allow: 'GET, HEAD' }).end()
        return
      }
      const path = (req.url ?? '/').split('?')[0]
      if (path === '/health') return this.health(broker, res)
      if (path === '/live') return json(res, 200, { status: 'alive', node: broker.id })
      if ((path === '/hooks' || path === '/metrics') && this.token !== undefined && !this.token.allows(req)) {
        res.setHeader('www-authenticate', 'Bearer realm="hookmq"')
        return json(res, 401, { error: 'unauthorized: send Authorization: Bearer <http.token>' })
      }
      if (path === '/hooks') return json(res, 200, relativeHookStatus(this.sources.hooks(), this.sources.hooksDir))
      if (path === '/metrics') {
        metrics.text().then(
          (text) => res.writeHead(200, { 'content-type': metrics.contentType }).end(text),
          (err: unknown) => {
            this.log.error({ err }, 'metrics could not be collected')
            res.writeHead(500).end()
          },
        )
        return
      }
      json(res, 404, { error: 'not found', paths: ['/health', '/live', '/metrics', '/hooks'] })
    })
    const host = this.config.host ?? broker.config.host
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(this.config.port, host, () => {
        server.off('error', reject)
        resolve()
      })
    })
    server.on('error', (err) => this.log.error({ err }, 'HTTP endpoint error'))
    this.server = server
    this.log.info({ url: this.url(), auth: this.token !== undefined ? 'bearer token' : 'none' }, 'HTTP endpoint (/health, /live, /metrics, /hooks) listening')
  }

  /** 200 while the broker takes clients and, with Redis, Redis answers; 503 otherwise, with why. */
  private health(broker: Broker, res: http.ServerResponse): void {
    const redis = broker.cluster === undefined ? undefined : broker.cluster.available ? 'up' : 'down'
    const problem =
      broker.phase === 'closing' || broker.phase === 'closed'
        ? 'shutting down'
        : !this.ready
          ? 'starting'
          : redis === 'down'
            ? 'redis unavailable'
            : this.sources.hooksProblem?.()
    json(res, problem === undefined ? 200 : 503, {
      status: problem ?? 'ok',
      node: broker.id,
      uptimeSeconds: Math.floor((Date.now() - broker.startedAt) / 1000),
      connections: broker.connectionCount,
      ...(redis !== undefined ? { redis } : {}),
    })
  }

  /** where it listens, once started */
  url(): string | undefined {
    const a = this.server?.address() as AddressInfo | null | undefined
    if (!a) return undefined
    return `http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`
  }

  async stop(): Promise<void> {
    const server = this.server
    if (server === undefined) return
    server.closeAllConnections()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  }
}

function json(res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body))
}
