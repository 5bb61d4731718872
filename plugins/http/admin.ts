import type http from 'node:http'
import { z } from 'zod'
import { checkTopicFilter, checkTopicName, HookmqError, type Broker, type TraceEvent } from '../../core/index.js'
import { clientFilter, localQueries, type ClientFilter, type ClusterQueries, type NodeQueries } from '../queries.js'
import type { HookStatus } from '../host/host.js'
import type { DeadBatch } from '../webhook/delivery.js'
import type { WebhookStatus } from '../webhook/index.js'

// The admin API (/admin/...): one table of routes, each with its zod schemas
// for query and body, the role it needs and its handler. The same table makes
// the OpenAPI description (/admin/openapi.json). A route answers JSON, or
// (trace) Server-Sent Events. Cluster-wide answers (clients, subscriptions,
// kicks) ask every node through `nodes` when the broker has peers.

export type Role = 'read' | 'admin'

export interface HookControl {
  setEnabled(name: string, enabled: boolean): boolean
  reloadFile(name: string): Promise<HookStatus | undefined>
  /** a hook's shadow comparison and canary split (plugins/host/rollout-watch.ts) */
  rolloutOf?(name: string): unknown
  promote?(name: string): Promise<unknown>
  /** hooks.record's file and counts, undefined when not recording */
  recording?(): unknown
}

export interface BanApi {
  add(input: { kind: 'clientId' | 'username' | 'address'; value: string; reason?: string; expiresAt?: number; by?: string }): Promise<unknown>
  remove(id: string): Promise<boolean>
  list(): unknown[]
}

/** What the admin API works on (plugins/index.ts gives it). */
export interface AdminTarget {
  broker: Broker
  hooks(): HookStatus[]
  hookControl?: HookControl
  webhooks: {
    status(): WebhookStatus[]
    deadLetters(webhook?: string): Promise<DeadBatch[]>
    replay(webhook?: string): Promise<number>
    purge(webhook?: string): Promise<number>
  }
  bans?: BanApi
  /** re-reads and applies the config (SIGHUP's work) */
  reload?(): Promise<unknown>
  /** the running config, secrets masked */
  config(): unknown
  /** every node's answers; undefined on a single node */
  cluster?: ClusterQueries
}

const page = z.strictObject({
  limit: z.coerce.number().int().min(1).max(1000).default(100).describe('rows per page'),
  offset: z.coerce.number().int().min(0).default(0).describe('rows to skip'),
})

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message)
  }
}

interface Ctx {
  params: Record<string, string>
  query: Record<string, unknown>
  body: Record<string, unknown>
  role: Role
  /** who asked: the token's name, or 'loopback' */
  by: string
  req: http.IncomingMessage
  res: http.ServerResponse
}

export interface Route {
  method: 'GET' | 'POST' | 'DELETE'
  path: string
  role: Role
  summary: string
  query?: z.ZodType
  body?: z.ZodType
  /** Server-Sent Events: the handler writes the response itself */
  stream?: true
  run(ctx: Ctx): unknown
}

const topicName = z
  .string()
  .min(1)
  .refine((t) => checkTopicName(t, { maxTopicLength: 65535, maxTopicLevels: 1024 }) === undefined, 'not a valid topic name')
const topicFilter = z
  .string()
  .min(1)
  .refine((t) => checkTopicFilter(t, { maxTopicLength: 65535, maxTopicLevels: 1024 }) === undefined, 'not a valid topic filter')

const banBody = z
  .strictObject({
    clientId: z.string().min(1).optional(),
    username: z.string().min(1).optional(),
    address: z.string().min(1).optional().describe('an IP address or a CIDR block'),
    reason: z.string().max(200).optional(),
    expiresInSeconds: z.int().min(1).optional().describe('lifted after this many seconds (none: until removed)'),
  })
  .refine((b) => [b.clientId, b.username, b.address].filter((v) => v !== undefined).length === 1, 'exactly one of clientId, username, address')

const publishBody = z.strictObject({
  topic: topicName,
  payload: z.string().default(''),
  encoding: z.enum(['utf8', 'base64']).default('utf8'),
  qos: z.union([z.literal(0), z.literal(1), z.literal(2)]).default(0),
  retain: z.boolean().default(false),
})

const webhookQuery = z.strictObject({ webhook: z.string().optional().describe('one webhook (default: all)') })

/** A payload as the API shows it: UTF-8 text when it is valid UTF-8, else base64. */
function showPayload(payload: Buffer, max = 4096): { payload: string; encoding: 'utf8' | 'base64'; bytes: number; truncated: boolean } {
  const part = payload.subarray(0, max)
  const text = part.toString('utf8')
  const utf8 = Buffer.from(text, 'utf8').equals(part) && !part.some((b) => b < 0x09 || (b > 0x0d && b < 0x20))
  return { payload: utf8 ? text : part.toString('base64'), encoding: utf8 ? 'utf8' : 'base64', bytes: payload.length, truncated: payload.length > max }
}

export function adminRoutes(t: AdminTarget): Route[] {
  const b = t.broker
  const local = localQueries(b)
  const everywhere = async <K extends keyof NodeQueries>(
    method: K,
    args: Parameters<NodeQueries[K]>,
  ): Promise<{ answers: Array<{ node: string; value: Awaited<ReturnType<NodeQueries[K]>> }>; missing: string[] }> =>
    t.cluster !== undefined
      ? t.cluster.ask(method, args)
      : {
          answers: [{ node: b.id, value: await (local[method] as (...a: unknown[]) => Awaited<ReturnType<NodeQueries[K]>>)(...args) }],
          missing: [] as string[],
        }
  const need = <T>(what: string, v: T | undefined): T => {
    if (v === undefined) throw new ApiError(501, `${what} is not available on this broker`)
    return v
  }
  return [
    {
      method: 'GET',
      path: '/admin/clients',
      role: 'read',
      summary: 'connected clients, every node (filter by prefix, paginated by client id)',
      query: clientFilter.extend(page.shape),
      async run({ query }) {
        const q = query as ClientFilter & { limit: number; offset: number }
        const { answers, missing } = await everywhere('clients', [{ clientId: q.clientId, username: q.username, address: q.address }])
        const all = answers.flatMap((a) => a.value).sort((x, y) => (x.clientId < y.clientId ? -1 : x.clientId > y.clientId ? 1 : 0))
        return { total: all.length, offset: q.offset, clients: all.slice(q.offset, q.offset + q.limit), ...(missing.length ? { missingNodes: missing } : {}) }
      },
    },
    {
      method: 'GET',
      path: '/admin/clients/:clientId',
      role: 'read',
      summary: 'one connected client: protocol, keep-alive, address, user, subscriptions, in flight, queue, bytes, since',
      async run({ params }) {
        const { answers } = await everywhere('client', [params.clientId!])
        const found = answers.find((a) => a.value !== undefined)?.value
        if (found === undefined) throw new ApiError(404, `no client "${params.clientId}" is connected`)
        return found
      },
    },
    {
      method: 'POST',
      path: '/admin/clients/:clientId/kick',
      role: 'admin',
      summary: 'disconnects the client (MQTT 5: DISCONNECT 0x98 Administrative action), on whichever node it is',
      body: z.strictObject({ reason: z.string().max(200).optional() }).default({}),
      async run({ params, body }) {
        const reason = (body.reason as string | undefined) ?? 'disconnected by an administrator'
        const { answers } = await everywhere('kick', [params.clientId!, reason])
        const on = answers.find((a) => a.value === true)?.node
        if (on === undefined) throw new ApiError(404, `no client "${params.clientId}" is connected`)
        return { kicked: params.clientId, node: on }
      },
    },
    {
      method: 'GET',
      path: '/admin/trace',
      role: 'read',
      summary: 'live trace as Server-Sent Events: packets in and out of a client, or every PUBLISH on a topic filter, and the hook decisions on them',
      query: z
        .strictObject({ clientId: z.string().min(1).optional(), topic: topicFilter.optional() })
        .refine((q) => q.clientId !== undefined || q.topic !== undefined, 'clientId or topic'),
      stream: true,
      run({ query, req, res }) {
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-accel-buffering': 'no' })
        res.write(`: tracing ${JSON.stringify(query)} on node ${b.id}\n\n`)
        // a reader slower than the traffic does not grow this process: past 1 MiB unsent, events are dropped and counted
        let dropped = 0
        const send = (e: TraceEvent): void => {
          if (res.writableLength > 1 << 20) {
            dropped++
            return
          }
          if (dropped > 0) {
            res.write(`: ${dropped} event(s) dropped: the reader was slower than the traffic\n\n`)
            dropped = 0
          }
          res.write(`data: ${JSON.stringify(e)}\n\n`)
        }
        const filter = { clientId: query.clientId as string | undefined, topic: query.topic as string | undefined }
        const stop = t.cluster !== undefined ? t.cluster.trace(filter, send) : b.tracer.watch(filter, send)
        const ping = setInterval(() => res.write(': ping\n\n'), 15000)
        const end = (): void => {
          clearInterval(ping)
          stop()
        }
        req.on('close', end)
        res.on('close', end)
      },
    },
    {
      method: 'GET',
      path: '/admin/bans',
      role: 'read',
      summary: 'the bans in force',
      run: () => ({ bans: need('bans', t.bans).list() }),
    },
    {
      method: 'POST',
      path: '/admin/bans',
      role: 'admin',
      summary: 'bans a client id, username, address or CIDR block (and kicks matching clients)',
      body: banBody,
      async run({ body, by }) {
        const v = body as z.infer<typeof banBody>
        const kind = v.clientId !== undefined ? 'clientId' : v.username !== undefined ? 'username' : 'address'
        const ban = await need('bans', t.bans)
          .add({
            kind,
            value: (v.clientId ?? v.username ?? v.address)!,
            reason: v.reason,
            expiresAt: v.expiresInSeconds !== undefined ? Date.now() + v.expiresInSeconds * 1000 : undefined,
            by: `admin API: ${by}`,
          })
          .catch(apiError)
        return { ban }
      },
    },
    {
      method: 'DELETE',
      path: '/admin/bans/:id',
      role: 'admin',
      summary: 'lifts a ban',
      async run({ params }) {
        if (!(await need('bans', t.bans).remove(params.id!).catch(apiError))) throw new ApiError(404, `no ban "${params.id}"`)
        return { removed: params.id }
      },
    },
    {
      method: 'GET',
      path: '/admin/sessions',
      role: 'read',
      summary: 'persistent sessions whose client is not connected (kept in the session store)',
      query: z.strictObject({ clientId: z.string().optional().describe('client id prefix') }).extend(page.shape),
      async run({ query }) {
        const q = query as { clientId?: string; limit: number; offset: number }
        const stored = await b.stores.sessions.list()
        const offline = stored
          .filter((s) => (q.clientId === undefined || s.clientId.startsWith(q.clientId)) && b.connectionOf(s.clientId) === undefined)
          .sort((x, y) => (x.clientId < y.clientId ? -1 : 1))
        return {
          total: offline.length,
          offset: q.offset,
          sessions: offline
            .slice(q.offset, q.offset + q.limit)
            .map((s) => ({ clientId: s.clientId, subscriptions: s.subscriptions.length, ...sessionTimes(s) })),
        }
      },
    },
    {
      method: 'GET',
      path: '/admin/sessions/:clientId',
      role: 'read',
      summary: 'one stored session: subscriptions, queued and in-flight messages',
      async run({ params }) {
        const s = await b.stores.sessions.load(params.clientId!)
        if (s === undefined) throw new ApiError(404, `no stored session "${params.clientId}"`)
        return {
          clientId: s.clientId,
          connected: b.connectionOf(s.clientId) !== undefined,
          subscriptions: s.subscriptions.map((sub) => ({ filter: sub.filter, qos: sub.qos })),
          queued: s.queue.length,
          inflight: s.inflight.length,
          queuedTopics: [...new Set(s.queue.slice(0, 100).map((e) => e.message.topic))],
          ...sessionTimes(s),
        }
      },
    },
    {
      method: 'DELETE',
      path: '/admin/sessions/:clientId',
      role: 'admin',
      summary: 'deletes a session, stored or held by any node (its client, if connected, is kicked first)',
      async run({ params }) {
        const id = params.clientId!
        const stored = await b.stores.sessions.load(id)
        const { answers, missing } = await everywhere('endSession', [id])
        if (stored === undefined && !answers.some((a) => a.value)) throw new ApiError(404, `no session "${id}"`)
        await b.stores.sessions.delete(id) // (one no node held: stored only)
        return { deleted: id, ...(missing.length ? { missingNodes: missing } : {}) }
      },
    },
    {
      method: 'GET',
      path: '/admin/subscriptions',
      role: 'read',
      summary: 'who is subscribed to what matches a topic, every node',
      query: z.strictObject({ topic: topicName.describe('a topic name') }),
      async run({ query }) {
        const { answers, missing } = await everywhere('subscribers', [query.topic as string])
        return { topic: query.topic, subscribers: answers.flatMap((a) => a.value), ...(missing.length ? { missingNodes: missing } : {}) }
      },
    },
    {
      method: 'GET',
      path: '/admin/retained',
      role: 'read',
      summary: 'retained messages matching a filter (payloads cut at 4 KiB)',
      query: z.strictObject({ filter: topicFilter.default('#') }).extend(page.shape),
      async run({ query }) {
        const q = query as { filter: string; limit: number; offset: number }
        const rows: unknown[] = []
        let seen = 0
        const it = b.stores.retained.pages(q.filter)
        outer: for (;;) {
          const r = await it.next()
          if (r.done === true) break
          for (const m of r.value) {
            if (seen++ < q.offset) continue
            rows.push({ topic: m.topic, qos: m.qos, ...showPayload(m.payload, 256) })
            if (rows.length >= q.limit) break outer
          }
        }
        await it.return?.()
        return { filter: q.filter, offset: q.offset, messages: rows }
      },
    },
    {
      method: 'GET',
      path: '/admin/retained/message',
      role: 'read',
      summary: 'one retained message',
      query: z.strictObject({ topic: topicName }),
      async run({ query }) {
        const [m] = await b.stores.retained.match(query.topic as string)
        if (m === undefined) throw new ApiError(404, `no retained message on "${query.topic}"`)
        return { topic: m.topic, qos: m.qos, properties: m.properties ?? {}, ...showPayload(m.payload, 1 << 20) }
      },
    },
    {
      method: 'DELETE',
      path: '/admin/retained/message',
      role: 'admin',
      summary: 'clears a retained message (publishes an empty retained message on its topic, as MQTT clears one)',
      query: z.strictObject({ topic: topicName }),
      async run({ query }) {
        await b.publish({ topic: query.topic as string, payload: '', retain: true, qos: 0 })
        return { cleared: query.topic }
      },
    },
    {
      method: 'POST',
      path: '/admin/publish',
      role: 'admin',
      summary: 'publishes a message (transforms apply, no authorization)',
      body: publishBody,
      async run({ body }) {
        const p = body as z.infer<typeof publishBody>
        await b.publish({ topic: p.topic, payload: Buffer.from(p.payload, p.encoding), qos: p.qos, retain: p.retain }).catch(apiError)
        return { published: p.topic }
      },
    },
    { method: 'GET', path: '/admin/hooks', role: 'read', summary: 'every hook: state, version, last error, calls, denies, errors, p99', run: () => t.hooks() },
    ...(['reload', 'disable', 'enable'] as const).map(
      (action): Route => ({
        method: 'POST',
        path: `/admin/hooks/:name/${action}`,
        role: 'admin',
        summary: action === 'reload' ? "loads the hook's file again now" : `${action}s the hook (a disabled hook is skipped, as if absent)`,
        async run({ params }) {
          const control = need('hook control', t.hookControl)
          const name = params.name!
          if (action === 'reload') {
            const status = await control.reloadFile(name)
            if (status === undefined) throw new ApiError(404, `no hook file named "${name}"`)
            return status
          }
          if (!control.setEnabled(name, action === 'enable')) throw new ApiError(404, `no hook named "${name}"`)
          return t.hooks().find((h) => h.name === name) ?? { name }
        },
      }),
    ),
    ...rolloutRoutes(t, need),
    {
      method: 'GET',
      path: '/admin/webhooks',
      role: 'read',
      summary: 'every webhook: queue, in flight, delivered, retried, dead letters, p99',
      run: () => t.webhooks.status(),
    },
    {
      method: 'GET',
      path: '/admin/webhooks/dead-letters',
      role: 'read',
      summary: 'dead letters (batches that failed their last retry)',
      query: webhookQuery,
      run: async ({ query }) => ({ deadLetters: await t.webhooks.deadLetters(query.webhook as string | undefined) }),
    },
    {
      method: 'POST',
      path: '/admin/webhooks/dead-letters/replay',
      role: 'admin',
      summary: 'queues dead letters again',
      query: webhookQuery,
      run: async ({ query }) => ({ requeued: await t.webhooks.replay(query.webhook as string | undefined) }),
    },
    {
      method: 'DELETE',
      path: '/admin/webhooks/dead-letters',
      role: 'admin',
      summary: 'deletes dead letters',
      query: webhookQuery,
      run: async ({ query }) => ({ purged: await t.webhooks.purge(query.webhook as string | undefined) }),
    },
    { method: 'GET', path: '/admin/config', role: 'read', summary: 'the running config, secrets masked', run: () => t.config() },
    {
      method: 'POST',
      path: '/admin/reload',
      role: 'admin',
      summary: 're-reads the config file and applies what can change live (as SIGHUP)',
      async run() {
        const reload = need('reloading (a broker started from a config file)', t.reload)
        try {
          return await reload()
        } catch (err) {
          throw err instanceof HookmqError ? new ApiError(400, err.message) : err
        }
      },
    },
    {
      method: 'GET',
      path: '/admin/stats',
      role: 'read',
      summary: "this node's counters now (the dashboard samples them each second)",
      run() {
        const hooks = t.hooks()
        const webhooks = t.webhooks.status()
        const sum = (xs: number[]): number => xs.reduce((a, x) => a + x, 0)
        return {
          node: b.id,
          at: Date.now(),
          uptimeSeconds: Math.floor((Date.now() - b.startedAt) / 1000),
          connections: b.connectionCount,
          clients: b.stats.clientsConnected,
          messagesIn: sum(b.stats.received),
          messagesOut: sum(b.stats.sent),
          dropped: b.stats.dropped,
          subscriptions: b.router.tree.size,
          hookCalls: sum(hooks.map((h) => h.calls)),
          hookDenies: sum(hooks.map((h) => h.denies)),
          hookErrors: sum(hooks.map((h) => h.errors)),
          webhookQueued: sum(webhooks.map((w) => w.queued)),
          webhookDeadLettered: sum(webhooks.map((w) => w.deadLettered)),
        }
      },
    },
  ]
}

/** A broker error as the API answers it: 503 while the store is away, 400 for what was asked wrong. */
/** Shadow and canary rollout, and the decision record (README: Shadow and canary rollout, Record and replay). */
function rolloutRoutes(t: AdminTarget, need: <T>(what: string, v: T | undefined) => T): Route[] {
  /** the host's method `m`, bound (501 when the host has none) */
  const control = <K extends 'rolloutOf' | 'promote' | 'recording'>(m: K): NonNullable<HookControl[K]> => {
    const c = need('hook control', t.hookControl)
    const fn = need(m, c[m]) as (...args: unknown[]) => unknown
    return ((...args: unknown[]) => fn.apply(c, args)) as NonNullable<HookControl[K]>
  }
  return [
    {
      method: 'GET',
      path: '/admin/hooks/:name/rollout',
      role: 'read',
      summary:
        "a hook's rollout: its shadow's agreements and last disagreements with what was enforced, its canary's share and counts beside the stable version's",
      run({ params }) {
        const r = control('rolloutOf')(params.name!)
        if (r === undefined) throw new ApiError(404, `no hook named "${params.name}"`)
        return r
      },
    },
    {
      method: 'POST',
      path: '/admin/hooks/:name/promote',
      role: 'admin',
      summary: "promotes a hook's canary: <name>.canary.ts replaces the stable file (as a rename by hand would), which serves every client",
      async run({ params }) {
        const r = await control('promote')(params.name!).catch(apiError)
        if (r === undefined) throw new ApiError(404, `no canary file of a hook named "${params.name}"`)
        return r
      },
    },
    {
      method: 'GET',
      path: '/admin/record',
      role: 'read',
      summary: 'hooks.record: the file, records written, skipped (slow disk), rotations',
      run() {
        const r = control('recording')()
        if (r === undefined) throw new ApiError(404, 'hooks.record is not configured')
        return r
      },
    },
  ]
}

function apiError(err: unknown): never {
  if (err instanceof HookmqError) throw new ApiError(err.code === 'HOOKMQ_ERR_STORE_UNAVAILABLE' ? 503 : 400, err.message)
  throw err
}

function sessionTimes(s: { expiryInterval?: number; disconnectedAt?: number }): { expirySeconds?: number; disconnectedAt?: string } {
  return {
    ...(s.expiryInterval !== undefined ? { expirySeconds: s.expiryInterval } : {}),
    ...(s.disconnectedAt !== undefined ? { disconnectedAt: new Date(s.disconnectedAt).toISOString() } : {}),
  }
}

/** Routes compiled for matching: `:name` segments become captures. */
export class AdminRouter {
  private readonly compiled: Array<{ route: Route; re: RegExp; names: string[] }>

  constructor(readonly routes: Route[]) {
    this.compiled = routes.map((route) => {
      const names: string[] = []
      const re = new RegExp(
        '^' +
          route.path.replace(/:([A-Za-z]+)/g, (_m, n: string) => {
            names.push(n)
            return '([^/]+)'
          }) +
          '$',
      )
      return { route, re, names }
    })
  }

  /** The route for `method path`, its params; or the methods the path allows (405), or undefined (404). */
  find(method: string, path: string): { route: Route; params: Record<string, string> } | { allow: string[] } | undefined {
    const allow: string[] = []
    for (const { route, re, names } of this.compiled) {
      const m = re.exec(path)
      if (m === null) continue
      if (route.method !== method && !(method === 'HEAD' && route.method === 'GET')) {
        allow.push(route.method)
        continue
      }
      const params: Record<string, string> = {}
      names.forEach((n, i) => (params[n] = decodeURIComponent(m[i + 1]!)))
      return { route, params }
    }
    return allow.length > 0 ? { allow } : undefined
  }

  /** OpenAPI 3.1 description of every route, from their zod schemas. */
  openapi(version: string): object {
    const paths: Record<string, Record<string, unknown>> = {}
    for (const r of this.routes) {
      const path = r.path.replace(/:([A-Za-z]+)/g, '{$1}')
      const parameters: unknown[] = [...r.path.matchAll(/:([A-Za-z]+)/g)].map((m) => ({ name: m[1], in: 'path', required: true, schema: { type: 'string' } }))
      if (r.query !== undefined) {
        const js = z.toJSONSchema(r.query, { io: 'input', unrepresentable: 'any' }) as {
          properties?: Record<string, { description?: string }>
          required?: string[]
        }
        for (const [name, schema] of Object.entries(js.properties ?? {}))
          parameters.push({
            name,
            in: 'query',
            required: js.required?.includes(name) ?? false,
            schema,
            ...(schema.description ? { description: schema.description } : {}),
          })
      }
      ;(paths[path] ??= {})[r.method.toLowerCase()] = {
        summary: r.summary,
        'x-role': r.role,
        ...(parameters.length ? { parameters } : {}),
        ...(r.body !== undefined
          ? { requestBody: { required: true, content: { 'application/json': { schema: z.toJSONSchema(r.body, { io: 'input', unrepresentable: 'any' }) } } } }
          : {}),
        responses: r.stream
          ? { '200': { description: 'Server-Sent Events, one JSON trace event per `data:` line', content: { 'text/event-stream': {} } } }
          : {
              '200': { description: 'JSON', content: { 'application/json': {} } },
              '400': { description: 'invalid query or body: `{ error }`' },
              '401': { description: 'no valid bearer token' },
              '403': { description: 'the token is read-only, or no token is configured and the request is not from loopback' },
              '404': { description: 'no such object' },
            },
      }
    }
    return {
      openapi: '3.1.0',
      info: { title: 'hookmq admin API', version },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
      paths,
    }
  }
}

/** The OpenAPI description without a broker (npm run docs writes it to docs/admin-api.openapi.json). */
export function adminApiDescription(version: string): object {
  const none = undefined as unknown as AdminTarget['broker']
  return new AdminRouter(adminRoutes({ broker: none, hooks: () => [], webhooks: undefined as unknown as AdminTarget['webhooks'], config: () => ({}) })).openapi(
    version,
  )
}
