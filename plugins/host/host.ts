import { EventEmitter } from 'node:events'
import type {
  Broker,
  BrokerPlugin,
  ClientInfo,
  Config,
  HookRunner,
  Logger,
  Message,
  PublishOptions,
  QoS,
  SubscribeInput as CoreSubscribeInput,
  Subscription,
} from '../../core/index.js'
import { deniedSubscriptions, HookmqError, ReasonCode, throttled, TopicMemo } from '../../core/index.js'
import type { AuthenticateDecision, AuthenticateInput, DecisionReceiver, DeliverySlot, Later, PublishDecision, SubscribeDecision } from '../../core/index.js'
import { evaluate, HookLoadError, where, type Compiled } from './compile.js'
import type { HookDefinition, PublishInput } from './define.js'
import { describeFailure, HookStats } from './invoke.js'
import {
  EVENT_NAMES,
  checkHookModule,
  makeTransformCheck,
  NOT_A_MESSAGE,
  PASS,
  toAuthDecision,
  toPublishDecision,
  toSubscribeDecision,
  type TransformLimits,
  DENY as FAIL_DENY,
} from './schemas.js'
import { configOf, parseHookConfig, runSetup, runTeardown, type SetupResult } from './lifecycle.js'
import { chainTransforms, compileFilter, firstDecision, messageInput, notifyAll, type Runnable, type TransformCheck } from './runners.js'
import { DeliverHooks } from './deliver.js'
import { Breaker } from './sandbox/breaker.js'
import type { HookMeta } from './sandbox/protocol.js'
import type { Quarantine, QuarantineEntry } from './sandbox/quarantine.js'
import { RemoteHook } from './sandbox/remote.js'
import { hookStatus, hookSys, type HookStatus, type LoadFailure } from './status.js'
import { pipelines, roleOf, type CanarySplit, type MethodLists, type Role } from './rollout.js'
import { RolloutWatch, type RolloutReport } from './rollout-watch.js'
import type { ShadowStats } from './shadow.js'

// The plugin host: owns the registrations, swaps versions atomically, and
// runs hooks through the runner of their composition rule (runners.ts). A
// hook runs inline (in this thread) or in a worker of its own (sandbox/).

export type HookSettings = Config['hooks']
export type { HookStatus } from './status.js'

export interface HostOptions {
  log: Logger
  /** `hooks.<name>` config values, and the host's own settings (isolation, breaker, ...) */
  hookConfig: HookSettings
  defaultTimeoutMs: number
  revokedSubscriptions: 'remove' | 'disconnect'
  /** what ctx.forward does (the webhook plugin's outbox) */
  forward?: (webhook: string, body: unknown, hook: string) => Promise<void>
  /** what `import ... from 'hookmq' | 'zod'` resolves to in inline hooks */
  modules?: Record<string, unknown>
  /** versions that hung the broker (a hooks folder's record) */
  quarantine?: Quarantine
  /** the broker's limits: a transform's answer is checked against them as a client's PUBLISH is (default: the defaults) */
  limits?: TransformLimits
  /** told of every failed call (the log reports them at most once a second): hookmq/testing lists them */
  onFailure?: (hook: string, failure: { what: string; err: unknown }) => void
}

/** An inline hook version's evaluated script, as the watchdog asks for it. */
export interface HookScript {
  name: string
  file: string
  compiled: Compiled
}

export type { LoadFailure } from './status.js'

export interface Entry extends Runnable {
  readonly key: string
  readonly order: number
  readonly setup: SetupResult | undefined
  readonly worker: RemoteHook | undefined
  readonly quarantined: QuarantineEntry | undefined
  /** rollout: serve (everyone), shadow (compared, never enforced) or canary (its `share` of client ids) */
  readonly role: Role
  readonly share: number
  readonly shadow: ShadowStats | undefined
}

/** ids that name an inline file hook to the watchdog */
let watchIds = 0

const FAIL_AUTH: AuthenticateDecision = Object.freeze({ result: 'deny', reasonCode: ReasonCode.NotAuthorized, reason: 'authentication failed' })
const UNLOADED_AUTH: AuthenticateDecision = Object.freeze({ result: 'deny', reasonCode: ReasonCode.ServerUnavailable, reason: 'hooks failed to load' })
const UNLOADED: PublishDecision = Object.freeze({ result: 'deny', reasonCode: ReasonCode.NotAuthorized, reason: 'hooks failed to load' })

export class HookHost implements HookRunner, BrokerPlugin {
  readonly name = 'hooks'
  broker: Broker | undefined
  private entries: Entry[] = []
  /** the entries not disabled: what every pipeline and event runs */
  private serving: Entry[] = []
  /** hook names turned off by setEnabled (kept across reloads of their files) */
  private readonly disabled = new Set<string>()
  private lists: MethodLists<Entry> = { authenticate: [], authorizePublish: [], authorizeSubscribe: [], transform: [], deliver: [] }
  /** the lists of a client a canary serves (undefined: no canary, every client meets `lists`) */
  private split: CanarySplit<MethodLists<Entry>> | undefined
  /** a canary or a shadow has a transform: the transform path looks at them (one check otherwise) */
  private transformsRolledOut = false
  /** shadows, hooks.record and the audit's wish for signed allows (rollout-watch.ts) */
  readonly rollout: RolloutWatch
  private publishPath: Entry[] = []
  private anyUnfiltered = false
  private readonly appliesCache = new TopicMemo<boolean>((topic) => this.publishPath.some((e) => e.filter!(topic)))
  private readonly failures = new Map<string, LoadFailure & { name?: string }>()
  private readonly listening = new Map<string, (...args: unknown[]) => void>()
  private rechecking: Promise<void> = Promise.resolve()
  private readonly starters: Array<(host: HookHost) => Promise<void>> = []
  private readonly stoppers: Array<() => Promise<void>> = []
  /** loads a hook file again now, as its change would (the folder loader) */
  private loadFile: ((file: string) => Promise<void>) | undefined
  /** hooks failed to load at start-up with onStartupFailure 'deny': every decision denies until they load */
  private denyAll = false
  /** inline hook versions by the URL of their evaluated script, from evaluation to teardown (for the watchdog) */
  private readonly scripts = new Map<string, HookScript>()

  /** 'change' ({ key, kind: 'loaded' | 'failed' | 'removed', name?, version? }) after every load attempt */
  readonly events = new EventEmitter()

  private readonly checkTransform: TransformCheck
  /** ctx.publish's message: checked as a transform's answer is */
  private readonly checkMessage: TransformCheck

  constructor(readonly options: HostOptions) {
    this.checkTransform = makeTransformCheck(options.limits)
    this.checkMessage = makeTransformCheck(options.limits, 'message')
    this.deliverHooks = new DeliverHooks(options.limits)
    this.rollout = new RolloutWatch(this.checkTransform, () => this.entries)
  }

  get settings(): HookSettings {
    return this.options.hookConfig
  }

  /** `ctx.publish` of every hook: the message is checked as a transform's answer is (a topic it may publish to, not `$SYS`; a publisher's properties) */
  private readonly publish = (m: PublishOptions): Promise<void> => {
    if (!this.broker) return Promise.reject(new HookmqError('BROKER_STATE', 'broker not started'))
    if (m === null || typeof m !== 'object') return Promise.reject(new HookmqError('TOPIC_NAME_INVALID', NOT_A_MESSAGE)) // (as from a worker: remote.ts)
    try {
      this.checkMessage(m)
    } catch (err) {
      return Promise.reject(new HookmqError('TOPIC_NAME_INVALID', `ctx.publish: ${(err as Error).message}`))
    }
    return this.broker.publish(m)
  }

  /** Something to run at start (the folder loader), with its stop; `loadFile` loads one of its files again now (reloadFile, a config reload). */
  attach(start: (host: HookHost) => Promise<void>, stop: () => Promise<void>, loadFile?: (file: string) => Promise<void>): void {
    this.starters.push(start)
    this.stoppers.push(stop)
    if (loadFile) this.loadFile = loadFile
  }

  // ---- BrokerPlugin

  async start(broker: Broker): Promise<void> {
    this.broker = broker
    this.rollout.start(broker, this.settings.record, this.options.log)
    for (const start of this.starters) await start(this)
    this.syncEventListeners()
    if (this.failures.size > 0) await this.startedWithFailures()
  }

  /** Start-up fails closed: the broker never serves without a hook it was given. */
  private async startedWithFailures(): Promise<void> {
    const list = [...this.failures.values()].map((f) => `${f.file ? where(f) : (f.name ?? '?')}: ${f.message}`)
    if (this.settings.onStartupFailure === 'exit') {
      await this.stop() // the watcher and any hook already set up: the broker will not start
      throw new HookmqError('HOOK_LOAD_FAILED', `hook load failed: ${list.join('; ')}`)
    }
    this.denyAll = true
    this.options.log.error(
      { failed: list },
      'hooks failed to load at start-up: every authenticate and authorize decision is denied until the hooks folder loads cleanly (hooks.onStartupFailure: deny)',
    )
  }

  /** Why this node should not take traffic (for /health), or undefined. */
  health(): string | undefined {
    return this.denyAll ? 'hooks failed to load' : undefined
  }

  async stop(): Promise<void> {
    for (const stop of this.stoppers) await stop()
    const all = this.entries
    this.entries = []
    this.rebuild()
    await Promise.all(all.map((e) => this.retire(e)))
    await this.rollout.stop()
  }

  sys(): Record<string, string | number> {
    return hookSys(this.status())
  }

  // ---- HookRunner

  authenticate(input: AuthenticateInput, continuing?: string): AuthenticateDecision | Promise<AuthenticateDecision> {
    if (this.denyAll) return UNLOADED_AUTH
    const lists = this.split === undefined ? this.lists : this.split.for(input.clientId)
    // a step of an enhanced authentication goes to the hook that answered `continue` alone (gone: a pass, which fails closed)
    const list = continuing === undefined ? lists.authenticate : lists.authenticate.filter((e) => e.name === continuing)
    return firstDecision(list, 'authenticate', input, toAuthDecision, FAIL_AUTH, undefined)
  }

  authorizePublish(client: ClientInfo, message: Message): PublishDecision | Promise<PublishDecision>
  authorizePublish(client: ClientInfo, message: Message, into: DecisionReceiver | undefined): PublishDecision | Promise<PublishDecision> | Later
  authorizePublish(client: ClientInfo, message: Message, into?: DecisionReceiver): PublishDecision | Promise<PublishDecision> | Later {
    if (this.denyAll) return UNLOADED
    const list = (this.split === undefined ? this.lists : this.split.for(client.id)).authorizePublish
    if (list.length === 0) return PASS // (transform hooks alone, or defaults.publish deny: no input to build per message)
    const input: PublishInput = messageInput(client, message)
    return firstDecision(list, 'authorizePublish', input, toPublishDecision, FAIL_DENY, message.topic, into, message)
  }

  authorizeSubscribe(client: ClientInfo, sub: CoreSubscribeInput): SubscribeDecision | Promise<SubscribeDecision> {
    if (this.denyAll) return UNLOADED
    return firstDecision(
      (this.split === undefined ? this.lists : this.split.for(client.id)).authorizeSubscribe,
      'authorizeSubscribe',
      { client, filter: sub.filter, qos: sub.qos },
      toSubscribeDecision,
      FAIL_DENY,
      undefined,
    )
  }

  transform(client: ClientInfo | undefined, message: Message): Message | null | Promise<Message | null> {
    if (!this.transformsRolledOut) return chainTransforms(this.lists.transform, client, message, this.checkTransform)
    const lists = this.split === undefined || client === undefined ? this.lists : this.split.for(client.id)
    const out = chainTransforms(lists.transform, client, message, this.checkTransform)
    if (this.rollout.shadowTransforms) this.rollout.transformed(client, message, out) // (compared later, never applied)
    return out
  }

  // ---- the deliver hook point (deliver.ts): `delivering` is all the delivery path reads while no hook has one

  delivering = false
  private readonly deliverHooks: DeliverHooks

  appliesToDeliver(topic: string): boolean {
    return this.deliverHooks.appliesTo(topic)
  }

  deliver(client: ClientInfo, message: Message, qos: QoS, retain: boolean, slot?: DeliverySlot): Message | null | Promise<Message | null> | Later {
    return this.deliverHooks.deliver(client, message, qos, retain, slot)
  }

  appliesToPublish(topic: string): boolean {
    if (this.denyAll) return true
    if (this.publishPath.length === 0) return false
    if (this.anyUnfiltered) return true
    return this.appliesCache.get(topic)
  }

  // ---- registrations

  /** Where a hook runs: quarantine, then `hooks.overrides.<name>`, then the file's own word, then `hooks.isolation`. */
  isolationOf(name: string, declared: 'inline' | 'worker' | undefined, quarantined: boolean): 'inline' | 'worker' {
    if (quarantined) return 'worker'
    return this.settings.overrides[name]?.isolation ?? declared ?? this.settings.isolation
  }

  /**
   * Loads a new version of a hook file that passed its preflight (`meta`: what
   * it declared there): inline (evaluated here) or in a worker of its own.
   */
  async load(compiled: Compiled, meta: HookMeta, key: string): Promise<void> {
    this.checkName(meta.name, key, roleOf(meta, compiled.file).role)
    const quarantined = this.options.quarantine?.get(compiled.file, compiled.sourceHash)
    if (quarantined === undefined) this.options.quarantine?.clear(compiled.file)
    if (this.isolationOf(meta.name, meta.isolation, quarantined !== undefined) === 'inline') {
      // a top level this slow would hold the broker's thread (the watchdog ends the process past blockedLoopMs)
      if (meta.evalMs !== undefined && meta.evalMs > this.settings.blockedLoopMs / 2) {
        throw new HookLoadError(
          `its top level took ${Math.round(meta.evalMs)} ms in its preflight: too slow to evaluate in the broker's thread (more than half of hooks.blockedLoopMs); make it faster, or run it with isolation: 'worker'`,
          compiled.file,
        )
      }
      const script = { name: meta.name, file: compiled.file, compiled }
      try {
        const def = checkHookModule(evaluate(compiled, this.options.modules ?? {}, (url) => this.scripts.set(url, script)))
        await this.install(def, key, compiled.file, compiled)
      } catch (err) {
        if (compiled.url !== undefined) this.scripts.delete(compiled.url)
        throw err
      }
      return
    }
    const override = this.settings.overrides[meta.name]
    const worker = new RemoteHook({
      compiled,
      config: configOf(this.options.hookConfig, meta.name),
      memoryMb: override?.memoryMb ?? meta.memoryMb ?? this.settings.memoryMb,
      timeoutMs: this.timeoutOf(meta.name, meta.timeoutMs),
      setupMs: this.settings.preflightMs + 10000,
      log: this.options.log.child({ hook: meta.name }),
      publish: this.publish,
      forward: makeForward(this.options.forward, meta.name),
    })
    const declared = await worker.start() // what the hook declares in its own worker (the preflight's evaluation was another)
    this.swapIn(remoteDef(declared), key, compiled.file, undefined, undefined, compiled, worker, quarantined)
  }

  /**
   * Loads a hook version that runs here: parse its config, run setup, swap it
   * in, retire the previous version of the same key. Throws (changing nothing) on any failure.
   */
  async install(def: HookDefinition, key: string, file: string | undefined, compiled?: Compiled): Promise<void> {
    this.checkName(def.name, key, roleOf(def, file).role)
    const config = parseHookConfig(def, configOf(this.options.hookConfig, def.name))
    const log = this.options.log.child({ hook: def.name })
    // no closure made in this scope may outlive it: it would keep `old` (and so every version) alive
    const forward = makeForward(this.options.forward, def.name)
    const setup = await runSetup(def, { name: def.name, config, log, publish: this.publish, forward })
    this.swapIn(def, key, file, config, setup, compiled, undefined, undefined)
  }

  /** Names are unique, but for a canary beside its stable version (rollout.ts). */
  private checkName(name: string, key: string, role: Role): void {
    const clash = this.entries.find((e) => e.name === name && e.key !== key && !paired(e.role, role))
    if (clash) throw new HookmqError('HOOK_LOAD_FAILED', `hook name "${name}" is already used by ${clash.file ?? 'an embedded hook'}`)
  }

  private timeoutOf(name: string, declared: number | undefined): number {
    return this.settings.overrides[name]?.timeoutMs ?? declared ?? this.options.defaultTimeoutMs
  }

  private swapIn(
    def: HookDefinition,
    key: string,
    file: string | undefined,
    config: unknown,
    setup: SetupResult | undefined,
    compiled: Compiled | undefined,
    worker: RemoteHook | undefined,
    quarantined: QuarantineEntry | undefined,
  ): void {
    const old = this.entries.find((e) => e.key === key)
    const log = this.options.log.child({ hook: def.name })
    const forward = makeForward(this.options.forward, def.name)
    const { role, share, ignored } = roleOf(def, file)
    if (ignored !== undefined) log.warn({ file }, ignored)
    if (role === 'shadow' && typeof def.deliver === 'function') log.warn({ file }, "a shadow's deliver is never called: deliver hooks are not shadowed")
    const entry: Entry = {
      key,
      name: def.name,
      file,
      def,
      config,
      log,
      setup,
      compiled,
      worker,
      quarantined,
      isolation: worker ? 'worker' : 'inline',
      watchId: compiled !== undefined && worker === undefined ? ++watchIds : 0,
      remote: worker,
      version: (old?.version ?? 0) + 1,
      loadedAt: Date.now(),
      order: def.order ?? 0,
      timeoutMs: this.timeoutOf(def.name, def.timeoutMs),
      filter: compileFilter(def.filter?.topics),
      stats: new HookStats(),
      breaker: new Breaker(this.settings.breaker, (state) => log[state === 'tripped' ? 'warn' : 'info']({ breaker: state }, `hook breaker ${state}`)),
      reportFailure: failureReporter(log, compiled, def.name, this.options.onFailure),
      eventContext: { config, log, forward },
      forward,
      tracer: this.broker?.tracer,
      active: 0,
      spare: undefined,
      retired: false,
      onIdle: undefined,
      successor: undefined,
      role,
      share,
      shadow: this.rollout.statsFor(def, log),
      signAllows: this.rollout.signAllows,
    }
    if (worker) worker.reg = entry
    if (old) old.successor = entry
    this.entries = [...this.entries.filter((e) => e !== old), entry].sort(byOrder)
    this.failures.delete(key)
    this.rebuild()
    log.info(
      {
        version: entry.version,
        file,
        isolation: entry.isolation,
        ...(role !== 'serve' ? { rollout: def.rollout } : {}),
        ...(quarantined ? { quarantined: quarantined.reason } : {}),
      },
      old ? 'hook reloaded' : 'hook loaded',
    )
    if (quarantined)
      log.warn(
        { at: quarantined.at, since: new Date(quarantined.since).toISOString() },
        `hook quarantined: this version ${quarantined.reason}; it runs in worker isolation until the file changes`,
      )
    this.events.emit('change', { key, kind: 'loaded', name: def.name, version: entry.version })
    this.liftDenyAll()
    if (old) void this.retire(old)
    if (def.authorizeSubscribe || old?.def.authorizeSubscribe) this.recheck()
  }

  /** Removes the hook loaded under `key` (its file was deleted). */
  async remove(key: string): Promise<void> {
    this.failures.delete(key)
    this.options.quarantine?.clear(key)
    this.liftDenyAll()
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
    this.options.log.error(
      { file: failure.file, line: failure.line, column: failure.column, serving: serving?.version ?? null },
      `hook load failed: ${at}: ${failure.message}${serving ? ` (version ${serving.version} keeps serving)` : ''}`,
    )
    this.events.emit('change', { key, kind: 'failed', name, error: f })
  }

  private liftDenyAll(): void {
    if (!this.denyAll || this.failures.size > 0) return
    this.denyAll = false
    this.options.log.info('the hooks folder loads cleanly again: decisions are no longer denied')
  }

  /** The version serving under `key`, if any. */
  entryOf(key: string): Entry | undefined {
    return this.entries.find((e) => e.key === key)
  }

  /** The key (file) a hook name is loaded under, if any. */
  keyOf(name: string): string | undefined {
    return this.entries.find((e) => e.name === name)?.key
  }

  keys(): string[] {
    return this.entries.map((e) => e.key)
  }

  /** Every hook by key: its name, whether a version serves (none when its loads all failed), whether its last load failed. */
  hooks(): Array<{ key: string; name: string; serving: boolean; failing: boolean }> {
    const out = this.entries.map((e) => ({ key: e.key, name: e.name, serving: true, failing: this.failures.has(e.key) }))
    for (const [key, f] of this.failures) if (f.name !== undefined && !this.entryOf(key)) out.push({ key, name: f.name, serving: false, failing: true })
    return out
  }

  /**
   * Turns a hook off (every pipeline and event skips it, as if absent; status
   * shows it disabled) or on again. It stays off across reloads of its file.
   * False when no hook has that name.
   */
  setEnabled(name: string, enabled: boolean): boolean {
    const hook = this.hooks().find((h) => h.name === name)
    if (hook === undefined) return false
    if (enabled !== this.disabled.has(name)) return true
    if (enabled) this.disabled.delete(name)
    else this.disabled.add(name)
    this.rebuild()
    this.options.log.child({ hook: name })[enabled ? 'info' : 'warn']({ file: this.entryOf(hook.key)?.file }, enabled ? 'hook enabled' : 'hook disabled')
    if (this.entryOf(hook.key)?.def.authorizeSubscribe) this.recheck() // the subscribe rules changed
    return true
  }

  /** Loads a hook's file again now, as a change of it would (an embedded hook: its object, setup again); answers its status after. */
  async reloadFile(name: string): Promise<HookStatus | undefined> {
    const hook = this.hooks().find((h) => h.name === name)
    if (hook === undefined) return undefined
    await this.reloadKey(hook.key)
    const now = this.entryOf(hook.key)?.name ?? this.failures.get(hook.key)?.name ?? name // (the file may name itself otherwise now)
    return this.status().find((s) => s.name === now)
  }

  /** Loads `key` again now through what loaded it; answers the failure when this load failed (the version serving, if any, goes on). */
  async reloadKey(key: string): Promise<LoadFailure | undefined> {
    const before = this.failures.get(key)
    const entry = this.entryOf(key)
    if (entry !== undefined && entry.file === undefined) {
      try {
        await this.install(entry.def, key, undefined) // embedded: the same object, its config parsed and setup run again
      } catch (err) {
        this.failed(key, { message: (err as Error).message }, entry.name)
      }
    } else if (entry?.file !== undefined || !key.startsWith('embedded:')) {
      await this.loadFile?.(key)
    }
    const after = this.failures.get(key)
    return after !== before ? after : undefined
  }

  /** Forgets the last failed load of `key` (a config reload refused a value and restored the old one: what serves did not fail). */
  clearFailure(key: string): void {
    this.failures.delete(key)
  }

  /** The broker's log level changed: worker-isolated hooks are told (inline ones log through the broker's logger). */
  logLevelChanged(): void {
    for (const e of this.entries) e.worker?.logLevelChanged()
  }

  /**
   * The hook version whose script a stack frame's URL names (`file#hookmq-N`):
   * from its evaluation until its teardown has run, whether it serves yet or not
   * (a top level, a setup or a teardown that holds the thread is found too).
   */
  scriptOf(url: string): HookScript | undefined {
    return this.scripts.get(url)
  }

  status(): HookStatus[] {
    return hookStatus(this.entries, this.failures, this.disabled)
  }

  /** hooks.record's file and counts; undefined when not recording */
  recording(): ReturnType<RolloutWatch['recording']> {
    return this.rollout.recording()
  }

  /** A hook's rollout: its shadow's comparison, its canary and stable versions; undefined when no hook has that name. */
  rolloutOf(name: string): RolloutReport | undefined {
    return this.rollout.report(name)
  }

  /** Promotes a hook's canary: its file takes the stable file's place (rollout-watch.ts); undefined when it has no canary file. */
  promote(name: string): Promise<RolloutReport | undefined> {
    return this.rollout.promote(name, this.loadFile)
  }

  private retire(entry: Entry): Promise<void> {
    entry.retired = true
    entry.setup?.abort()
    const forget = (): void => {
      if (entry.compiled?.url !== undefined) this.scripts.delete(entry.compiled.url)
    }
    const teardown = (): Promise<void> => (entry.worker ? entry.worker.retire() : runTeardown(entry.def, entry.setup!, entry.log)).finally(forget)
    if (entry.active === 0) return teardown()
    return new Promise((resolve) => {
      entry.onIdle = () => {
        void teardown().then(resolve)
      } // running calls finish on the old version first
    })
  }

  private rebuild(): void {
    this.serving = this.disabled.size === 0 ? this.entries : this.entries.filter((e) => !this.disabled.has(e.name))
    const p = pipelines(this.serving)
    this.lists = p.lists
    this.split = p.split
    this.rollout.shadowsChanged(p.shadows)
    this.transformsRolledOut = p.split !== undefined || p.shadows.transform.length > 0
    const canaries = p.split === undefined ? [] : this.serving.filter((e) => e.role === 'canary' && typeof e.def.deliver === 'function')
    this.deliverHooks.set(p.lists.deliver, p.split, canaries)
    this.delivering = this.deliverHooks.active
    this.publishPath = this.serving.filter((e) => e.def.authorizePublish || e.def.transform)
    this.anyUnfiltered = this.publishPath.some((e) => e.filter === null)
    this.appliesCache.clear()
    this.syncEventListeners()
  }

  /** Listens to a broker event only while some hook handles it (the publish path stays quiet otherwise). */
  private syncEventListeners(): void {
    const broker = this.broker
    if (!broker) return
    for (const event of EVENT_NAMES) {
      const handlers = this.serving.filter((e) => typeof e.def.on?.[event] === 'function')
      const current = this.listening.get(event)
      if (handlers.length > 0 && !current) {
        const fn = (...args: unknown[]): void => notifyAll(this.serving, event, args)
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
    this.rechecking = this.rechecking
      .then(async () => {
        // by client: each session's subscriptions checked as on resume, its revocations done at once
        const byClient = new Map<string, { client: ClientInfo; subs: Subscription[] }>()
        for (const { clientId, client, subscription } of broker.subscriptions()) {
          let e = byClient.get(clientId)
          if (e === undefined)
            byClient.set(clientId, (e = { client: client ?? { id: clientId, remoteAddress: '', protocolVersion: 4, listener: '' }, subs: [] }))
          e.subs.push(subscription)
        }
        const ctx = { config: broker.config, hooks: this }
        for (const [clientId, { client, subs }] of byClient) {
          const denied = await deniedSubscriptions(ctx, client, subs)
          if (denied.length === 0) continue
          for (const filter of broker.revokeSubscriptions(clientId, denied, this.options.revokedSubscriptions === 'disconnect')) {
            this.options.log.info({ clientId, filter }, 'subscription revoked after a hook reload')
          }
        }
      })
      .catch((err: unknown) => this.options.log.error({ err }, 'subscription re-check failed'))
  }

  /** Resolves when the re-check started by the last reload has finished. */
  settled(): Promise<void> {
    return this.rechecking
  }
}

/** A canary and a stable version may share a name; nothing else may. */
function paired(a: Role, b: Role): boolean {
  return (a === 'canary' && b === 'serve') || (a === 'serve' && b === 'canary')
}

function byOrder(a: Entry, b: Entry): number {
  return a.order - b.order || (a.file ?? a.name).localeCompare(b.file ?? b.name)
}

function makeForward(forward: HostOptions['forward'], hook: string): (webhook: string, body: unknown) => Promise<void> {
  return (webhook, body) => (forward ? forward(webhook, body, hook) : Promise.reject(new HookmqError('WEBHOOK_UNKNOWN', 'no webhooks are configured')))
}

/** A worker-isolated hook's definition as this thread sees it: what it declared, its methods as markers (they run in the worker). */
function remoteDef(meta: HookMeta): HookDefinition {
  const def: Record<string, unknown> = {
    name: meta.name,
    order: meta.order,
    timeoutMs: meta.timeoutMs,
    filter: meta.filter,
    rollout: meta.rollout,
    isolation: 'worker',
  }
  for (const m of meta.methods) def[m] = inWorker
  if (meta.events.length > 0) def.on = Object.fromEntries(meta.events.map((e) => [e, inWorker]))
  return def as unknown as HookDefinition
}

function inWorker(): never {
  throw new HookmqError('BROKER_STATE', 'this hook runs in its worker')
}

/** Logs a hook's failed calls at the hook's own file and line; at most one line a second, with the count of the others. */
function failureReporter(
  log: Logger,
  compiled: Compiled | undefined,
  name: string,
  onFailure: HostOptions['onFailure'],
): (f: { what: string; err: unknown }) => void {
  const report = throttled((f, count) => {
    const { what, err } = f as { what: string; err: unknown }
    const d = describeFailure(err, compiled)
    log.error(
      { method: what, at: d.at, code: d.code, err: { message: d.message, stack: d.stack }, ...(count > 1 ? { alsoFailed: count - 1 } : {}) },
      `hook ${what} failed${d.at ? ` at ${d.at}` : ''}: ${d.message}`,
    )
  }, 1000)
  if (onFailure === undefined) return report
  return (f) => {
    onFailure(name, f)
    report(f)
  }
}
