import type { Redis } from 'ioredis'
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { openRedis } from './redis/connect.js'
import { Broker, createLogger, HookmqError, maskCredentials, type BrokerOptions } from '../core/index.js'
import { twinConfig } from '../core/warmup.js'
import { redisCluster, type RedisCluster } from './redis/cluster.js'
import { RedisRetainedStore } from './redis/retained.js'
import { RedisSessionStore } from './redis/stores.js'
import type { HookmqConfig, HookmqConfigInput } from './config.js'
import { ConfigReloader, effectiveConfig, type ReloadResult } from './reload.js'
import { WebhookPlugin, type WebhookStatus } from './webhook/index.js'
import { HttpEndpoint } from './http/index.js'
import type { DeadBatch } from './webhook/delivery.js'
import type { HookDefinition } from './host/define.js'
import { HookHost, type HookStatus } from './host/host.js'
import { HookFolderLoader } from './host/loader.js'
import { ProcessGuard } from './host/sandbox/process-guard.js'
import { Quarantine } from './host/sandbox/quarantine.js'
import { brokerModules } from './host/compile.js'
import { checkHookModule } from './host/schemas.js'
import { version } from './version.js'
import * as self from './index.js'

// The package entry: the core plus the plugin host. `createBroker` here is the
// one embedders use; it wires hook objects and a hooks folder into the core.

export * from '../core/index.js'
export { defineHook } from './host/define.js'
export { version } from './version.js'

/** Identity helper: a `hookmq.config.ts` gets the whole configuration's types (core, webhooks, redis, http). */
export function defineConfig(config: HookmqConfigInput): HookmqConfigInput {
  return config
}
export type * from './host/author-types.js'
export type { HookStatus, LoadFailure } from './host/host.js'
export { HookHost } from './host/host.js'
export { hookmqConfigSchema } from './config.js'
export type { HookmqConfigInput, WebhookConfig, RedisConfig } from './config.js'
export type { WebhookStatus } from './webhook/index.js'
export type { ReloadResult } from './reload.js'
export type { DeadBatch, Delivery } from './webhook/delivery.js'

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyHook = HookDefinition<any>

export interface HookmqOptions extends Omit<BrokerOptions, 'hooks' | 'hooksDir'>, Pick<HookmqConfigInput, 'webhooks' | 'redis' | 'http'> {
  /**
   * Per-hook config values (`{ acl: {...} }`), or hook objects to run:
   * `[defineHook(...), { hook, config }]`.
   */
  hooks?: Record<string, unknown> | Array<AnyHook | { hook: AnyHook; config?: unknown }>
  /** a folder of hook files to load and watch (embedders: none unless given) */
  hooksDir?: string
  /** where `reload()` with no argument reads the config again (the CLI: the config file and the command line, as at start) */
  configSource?: () => Promise<HookmqConfigInput>
}

/** What a broker made by `createBroker` offers about its webhooks. */
export interface WebhookApi {
  status(): WebhookStatus[]
  deadLetters(webhook?: string): Promise<DeadBatch[]>
  /** queues dead letters again; answers how many deliveries */
  replay(webhook?: string): Promise<number>
  /** deletes dead letters; answers how many batches */
  purge(webhook?: string): Promise<number>
}

/** The modules a hook file's `import ... from 'hookmq' | 'zod'` resolve to. */
export const hookModules = brokerModules(self)

/** The core's options for a hookmq broker, and what is opened for them before the core exists. */
function coreOptions(options: HookmqOptions): {
  core: BrokerOptions
  full: HookmqConfig
  redis: Redis | undefined
  cluster: RedisCluster | undefined
  objects: Array<{ hook: AnyHook; config?: unknown }>
} {
  const { hooks, hooksDir, webhooks: webhookInput, redis: redisInput, http: httpInput, configSource: _source, ...rest } = options
  const objects = Array.isArray(hooks) ? hooks.map((h) => ('hook' in h && typeof h.hook === 'object' ? h : { hook: h as AnyHook, config: undefined })) : []
  const hookConfig = Array.isArray(hooks)
    ? Object.fromEntries(objects.filter((o) => o.config !== undefined).map((o) => [o.hook.name, o.config]))
    : (hooks ?? {})
  const plain: Record<string, unknown> = { ...rest }
  for (const k of ['stores', 'hookRunner', 'logger']) delete plain[k]
  const full = effectiveConfig({
    ...plain,
    hooks: hookConfig,
    webhooks: webhookInput,
    redis: redisInput,
    http: httpInput,
    ...(hooksDir !== undefined ? { hooksDir } : {}),
  })
  // commands fail at once while Redis is away (no offline queue): what needs Redis is refused, not left waiting
  const redis = full.redis ? openRedis(full.redis, { enableAutoPipelining: true, enableOfflineQueue: false, maxRetriesPerRequest: 0 }) : undefined
  const log = rest.logger ?? createLogger(full.log.level, full.log.format)
  // with Redis configured, sessions and retained messages persist there and the nodes on it form a cluster
  // (unless the embedder brought its own stores)
  const cluster =
    redis && !rest.stores ? redisCluster({ redis, prefix: full.redis!.keyPrefix, log: log.child({ plugin: 'cluster' }), ...full.redis! }) : undefined
  const stores =
    rest.stores ??
    (redis
      ? {
          sessions: new RedisSessionStore(redis, full.redis!.keyPrefix),
          retained: new RedisRetainedStore(redis, full.redis!.keyPrefix),
          bus: cluster!.bus,
          bans: cluster!.bans,
        }
      : undefined)
  const core: BrokerOptions = {
    ...rest,
    limits: full.limits, // (with Redis TTLs as limits: effectiveConfig)
    logger: log,
    stores,
    cluster: cluster?.cluster,
    version,
    readFile: readFileSync,
    hooks: hookConfig,
    ...(hooksDir !== undefined ? { hooksDir } : {}),
  }
  return { core, full, redis, cluster, objects }
}

/**
 * The broker embedders and the CLI run: the core (core/broker.ts) wired with
 * the hook host, a hooks folder, Redis stores and cluster, webhooks and the
 * HTTP endpoint, as the configuration asks.
 */
export class HookmqBroker extends Broker {
  readonly hookHost: HookHost
  readonly webhooks: WebhookApi
  private readonly endpoint: HttpEndpoint | undefined
  private readonly reloader: ConfigReloader
  /** as given: the warm-up twin is made of them */
  private readonly options: HookmqOptions

  constructor(options: HookmqOptions = {}) {
    const { core, full, redis, cluster, objects } = coreOptions(options)
    super(core)
    this.options = options
    const hooksDir = options.hooksDir
    if (redis) this.useRedis(redis, full.redis!, cluster)
    // (made without rules too: a config reload may add some; it taps the publish path only while it has topic rules)
    const webhooks = new WebhookPlugin(
      full.webhooks,
      this.log.child({ plugin: 'webhooks' }),
      this.id,
      redis ? { client: redis, keyPrefix: full.redis!.keyPrefix } : undefined,
    )
    this.use(webhooks)
    const hookLog = this.log.child({ plugin: 'hooks' })
    const host = new HookHost({
      log: hookLog,
      hookConfig: this.config.hooks,
      defaultTimeoutMs: this.config.hookTimeoutMs,
      revokedSubscriptions: this.config.revokedSubscriptions,
      limits: this.config.limits,
      forward: (name, body, hook) => webhooks.forward(name, body, hook),
      modules: hookModules,
      quarantine: hooksDir !== undefined ? new Quarantine(resolve(this.config.hooksDir)) : undefined,
    })
    host.attach(
      async (h) => {
        for (const { hook } of objects) {
          try {
            await h.install(checkHookModule(hook), `embedded:${String((hook as { name?: unknown }).name)}`, undefined)
          } catch (err) {
            h.failed(`embedded:${String((hook as { name?: unknown }).name)}`, { message: (err as Error).message }, (hook as { name?: string }).name)
          }
        }
      },
      async () => {},
    )
    if (hooksDir !== undefined) {
      // hook files are user code in this process: contained by the sandbox (plugins/host/sandbox/)
      const loader = new HookFolderLoader(this.config.hooksDir, host, hookLog)
      const guard = new ProcessGuard(host, hookLog)
      host.attach(
        async () => {
          guard.start()
          await loader.start()
        },
        async () => {
          await loader.stop()
          await guard.stop()
        },
        (file) => loader.load(file, true),
      )
    }
    if (options.hookRunner === undefined) this.hooks = host // an embedder's own runner replaces the host's decisions
    this.use(host)
    this.hookHost = host
    this.webhooks = {
      status: () => webhooks.status(),
      deadLetters: (name?: string) => webhooks.deadLetters(name),
      replay: (name?: string) => webhooks.replay(name),
      purge: (name?: string) => webhooks.purge(name),
    }
    this.reloader = new ConfigReloader(
      { broker: this, hookHost: host, webhooks, ownLogger: options.logger === undefined },
      { ...full, limits: { ...this.config.limits } },
      options.configSource,
      this.log,
    )
    const folder = hooksDir === undefined ? undefined : resolve(this.config.hooksDir)
    this.endpoint =
      full.http === false
        ? undefined
        : new HttpEndpoint(
            full.http,
            {
              hooks: this.hookStatus,
              webhooks: this.webhooks.status,
              hooksProblem: () => host.health(),
              hooksDir: folder,
              version,
              admin: {
                webhooks: this.webhooks,
                bans: this.bans,
                config: () => maskSecrets(this.currentConfig),
                hookControl: host,
                reload: () => this.reload(),
                cluster: cluster === undefined ? undefined : cluster.queries,
              },
            },
            this.log.child({ plugin: 'http' }),
          )
    if (this.endpoint) this.use(this.endpoint)
  }

  /**
   * Applies a new config to the running broker (with no argument: the config
   * read again through `configSource`). What can change live takes effect at
   * once (hook configs, webhooks, most limits, log.level...); what cannot is
   * named in `restartNeeded`. An invalid config, or a hook config value the hook
   * refuses, rejects with HOOKMQ_ERR_CONFIG_INVALID and changes nothing.
   * Reloads run one at a time.
   */
  reload(next?: HookmqConfigInput): Promise<ReloadResult> {
    return this.reloader.reload(next)
  }

  /** the whole config in force (as reloads left it: a key that needs a restart keeps its old value) */
  get currentConfig(): HookmqConfig {
    return this.reloader.current
  }

  /** A hookmq broker of the same config keys with an empty hook host and none of this one's hooks, webhooks, Redis, HTTP or listeners (core/warmup.ts). */
  protected override warmupTwin(): Broker {
    const {
      hooks: _hooks,
      hooksDir: _dir,
      webhooks: _webhooks,
      redis: _redis,
      http: _http,
      configSource: _source,
      stores: _stores,
      hookRunner: _runner,
      ...rest
    } = this.options
    return new HookmqBroker({ ...twinConfig(rest), hooks: {}, http: false, logger: createLogger('silent') })
  }

  /** every hook's state: loaded/failed, version, load time, calls, denies, errors, p99 */
  readonly hookStatus = (): HookStatus[] => this.hookHost.status()

  /** the HTTP endpoint's base URL once listening (`http` configured), else undefined */
  httpUrl(): string | undefined {
    return this.endpoint?.url()
  }

  /** Redis as a plugin: connected at start (refusing to start without it), quit at stop; the cluster on it. */
  private useRedis(redis: Redis, config: NonNullable<HookmqConfig['redis']>, cluster: RedisCluster | undefined): void {
    let down = false
    let lastError = ''
    redis.on('error', (err: Error) => {
      lastError = err.message
      if (!down) this.log.warn({ err: err.message }, 'redis connection error')
      down = true
    })
    redis.on('ready', () => {
      if (down) this.log.info('redis connection back')
      down = false
    })
    const where = config.cluster?.join(', ') ?? config.sentinels?.join(', ') ?? config.url
    const mode = config.cluster ? 'cluster' : config.sentinels ? `sentinel (master "${config.sentinelName}")` : 'standalone'
    this.use({
      name: 'redis',
      start: () =>
        redis.connect().then(
          () => this.log.info({ redis: maskCredentials(where), mode, keyPrefix: config.keyPrefix }, 'connected to Redis'),
          (err: Error) => {
            redis.disconnect() // no reconnecting in the background of a broker that did not start
            throw new HookmqError('STORE_UNAVAILABLE', maskCredentials(`Redis at ${where} is unreachable: ${lastError || err.message}`))
          },
        ),
      stop: () => quitRedis(redis),
    })
    if (cluster) this.use(cluster.plugin)
  }
}

/** Makes a broker: the core with the hook host and the plugins the options configure. The one way the package makes one. */
export function createBroker(options: HookmqOptions = {}): HookmqBroker {
  return new HookmqBroker(options)
}

/** A copy of `value` with every secret masked: keys that name one (password, secret, token, key...) and credentials in URLs. */
export function maskSecrets(value: unknown, key = ''): unknown {
  if (/pass(word|wd)?$|secret|token|authorization|api[-_]?key|private[-_]?key|^key$|^cert$|^ca$|^pfx$/i.test(key) && value !== undefined && value !== null)
    return Array.isArray(value) && key === 'tokens' ? value.map((t: unknown) => maskSecrets(t)) : '[masked]'
  if (typeof value === 'string') return maskCredentials(value)
  if (Array.isArray(value)) return value.map((v) => maskSecrets(v))
  if (value !== null && typeof value === 'object' && !Buffer.isBuffer(value))
    return Object.fromEntries(Object.entries(value as Record<string, unknown>).map(([k, v]) => [k, maskSecrets(v, k)]))
  return Buffer.isBuffer(value) ? '[masked]' : value
}

/** QUIT, or drop the connection when Redis does not answer within a second. */
function quitRedis(redis: Redis): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      redis.disconnect()
      resolve()
    }, 1000)
    redis.quit().then(
      () => {
        clearTimeout(timer)
        resolve()
      },
      () => {
        clearTimeout(timer)
        redis.disconnect()
        resolve()
      },
    )
  })
}
