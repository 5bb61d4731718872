import mqtt, { type IClientOptions, type MqttClient } from 'mqtt'
import mqttPacket, { type Packet } from 'mqtt-packet'
import net from 'node:net'
import type { TestContext } from 'node:test'
import { createLogger } from '../core/logger.js'
import { createBroker, type HookmqBroker, type HookmqOptions } from '../plugins/index.js'
import { mkdtempSync, rmSync, writeFileSync, renameSync, unlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

import type { Broker } from '../core/index.js'

/** the brokers' log: silent unless TEST_LOG names a level (e.g. TEST_LOG=debug to follow a failing test) */
export const silent = createLogger(process.env.TEST_LOG ?? 'silent')

const stacks = new WeakMap<TestContext, Array<() => unknown>>()

/**
 * Registers a clean-up that runs after the test, last registered first (node:test
 * runs t.after hooks first registered first, which would stop a server before
 * the clients that use it).
 */
export function defer(t: TestContext, fn: () => unknown): void {
  let stack = stacks.get(t)
  if (!stack) {
    const list: Array<() => unknown> = []
    stack = list
    stacks.set(t, list)
    t.after(async () => {
      while (list.length > 0) {
        try {
          await list.pop()!()
        } catch {
          // clean-up goes on
        }
      }
    })
  }
  stack.push(fn)
}

/** A broker on free ports (TCP and WebSocket), closed after the test. */
export async function startBroker(t: TestContext, options: HookmqOptions = {}): Promise<HookmqBroker> {
  const broker = createBroker({ port: 0, ws: { port: 0, path: '/mqtt' }, logger: silent, ...options })
  await broker.listen()
  defer(t, () => broker.close())
  return broker
}

export function urlOf(broker: Broker, listener = 'tcp'): string {
  const a = broker.addresses.find((l) => l.name === listener)
  if (!a) throw new Error(`no ${listener} listener`)
  return a.url
}

export function portOf(broker: Broker, listener = 'tcp'): number {
  return broker.addresses.find((l) => l.name === listener)!.port
}

const inboxes = new WeakMap<MqttClient, Inbox>()

/**
 * An MQTT.js client, connected, ended after the test. Its inbox collects from the
 * first packet on, so messages sent right after CONNACK are not missed.
 */
export async function connect(t: TestContext, broker: Broker, options: IClientOptions = {}, listener = 'tcp'): Promise<MqttClient> {
  const client = mqtt.connect(urlOf(broker, listener), { reconnectPeriod: 0, connectTimeout: 5000, ...options })
  inboxes.set(client, makeInbox(client))
  defer(t, () => client.endAsync(true).catch(() => {}))
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve())
    client.once('error', reject)
    client.once('close', () => reject(new Error('closed before CONNACK')))
  })
  return client
}

export interface Received {
  topic: string
  payload: Buffer
  packet: mqttPacket.IPublishPacket
}

export interface Inbox {
  messages: Received[]
  next(timeoutMs?: number): Promise<Received>
  count(n: number, timeoutMs?: number): Promise<Received[]>
}

/** The messages arriving on `client`; `next()` waits for the next one. */
export function collect(client: MqttClient): Inbox {
  let inbox = inboxes.get(client)
  if (!inbox) {
    inbox = makeInbox(client)
    inboxes.set(client, inbox)
  }
  return inbox
}

function makeInbox(client: MqttClient): Inbox {
  const messages: Received[] = []
  let waiters: Array<() => void> = []
  let read = 0
  client.on('message', (topic, payload, packet) => {
    messages.push({ topic, payload, packet })
    const w = waiters
    waiters = []
    for (const fn of w) fn()
  })
  const waitUntil = (cond: () => boolean, timeoutMs: number, what: string): Promise<void> =>
    new Promise((resolve, reject) => {
      if (cond()) return resolve()
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what} (have ${messages.length})`)), timeoutMs)
      const check = (): void => {
        if (cond()) {
          clearTimeout(timer)
          resolve()
        } else waiters.push(check)
      }
      waiters.push(check)
    })
  return {
    messages,
    async next(timeoutMs = 3000) {
      await waitUntil(() => messages.length > read, timeoutMs, 'a message')
      return messages[read++]!
    },
    async count(n, timeoutMs = 5000) {
      await waitUntil(() => messages.length >= n, timeoutMs, `${n} messages`)
      read = n
      return messages.slice(0, n)
    },
  }
}

/** Resolves with the first emission of `event`, or rejects after `ms`. */
export function once<T extends unknown[]>(emitter: { once(e: string, fn: (...a: T) => void): unknown }, event: string, ms = 5000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for "${event}"`)), ms)
    emitter.once(event, (...args: T) => {
      clearTimeout(timer)
      resolve(args)
    })
  })
}

/** Expects no message on `client` while `action` runs and the broker settles (a ping round trip). */
export async function pingRoundTrip(client: MqttClient): Promise<void> {
  // a PINGREQ is answered after every packet sent before it: a barrier, not a sleep
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no PINGRESP')), 3000)
    client.once('packetreceive', function onPacket(p: Packet) {
      if (p.cmd === 'pingresp') {
        clearTimeout(timer)
        resolve()
      } else client.once('packetreceive', onPacket)
    })
    ;(client as unknown as { _sendPacket(p: Packet, cb: () => void): void })._sendPacket({ cmd: 'pingreq' }, () => {})
  })
}

/** A raw TCP connection speaking MQTT through mqtt-packet, for edge cases clients will not send. */
export class RawClient {
  readonly packets: Packet[] = []
  closed = false
  private waiters: Array<() => void> = []
  private readonly parser: ReturnType<typeof mqttPacket.parser>

  private constructor(readonly socket: net.Socket, protocolVersion: 3 | 4 | 5) {
    this.parser = mqttPacket.parser({ protocolVersion })
    this.parser.on('packet', (p: Packet) => {
      this.packets.push(p)
      this.wake()
    })
    socket.on('data', (b: Buffer) => this.parser.parse(b))
    socket.on('close', () => {
      this.closed = true
      this.wake()
    })
    socket.on('error', () => {})
  }

  static async open(t: TestContext, broker: Broker, protocolVersion: 3 | 4 | 5 = 4): Promise<RawClient> {
    const socket = net.connect(portOf(broker), '127.0.0.1')
    await once(socket, 'connect')
    const raw = new RawClient(socket, protocolVersion)
    defer(t, () => socket.destroy())
    return raw
  }

  send(packet: Packet, protocolVersion: 3 | 4 | 5 = 4): void {
    this.socket.write(mqttPacket.generate(packet, { protocolVersion }))
  }

  sendBytes(bytes: number[] | Buffer): void {
    this.socket.write(Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes))
  }

  private wake(): void {
    const w = this.waiters
    this.waiters = []
    for (const fn of w) fn()
  }

  private until(cond: () => boolean, ms: number, what: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}; got ${this.packets.map((p) => p.cmd).join(',')}`)), ms)
      const check = (): void => {
        if (cond()) {
          clearTimeout(timer)
          resolve()
        } else this.waiters.push(check)
      }
      check()
    })
  }

  /** Waits for the next packet of kind `cmd` (consuming it). */
  async expect<C extends Packet['cmd']>(cmd: C, ms = 3000): Promise<Extract<Packet, { cmd: C }>> {
    await this.until(() => this.packets.some((p) => p.cmd === cmd), ms, cmd)
    const i = this.packets.findIndex((p) => p.cmd === cmd)
    return this.packets.splice(i, 1)[0] as Extract<Packet, { cmd: C }>
  }

  /** Waits for the server to close the connection. */
  async expectClosed(ms = 3000): Promise<void> {
    await this.until(() => this.closed, ms, 'close')
  }

  async connect(options: Partial<mqttPacket.IConnectPacket> = {}, protocolVersion: 3 | 4 | 5 = 4): Promise<mqttPacket.IConnackPacket> {
    this.send({ cmd: 'connect', protocolId: protocolVersion === 3 ? 'MQIsdp' : 'MQTT', protocolVersion, clientId: 'raw-' + Math.random().toString(36).slice(2), clean: true, keepalive: 30, ...options }, protocolVersion)
    return this.expect('connack')
  }
}

/** A temporary hooks folder, removed after the test. */
export function hooksFolder(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'hookmq-hooks-'))
  defer(t, () => rmSync(dir, { recursive: true, force: true }))
  return dir
}

export interface HookChange {
  key: string
  kind: 'loaded' | 'failed' | 'removed'
  name?: string
  version?: number
  error?: { message: string; file?: string; line?: number; column?: number }
}

/** Resolves with the next change of hook file `file` (a path in the folder). */
export function nextChange(broker: HookmqBroker, file: string, ms = 5000): Promise<HookChange> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      broker.hookHost.events.off('change', on)
      reject(new Error(`no hook change for ${file} within ${ms} ms`))
    }, ms)
    const on = (c: HookChange): void => {
      if (c.key !== file) return
      clearTimeout(timer)
      broker.hookHost.events.off('change', on)
      resolve(c)
    }
    broker.hookHost.events.on('change', on)
  })
}

/** Writes `content` to `file` as an editor's atomic save does (temp file, then rename). */
export function atomicWrite(file: string, content: string): void {
  const tmp = `${file}.${process.pid}.tmp~`
  writeFileSync(tmp, content)
  renameSync(tmp, file)
}

/** Writes a file and waits until the host has (re)loaded or rejected it. */
export async function writeHook(broker: HookmqBroker, file: string, content: string): Promise<HookChange> {
  const change = nextChange(broker, file)
  writeFileSync(file, content)
  return change
}

export async function deleteHook(broker: HookmqBroker, file: string): Promise<HookChange> {
  const change = nextChange(broker, file)
  unlinkSync(file)
  return change
}

/** Publishes at QoS 1 and answers the PUBACK reason code (one publish in flight at a time). */
export function publishCode(client: MqttClient, topic: string, payload = 'x', options: { retain?: boolean } = {}): Promise<number> {
  return new Promise((resolve) => {
    const on = (p: { cmd: string; reasonCode?: number }): void => {
      if (p.cmd !== 'puback') return
      client.off('packetreceive', on)
      resolve(p.reasonCode ?? 0)
    }
    client.on('packetreceive', on)
    client.publish(topic, payload, { qos: 1, retain: options.retain ?? false }, () => {})
  })
}

/** A real redis-server on a free port with its own data folder, stopped after the test. */
/**
 * A real redis-server on a free port (AOF, fsync always). `cluster`: a one-node
 * Redis Cluster owning every slot. `sentinelFor`: a Sentinel watching that
 * master as `mymaster` instead.
 */
export async function startRedis(t: TestContext, mode: { cluster?: boolean; sentinelFor?: number } = {}): Promise<{ url: string; port: number; stop(): Promise<void>; start(): Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'hookmq-redis-'))
  const port = await freePort()
  let child: import('node:child_process').ChildProcess | undefined
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'yes', '--appendfsync', 'always']
  if (mode.cluster) args.push('--cluster-enabled', 'yes', '--cluster-config-file', join(dir, 'nodes.conf'), '--cluster-announce-ip', '127.0.0.1')
  if (mode.sentinelFor !== undefined) {
    const conf = join(dir, 'sentinel.conf')
    writeFileSync(conf, `port ${port}\nbind 127.0.0.1\ndir ${dir}\nsentinel monitor mymaster 127.0.0.1 ${mode.sentinelFor} 1\n`)
    args.splice(0, args.length, conf, '--sentinel')
  }
  const start = async (): Promise<void> => {
    const proc = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] })
    child = proc
    await new Promise<void>((resolve, reject) => {
      let out = ''
      const timer = setTimeout(() => reject(new Error(`redis-server did not start: ${out}`)), 10000)
      proc.stdout!.on('data', (b: Buffer) => {
        out += b.toString()
        if (out.includes('Ready to accept connections') || out.includes('Sentinel ID is')) {
          clearTimeout(timer)
          resolve()
        }
      })
      proc.on('error', (err) => { clearTimeout(timer); reject(err) })
      proc.on('exit', (code) => { clearTimeout(timer); reject(new Error(`redis-server exited with ${code}: ${out}`)) })
    })
  }
  const stop = async (): Promise<void> => {
    const c = child
    child = undefined
    if (!c || c.exitCode !== null) return
    const exited = new Promise((r) => c.once('exit', r))
    c.kill('SIGTERM')
    await exited
  }
  await start()
  defer(t, async () => {
    await stop()
    rmSync(dir, { recursive: true, force: true })
  })
  const cli = (...a: string[]): Promise<string> => new Promise((resolve) => {
    const c = spawn('redis-cli', ['-p', String(port), ...a])
    let out = ''
    c.stdout.on('data', (b: Buffer) => { out += b.toString() })
    c.once('exit', () => resolve(out))
  })
  if (mode.cluster) {
    await cli('cluster', 'addslotsrange', '0', '16383')
    await until(async () => (await cli('cluster', 'info')).includes('cluster_state:ok'), 10000, 'the cluster to own every slot')
  }
  if (mode.sentinelFor !== undefined) {
    await until(async () => (await cli('sentinel', 'get-master-addr-by-name', 'mymaster')).includes(String(mode.sentinelFor)), 10000, 'the sentinel to know its master')
  }
  return { url: `redis://127.0.0.1:${port}`, port, stop, start }
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port
      srv.close(() => resolve(port))
    })
  })
}

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
export async function startSink(t: TestContext, port = 0): Promise<{
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
    respond: (_req: SinkRequest, res: import('node:http').ServerResponse): void => { res.writeHead(204).end() },
    ids: () => [...new Set(requests.flatMap((r) => r.body.deliveries.map((d) => d.id)))],
    waitForIds: (n: number, ms = 20000) => new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`sink got ${sink.ids().length} of ${n} ids`)), ms)
      const check = (): void => {
        if (sink.ids().length >= n) { clearTimeout(timer); resolve() } else waiters.push(check)
      }
      check()
    }),
    close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()) }),
  }
  const server = http.createServer((req, res) => {
    let raw = ''
    req.setEncoding('utf8')
    req.on('data', (c: string) => { raw += c })
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

/** Waits until `cond()` holds, checking on every turn of the event loop (no fixed sleep), or fails after `ms`. */
export async function until(cond: () => boolean | Promise<boolean>, ms = 5000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 5))
  }
}

/** The broker as its own process (so it can really be killed), started from a config file. */
export async function brokerProcess(t: TestContext, config: object): Promise<{ url: string; kill(): Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'hookmq-proc-'))
  writeFileSync(join(dir, 'hookmq.config.json'), JSON.stringify(config))
  const child = spawn(process.execPath, [fileURLToPath(new URL('../../bin/hookmq.js', import.meta.url))], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  defer(t, async () => { child.kill('SIGKILL'); await exited })
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`broker did not start: ${out}`)), 10000)
    child.stdout!.on('data', (b: Buffer) => {
      out += b.toString()
      const m = /"url":"(mqtt:\/\/[^"]+)"/.exec(out)
      if (m) { clearTimeout(timer); resolve(m[1]!) }
    })
    child.stderr!.on('data', (b: Buffer) => { out += b.toString() })
    child.once('exit', () => { clearTimeout(timer); reject(new Error(`broker exited: ${out}`)) })
  })
  return { url, kill: async () => { child.kill('SIGKILL'); await exited } }
}

