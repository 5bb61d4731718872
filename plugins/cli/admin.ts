import { parseArgs } from 'node:util'
import { HookmqError, isLoopback } from '../../core/index.js'

// The operator's commands over the admin API (plugins/http/admin.ts): each is a
// request or two and a table. Where the API is: --url, else HOOKMQ_URL, else
// the config file's `http` (host and port); the token: --token, else
// HOOKMQ_TOKEN, else the config's http.token.

export const ADMIN_COMMANDS = [
  'clients',
  'client',
  'kick',
  'ban',
  'bans',
  'unban',
  'sessions',
  'session',
  'subscriptions',
  'retained',
  'publish',
  'dead-letters',
  'hooks',
  'reload',
  'trace',
]

const COMMON = `  --url URL        the broker's HTTP endpoint (default: HOOKMQ_URL, else from the config's http)
  --token TOKEN    bearer token (default: HOOKMQ_TOKEN, else the config's http.token)
  --config FILE    config file to read http from (default ./hookmq.config.json or .ts)
  --json           print the API's JSON instead of a table`

export const ADMIN_USAGE: Record<string, string> = {
  clients: `usage: hookmq clients [--client PREFIX] [--user PREFIX] [--address PREFIX] [--limit N] [--offset N]\n  connected clients on every node\n${COMMON}`,
  client: `usage: hookmq client ID\n  one connected client: protocol, keep-alive, address, user, subscriptions, in flight, queue, bytes\n${COMMON}`,
  kick: `usage: hookmq kick ID [--reason TEXT]\n  disconnect a client (MQTT 5: DISCONNECT 0x98 Administrative action), on whichever node it is\n${COMMON}`,
  ban: `usage: hookmq ban (--client ID | --user NAME | --address IP|CIDR) [--reason TEXT] [--expires SECONDS]\n  refuse a client id, username or address from now on (and kick those connected)\n${COMMON}`,
  bans: `usage: hookmq bans\n  the bans in force\n${COMMON}`,
  unban: `usage: hookmq unban BAN_ID\n  lift a ban (ids as \`hookmq bans\` shows them)\n${COMMON}`,
  sessions: `usage: hookmq sessions [--client PREFIX] [--limit N] [--offset N]\n  persistent sessions whose client is not connected\n${COMMON}`,
  session: `usage: hookmq session ID [--delete]\n  one stored session (subscriptions, queued and in-flight messages); --delete removes it\n${COMMON}`,
  subscriptions: `usage: hookmq subscriptions TOPIC\n  who is subscribed to what matches TOPIC, on every node\n${COMMON}`,
  retained: `usage: hookmq retained [FILTER] [--limit N] [--offset N]\n       hookmq retained --get TOPIC | --clear TOPIC\n  list retained messages (default filter #), read one, or clear one\n${COMMON}`,
  publish: `usage: hookmq publish TOPIC [PAYLOAD] [--qos 0|1|2] [--retain] [--base64]\n  publish a message from the broker (transforms apply)\n${COMMON}`,
  'dead-letters': `usage: hookmq dead-letters [--webhook NAME] [--replay | --purge]\n  webhook batches that failed their last retry; --replay queues them again, --purge deletes them\n${COMMON}`,
  hooks: `usage: hookmq hooks [reload|disable|enable NAME]\n  every hook's state, version, calls, denies, errors and p99; or act on one\n${COMMON}`,
  reload: `usage: hookmq reload\n  re-read the broker's config file and apply what can change live (as SIGHUP)\n${COMMON}`,
  trace: `usage: hookmq trace (--client ID | --topic FILTER)\n  follow a client's packets (or every PUBLISH on a topic filter) and the hook decisions on them, until Ctrl-C\n${COMMON}`,
}

interface Conn {
  url: string
  token: string | undefined
  json: boolean
}

/** Runs one admin command; answers the exit code. `loadConfig`: reads the config file as the broker would (for http's address and token). */
export async function adminCommand(
  command: string,
  argv: string[],
  loadConfig: (file: string | undefined) => Promise<Record<string, unknown>>,
): Promise<number> {
  let parsed
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        url: { type: 'string' },
        token: { type: 'string' },
        config: { type: 'string' },
        json: { type: 'boolean' },
        client: { type: 'string' },
        user: { type: 'string' },
        address: { type: 'string' },
        limit: { type: 'string' },
        offset: { type: 'string' },
        reason: { type: 'string' },
        expires: { type: 'string' },
        delete: { type: 'boolean' },
        get: { type: 'string' },
        clear: { type: 'string' },
        qos: { type: 'string' },
        retain: { type: 'boolean' },
        base64: { type: 'boolean' },
        webhook: { type: 'string' },
        replay: { type: 'boolean' },
        purge: { type: 'boolean' },
        topic: { type: 'string' },
      },
    })
  } catch (err) {
    return fail(`hookmq ${command}: ${(err as Error).message.split('\n')[0]} (see hookmq ${command} --help)`)
  }
  const o = parsed.values
  const pos = parsed.positionals
  let conn: Conn
  try {
    conn = await where(o, loadConfig)
  } catch (err) {
    return fail(`hookmq ${command}: ${(err as Error).message}`)
  }
  const q = (entries: Record<string, string | undefined>): string => {
    const p = new URLSearchParams()
    for (const [k, v] of Object.entries(entries)) if (v !== undefined) p.set(k, v)
    const s = p.toString()
    return s === '' ? '' : `?${s}`
  }
  const arg = (i: number, what: string): string => {
    const v = pos[i]
    if (v === undefined) throw new HookmqError('USAGE', `hookmq ${command}: ${what} missing (see hookmq ${command} --help)`)
    return v
  }
  try {
    switch (command) {
      case 'clients': {
        const r = await call(conn, 'GET', `/admin/clients${q({ clientId: o.client, username: o.user, address: o.address, limit: o.limit, offset: o.offset })}`)
        return print(conn, r, () => {
          const rows = r.clients as Array<Record<string, unknown>>
          table(
            ['CLIENT', 'USER', 'ADDRESS', 'NODE', 'MQTT', 'LISTENER', 'CONNECTED'],
            rows.map((c) => [c.clientId, c.username, c.address, c.node, c.protocolVersion, c.listener, c.connectedAt]),
          )
          return `${rows.length} of ${String(r.total)} client(s)${r.missingNodes ? `; no answer from ${(r.missingNodes as string[]).join(', ')}` : ''}`
        })
      }
      case 'client': {
        const r = await call(conn, 'GET', `/admin/clients/${encodeURIComponent(arg(0, 'ID'))}`)
        return print(conn, r, () => {
          const { subscriptions, ...rest } = r as { subscriptions: Array<{ filter: string; qos: number }> }
          for (const [k, v] of Object.entries(rest)) process.stdout.write(`${k.padEnd(20)} ${typeof v === 'object' ? JSON.stringify(v) : String(v)}\n`)
          table(
            ['SUBSCRIPTION', 'QOS'],
            subscriptions.map((s) => [s.filter, s.qos]),
          )
          return undefined
        })
      }
      case 'kick': {
        const r = await call(conn, 'POST', `/admin/clients/${encodeURIComponent(arg(0, 'ID'))}/kick`, o.reason !== undefined ? { reason: o.reason } : {})
        return print(conn, r, () => `kicked ${String(r.kicked)} (node ${String(r.node)})`)
      }
      case 'ban': {
        const kinds = [o.client, o.user, o.address].filter((v) => v !== undefined)
        if (kinds.length !== 1) return fail(`hookmq ban: give one of --client, --user, --address (see hookmq ban --help)`)
        const body = {
          ...(o.client !== undefined ? { clientId: o.client } : o.user !== undefined ? { username: o.user } : { address: o.address }),
          ...(o.reason !== undefined ? { reason: o.reason } : {}),
          ...(o.expires !== undefined ? { expiresInSeconds: toInt('--expires', o.expires) } : {}),
        }
        const r = await call(conn, 'POST', '/admin/bans', body)
        return print(conn, r, () => `banned: ${JSON.stringify(r.ban)}`)
      }
      case 'bans': {
        const r = await call(conn, 'GET', '/admin/bans')
        return print(conn, r, () => {
          const rows = r.bans as Array<Record<string, unknown>>
          table(
            ['ID', 'KIND', 'VALUE', 'REASON', 'EXPIRES', 'BY'],
            rows.map((b) => [b.id, b.kind, b.value, b.reason, b.expiresAt !== undefined ? new Date(b.expiresAt as number).toISOString() : 'never', b.by]),
          )
          return `${rows.length} ban(s)`
        })
      }
      case 'unban': {
        const r = await call(conn, 'DELETE', `/admin/bans/${encodeURIComponent(arg(0, 'BAN_ID'))}`)
        return print(conn, r, () => `lifted ${String(r.removed)}`)
      }
      case 'sessions': {
        const r = await call(conn, 'GET', `/admin/sessions${q({ clientId: o.client, limit: o.limit, offset: o.offset })}`)
        return print(conn, r, () => {
          const rows = r.sessions as Array<Record<string, unknown>>
          table(
            ['CLIENT', 'SUBSCRIPTIONS', 'EXPIRY (s)', 'DISCONNECTED'],
            rows.map((s) => [s.clientId, s.subscriptions, s.expirySeconds, s.disconnectedAt]),
          )
          return `${rows.length} of ${String(r.total)} offline session(s)`
        })
      }
      case 'session': {
        const id = encodeURIComponent(arg(0, 'ID'))
        const r = await call(conn, o.delete ? 'DELETE' : 'GET', `/admin/sessions/${id}`)
        return print(conn, r, () => {
          if (o.delete) return `deleted ${String(r.deleted)}`
          for (const [k, v] of Object.entries(r)) process.stdout.write(`${k.padEnd(16)} ${typeof v === 'object' ? JSON.stringify(v) : String(v)}\n`)
          return undefined
        })
      }
      case 'subscriptions': {
        const r = await call(conn, 'GET', `/admin/subscriptions${q({ topic: arg(0, 'TOPIC') })}`)
        return print(conn, r, () => {
          const rows = r.subscribers as Array<Record<string, unknown>>
          table(
            ['CLIENT', 'FILTER', 'QOS', 'NODE', 'CONNECTED'],
            rows.map((s) => [s.clientId, s.filter, s.qos, s.node, s.connected]),
          )
          return `${rows.length} subscription(s) match ${String(r.topic)}`
        })
      }
      case 'retained': {
        if (o.get !== undefined) {
          const r = await call(conn, 'GET', `/admin/retained/message${q({ topic: o.get })}`)
          return print(conn, r, () => {
            process.stdout.write(r.encoding === 'base64' ? `(base64) ${String(r.payload)}\n` : `${String(r.payload)}\n`)
            return undefined
          })
        }
        if (o.clear !== undefined) {
          const r = await call(conn, 'DELETE', `/admin/retained/message${q({ topic: o.clear })}`)
          return print(conn, r, () => `cleared ${String(r.cleared)}`)
        }
        const r = await call(conn, 'GET', `/admin/retained${q({ filter: pos[0] ?? '#', limit: o.limit, offset: o.offset })}`)
        return print(conn, r, () => {
          const rows = r.messages as Array<Record<string, unknown>>
          table(
            ['TOPIC', 'QOS', 'BYTES', 'PAYLOAD'],
            rows.map((m) => [m.topic, m.qos, m.bytes, m.encoding === 'base64' ? '(binary)' : preview(String(m.payload))]),
          )
          return `${rows.length} retained message(s)`
        })
      }
      case 'publish': {
        const body = {
          topic: arg(0, 'TOPIC'),
          payload: pos[1] ?? '',
          encoding: o.base64 ? 'base64' : 'utf8',
          qos: o.qos === undefined ? 0 : toInt('--qos', o.qos),
          retain: o.retain === true,
        }
        const r = await call(conn, 'POST', '/admin/publish', body)
        return print(conn, r, () => `published to ${String(r.published)}`)
      }
      case 'dead-letters': {
        const path = `/admin/webhooks/dead-letters${q({ webhook: o.webhook })}`
        if (o.replay) {
          const r = await call(conn, 'POST', `/admin/webhooks/dead-letters/replay${q({ webhook: o.webhook })}`)
          return print(conn, r, () => `queued ${String(r.requeued)} deliveries again`)
        }
        if (o.purge) {
          const r = await call(conn, 'DELETE', path)
          return print(conn, r, () => `deleted ${String(r.purged)} dead batch(es)`)
        }
        const r = await call(conn, 'GET', path)
        return print(conn, r, () => {
          const rows = r.deadLetters as Array<{ webhook: string; id: string; deliveries: unknown[]; attempts: number; at: string; reason: string }>
          table(
            ['WEBHOOK', 'BATCH', 'DELIVERIES', 'ATTEMPTS', 'AT', 'REASON'],
            rows.map((b) => [b.webhook, b.id, b.deliveries.length, b.attempts, b.at, b.reason]),
          )
          return `${rows.length} dead batch(es)`
        })
      }
      case 'hooks': {
        if (pos[0] !== undefined) {
          if (!['reload', 'disable', 'enable'].includes(pos[0]))
            return fail(`hookmq hooks: unknown action ${JSON.stringify(pos[0])} (reload, disable or enable)`)
          const r = await call(conn, 'POST', `/admin/hooks/${encodeURIComponent(arg(1, 'NAME'))}/${pos[0]}`)
          return print(conn, r, () => `${pos[0]}: ${JSON.stringify(r)}`)
        }
        const r = (await call(conn, 'GET', '/admin/hooks')) as unknown as Array<Record<string, unknown>>
        return print(conn, r, () => {
          table(
            ['HOOK', 'STATE', 'VERSION', 'ISOLATION', 'CALLS', 'DENIES', 'ERRORS', 'P99 ms', 'ERROR'],
            r.map((h) => {
              const e = h.error as { message?: string; file?: string; line?: number } | undefined
              return [
                h.name,
                h.state,
                h.version,
                h.isolation,
                h.calls,
                h.denies,
                h.errors,
                h.p99Ms,
                e ? `${e.file ?? ''}${e.line ? ':' + e.line : ''} ${e.message ?? ''}` : '',
              ]
            }),
          )
          return undefined
        })
      }
      case 'reload': {
        const r = await call(conn, 'POST', '/admin/reload')
        return print(conn, r, () => `reloaded: ${JSON.stringify(r)}`)
      }
      case 'trace':
        return await trace(conn, o.client, o.topic ?? pos[0])
    }
  } catch (err) {
    return fail(`hookmq ${command}: ${(err as Error).message}`)
  }
  return fail(`hookmq: unknown command ${command}`)
}

async function where(
  o: { url?: string; token?: string; config?: string; json?: boolean },
  loadConfig: (file: string | undefined) => Promise<Record<string, unknown>>,
): Promise<Conn> {
  let url = o.url ?? (process.env.HOOKMQ_URL || undefined)
  let token = o.token ?? (process.env.HOOKMQ_TOKEN || undefined)
  if (url === undefined || token === undefined) {
    const config = await loadConfig(o.config)
    const http = config.http as { port?: number; host?: string; token?: string; tokens?: Array<{ token: string; role: string }> } | false | undefined
    if (url === undefined) {
      if (http === undefined || http === false)
        throw new HookmqError('USAGE', 'no --url, no HOOKMQ_URL, and the config has no http endpoint (set http.port, or pass --url http://host:port)')
      const host = http.host ?? (config.host as string | undefined) ?? '127.0.0.1'
      const h = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host
      url = `http://${h.includes(':') ? `[${h}]` : h}:${http.port ?? 9883}`
    }
    if (token === undefined && http !== undefined && http !== false)
      token = http.token ?? http.tokens?.find((t) => t.role === 'admin')?.token ?? http.tokens?.[0]?.token
  }
  const u = new URL(url)
  if (token === undefined && !isLoopback(u.hostname.replace(/^\[|\]$/g, '')) && u.hostname !== 'localhost')
    process.stderr.write(`hookmq: no token (--token or HOOKMQ_TOKEN): ${u.host} will probably refuse\n`)
  return { url: url.replace(/\/+$/, ''), token, json: o.json === true }
}

async function call(conn: Conn, method: string, path: string, body?: unknown): Promise<Record<string, unknown>> {
  let res: Response
  try {
    res = await fetch(conn.url + path, {
      method,
      headers: {
        ...(conn.token !== undefined ? { authorization: `Bearer ${conn.token}` } : {}),
        ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    })
  } catch (err) {
    throw new Error(`${conn.url} does not answer (${(err as Error & { cause?: Error }).cause?.message ?? (err as Error).message})`)
  }
  const text = await res.text()
  let parsed: Record<string, unknown>
  try {
    parsed = (text === '' ? {} : JSON.parse(text)) as Record<string, unknown>
  } catch {
    throw new Error(`${res.status} ${res.statusText}: ${text.slice(0, 200)}`)
  }
  if (!res.ok) throw new Error(`${res.status}: ${String(parsed.error ?? res.statusText)}`)
  return parsed
}

/** Follows /admin/trace until the stream ends or Ctrl-C; one line per event (or JSON lines). */
async function trace(conn: Conn, clientId: string | undefined, topic: string | undefined): Promise<number> {
  if ((clientId === undefined) === (topic === undefined)) return fail('hookmq trace: give --client ID or --topic FILTER (see hookmq trace --help)')
  const ctrl = new AbortController()
  process.once('SIGINT', () => ctrl.abort())
  const params = new URLSearchParams(clientId !== undefined ? { clientId } : { topic: topic! })
  let res: Response
  try {
    res = await fetch(`${conn.url}/admin/trace?${params.toString()}`, {
      headers: conn.token !== undefined ? { authorization: `Bearer ${conn.token}` } : {},
      signal: ctrl.signal,
    })
  } catch (err) {
    return fail(`hookmq trace: ${conn.url} does not answer (${(err as Error).message})`)
  }
  if (!res.ok || res.body === null) {
    const text = await res.text()
    return fail(`hookmq trace: ${res.status}: ${(JSON.parse(text || '{}') as { error?: string }).error ?? res.statusText}`)
  }
  process.stderr.write(`tracing ${clientId !== undefined ? `client ${clientId}` : `topic ${topic!}`} (Ctrl-C to stop)\n`)
  const decoder = new TextDecoder()
  let buf = ''
  try {
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      buf += decoder.decode(chunk, { stream: true })
      for (let i = buf.indexOf('\n\n'); i >= 0; i = buf.indexOf('\n\n')) {
        const block = buf.slice(0, i)
        buf = buf.slice(i + 2)
        if (!block.startsWith('data: ')) continue
        if (conn.json) {
          process.stdout.write(block.slice(6) + '\n')
          continue
        }
        const e = JSON.parse(block.slice(6)) as Record<string, unknown>
        const time = new Date(e.at as number).toISOString().slice(11, 23)
        const arrow = e.dir === 'in' ? '->' : e.dir === 'out' ? '<-' : '  '
        const bits = [
          e.topic !== undefined ? String(e.topic) : '',
          e.qos !== undefined ? `qos ${String(e.qos)}` : '',
          e.packetId !== undefined ? `id ${String(e.packetId)}` : '',
          e.payloadBytes !== undefined ? `${String(e.payloadBytes)} B` : '',
          e.reasonCode !== undefined ? `rc 0x${(e.reasonCode as number).toString(16)}` : '',
          e.filters !== undefined ? (e.filters as string[]).join(' ') : '',
          e.hook !== undefined ? `hook ${String(e.hook)} v${String(e.version)}: ${String(e.answer)} (${String(e.ms)} ms)` : '',
        ].filter((s) => s !== '')
        process.stdout.write(`${time} ${String(e.clientId).padEnd(20)} ${arrow} ${String(e.type).padEnd(18)} ${bits.join('  ')}\n`)
      }
    }
  } catch (err) {
    if (!ctrl.signal.aborted) return fail(`hookmq trace: ${(err as Error).message}`)
  }
  return 0
}

/** `--json`: the API's JSON; else the table `human` prints and its closing line. */
function print(conn: Conn, value: unknown, human: () => string | undefined): number {
  if (conn.json) {
    process.stdout.write(JSON.stringify(value, null, 2) + '\n')
    return 0
  }
  const last = human()
  if (last !== undefined) process.stdout.write(last + '\n')
  return 0
}

function table(head: string[], rows: unknown[][]): void {
  const cells = rows.map((r) => r.map((v) => (v === undefined || v === null ? '-' : String(v))))
  const widths = head.map((h, i) => Math.min(60, Math.max(h.length, ...cells.map((r) => r[i]!.length))))
  const line = (r: string[]): string =>
    r
      .map((c, i) => (c.length > widths[i]! ? c.slice(0, widths[i]! - 1) + '…' : c).padEnd(widths[i]!))
      .join('  ')
      .trimEnd() + '\n'
  if (rows.length === 0) return
  process.stdout.write(line(head))
  for (const r of cells) process.stdout.write(line(r))
}

function preview(s: string): string {
  const one = s.replace(/\s+/g, ' ')
  return one.length > 50 ? one.slice(0, 49) + '…' : one
}

function toInt(flag: string, v: string): number {
  if (!/^\d+$/.test(v)) throw new HookmqError('USAGE', `${flag} ${JSON.stringify(v)}: expected a whole number`)
  return Number(v)
}

function fail(message: string): number {
  process.stderr.write(message + '\n')
  return 1
}
