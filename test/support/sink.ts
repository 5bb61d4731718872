import type net from 'node:net'
import type { TestContext } from 'node:test'
import { defer } from './lifecycle.js'

// A real HTTP server as a webhook endpoint.

export interface SinkRequest {
  headers: Record<string, string | string[] | undefined>
  raw: string
  body: { webhook: string; deliveries: Array<Record<string, unknown> & { id: string }> }
  at: number
}

/**
 * A real HTTP server standing in for a webhook endpoint. `respond` decides each
 * answer (default 204); it can be changed while running.
 */
export async function startSink(
  t: TestContext,
  port = 0,
): Promise<{
  url: string
  port: number
  requests: SinkRequest[]
  /** every request, answered 2xx or not */
  all: SinkRequest[]
  respond: (req: SinkRequest, res: import('node:http').ServerResponse) => void
  ids(): string[]
  waitForIds(n: number, ms?: number): Promise<void>
  close(): Promise<void>
}> {
  const http = await import('node:http')
  const requests: SinkRequest[] = []
  const all: SinkRequest[] = []
  let waiters: Array<() => void> = []
  const sink = {
    url: '',
    port: 0,
    requests,
    all,
    respond: (_req: SinkRequest, res: import('node:http').ServerResponse): void => {
      res.writeHead(204).end()
    },
    ids: () => [...new Set(requests.flatMap((r) => r.body.deliveries.map((d) => d.id)))],
    waitForIds: (n: number, ms = 20000) =>
      new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`sink got ${sink.ids().length} of ${n} ids`)), ms)
        const check = (): void => {
          if (sink.ids().length >= n) {
            clearTimeout(timer)
            resolve()
          } else waiters.push(check)
        }
        check()
      }),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
  const server = http.createServer((req, res) => {
    let raw = ''
    req.setEncoding('utf8')
    req.on('data', (c: string) => {
      raw += c
    })
    req.on('end', () => {
      const entry: SinkRequest = { headers: req.headers, raw, body: JSON.parse(raw) as SinkRequest['body'], at: Date.now() }
      all.push(entry)
      res.on('finish', () => {
        if (res.statusCode < 200 || res.statusCode >= 300) return
        requests.push(entry)
        const w = waiters
        waiters = []
        for (const fn of w) fn()
      })
      sink.respond(entry, res)
    })
  })
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', () => resolve()))
  sink.port = (server.address() as net.AddressInfo).port
  sink.url = `http://127.0.0.1:${sink.port}/in`
  defer(t, () => sink.close())
  return sink
}
