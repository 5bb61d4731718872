import { EventEmitter } from 'node:events'
import type { Broker, BrokerPlugin, ClientInfo, HookRunner, Logger, Message, PublishOptions, SubscribeInput as CoreSubscribeInput } from '../core/index.js'
import { ReasonCode } from '../core/index.js'
import type { AuthenticateDecision, AuthenticateInput, PublishDecision, SubscribeDecision } from '../core/index.js'
import type { HookDefinition, PublishInput } from './define.js'
import { HookStats, type HookMethod } from './invoke.js'
import { EVENT_NAMES, makeTransformCheck, toAuthDecision, toPublishDecision, toSubscribeDecision, type TransformLimits } from './schemas.js'
import { parseHookConfig, runSetup, runTeardown, type SetupResult } from './lifecycle.js'
import { chainTransforms, compileFilter, firstDecision, notifyAll, type Runnable, type TransformCheck } from './runners.js'
import { where } from './compile.js'

// The plugin host: owns the registrations, swaps versions atomically, and
// runs hooks through the runner of their composition rule (runners.ts).

export interface HostOptions {
  log: Logger
  /** `hooks.<name>` config values */
  hookConfig: Record<string, unknown>
  defaultTimeoutMs: number
  revokedSubscriptions: 'remove' | 'disconnect'
  /** what ctx.forward does (the webhook plugin's outbox) */
  forward?: (webhook: string, body: unknown, hook: string) => Promise<void>
  /** the broker's limits: a transform's answer is checked against them as a client's PUBLISH is (default: the defaults) */
  limits?: TransformLimits
}

export interface LoadFailure {
  message: string
  file?: string
  line?: number
  column?: number
  at: number
}

export interface HookStatus {
  name: string
  file?: string
  state: 'loaded' | 'failed'
  /** version serving now (0 when none) */
  version: number
  loadedAt?: number
  error?: LoadFailure
  calls: number
  denies: number
  errors: number
  timeouts: number
  p99Ms: number
}

interface Entry extends Runnable {
  readonly key: string
  readonly order: number
  readonly setup: SetupResult
}

const FAIL_AUTH: AuthenticateDecision = Object.freeze({ result: 'deny', reasonCode: ReasonCode.NotAuthorized, reason: 'authentication failed' })
const FAIL_DENY: PublishDecision = Object.freeze({ result: 'deny', reasonCode: ReasonCode.NotAuthorized, reason: 'not authorized' })

export class HookHost implements HookRunner, BrokerPlugin {
  readonly name = 'hooks'
  broker: Broker | undefined
  private entries: Entry[] = []
  private lists = { authenticate: [] as Entry[], authorizePublish: [] as Entry[], authorizeSubscribe: [] as Entry[], transform: [] as Entry[] }
  private publishPath: Entry[] = []
  private anyUnfiltered = false
  private readonly appliesCache = new Map<string, boolean>()
  private readonly failures = new Map<string, LoadFailure & { name?: string }>()
  private readonly listening = new Map<string, (...args: unknown[]) => void>()
  private rechecking: Promise<void> = Promise.resolve()
  private readonly starters: Array<(host: HookHost) => Promise<void>> = []
  private readonly stoppers: Array<() => Promise<void>> = []

  /** 'change' ({ key, kind: 'loaded' | 'failed' | 'removed', name?, version? }) after every load attempt */
  readonly events = new EventEmitter()

  private readonly checkTransform: TransformCheck

  constructor(readonly options: HostOptions) {
    this.checkTransform = makeTransformCheck(options.limits)
  }

  /** `ctx.publish` of every hook */
  private readonly publish = (m: PublishOptions): Promise<void> => (this.broker ? this.broker.publish(m) : Promise.reject(new Error('broker not started')))

  /** Something to run at start (the folder loader), with its stop. */
  attach(start: (host: HookHost) => Promise<void>, stop: () => Promise<void>): void {
    this.starters.push(start)
    this.stoppers.push(stop)
  }

  // ---- BrokerPlugin

  async start(broker: Broker): Promise<void> {
    this.broker = broker
    for (const start of this.starters) await start(this)
    this.syncEventListeners()
  }

  async stop(): Promise<void> {
    for (const stop of this.stoppers) await stop()
    const all = this.entries
    this.entries = []
    this.rebuild()
    await Promise.all(all.map((e) => this.retire(e)))
  }

  sys(): Record<string, string | number> {
    const out: Record<string, string | number> = {}
    for (const s of this.status()) {
      const p = `hooks/${s.name}/`
      out[p + 'state'] = s.state
      out[p + 'version'] = s.version
      out[p + 'calls'] = s.calls
      out[p + 'denies'] = s.denies
      out[p + 'errors'] = s.errors
      out[p + 'p99ms'] = Number(s.p99Ms.toFixed(3))
      if (s.error) out[p + 'error'] = `${where(s.error)} ${s.error.message}`.trim()
    }
    return out
  }

  // ---- HookRunner

  authenticate(input: AuthenticateInput): AuthenticateDecision | Promise<AuthenticateDecision> {
    return firstDecision(this.lists.authenticate, 'authenticate', input, toAuthDecision, FAIL_AUTH, undefined)
  }

  authorizePublish(client: ClientInfo, message: Message): PublishDecision | Promise<PublishDecision> {
    const input: PublishInput = { client, topic: message.topic, payload: message.payload, qos: message.qos, retain: message.retain, properties: message.properties }
    return firstDecision(this.lists.authorizePublish, 'authorizePublish', input, toPublishDecision, FAIL_DENY, message.topic)
  }

  authorizeSubscribe(client: ClientInfo, sub: CoreSubscribeInput): SubscribeDecision | Promise<SubscribeDecision> {
    return firstDecision(this.lists.authorizeSubscribe, 'authorizeSubscribe', { client, filter: sub.filter, qos: sub.qos }, toSubscribeDecision, FAIL_DENY, undefined)
  }

  transform(client: ClientInfo | undefined, message: Message): Message | null | Promise<Message | null> {
    return chainTransforms(this.lists.transform, client, message, this.checkTransform)
  }

  appliesToPublish(topic: string): boolean {
    if (this.publishPath.length === 0) return false
    if (this.anyUnfiltered) return true
    let hit = this.appliesCache.get(topic)
    if (hit === undefined) {
      hit = this.publishPath.some((e) => e.filter!(topic))
      if (this.appliesCache.size >= 10000) this.appliesCache.clear()
      this.appliesCache.set(topic, hit)
    }
    return hit
  }

  // ---- registrations

  /**
   * Loads a hook version: parse its config, run setup, swap it in, retire the
   * previous version of the same key. Throws (changing nothing) on any failure.
   */
  async install(def: HookDefinition, key: string, file: string | undefined): Promise<void> {
    const clash = this.entries.find((e) => e.name === def.name && e.key !== key)
    if (clash) throw new Error(`hook name "${def.name}" is already used by ${clash.file ?? 'an embedded hook'}`)
    const old = this.entries.find((e) => e.key === key)
    const config = parseHookConfig(def, this.options.hookConfig[def.name])
    const log = this.options.log.child({ hook: def.name })
    // no closure made in this scope may outlive it: it would keep `old` (and so every version) alive
    const forward = makeForward(this.options.forward, def.name)
    const setup = await runSetup(def, { name: def.name, config, log, publish: this.publish, forward })
    const entry: Entry = {
      key, name: def.name, file, def, config, log, setup,
      version: (old?.version ?? 0) + 1,
      loadedAt: Date.now(),
      order: def.order ?? 0,
      timeoutMs: def.timeoutMs ?? this.options.defaultTimeoutMs,
      filter: compileFilter(def.filter?.topics),
      stats: new HookStats(),
      eventContext: { config, log, forward },
      forward,
      active: 0,
      spare: undefined,
      retired: false,
      onIdle: undefined,
    }
    this.entries = [...this.entries.filter((e) => e !== old), entry].sort(byOrder)
    this.failures.delete(key)
    this.rebuild()
    log.info({ version: entry.version, file }, old ? 'hook reloaded' : 'hook loaded')
    this.events.emit('change', { key, kind: 'loaded', name: def.name, version: entry.version })
    if (old) void this.retire(old)
    if (def.authorizeSubscribe || old?.def.authorizeSubscribe) this.recheck()
  }

  /** Removes the hook loaded under `key` (its file was deleted). */
  async remove(key: string): Promise<void> {
    this.failures.delete(key)
    const old = this.entries.find((e) => e.key === key)
    if (!old) {
      this.events.emit('change', { key, kind: 'removed' })
      return
    }
    this.entries = this.entries.filter((e) => e !== old)
    this.rebuild()
    old.log.info({ file: old.file }, 'hook removed')
    this.events.emit('change', { key, kind: 'removed', name: old.name })
    if (old.def.authorizeSubscribe) this.recheck()
    await this.retire(old)
  }

  /** Records a failed load of `key`; the version already serving (if any) goes on. */
  failed(key: string, failure: Omit<LoadFailure, 'at'>, name?: string): void {
    const f = { ...failure, at: Date.now(), name }
    this.failures.set(key, f)
    const at = failure.file ? where(failure) : key
    const serving = this.entries.find((e) => e.key === key)
    this.options.log.error({ file: failure.file, line: failure.line, column: failure.column, serving: serving?.version ?? null },
      `hook load failed: ${at}: ${failure.message}${serving ? ` (version ${serving.version} keeps serving)` : ''}`)
    this.events.emit('change', { key, kind: 'failed', name, error: f })
  }

  /** The key (file) a hook name is loaded under, if any. */
  keyOf(name: string): string | undefined {
    return this.entries.find((e) => e.name === name)?.key
  }

  keys(): string[] {
    return this.entries.map((e) => e.key)
  }

  status(): HookStatus[] {
    const out: HookStatus[] = this.entries.map((e) => {
      const failure = this.failures.get(e.key)
      return { name: e.name, file: e.file, state: failure ? 'failed' as const : 'loaded' as const, version: e.version, loadedAt: e.loadedAt, error: failure,
        calls: e.stats.calls, denies: e.stats.denies, errors: e.stats.errors, timeouts: e.stats.timeouts, p99Ms: e.stats.p99() }
    })
    for (const [key, f] of this.failures) {
      if (this.entries.some((e) => e.key === key)) continue
      out.push({ name: f.name ?? key.replace(/^.*\//, '').replace(/\.[^.]+$/, ''), file: f.file ?? key, state: 'failed', version: 0, error: f, calls: 0, denies: 0, errors: 0, timeouts: 0, p99Ms: 0 })
    }
    return out
  }

  private retire(entry: Entry): Promise<void> {
    entry.retired = true
    entry.setup.abort()
    if (entry.active === 0) return runTeardown(entry)
    return new Promise((resolve) => {
      entry.onIdle = () => { void runTeardown(entry).then(resolve) } // running calls finish on the old version first
    })
  }

  private rebuild(): void {
    const has = (m: HookMethod): Entry[] => this.entries.filter((e) => typeof e.def[m] === 'function')
    this.lists = { authenticate: has('authenticate'), authorizePublish: has('authorizePublish'), authorizeSubscribe: has('authorizeSubscribe'), transform: has('transform') }
    this.publishPath = this.entries.filter((e) => e.def.authorizePublish || e.def.transform)
    this.anyUnfiltered = this.publishPath.some((e) => e.filter === null)
    this.appliesCache.clear()
    this.syncEventListeners()
  }

  /** Listens to a broker event only while some hook handles it (the publish path stays quiet otherwise). */
  private syncEventListeners(): void {
    const broker = this.broker
    if (!broker) return
    for (const event of EVENT_NAMES) {
      const handlers = this.entries.filter((e) => typeof e.def.on?.[event] === 'function')
      const current = this.listening.get(event)
      if (handlers.length > 0 && !current) {
        const fn = (...args: unknown[]): void => notifyAll(this.entries, event, args)
        this.listening.set(event, fn)
        broker.on(event, fn as never)
      } else if (handlers.length === 0 && current) {
        this.listening.delete(event)
        broker.off(event, current as never)
      }
    }
  }

  /** After the subscribe rules changed: check every existing subscription again. */
  private recheck(): void {
    const broker = this.broker
    if (!broker) return
    this.rechecking = this.rechecking.then(async () => {
      for (const { clientId, client, subscription } of broker.subscriptions()) {
        const c: ClientInfo = client ?? { id: clientId, remoteAddress: '', protocolVersion: 4, listener: '' }
        const d = await this.authorizeSubscribe(c, { filter: subscription.filter, qos: subscription.qos })
        if (d.result === 'deny' || (d.result === 'pass' && broker.config.defaults.subscribe === 'deny')) {
          broker.revokeSubscription(clientId, subscription.filter, this.options.revokedSubscriptions === 'disconnect')
          this.options.log.info({ clientId, filter: subscription.filter }, 'subscription revoked after a hook reload')
        }
      }
    }).catch((err: unknown) => this.options.log.error({ err }, 'subscription re-check failed'))
  }

  /** Resolves when the re-check started by the last reload has finished. */
  settled(): Promise<void> {
    return this.rechecking
  }
}

function byOrder(a: Entry, b: Entry): number {
  return a.order - b.order || (a.file ?? a.name).localeCompare(b.file ?? b.name)
}

function makeForward(forward: HostOptions['forward'], hook: string): (webhook: string, body: unknown) => Promise<void> {
  return (webhook, body) => (forward ? forward(webhook, body, hook) : Promise.reject(new Error('no webhooks are configured')))
}
