import { isDeepStrictEqual } from 'node:util'
import { HookmqError, parseConfigWith, type Broker, type Logger } from '../core/index.js'
import { hookmqConfigSchema, type HookmqConfig, type HookmqConfigInput } from './config.js'
import type { HookHost } from './host/host.js'
import { reconfigureHooks } from './host/reconfigure.js'
import type { WebhookPlugin } from './webhook/index.js'

// Live config reload (SIGHUP, broker.reload(), the admin API): the new config is
// parsed whole, compared key by key with the one in force, and each changed key
// is applied at once if it can be (the LIVE table) or named as needing a
// restart. An invalid config, or a value a hook or a webhook refuses, changes
// nothing.

/** What a reload did: keys applied at once, keys that changed but take effect only at the next start, and whether anything changed. */
export interface ReloadResult {
  applied: string[]
  restartNeeded: string[]
  unchanged: boolean
}

/** What a reload reaches of the broker. */
export interface ReloadTarget {
  broker: Broker
  hookHost: HookHost
  webhooks: WebhookPlugin
  /** the broker made its logger (log.level applies); an embedder's own logger is left alone, as at start */
  ownLogger: boolean
}

/** What applying one key did: the names applied (default: the key), those that need a restart, and the values in force now (default: the new value of the key). */
type Changes = { applied?: string[]; restartNeeded?: string[]; running?: Partial<HookmqConfig> }

/**
 * Applying one changed key: the outer call may refuse the new value (it
 * throws, having changed nothing, or having put back what it changed); the
 * function it answers applies it and cannot fail. Every refusal comes before
 * any key is applied; the hooks come last among them (a refusal there is
 * undone by loading the hooks again).
 */
type Live = (to: ReloadTarget, next: HookmqConfig, prev: HookmqConfig) => Promise<Apply> | Apply
type Apply = () => Changes | void | Promise<Changes | void>

/**
 * The keys that change on a running broker, in the order they are applied.
 * Any other key that changed is named in restartNeeded (ports, hosts,
 * listeners, TLS, redis, http, hooksDir, id, sys, warmup...).
 */
const LIVE: { [K in keyof HookmqConfig]?: Live } = {
  webhooks: async (to, next) => {
    const apply = await to.webhooks.prepare(next.webhooks)
    return () => ({ applied: apply().map((name) => `webhooks.${name}`) })
  },
  limits: (to, next) => () => to.broker.applyLimits(next.limits),
  log: (to, next) => () => {
    to.broker.config.log = next.log
    if (to.ownLogger) {
      to.broker.log.level = next.log.level
      to.hookHost.logLevelChanged()
    }
    return { applied: ['log.level'] }
  },
  allowAnonymous: (to, next) => () => to.broker.applyRule('allowAnonymous', next.allowAnonymous),
  defaults: (to, next) => () => to.broker.applyRule('defaults', next.defaults),
  audit: (to, next) => () => to.broker.applyRule('audit', next.audit),
  sessions: (to, next) => () => to.broker.applyRule('sessions', next.sessions),
  revokedSubscriptions: (to, next) => () => {
    to.broker.applyRule('revokedSubscriptions', next.revokedSubscriptions)
    to.hookHost.options.revokedSubscriptions = next.revokedSubscriptions
  },
  bans: (to, next) => () => to.broker.bans.configure(next.bans),
  hooks: applyHooks,
  hookTimeoutMs: applyHooks,
}

/** Hook settings only read at start-up: kept as they are until a restart. */
const HOOK_SETTINGS_AT_START = ['blockedLoopMs', 'onStartupFailure', 'record'] as const

/**
 * `hooks` and `hookTimeoutMs`: each hook whose value changed is loaded again
 * with it (host/reconfigure.ts). When both keys changed this runs twice, the
 * second time finding nothing left to do.
 */
async function applyHooks(to: ReloadTarget, next: HookmqConfig, prev: HookmqConfig): Promise<Apply> {
  const settings = { ...next.hooks }
  const restartNeeded: string[] = []
  for (const k of HOOK_SETTINGS_AT_START) {
    if (settings[k] !== prev.hooks[k]) restartNeeded.push(`hooks.${k}`)
    ;(settings as Record<string, unknown>)[k] = prev.hooks[k]
  }
  await reconfigureHooks(to.hookHost, settings, next.hookTimeoutMs)
  const names = [...new Set([...Object.keys(prev.hooks), ...Object.keys(settings)])].filter((k) => !same(prev.hooks[k], settings[k]))
  return () => {
    to.broker.config.hooks = settings
    to.broker.config.hookTimeoutMs = next.hookTimeoutMs
    return {
      applied: [...names.map((k) => `hooks.${k}`), ...(next.hookTimeoutMs !== prev.hookTimeoutMs ? ['hookTimeoutMs'] : [])],
      restartNeeded,
      running: { hooks: settings, hookTimeoutMs: next.hookTimeoutMs },
    }
  }
}

/** Reloads, one at a time, against the config in force. */
export class ConfigReloader {
  private chain: Promise<unknown> = Promise.resolve()

  constructor(
    private readonly to: ReloadTarget,
    /** the config in force: what a reload compares with (a key that needs a restart keeps its old value here) */
    private running: HookmqConfig,
    private readonly source: (() => Promise<HookmqConfigInput>) | undefined,
    private readonly log: Logger,
  ) {}

  /** the whole config in force now */
  get current(): HookmqConfig {
    return this.running
  }

  reload(next?: HookmqConfigInput): Promise<ReloadResult> {
    const run = this.chain.then(
      () => this.run(next),
      () => this.run(next),
    )
    this.chain = run
    return run
  }

  private async run(input: HookmqConfigInput | undefined): Promise<ReloadResult> {
    try {
      if (this.to.broker.phase !== 'listening') throw new HookmqError('BROKER_STATE', `config reload: the broker is ${this.to.broker.phase}`)
      const next = effectiveConfig(input ?? (await this.read()))
      const result = await this.apply(next)
      if (result.unchanged) this.log.info('config reloaded: unchanged')
      else this.log[result.restartNeeded.length > 0 ? 'warn' : 'info'](result, 'config reloaded')
      return result
    } catch (err) {
      this.log.error(`config reload refused, the running config stays: ${(err as Error).message}`)
      throw err
    }
  }

  private async read(): Promise<HookmqConfigInput> {
    if (this.source === undefined)
      throw new HookmqError('CONFIG_INVALID', 'config reload: no config to read again (call reload(config), or give createBroker a configSource)')
    try {
      return await this.source()
    } catch (err) {
      throw err instanceof HookmqError && err.code === 'HOOKMQ_ERR_CONFIG_INVALID' ? err : new HookmqError('CONFIG_INVALID', (err as Error).message)
    }
  }

  private async apply(next: HookmqConfig): Promise<ReloadResult> {
    const prev = this.running
    const keys = [...new Set([...Object.keys(prev), ...Object.keys(next)])] as Array<keyof HookmqConfig>
    const changed = keys.filter((k) => !same(prev[k], next[k]))
    const live = (Object.keys(LIVE) as Array<keyof HookmqConfig>).filter((k) => changed.includes(k))
    const steps: Array<[keyof HookmqConfig, Apply]> = []
    for (const k of live) steps.push([k, await LIVE[k]!(this.to, next, prev)])
    const applied: string[] = []
    const restartNeeded = changed.filter((k) => LIVE[k] === undefined).map(String)
    const running: Record<string, unknown> = { ...prev }
    for (const [k, step] of steps) {
      const c = (await step()) ?? {}
      applied.push(...(c.applied ?? [k]))
      restartNeeded.push(...(c.restartNeeded ?? []))
      Object.assign(running, c.running ?? { [k]: next[k] })
    }
    running.limits = { ...this.to.broker.config.limits } // the live limits new, the others as they were
    this.running = running as HookmqConfig
    return { applied: [...new Set(applied)], restartNeeded: [...new Set(restartNeeded)], unchanged: changed.length === 0 }
  }
}

/**
 * A config as the broker runs it: parsed by the one schema, and with Redis
 * TTLs as the limits they stand for (Mosca's: what offline clients leave
 * behind expires; set limits take precedence).
 */
export function effectiveConfig(input: HookmqConfigInput | undefined): HookmqConfig {
  const full = parseConfigWith(hookmqConfigSchema, input)
  const ttl = full.redis?.ttl
  if (ttl !== undefined) {
    full.limits.persistentSessionExpiry = input?.limits?.persistentSessionExpiry ?? ttl.subscriptions ?? full.limits.persistentSessionExpiry
    full.limits.queuedMessageExpiry = input?.limits?.queuedMessageExpiry ?? ttl.packets
  }
  return full
}

/** Equal as config values (key order and keys set to undefined aside). */
function same(a: unknown, b: unknown): boolean {
  return isDeepStrictEqual(plain(a), plain(b))
}

function plain(v: unknown): unknown {
  return v === undefined ? undefined : JSON.parse(JSON.stringify(v))
}
