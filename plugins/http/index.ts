import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { isLoopback, type Broker, type BrokerPlugin, type Logger } from '../../core/index.js'
import { Tokens, relativeHookStatus } from './access.js'
import { AdminRouter, ApiError, adminRoutes, type AdminTarget, type Role, type Route } from './admin.js'
import { createMetrics, type MetricSources } from './metrics.js'

// The operator's HTTP endpoint (off unless configured, loopback unless a host
// is given): /health (ready to serve: for load balancers and readiness probes),
// /live (the process answers: for liveness probes, which must not restart a
// node because Redis is away), /metrics for Prometheus, /hooks for the state
// of every hook, the admin API under /admin/ (admin.ts) and the dashboard at /.
// With tokens, everything but /health, /live and the dashboard's static files
// needs `Authorization: Bearer <token>` (a read-only token: GET only). Without
// one, the endpoint answers only requests from loopback (and the config refuses
// to bind it beyond loopback).

export interface HttpConfig {
  port: number
  host?: string
  /** admin token */
  token?: string
  /** more tokens, each with its role */
  tokens?: Array<{ token: string; role: Role; name?: string }>
}

export interface HttpSources extends Omit<MetricSources, 'broker'> {
  /** the hooks folder (absolute): /hooks shows file paths relative to it */
  hooksDir?: string
  /** what the admin API works on (besides the broker) */
  admin: Omit<AdminTarget, 'broker' | 'hooks'>
  version: string
}

/** Where the dashboard's built files are (dist/plugins/http/dashboard/, made by the build) */
const DASHBOARD = join(dirname(fileURLToPath(import.meta.url)), 'dashboard')
const STATIC_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
}
const MAX_BODY = 1 << 20
/** The dashboard's own files only: no inline script or style, no other origin (the API is same-origin) */
const DASHBOARD_CSP =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

export class HttpEndpoint implements BrokerPlugin {
  readonly name = 'http'
  private server: http.Server | undefined
  private ready = false
  private readonly tokens: Tokens | undefined

  constructor(
    private readonly config: HttpConfig,
    private readonly sources: HttpSources,
    private readonly log: Logger,
  ) {
    const all = [...(config.token !== undefined ? [{ token: config.token, role: 'admin' as const }] : []), ...(config.tokens ?? [])]
    this.tokens = all.length > 0 ? new Tokens(all) : undefined
  }

  /** The role a request has: from its token, or admin from loopback when no token is configured; undefined: refused (with the status to answer). */
  private roleOf(req: http.IncomingMessage): { role: Role; name: string } | { status: 401 | 403; error: string } {
    if (this.tokens === undefined) {
      return isLoopback(req.socket.remoteAddress ?? '')
        ? { role: 'admin', name: 'loopback' }
        : { status: 403, error: 'no http.token is configured: this endpoint answers loopback only' }
    }
    return this.tokens.holder(req) ?? { status: 401, error: 'unauthorized: send Authorization: Bearer <token>' }
  }

  async start(broker: Broker): Promise<void> {
    const metrics = createMetrics(await import('prom-client'), { broker, ...this.sources })
    broker.once('ready', () => {
      this.ready = true
    })
    const admin = new AdminRouter(adminRoutes({ broker, hooks: () => relativeHookStatus(this.sources.hooks(), this.sources.hooksDir), ...this.sources.admin }))
    const server = http.createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x')
      const path = url.pathname
      const method = req.method ?? 'GET'
      const readOnly = method === 'GET' || method === 'HEAD'
      if ((path === '/health' || path === '/live' || path === '/' || path === '/admin/openapi.json') && !readOnly)
        return void res.writeHead(405, { allow: 'GET, HEAD' }).end()
      if (path === '/health') return this.health(broker, res)
      if (path === '/live') return json(res, 200, { status: 'alive', node: broker.id })
      if ((path === '/' || path.startsWith('/dashboard/')) && readOnly) return this.dashboard(path, res)
      if (path === '/admin/openapi.json') return json(res, 200, admin.openapi(this.sources.version))
      const who = this.roleOf(req)
      if ('status' in who) {
        if (who.status === 401) res.setHeader('www-authenticate', 'Bearer realm="hookmq"')
        return json(res, who.status, { error: who.error })
      }
      if (path === '/hooks' || path === '/metrics') {
        if (!readOnly) return void res.writeHead(405, { allow: 'GET, HEAD' }).end()
        if (path === '/hooks') return json(res, 200, relativeHookStatus(this.sources.hooks(), this.sources.hooksDir))
        metrics.text().then(
          (text) => res.writeHead(200, { 'content-type': metrics.contentType }).end(text),
          (err: unknown) => {
            this.log.error({ err }, 'metrics could not be collected')
            res.writeHead(500).end()
          },
        )
        return
      }
      const found = admin.find(method, path)
      if (found === undefined) return json(res, 404, { error: 'not found', paths: ['/health', '/live', '/metrics', '/hooks', '/admin/openapi.json', '/'] })
      if ('allow' in found) return json(res.setHeader('allow', found.allow.join(', ')), 405, { error: `${method} not allowed here` })
      if (found.route.role === 'admin' && who.role !== 'admin') return json(res, 403, { error: 'this token is read-only' })
      void this.runRoute(found.route, found.params, url, who, req, res)
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
    this.log.info(
      { url: this.url(), auth: this.tokens !== undefined ? 'bearer token' : 'loopback only' },
      'HTTP endpoint (/health, /live, /metrics, /hooks, admin API /admin/, dashboard /) listening',
    )
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

  private async runRoute(
    route: Route,
    params: Record<string, string>,
    url: URL,
    who: { role: Role; name: string },
    req: http.IncomingMessage,
    res: http.ServerResponse,
  ): Promise<void> {
    try {
      const query = parse(route.query, Object.fromEntries(url.searchParams), 'query')
      const body = route.body === undefined ? {} : parse(route.body, await readJson(req), 'body')
      const out = await route.run({ params, query, body, role: who.role, by: who.name, req, res })
      if (route.stream !== true) json(res, 200, out)
      if (route.method !== 'GET') this.log.info({ method: route.method, path: url.pathname, by: who.name }, 'admin API')
    } catch (err) {
      if (err instanceof ApiError) return json(res, err.status, { error: err.message })
      this.log.error({ err, path: url.pathname }, 'admin API request failed')
      if (!res.headersSent) json(res, 500, { error: (err as Error).message })
      else res.end()
    }
  }

  /** The dashboard's files (a page that then asks for a token and talks to /admin/). */
  private dashboard(path: string, res: http.ServerResponse): void {
    const name = path === '/' ? 'index.html' : path.slice('/dashboard/'.length)
    const file = join(DASHBOARD, name)
    if (!/^[\w.-]+$/.test(name) || !existsSync(file)) return json(res, 404, { error: 'not found' })
    const type = STATIC_TYPES[name.slice(name.lastIndexOf('.'))] ?? 'application/octet-stream'
    res
      .writeHead(200, {
        'content-type': type,
        'cache-control': 'no-cache',
        'content-security-policy': DASHBOARD_CSP,
        'referrer-policy': 'no-referrer',
        'x-content-type-options': 'nosniff',
        'x-frame-options': 'DENY',
      })
      .end(readFileSync(file))
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

/** `schema` over `value`, or a 400 naming the first problem. */
function parse(schema: import('zod').ZodType | undefined, value: unknown, where: string): Record<string, unknown> {
  if (schema === undefined) {
    if (where === 'query' && Object.keys(value as object).length > 0) throw new ApiError(400, `unknown query parameter ${Object.keys(value as object)[0]}`)
    return {}
  }
  const r = schema.safeParse(value)
  if (r.success) return r.data as Record<string, unknown>
  const issue = r.error.issues[0]!
  const at = issue.path.length ? `${where}.${issue.path.join('.')}` : where
  throw new ApiError(400, `${at}: ${issue.message}`)
}

/** The request's JSON body ({} when empty), at most 1 MiB. */
function readJson(req: http.IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    req.on('data', (c: Buffer) => {
      size += c.length
      if (size > MAX_BODY) {
        reject(new ApiError(413, 'body over 1 MiB'))
        req.destroy()
      } else chunks.push(c)
    })
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8').trim()
      if (text === '') return resolve({})
      try {
        resolve(JSON.parse(text))
      } catch {
        reject(new ApiError(400, 'body: not JSON'))
      }
    })
    req.on('error', reject)
  })
}

function json(res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body))
}
