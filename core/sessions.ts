import { PendingClaims, type PendingClaim } from './claims.js'
import type { ClaimIdentity } from './cluster.js'
import { ReasonCode } from './errors.js'
import { noop, type ExistingSession } from './hooks.js'
import { owns, type Identity } from './identity.js'
import { throttled } from './logger.js'
import type { PublishPipeline } from './pipeline.js'
import type { CoreServices } from './services.js'
import { NEVER_EXPIRES, Session, type Outlet, type SessionContext } from './session.js'
import type { SessionState, Will } from './stores.js'
import { newMessage, type ClientInfo } from './types.js'

const MAX_TIMER_MS = 0x7fffffff

/** What an accepted CONNECT asks of the sessions. */
export interface OpenRequest {
  clientId: string
  cleanStart: boolean
  expiryInterval: number
  /** the identity of the connection (core/identity.ts) */
  owner: Identity
  /** the client id's session as it was when the CONNECT was decided (its owner), if it had one */
  seen: ExistingSession | undefined
  /** in a cluster: the claim prepare() made */
  claim?: PendingClaim
}

/**
 * Opens, resumes, takes over and ends sessions; owns the will and expiry timers.
 */
export class SessionManager {
  readonly sessions = new Map<string, Session>()
  private readonly ctx: SessionContext
  private readonly claiming = new PendingClaims()

  constructor(
    private readonly core: CoreServices,
    private readonly pipeline: PublishPipeline,
  ) {
    this.ctx = {
      store: core.stores.sessions,
      ...queueSettings(core.config.limits),
      onDelivered: (message, client) => {
        if (core.emitter.has('delivered')) core.emitter.emit('delivered', message, client)
      },
      onDropped: () => {
        core.stats.dropped++
      },
      onMessageDropped: (message, reason, clientId) => core.emitter.dropped(message, reason, clientId),
      onQueueFull: (quota, clientId) => core.quotas.refuse(quota, clientId),
      // a store that is away fails every write: one line every 10 s, with a count
      onStoreError: throttled((err, failed) => core.log.error({ err, failed }, 'session store writes failed')),
    }
  }

  /** The queue and inflight limits every session reads, taken again from `config.limits` (a config reload changed them). */
  limitsChanged(): void {
    Object.assign(this.ctx, queueSettings(this.core.config.limits))
  }

  /** Rebuilds stored persistent sessions and their routes (start-up); in a cluster, only this node's. */
  async restore(): Promise<void> {
    const store = this.core.stores.sessions
    const mine = this.core.cluster === undefined ? undefined : await this.core.cluster.owned()
    for (const stored of await store.list()) {
      if (mine !== undefined && !mine.has(stored.clientId)) continue
      const state = await store.load(stored.clientId)
      if (state !== undefined) this.adopt(state)
    }
    // clients whose clean sessions ended with the last run here: no longer this node's
    if (mine !== undefined) for (const id of mine) if (!this.sessions.has(id)) this.core.cluster!.released(id)
  }

  /** Serves a stored session here: routes, expiry and a pending will (restart, or taken from another node). */
  adopt(state: SessionState): Session | undefined {
    if (this.sessions.has(state.clientId)) return undefined
    const session = new Session(state.clientId, this.ctx)
    session.restore(state)
    this.sessions.set(session.clientId, session)
    for (const sub of session.subscriptions.values()) this.core.router.add(session, sub)
    session.disconnectedAt ??= Date.now()
    this.scheduleExpiry(session)
    if (session.will !== undefined) this.scheduleWill(session)
    return session
  }

  /** The session `clientId` has now, here or (in a cluster) on another node: its owner; undefined when it has none. */
  describe(clientId: string): ExistingSession | undefined | Promise<ExistingSession | undefined> {
    const local = this.sessions.get(clientId)
    if (local !== undefined) return { owner: local.owner }
    const cluster = this.core.cluster
    return cluster === undefined || !cluster.available ? undefined : cluster.sessionOwner(clientId)
  }

  /**
   * Before a CONNECT opens its session, in a cluster: take the client id from
   * whichever node has it, then load what was stored (or, on clean start, drop
   * it). The claim goes to open() (or abandon()); undefined without a cluster.
   */
  async prepare(clientId: string, cleanStart: boolean, identity?: ClaimIdentity): Promise<PendingClaim | undefined> {
    const cluster = this.core.cluster
    if (cluster === undefined || !cluster.available) return undefined
    const claim = this.claiming.add(clientId)
    try {
      await cluster.claim(
        clientId,
        async () => {
          if (this.sessions.has(clientId)) return
          const store = this.core.stores.sessions
          if (cleanStart) {
            await store.delete(clientId)
            return
          }
          const state = await store.load(clientId)
          if (state !== undefined) this.adopt(state)
        },
        identity,
      )
    } catch (err) {
      this.abandon(claim)
      throw err
    }
    return claim
  }

  /** The CONNECT holding `claim` opens nothing (it closed, or lost): the client id goes unless a session or another CONNECT holds it. */
  abandon(claim: PendingClaim | undefined): void {
    if (claim === undefined) return
    this.claiming.settle(claim)
    if (!this.sessions.has(claim.clientId) && !this.claiming.has(claim.clientId)) this.core.cluster?.released(claim.clientId)
  }

  /**
   * Another node takes `clientId` over: close its connection here (0x8E) and let
   * the session go without deleting what is stored of it.
   */
  release(clientId: string): void {
    this.claiming.outclaimed(clientId) // a CONNECT of it here that has not opened its session yet has lost
    const session = this.sessions.get(clientId)
    if (session === undefined) return
    const conn = session.outlet
    if (conn !== null) {
      conn.closeWith(ReasonCode.SessionTakenOver, 'the client connected to another node') // [MQTT-3.1.4-3]
      this.detach(conn, session)
    }
    if (this.sessions.get(clientId) === session) this.drop(session) // a clean one has ended already
  }

  /**
   * Forgets a session this node no longer owns (another node took it while
   * this one was cut off): closes its connection, writes nothing.
   */
  forget(clientId: string): void {
    this.claiming.outclaimed(clientId) // a CONNECT of it here that has not opened its session yet has lost
    const session = this.sessions.get(clientId)
    if (session === undefined) return
    const conn = session.outlet
    session.outlet = null // so that closing the connection does not save the session or publish its will
    this.drop(session)
    conn?.closeWith(ReasonCode.SessionTakenOver, 'the session moved to another node')
  }

  /** Takes a session off this node: timers, routes, the map (what is stored is not touched). */
  private drop(session: Session): void {
    clearTimeout(session.expiryTimer)
    clearTimeout(session.willTimer) // a stored will goes with the session
    for (const filter of session.subscriptions.keys()) this.core.router.remove(session, filter)
    if (this.sessions.get(session.clientId) === session) this.sessions.delete(session.clientId)
  }

  /**
   * Opens the session of an accepted CONNECT: takes over a connection that has
   * the client id, resumes or starts the session. Undefined (nothing changed)
   * when another node claimed the client id after this CONNECT did (`claim.lost`),
   * or the session belongs to another identity than the CONNECT was decided on.
   */
  open(conn: Outlet, req: OpenRequest): { session: Session; present: boolean } | undefined {
    const { clientId, claim } = req
    if (claim !== undefined) {
      if (claim.lost) {
        this.abandon(claim)
        return undefined
      }
      this.claiming.settle(claim)
    }
    let session = this.sessions.get(clientId)
    if (session !== undefined && !owns(req.owner, session.owner) && session.owner !== req.seen?.owner) return undefined
    if (session?.outlet) {
      const old = session.outlet
      old.closeWith(ReasonCode.SessionTakenOver, 'another connection took over this client id') // [MQTT-3.1.4-3]
      this.detach(old, session, true)
      session = this.sessions.get(clientId) // [MQTT-3.1.2-6] a session that ended with that connection (expiry 0) is gone
    }
    let present = false
    if (session !== undefined && req.cleanStart) {
      this.end(session, true) // [MQTT-3.1.2-4] Clean Start discards the old session
      session = undefined
    }
    const previous = session?.owner
    if (session === undefined) {
      session = new Session(clientId, this.ctx)
      this.sessions.set(clientId, session)
    } else {
      present = true // [MQTT-3.2.2-2]
      clearTimeout(session.expiryTimer)
      clearTimeout(session.willTimer) // [MQTT-3.1.3-9] a resumed session does not send its delayed will
      session.willTimer = undefined
    }
    const wasPersistent = session.persistent
    session.expiryInterval = req.expiryInterval
    session.will = conn.will
    session.lastClient = conn.client
    session.owner = req.owner // the identity that last opened it owns it
    if (!present || previous !== req.owner) this.core.cluster?.ownerSet(clientId, req.owner)
    if (conn.will !== undefined) this.core.cluster?.willSet(clientId, conn.will)
    session.persist()
    if (!session.persistent && wasPersistent) session.track(this.core.stores.sessions.delete(clientId))
    const emitter = this.core.emitter
    if (present) {
      if (emitter.has('sessionResumed'))
        emitter.emit('sessionResumed', { clientId, expiryInterval: session.expiryInterval, queued: session.queued }, conn.client)
    } else if (emitter.has('sessionCreated')) emitter.emit('sessionCreated', { clientId, expiryInterval: session.expiryInterval }, conn.client)
    return { session, present }
  }

  /** The connection serving `session` has gone (or been replaced: `reopening`, the client id stays here). */
  detach(conn: Outlet, session: Session, reopening = false): void {
    if (session.outlet !== conn) return
    session.detach()
    if (conn.will !== undefined) this.core.cluster?.willCleared(session.clientId)
    if (!conn.cleanDisconnect && session.will !== undefined) {
      if (session.will.delay === 0 || session.expiryInterval === 0) this.publishWill(session)
      else this.scheduleWill(session)
    } else {
      session.will = undefined
    }
    if (session.expiryInterval === 0) this.end(session, reopening)
    else {
      session.persist()
      this.scheduleExpiry(session)
    }
  }

  /**
   * Ends a session: publishes a pending will, drops routes and stored state.
   * `reopening`: a new session of the client id opens here at once (so the
   * cluster keeps it on this node).
   */
  end(session: Session, reopening = false): void {
    if (session.willTimer !== undefined) this.publishWill(session) // [MQTT-3.1.2-8] will goes when the session ends
    const current = this.sessions.get(session.clientId) === session
    this.drop(session)
    if (session.persistent) session.track(this.core.stores.sessions.delete(session.clientId))
    session.reset()
    if (current && !reopening && !this.claiming.has(session.clientId)) this.core.cluster?.released(session.clientId)
  }

  private scheduleExpiry(session: Session): void {
    if (session.expiryInterval === NEVER_EXPIRES) return
    const due = (session.disconnectedAt ?? Date.now()) + session.expiryInterval * 1000
    setLongTimeout(session, 'expiryTimer', due, () => {
      if (session.outlet !== null) return
      const { disconnectedAt, expiryInterval } = session
      this.end(session)
      const emitter = this.core.emitter
      if (emitter.has('sessionExpired')) emitter.emit('sessionExpired', { clientId: session.clientId, expiryInterval, disconnectedAt }, session.lastClient)
    })
  }

  private scheduleWill(session: Session): void {
    const will = session.will!
    const due = (session.disconnectedAt ?? Date.now()) + will.delay * 1000
    setLongTimeout(session, 'willTimer', due, () => this.publishWill(session))
  }

  private publishWill(session: Session): void {
    clearTimeout(session.willTimer)
    session.willTimer = undefined
    const will = session.will
    session.will = undefined
    if (will === undefined) return
    session.persist()
    void this.sendWill(session.clientId, will, session.lastClient)
  }

  /**
   * Publishes a will through the publish pipeline (hooks apply) as the client
   * that left it; also for clients of another node that died (the cluster).
   */
  sendWill(clientId: string, will: Will, client?: ClientInfo): Promise<void> {
    const message = newMessage(will.topic, will.payload, will.qos, will.retain, clientId, will.properties)
    const r = this.pipeline.ingest(client ?? { id: clientId, remoteAddress: '', protocolVersion: 4, listener: '' }, message)
    return typeof r === 'number' ? Promise.resolve() : r.then(noop, (err: unknown) => this.core.log.error({ err, clientId }, 'will publish failed'))
  }

  close(): void {
    for (const s of this.sessions.values()) {
      clearTimeout(s.expiryTimer)
      clearTimeout(s.willTimer)
    }
  }
}

/** setTimeout for due times beyond the 24.8-day timer limit. */
function setLongTimeout(session: Session, field: 'expiryTimer' | 'willTimer', due: number, fn: () => void): void {
  clearTimeout(session[field])
  const wait = due - Date.now()
  const t = setTimeout(
    () => {
      if (Date.now() >= due) fn()
      else setLongTimeout(session, field, due, fn)
    },
    Math.max(0, Math.min(wait, MAX_TIMER_MS)),
  )
  t.unref()
  session[field] = t
}

/** What a session reads of the limits, per queued or sent message. */
function queueSettings(
  limits: CoreServices['config']['limits'],
): Pick<SessionContext, 'maxQueued' | 'maxQueuedBytes' | 'maxInflightBytes' | 'dropNewest' | 'queuedTtlMs'> {
  return {
    maxQueued: limits.maxQueuedMessages,
    maxQueuedBytes: limits.maxQueuedBytes,
    maxInflightBytes: limits.maxInflightBytes,
    dropNewest: limits.queueOverflow === 'dropNewest',
    queuedTtlMs: limits.queuedMessageExpiry === undefined ? undefined : limits.queuedMessageExpiry * 1000,
  }
}
