import { createWriteStream, fstatSync, mkdirSync, openSync, renameSync, type WriteStream } from 'node:fs'
import { dirname, resolve } from 'node:path'
import type { Broker, ClientInfo, Config, Decided, Logger, MessageProperties } from '../../core/index.js'
import { deciderOf, isLoopback } from '../../core/index.js'

// hooks.record: a sample of the enforced decisions, their inputs and outcomes,
// appended to a JSONL file for `hookmq replay`. Never a password or
// authentication data; payloads only up to payloadBytes; client.user only when
// asked. Bounded: past maxBytes the file is rotated to <file>.1 (replacing
// the previous one); while the disk does not keep up, records are skipped
// (counted). Writing happens off the decision path (a stream's buffer).

export type RecordSettings = NonNullable<Config['hooks']['record']>

/** Records of a slow disk waiting in memory before new ones are skipped. */
const MAX_BUFFERED = 4 * 1024 * 1024

/** One recorded decision, one JSON line. `v`: the format's version. */
export interface DecisionRecord {
  v: 1
  time: string
  node: string
  kind: 'authenticate' | 'publish' | 'subscribe'
  client: RecordedClient
  /** publish */
  topic?: string
  qos?: number
  retain?: boolean
  /** publish: the payload's size; `payload` (base64) its first payloadBytes bytes */
  payloadSize?: number
  payload?: string
  properties?: Record<string, unknown>
  /** subscribe */
  filter?: string
  /** authenticate: what a client sent besides its password (never recorded) */
  hasPassword?: boolean
  authenticationMethod?: string
  reauthenticate?: boolean
  /** authenticate: decided at this step of a multi-step exchange (the client's answers and the hook's state are not recorded) */
  steps?: number
  session?: { owner: string | null | undefined }
  /** authenticate: the listener is on a loopback address (the `loopback` anonymous rule) */
  loopback?: boolean
  /** what a pass (every hook passing) would have meant here */
  default: 'allow' | 'deny'
  outcome: { decision: 'allow' | 'deny'; reasonCode: number; hook: string; hookVersion?: number; reason?: string; qos?: number }
}

export interface RecordedClient {
  id: string
  username?: string
  address: string
  protocolVersion: 3 | 4 | 5
  listener: string
  user?: unknown
}

export interface RecorderStats {
  file: string
  written: number
  /** sampled but not written: the disk did not keep up */
  skipped: number
  rotations: number
  /** bytes in the current file */
  bytes: number
  error?: string
}

export class Recorder {
  private stream: WriteStream | undefined
  private bytes = 0
  private readonly stats: Omit<RecorderStats, 'file' | 'bytes'> = { written: 0, skipped: 0, rotations: 0 }
  readonly file: string

  constructor(
    private readonly settings: RecordSettings,
    private readonly broker: Broker,
    private readonly log: Logger,
  ) {
    this.file = resolve(settings.file)
    mkdirSync(dirname(this.file), { recursive: true })
    this.open()
    log.info({ file: this.file, sample: settings.sample, maxBytes: settings.maxBytes }, 'recording decisions')
  }

  /** Opens the file now (a rotation renames what this opened, whatever its stream still has to write). */
  private open(): void {
    const fd = openSync(this.file, 'a')
    this.bytes = fstatSync(fd).size
    const stream = createWriteStream(this.file, { fd })
    stream.on('error', (err) => {
      if (this.stream !== stream) return
      this.stats.error = err.message
      this.stream = undefined // recording stops; the broker goes on
      this.log.error({ err, file: this.file }, 'decision record file failed: recording stopped')
    })
    this.stream = stream
  }

  /** A decision enforced (core/audit.ts): written when sampled. */
  decided(d: Decided): void {
    if (this.stream === undefined || Math.random() >= this.settings.sample) return
    if (this.stream.writableLength > MAX_BUFFERED) {
      this.stats.skipped++
      return
    }
    const line = JSON.stringify(this.toRecord(d)) + '\n'
    const size = Buffer.byteLength(line)
    if (this.bytes + size > this.settings.maxBytes && this.bytes > 0) this.rotate()
    this.stream!.write(line)
    this.bytes += size
    this.stats.written++
  }

  private rotate(): void {
    this.stream?.end()
    try {
      renameSync(this.file, this.file + '.1') // (writes still buffered go on into the renamed file: same inode)
    } catch (err) {
      this.log.error({ err, file: this.file }, 'decision record file could not be rotated')
    }
    this.stats.rotations++
    this.open()
  }

  status(): RecorderStats {
    return { file: this.file, bytes: this.bytes, ...this.stats }
  }

  close(): Promise<void> {
    const s = this.stream
    this.stream = undefined
    if (s === undefined) return Promise.resolve()
    return new Promise((r) => s.end(r))
  }

  private toRecord(d: Decided): DecisionRecord {
    const { hook, hookVersion } = deciderOf(d.decision, d.allowed)
    const outcome: DecisionRecord['outcome'] = { decision: d.allowed ? 'allow' : 'deny', reasonCode: d.reasonCode, hook }
    if (hookVersion !== undefined) outcome.hookVersion = hookVersion
    const reason = d.kind === 'authenticate' && d.reason !== undefined ? d.reason : d.decision.result === 'deny' ? d.decision.reason : undefined
    if (reason !== undefined) outcome.reason = reason
    const base = { v: 1 as const, time: new Date().toISOString(), node: this.broker.id, kind: d.kind }
    const defaults = this.broker.config.defaults
    if (d.kind === 'authenticate') {
      const i = d.input
      const loopback = this.loopback(i.listener)
      const anonymous = this.broker.config.allowAnonymous ?? (defaults.authenticate === 'loopback' ? loopback : defaults.authenticate === 'allow')
      const r: DecisionRecord = {
        ...base,
        client: { id: i.clientId, username: i.username, address: i.remoteAddress, protocolVersion: i.protocolVersion, listener: i.listener },
        hasPassword: i.password !== undefined,
        loopback,
        default: anonymous ? 'allow' : 'deny',
        outcome,
      }
      if (i.authenticationMethod !== undefined) r.authenticationMethod = i.authenticationMethod
      if (i.reauthenticate) r.reauthenticate = true
      if (i.step !== undefined) r.steps = i.step
      if (i.session !== undefined) r.session = { owner: i.session.owner }
      return r
    }
    const client = this.client(d.client)
    if (d.kind === 'subscribe') {
      if (d.decision.result === 'allow' && d.decision.qos !== undefined) outcome.qos = d.decision.qos
      return { ...base, client, filter: d.subscription.filter, qos: d.subscription.qos, default: defaults.subscribe, outcome }
    }
    const m = d.message
    const r: DecisionRecord = {
      ...base,
      client,
      topic: m.topic,
      qos: m.qos,
      retain: m.retain,
      payloadSize: m.payload.length,
      default: defaults.publish,
      outcome,
    }
    const n = this.settings.payloadBytes
    if (n > 0) r.payload = m.payload.subarray(0, n).toString('base64')
    if (m.properties !== undefined) r.properties = plainProperties(m.properties)
    return r
  }

  private client(c: ClientInfo): RecordedClient {
    const out: RecordedClient = { id: c.id, address: c.remoteAddress, protocolVersion: c.protocolVersion, listener: c.listener }
    if (c.username !== undefined) out.username = c.username
    if (this.settings.user && c.user !== undefined) out.user = c.user
    return out
  }

  private loopback(listener: string): boolean {
    const a = this.broker.addresses.find((l) => l.name === listener)
    return a !== undefined && isLoopback(a.host)
  }
}

/** A message's properties as JSON: Correlation Data as base64. */
function plainProperties(p: MessageProperties): Record<string, unknown> {
  const out: Record<string, unknown> = { ...p }
  if (p.correlationData !== undefined) out.correlationData = p.correlationData.toString('base64')
  return out
}
