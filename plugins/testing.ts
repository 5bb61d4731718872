import { resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { pino } from 'pino'
import {
  Broker,
  HookmqError,
  isPromise,
  newMessage,
  parseConfig,
  type AuthenticateDecision,
  type AuthenticateInput,
  type BrokerEventName,
  type BrokerEvents,
  type ClientInfo,
  type ConfigInput,
  type Message,
  type MessageProperties,
  type PublishDecision,
  type QoS,
  type SubscribeDecision,
} from '../core/index.js'
import { asLoadError, brokerModules, compile, evaluate, HookLoadError, where, type Compiled } from './host/compile.js'
import type { HookDefinition } from './host/define.js'
import { HookHost } from './host/host.js'
import { describeFailure, notify, type HookMethod } from './host/invoke.js'
import { checkHookModule } from './host/schemas.js'
import * as hookApi from './host/sandbox/hook-api.js'

// hookmq/testing: one hook file loaded as the broker loads it (compiled by
// compile.ts, its export and config checked by schemas.ts and its own schema,
// setup run) into a real HookHost, and called through the host's own runners:
// the answers are the decisions the broker would take, checked by the same zod
// schemas, with the same deadlines and fallbacks. No listener is opened.

/** Bytes as a test may write them. */
export type Bytes = Buffer | Uint8Array | string

/** A client as a test may write it: what is left out gets a default (id `test-client`, 127.0.0.1, MQTT 5, listener `tcp`). */
export type TestClient = Partial<ClientInfo>

export interface TestAuthenticateInput extends Partial<Omit<AuthenticateInput, 'password' | 'authenticationData'>> {
  password?: Bytes
  authenticationData?: Bytes
}

export interface TestPublishInput {
  /** for transform, `client: undefined` is a message published by the broker or a hook */
  client?: TestClient | undefined
  topic: string
  payload?: Bytes
  qos?: QoS
  retain?: boolean
  properties?: MessageProperties
}

export interface TestSubscribeInput {
  client?: TestClient
  filter: string
  qos?: QoS
}

/** A message as routed (a transform's result, what the hook published). */
export interface TestMessage {
  topic: string
  payload: Buffer
  qos: QoS
  retain: boolean
  properties: MessageProperties | undefined
}

/** A failed call of the hook, as the broker's log reports it: a throw, a rejection, a timeout or an answer its schema refused. */
export interface HookFailure {
  /** `authorizePublish`, `on.published`, ... */
  method: string
  message: string
  /** file:line:column in the hook's source */
  at: string | undefined
  /** the error's code, e.g. HOOKMQ_ERR_HOOK_TIMEOUT or HOOKMQ_ERR_HOOK_INVALID_ANSWER */
  code: string | undefined
}

/** One line of the hook's log (`ctx.log`), as the broker writes it in JSON. */
export interface LogRecord {
  level: string
  msg?: string
  [key: string]: unknown
}

type Loose<T> = T extends ClientInfo ? TestClient : T extends Message ? Omit<TestPublishInput, 'client'> : T
type LooseArgs<A extends unknown[]> = { [K in keyof A]: Loose<A[K]> }

export type TestEvents = { [E in BrokerEventName]: (...args: LooseArgs<BrokerEvents[E]>) => Promise<void> }

export interface TestHook {
  readonly name: string
  /** what the hook sees as `ctx.config`: the given config parsed by its schema */
  readonly config: unknown
  authenticate(input?: TestAuthenticateInput): Promise<AuthenticateDecision>
  authorizePublish(input: TestPublishInput): Promise<PublishDecision>
  authorizeSubscribe(input: TestSubscribeInput): Promise<SubscribeDecision>
  /** the message as it would be routed, or null when dropped (a failed transform: the message as it was) */
  transform(input: TestPublishInput): Promise<TestMessage | null>
  /** runs the hook's handler of an event and waits for it (a throw is listed in `failures`, as the broker only logs it) */
  readonly on: TestEvents
  /** what `ctx.forward` queued */
  readonly forwarded: Array<{ webhook: string; body: unknown }>
  /** what `ctx.publish` published, as routed (transforms apply) */
  readonly published: TestMessage[]
  readonly failures: HookFailure[]
  readonly logs: LogRecord[]
  /** runs the teardown (after calls still running finish) */
  close(): Promise<void>
}

export interface LoadHookOptions {
  /** the hook's config (`hooks.<name>` in the main config), parsed by its `config` schema */
  config?: unknown
  /** the main config around it: `hookTimeoutMs`, `limits` (a transform's answer is checked against them), `hooks.isolation`, `hooks.breaker`... */
  broker?: ConfigInput
  /** what `ctx.forward` does besides listing the delivery in `forwarded` (default: accepts it) */
  forward?: (webhook: string, body: unknown) => Promise<void>
  /** lowest level kept in `logs` (default `debug`) */
  logLevel?: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent'
}

const CLIENT: ClientInfo = Object.freeze({ id: 'test-client', remoteAddress: '127.0.0.1', protocolVersion: 5, listener: 'tcp' })

/**
 * Loads a hook file (a path relative to the working directory, or a file URL)
 * as the broker does, in this thread. Rejects with HOOKMQ_ERR_HOOK_LOAD_FAILED
 * and `file:line:column` for what would fail its load (syntax, a throw at the
 * top level or in setup, a wrong export, a config its schema refuses).
 */
export async function loadHook(file: string | URL, options: LoadHookOptions = {}): Promise<TestHook> {
  const path = file instanceof URL || file.startsWith('file:') ? fileURLToPath(file) : resolve(file)
  const logs: LogRecord[] = []
  const log = pino(
    { level: options.logLevel ?? 'debug', base: null, formatters: { level: (label) => ({ level: label }) } },
    { write: (line: string) => void logs.push(JSON.parse(line) as LogRecord) },
  )
  let compiled: Compiled
  let def: HookDefinition
  try {
    compiled = await compile(path)
    // evaluated as the broker's preflight does, with what a worker-isolated hook (the default) has as 'hookmq'
    def = checkHookModule(evaluate(compiled, brokerModules(hookApi)))
  } catch (err) {
    throw loadError(err, path)
  }
  const hooks = { ...options.broker?.hooks, ...(options.config !== undefined ? { [def.name]: options.config } : {}) }
  const config = parseConfig({ ...options.broker, hooks })
  const forwarded: TestHook['forwarded'] = []
  const failures: HookFailure[] = []
  const host = new HookHost({
    log,
    hookConfig: config.hooks,
    defaultTimeoutMs: config.hookTimeoutMs,
    revokedSubscriptions: config.revokedSubscriptions,
    limits: config.limits,
    forward: (webhook, body) => {
      forwarded.push({ webhook, body })
      return options.forward ? options.forward(webhook, body) : Promise.resolve()
    },
    onFailure: (_hook, f) => failures.push({ method: f.what, ...pick(describeFailure(f.err, compiled)) }),
  })
  // a real broker without listeners: what the hook publishes goes through its pipeline (and the hook's own transform)
  const broker = new Broker({ ...options.broker, hooks, logger: log, hookRunner: host })
  const published: TestMessage[] = []
  broker.on('published', (m, client) => {
    if (client === undefined) published.push(view(m))
  })
  await host.start(broker)
  try {
    if (host.isolationOf(def.name, def.isolation, false) === 'inline') {
      // an inline hook is evaluated again where it runs, with the whole package as 'hookmq'
      const { hookModules } = await import('./index.js')
      def = checkHookModule(evaluate(compiled, hookModules))
    }
    await host.install(def, path, path, compiled)
  } catch (err) {
    await broker.close()
    throw loadError(err, path)
  }
  return new LoadedHook(def, path, host, broker, forwarded, published, failures, logs)
}

class LoadedHook implements TestHook {
  readonly on: TestEvents
  private closed = false

  constructor(
    private readonly def: HookDefinition,
    private readonly key: string,
    private readonly host: HookHost,
    private readonly broker: Broker,
    readonly forwarded: TestHook['forwarded'],
    readonly published: TestMessage[],
    readonly failures: HookFailure[],
    readonly logs: LogRecord[],
  ) {
    const on: Record<string, (...args: unknown[]) => Promise<void>> = {}
    for (const event of Object.keys(EVENT_ARGS) as BrokerEventName[]) on[event] = (...args) => this.event(event, args)
    this.on = on as unknown as TestEvents
  }

  get name(): string {
    return this.def.name
  }

  get config(): unknown {
    return this.host.entryOf(this.key)?.config
  }

  async authenticate(input: TestAuthenticateInput = {}): Promise<AuthenticateDecision> {
    this.has('authenticate')
    const { password, authenticationData, ...rest } = input
    const full: AuthenticateInput = {
      clientId: CLIENT.id,
      remoteAddress: CLIENT.remoteAddress,
      protocolVersion: CLIENT.protocolVersion,
      listener: CLIENT.listener,
      ...rest,
      ...(password !== undefined ? { password: bytes(password) } : {}),
      ...(authenticationData !== undefined ? { authenticationData: bytes(authenticationData) } : {}),
    }
    return this.host.authenticate(full)
  }

  async authorizePublish(input: TestPublishInput): Promise<PublishDecision> {
    this.has('authorizePublish')
    const client = clientOf(input.client ?? {})
    return this.host.authorizePublish(client, messageOf(input, client))
  }

  async authorizeSubscribe(input: TestSubscribeInput): Promise<SubscribeDecision> {
    this.has('authorizeSubscribe')
    return this.host.authorizeSubscribe(clientOf(input.client ?? {}), { filter: input.filter, qos: input.qos ?? 0 })
  }

  async transform(input: TestPublishInput): Promise<TestMessage | null> {
    this.has('transform')
    const client = 'client' in input && input.client === undefined ? undefined : clientOf(input.client ?? {})
    const out = await this.host.transform(client, messageOf(input, client))
    return out === null ? null : view(out)
  }

  close(): Promise<void> {
    this.closed = true
    return this.host.stop().then(() => this.broker.close())
  }

  /** Runs the handler through the host's choke point (notify), then waits for what it returned. */
  private async event(event: BrokerEventName, args: unknown[]): Promise<void> {
    const handler = this.def.on?.[event] as ((...a: unknown[]) => unknown) | undefined
    this.open()
    const entry = this.host.entryOf(this.key)
    if (handler === undefined || entry === undefined) throw new HookmqError('USAGE', `hook "${this.def.name}" has no on.${event} handler`)
    const shapes = EVENT_ARGS[event] as readonly ArgKind[]
    const filled = args.map((a, i) =>
      shapes[i] === 'client' && a !== undefined ? clientOf(a as TestClient) : shapes[i] === 'message' ? messageOf(a as TestPublishInput, undefined) : a,
    )
    let returned: unknown
    notify(entry, event, (...a) => (returned = handler(...a)), filled)
    if (isPromise(returned)) await returned.then(undefined, () => undefined) // (a rejection is already in `failures`)
  }

  private open(): void {
    if (this.closed) throw new HookmqError('USAGE', `hook "${this.def.name}" is closed`)
  }

  private has(method: HookMethod): void {
    this.open()
    if (typeof this.def[method] !== 'function') throw new HookmqError('USAGE', `hook "${this.def.name}" has no ${method}`)
  }
}

type ArgKind = 'client' | 'message' | 'as is'
type Kinds<A extends unknown[]> = { [K in keyof A]: A[K] extends ClientInfo | undefined ? 'client' : A[K] extends Message ? 'message' : 'as is' }

/** Which argument of each event is a client or a message (filled in from a test's partial one); typed from BrokerEvents. */
const EVENT_ARGS: { [E in BrokerEventName]: Kinds<BrokerEvents[E]> } = {
  ready: [],
  closed: [],
  clientConnected: ['client', 'as is'],
  clientDisconnecting: ['client', 'as is'],
  clientDisconnected: ['client', 'as is'],
  clientError: ['client', 'as is'],
  keepaliveTimeout: ['client'],
  published: ['message', 'client'],
  delivered: ['message', 'client'],
  subscribed: ['as is', 'client'],
  unsubscribed: ['as is', 'client'],
  audit: ['as is'],
  sessionCreated: ['as is', 'client'],
  sessionResumed: ['as is', 'client'],
  sessionExpired: ['as is', 'client'],
  messageDropped: ['message', 'as is'],
  publishDenied: ['message', 'client', 'as is'],
  subscribeDenied: ['as is', 'client', 'as is'],
}

function clientOf(c: TestClient): ClientInfo {
  return { ...CLIENT, ...c }
}

function messageOf(m: Omit<TestPublishInput, 'client'>, client: ClientInfo | undefined): Message {
  return newMessage(m.topic, bytes(m.payload ?? ''), m.qos ?? 0, m.retain ?? false, client?.id, m.properties)
}

function bytes(b: Bytes): Buffer {
  return typeof b === 'string' ? Buffer.from(b) : Buffer.isBuffer(b) ? b : Buffer.from(b)
}

function view(m: Message): TestMessage {
  return { topic: m.topic, payload: m.payload, qos: m.qos, retain: m.retain, properties: m.properties }
}

function pick(d: { message: string; at: string | undefined; code: string | undefined }): Omit<HookFailure, 'method'> {
  return { message: d.message, at: d.at, code: d.code }
}

/** A load failure with where it happened in its message (a test's output shows the message). */
function loadError(err: unknown, file: string): HookLoadError {
  const e = asLoadError(err, file)
  return new HookLoadError(`${where(e, file)}: ${e.message}`, e.file ?? file, e.line, e.column)
}
