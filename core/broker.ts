import { randomBytes } from 'node:crypto'
import type { Duplex } from 'node:stream'
import { MemoryBanStore } from './ban-store.js'
import { BanList } from './bans.js'
import { parseConfig, type Config, type ConfigInput } from './config.js'
import { logDisconnected } from './client-log.js'
import type { Cluster } from './cluster.js'
import { Connection, type ConnectionContext, type ListenerInfo } from './connection.js'
import { HookmqError, ReasonCode } from './errors.js'
import { dispatch } from './handlers/index.js'
import { authExchangeLate } from './handlers/auth.js'
import { checkTopicName } from './topic.js'
import { BrokerEmitter, type BrokerEventName, type BrokerListener } from './events.js'
import { noop, passThroughHooks, type HookRunner } from './hooks.js'
import { startListeners, type Listener, type ListenerHost } from './listeners/index.js'
import { SocketAdmission } from './listeners/admission.js'
import { changedLimits } from './live-limits.js'
import { createLogger, type Logger } from './logger.js'
import { PublishPipeline, type PublishTap } from './pipeline.js'
import { QuotaRefusals, quotaCounters } from './quota.js'
import { Refusals } from './refusals.js'
import { Router } from './router.js'
import { twinConfig, warmUp } from './warmup.js'
import { RetainedFeed } from './retained-feed.js'
import type { Session } from './session.js'
import { SessionManager } from './sessions.js'
import { memoryStores, type Stores } from './stores.js'
import type { BrokerStats } from './services.js'
import { SysPublisher, type SysSource } from './sys.js'
import { Tracer } from './trace.js'
import { newMessage, type ClientInfo, type Message, type MessageProperties, type QoS, type Subscription } from './types.js'

export interface BrokerOptions extends ConfigInput {
  /** persistence and message bus; in memory when omitted */
  stores?: Stores
  /** nodes sharing state (the Redis plugin); a single node when omitted */
  cluster?: Cluster
  /** the hook runner the core calls; allow-all when omitted */
  hookRunner?: HookRunner
  logger?: Logger
  /** what $SYS/broker/version names (the package entry passes the package's) */
  version?: string
  /** reads a file the config names (TLS keys and certificates); the package entry passes node:fs */
  readFile?: (path: string) => Buffer
}

export type { BrokerStats } from './services.js'

/**
 * [0, 0, 0] in an array of its own. A literal's elements are copy-on-write,
 * shared with V8's boilerplate until the first write, and the counters' code
 * compiled on the warm-up twin's (long written) was thrown away at this
 * broker's first message.
 */
const perQos = (): [number, number, number] => Array.of(0, 0, 0) as [number, number, number]

/** Keys of the config read per decision, never copied: a reload replaces them at once (Broker.applyRule). */
export type RuleKey = 'allowAnonymous' | 'defaults' | 'sessions' | 'revokedSubscriptions' | 'audit'

export interface PublishOptions {
  topic: string
  payload?: Buffer | string
  qos?: QoS
  retain?: boolean
  properties?: MessageProperties
}

/** What a plugin (hook host, webhook forwarder, Redis, HTTP) gives the broker. */
export interface BrokerPlugin {
  name: string
  /** runs in listen(), before any listener opens */
  start?(broker: Broker): Promise<void> | void
  /** runs in close(), after the listeners have closed */
  stop?(): Promise<void> | void
  /** extra $SYS/broker/... topics (key relative to $SYS/broker/) */
  sys?(): Record<string, string | number>
  /**
   * Sees every message the broker routes, on the publish path: keep it cheap.
   * A returned promise is waited for before the publisher is acknowledged
   * (a rejection refuses the message).
   */
  onPublish?(message: Message, client: ClientInfo | undefined): Promise<void> | void
}

/**
 * Where the broker's parts are made and wired. Each part is handed the narrow
 * view of it that it needs (ConnectionContext, ListenerHost, SysSource,
 * CoreServices): nothing under core/ imports this file.
 */
export class Broker implements ConnectionContext, ListenerHost, SysSource {
  readonly config: Config
  readonly log: Logger
  readonly emitter: BrokerEmitter
  readonly stores: Stores
  readonly router: Router
  readonly sessions: SessionManager
  /** authorize, transform, route: what every published message goes through */
  readonly pipeline: PublishPipeline
  readonly refusals: Refusals
  /** bans by client id, user name or address (core/bans.ts): add, remove, list, match, configure */
  readonly bans: BanList
  readonly stats: BrokerStats
  /** bytes held by connections whose CONNECT is still partial (bounded by limits.maxPreLoginBytes) */
  preLoginBytes = 0
  /** counts and logs (throttled) what a quota refused */
  readonly quotas: QuotaRefusals
  readonly id: string
  readonly startedAt = Date.now()
  hooks: HookRunner
  readonly cluster: Cluster | undefined
  readonly version: string
  readonly tracer: Tracer
  /** runs one packet's handler (the connections call it) */
  readonly dispatch = dispatch
  private readonly connections = new Set<Connection>()
  /** most connections open at once since start ($SYS clients/maximum) */
  private readonly admission: SocketAdmission
  private listeners: Listener[] = []
  private sweepTimer: NodeJS.Timeout | undefined
  private sys: SysPublisher | undefined
  private state: 'new' | 'listening' | 'closing' | 'closed' = 'new'
  private readonly plugins: BrokerPlugin[] = []
  private readonly leaveBus: () => void
  private readonly fileReader: ((path: string) => Buffer) | undefined
  /** the config part of the options this broker was made with: its warm-up twin is made of the same */
  private readonly configInput: ConfigInput

  constructor(options: BrokerOptions = {}) {
    const { stores, hookRunner, logger, cluster, version, readFile, ...config } = options
    this.configInput = config
    this.config = parseConfig(config)
    this.log = logger ?? createLogger(this.config.log.level, this.config.log.format)
    this.refusals = new Refusals(this.log)
    this.stats = {
      received: perQos(),
      sent: perQos(),
      dropped: 0,
      connectionsTotal: 0,
      clientsConnected: 0,
      clientsPeak: 0,
      refused: this.refusals.counts,
      quota: quotaCounters(),
      unencodable: 0,
    }
    this.admission = new SocketAdmission({ connections: () => this.connections.size, limits: this.config.limits, refusals: this.refusals })
    this.emitter = new BrokerEmitter(this.log)
    this.quotas = new QuotaRefusals(this.stats.quota, this.log)
    this.stores = stores ?? memoryStores()
    this.cluster = cluster
    this.bans = new BanList({
      store: this.stores.bans ?? new MemoryBanStore(),
      log: this.log,
      live: () => this.connections,
      flapping: this.config.limits.flapping,
    })
    this.bans.configure(this.config.bans)
    this.hooks = hookRunner ?? passThroughHooks
    this.id = this.config.id ?? randomBytes(6).toString('hex')
    this.router = new Router(this.id)
    this.tracer = new Tracer(this.id)
    this.version = version ?? 'unknown'
    this.fileReader = readFile
    this.pipeline = new PublishPipeline(this)
    this.sessions = new SessionManager(this, this.pipeline)
    this.leaveBus = this.stores.bus.subscribe((message) => (message.node !== this.id ? this.pipeline.routeLocal(message) : undefined), this.id)
  }

  on<E extends BrokerEventName>(event: E, fn: BrokerListener<E>): this {
    this.emitter.on(event, fn)
    return this
  }

  once<E extends BrokerEventName>(event: E, fn: BrokerListener<E>): this {
    this.emitter.once(event, fn)
    return this
  }

  off<E extends BrokerEventName>(event: E, fn: BrokerListener<E>): this {
    this.emitter.off(event, fn)
    return this
  }

  /** Adds a plugin: started before the listeners open, stopped after they close. */
  use(plugin: BrokerPlugin): this {
    if (this.state !== 'new') throw new HookmqError('BROKER_STATE', 'broker.use() must come before listen()')
    this.plugins.push(plugin)
    if (plugin.onPublish) this.pipeline.taps = [...this.pipeline.taps, plugin as PublishTap]
    return this
  }

  /** Whether a plugin's onPublish sees routed messages (from use() on): one with nothing to see (no rule now) turns it off, keeping the publish path short. */
  tapPublish(plugin: BrokerPlugin, on: boolean): void {
    const others = this.pipeline.taps.filter((t) => t !== plugin)
    this.pipeline.taps = on && plugin.onPublish ? [...others, plugin as PublishTap] : others
  }

  /**
   * A config reload's limits: the live ones take their new values at once, in
   * the one object every part reads (core/live-limits.ts). Answers the changed
   * keys: applied, and those that need a restart (left as they were).
   */
  applyLimits(next: Config['limits']): { applied: string[]; restartNeeded: string[] } {
    const { live, restart } = changedLimits(this.config.limits, next)
    const limits = this.config.limits as Record<string, unknown>
    for (const k of live) limits[k] = next[k]
    if (live.length > 0) this.sessions.limitsChanged()
    return { applied: live.map((k) => `limits.${k}`), restartNeeded: restart.map((k) => `limits.${k}`) }
  }

  /** A config reload's value of a key read per decision (no part keeps a copy): replaced at once. */
  applyRule<K extends RuleKey>(key: K, value: Config[K]): void {
    this.config[key] = value
    if (key === 'defaults') this.pipeline.defaultsChanged()
    if (key === 'audit') this.pipeline.audit.configure(this.config.audit)
  }

  /** What $SYS/broker/... says now (SysPublisher), plugins' values included. */
  async sysSnapshot(): Promise<Record<string, string | number>> {
    const retained = await this.stores.retained.count()
    const values: Record<string, string | number> = {
      version: `hookmq ${this.version}`,
      uptime: Math.floor((Date.now() - this.startedAt) / 1000),
      'clients/connected': this.stats.clientsConnected, // clients, not sockets still before their CONNECT
      'clients/total': this.sessions.sessions.size,
      'clients/maximum': this.stats.clientsPeak, // the peak since start, as Mosquitto's
      'connections/total': this.stats.connectionsTotal,
      'messages/received': this.stats.received[0] + this.stats.received[1] + this.stats.received[2],
      'messages/sent': this.stats.sent[0] + this.stats.sent[1] + this.stats.sent[2],
      'messages/dropped': this.stats.dropped,
      'subscriptions/count': this.router.tree.size,
      'retained messages/count': retained,
    }
    for (const p of this.plugins) if (p.sys) Object.assign(values, p.sys())
    return values
  }

  readFile(path: string): Buffer {
    if (this.fileReader === undefined)
      throw new HookmqError('CONFIG_INVALID', `${path}: this broker reads no files (create it with createBroker from the hookmq package)`)
    return this.fileReader(path)
  }

  /** Every subscription of every session, connected or not. */
  subscriptions(): Array<{ clientId: string; client: ClientInfo | undefined; connected: boolean; subscription: Subscription }> {
    const out: Array<{ clientId: string; client: ClientInfo | undefined; connected: boolean; subscription: Subscription }> = []
    for (const s of this.sessions.sessions.values()) {
      for (const sub of s.subscriptions.values())
        out.push({ clientId: s.clientId, client: s.outlet?.client ?? s.lastClient, connected: s.outlet !== null, subscription: sub })
    }
    return out
  }

  /** The connections whose CONNACK accepted them and that are not closing. */
  connectedClients(): Connection[] {
    const out: Connection[] = []
    for (const c of this.connections) if (c.state.kind === 'connected') out.push(c)
    return out
  }

  /** The connection `clientId` has on this node, if connected. */
  connectionOf(clientId: string): Connection | undefined {
    const outlet = this.sessions.sessions.get(clientId)?.outlet
    return outlet instanceof Connection && outlet.state.kind === 'connected' ? outlet : undefined
  }

  /** Disconnects `clientId` if connected here (MQTT 5: DISCONNECT 0x98 Administrative action); its will is published. */
  kick(clientId: string, reason = 'disconnected by an administrator'): boolean {
    const conn = this.connectionOf(clientId)
    if (conn === undefined) return false
    this.log.info({ clientId, reason }, 'client kicked')
    conn.closeWith(ReasonCode.AdministrativeAction, reason)
    return true
  }

  /**
   * Removes subscriptions of one client (e.g. no longer authorized), then once
   * drops what waited for them alone and saves the session; `disconnect` also
   * closes an MQTT 5 client with 0x87. Answers the filters it removed.
   */
  revokeSubscriptions(clientId: string, filters: readonly string[], disconnect = false): string[] {
    const session = this.sessions.sessions.get(clientId)
    if (session === undefined) return []
    const revoked = filters.filter((f) => session.subscriptions.delete(f))
    if (revoked.length === 0) return revoked
    for (const f of revoked) this.router.remove(session, f)
    session.discardUncovered() // what waited for them alone is not delivered after all
    session.persistSubscriptions([], revoked)
    const conn = session.outlet
    if (conn !== null) {
      for (const f of revoked) this.emitter.emit('unsubscribed', f, conn.client)
      if (disconnect) conn.closeWith(ReasonCode.NotAuthorized, `subscription ${revoked[0]} is no longer authorized`)
    }
    return revoked
  }

  /** new → listening (plugins starting, then listeners open: `ready`) → closing → closed */
  get phase(): 'new' | 'listening' | 'closing' | 'closed' {
    return this.state
  }

  get connectionCount(): number {
    return this.connections.size
  }

  get addresses(): Array<{ name: string; host: string; port: number; url: string }> {
    return this.listeners.map((l) => l.address())
  }

  async listen(): Promise<this> {
    if (this.state !== 'new') throw new HookmqError('BROKER_STATE', 'broker.listen() was already called')
    this.state = 'listening'
    for (const p of this.plugins) await p.start?.(this) // a store's connection may be one of them
    await this.bans.start()
    await this.sessions.restore()
    if (this.config.warmup) {
      // a broker of the same code and shape, on its own loopback port, with nothing of this one's (core/warmup.ts)
      await warmUp(() => this.warmupTwin(), this.log)
    }
    if (this.stopping) return this // close() came while it started: nothing is opened
    this.listeners = await startListeners(this)
    if (this.stopping) {
      // (close() found no listener to close)
      await Promise.all(this.listeners.map((l) => l.close()))
      this.listeners = []
      return this
    }
    this.sweepTimer = setInterval(() => this.sweep(), 500)
    this.sweepTimer.unref()
    if (this.config.sys.enabled) this.sys = new SysPublisher(this, this.config.sys.intervalMs)
    for (const l of this.listeners) this.log.info({ listener: l.name, url: l.address().url }, 'listening')
    this.emitter.emit('ready')
    return this
  }

  /**
   * The throwaway broker core/warmup.ts runs traffic through before the
   * listeners open: of this broker's own class and config keys, so that the
   * code V8 optimizes for the twin's objects holds for this broker's (a twin
   * of another shape had its code thrown away by the first real message), and
   * with none of this broker's listeners, stores, hooks, plugins or $SYS.
   * A subclass that adds state of its own makes its own twin.
   */
  protected warmupTwin(): Broker {
    return new Broker({ ...twinConfig(this.configInput), logger: createLogger('silent'), readFile: this.fileReader, version: this.version })
  }

  /** Client sockets open on every listener (see SocketAdmission). */
  get openSockets(): number {
    return this.admission.open
  }

  /** A listener accepted a socket that is not a connection yet (TLS handshake, WebSocket upgrade); false when refused. */
  admitPending(socket: Duplex, listener: ListenerInfo, remoteAddress: string): boolean {
    if (this.state === 'listening') return this.admission.admitPending(socket, listener, remoteAddress)
    socket.destroy()
    return false
  }

  /**
   * Accepts a new transport connection from a listener. `carrier`: the socket the
   * listener admitted before (the TCP socket under a WebSocket stream).
   */
  accept(socket: Duplex, listener: ListenerInfo, remoteAddress: string, carrier: Duplex = socket): void {
    const openedAt = this.state === 'listening' ? this.admission.admit(socket, carrier, listener, remoteAddress) : undefined
    if (openedAt === undefined) {
      socket.destroy()
      return
    }
    const conn = new Connection(socket, this, listener, remoteAddress, openedAt)
    this.connections.add(conn)
    this.stats.connectionsTotal++
  }

  anonymousAllowed(listener: ListenerInfo): boolean {
    if (this.config.allowAnonymous !== undefined) return this.config.allowAnonymous
    const rule = this.config.defaults.authenticate
    return rule === 'loopback' ? listener.loopback : rule === 'allow'
  }

  /** Publishes from code (not from a client): no authorization, transforms apply. */
  publish(options: PublishOptions): Promise<void> {
    const problem = typeof options.topic === 'string' ? checkTopicName(options.topic, this.config.limits) : 'no topic'
    if (problem !== undefined) return Promise.reject(new HookmqError('TOPIC_NAME_INVALID', `broker.publish: ${problem}`))
    if (options.qos !== undefined && options.qos !== 0 && options.qos !== 1 && options.qos !== 2)
      return Promise.reject(new HookmqError('QOS_NOT_SUPPORTED', `broker.publish: QoS ${String(options.qos)}`))
    const payload = options.payload === undefined ? Buffer.alloc(0) : typeof options.payload === 'string' ? Buffer.from(options.payload) : options.payload
    const message = newMessage(options.topic, payload, options.qos ?? 0, options.retain ?? false, undefined, options.properties)
    return Promise.resolve(this.pipeline.transformAndRoute(undefined, message)).then(noop)
  }

  /** Sends the retained messages matching a new subscription. */
  sendRetained(conn: Connection, session: Session, sub: Subscription): void {
    new RetainedFeed(conn, session, sub, this.stores.retained.pages(sub.filter), this.log).start()
  }

  connectionClosed(conn: Connection, session: Session | undefined): void {
    this.connections.delete(conn)
    if (conn.connectedAt !== 0) this.stats.clientsConnected--
    if (this.connections.size === 0) this.onDrained?.()
    if (session === undefined) return
    this.sessions.detach(conn, session)
    logDisconnected(conn)
    this.emitter.emit('clientDisconnected', conn.client, { reasonCode: conn.closeReason })
  }

  clientError(conn: Connection, err: Error): void {
    this.log.debug({ err, clientId: conn.client.id, remoteAddress: conn.client.remoteAddress }, 'client error')
    this.emitter.emit('clientError', conn.client.id === '' ? undefined : conn.client, err)
  }

  /** One check for every connection's keep-alive and connect deadline. */
  private sweep(): void {
    const now = Date.now()
    const connectDeadline = this.config.limits.connectTimeoutMs
    this.admission.sweep(now)
    for (const conn of this.connections) {
      if (conn.authExchange !== undefined && now > conn.authExchange.due && conn.accepting) {
        authExchangeLate(conn) // the client did not answer AUTH 0x18 in time
      } else if (conn.state.kind === 'awaitingConnect' && now - conn.openedAt > connectDeadline) {
        this.refusals.note('connectTimeout', { remoteAddress: conn.client.remoteAddress, listener: conn.listener.name, reason: 'no CONNECT in time' })
        conn.closeWith(ReasonCode.MaximumConnectTime, 'no CONNECT in time')
      } else if (conn.state.kind === 'connected' && conn.keepaliveMs > 0 && now - conn.lastSeen > conn.keepaliveMs && conn.accepting) {
        // only complete packets move lastSeen: a client trickling a partial one times out too
        // (not while the broker itself holds its packets unread behind one still deciding: they are parsed, and counted, later)
        this.refusals.note('keepaliveTimeout', { remoteAddress: conn.client.remoteAddress, clientId: conn.client.id })
        this.emitter.emit('keepaliveTimeout', conn.client)
        conn.closeWith(ReasonCode.KeepAliveTimeout, 'keep-alive timeout') // [MQTT-3.1.2-24] (3.1.1), [MQTT-3.1.2-22] (5.0)
      }
    }
  }

  /** Resolves when every connection has closed, or after `ms`. */
  private drained(ms: number): Promise<void> {
    if (this.connections.size === 0) return Promise.resolve()
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms)
      const self = this
      function done(): void {
        clearTimeout(timer)
        self.onDrained = undefined
        resolve()
      }
      this.onDrained = done
    })
  }

  private onDrained: (() => void) | undefined

  /** close() was called */
  private get stopping(): boolean {
    return this.state === 'closing' || this.state === 'closed'
  }

  async close(): Promise<void> {
    if (this.state === 'closed' || this.state === 'closing') return
    this.state = 'closing'
    clearInterval(this.sweepTimer)
    await this.sys?.stop()
    for (const conn of this.connections) {
      conn.cleanDisconnect = true // the broker is going away, not the client: no will
      conn.closeWith(ReasonCode.ServerShuttingDown, 'server shutting down')
    }
    this.admission.sweep(Date.now(), true)
    await this.drained(1000)
    for (const conn of this.connections) conn.socket.destroy()
    await Promise.all(this.listeners.map((l) => l.close()))
    for (const p of [...this.plugins].reverse()) {
      try {
        await p.stop?.()
      } catch (err) {
        this.log.error({ err, plugin: p.name }, 'plugin stop failed')
      }
    }
    this.sessions.close()
    this.leaveBus()
    await Promise.all([this.stores.bus.close(), this.stores.sessions.close(), this.stores.retained.close(), this.bans.close()])
    this.state = 'closed'
    this.emitter.emit('closed')
  }
}
