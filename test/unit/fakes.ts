import type { Duplex } from 'node:stream'
import { parseConfig, type ConfigInput } from '../../core/config.js'
import { MemoryBanStore } from '../../core/ban-store.js'
import { BanList } from '../../core/bans.js'
import { BrokerEmitter } from '../../core/events.js'
import { Flow } from '../../core/flow.js'
import { Tracer } from '../../core/trace.js'
import { passThroughHooks, type HookRunner } from '../../core/hooks.js'
import { createLogger } from '../../core/logger.js'
import { QuotaRefusals, quotaCounters } from '../../core/quota.js'
import { Refusals } from '../../core/refusals.js'
import { Router } from '../../core/router.js'
import type { CoreServices } from '../../core/services.js'
import type { Outlet, SessionContext } from '../../core/session.js'
import { MemorySessionStore, memoryStores, type OutgoingEntry, type Written } from '../../core/stores.js'
import type { ClientInfo, Message, QoS } from '../../core/types.js'

// Stand-ins for what a unit of the core is handed: a connection seen as an
// Outlet, a socket seen by flow control, the broker's services. Each records
// what was done to it. (End-to-end tests use real sockets and clients.)

export interface Sent {
  topic: string
  payload: string
  qos: QoS
  retain: boolean
  ids: number[] | undefined
  packetId: number
  dup: boolean
  from: Flow | null
}

export class FakeOutlet implements Outlet {
  readonly sent: Sent[] = []
  readonly pubrels: number[] = []
  readonly congestedBy: Array<Flow | null> = []
  readonly closed: Array<{ code: number; reason: string | undefined }> = []
  caughtUpCalls = 0
  sendWindow = 65535
  will = undefined
  cleanDisconnect = false
  /** false: the client's Maximum Packet Size forbids every message */
  fits = true
  /** called for each PUBLISH written, before it is recorded */
  onSend: ((m: Message) => void) | undefined = undefined
  readonly client: ClientInfo

  constructor(id = 'client') {
    this.client = { id, remoteAddress: '127.0.0.1', protocolVersion: 5, listener: 'tcp' }
  }

  sendPublish(message: Message, qos: QoS, retain: boolean, ids: number[] | undefined, packetId: number, dup: boolean, from: Flow | null): boolean {
    this.onSend?.(message)
    if (!this.fits) return false
    this.sent.push({
      topic: message.topic,
      payload: message.payload.toString(),
      qos,
      retain,
      ids: ids === undefined ? undefined : [...ids],
      packetId,
      dup,
      from,
    })
    return true
  }

  sendPubrel(packetId: number): void {
    this.pubrels.push(packetId)
  }

  congested(from: Flow | null): void {
    this.congestedBy.push(from)
  }

  caughtUp(): void {
    this.caughtUpCalls++
  }

  closeWith(code: number, reason?: string): void {
    this.closed.push({ code, reason })
  }
}

/** What flow control sees of a connection: a socket that counts pause() and resume(). */
export class FakeFlowOwner {
  paused = 0
  resumed = 0
  isOpen = true
  queued = 0
  unthrottledCalls = 0
  writableNeedDrain = false
  readonly socket: Duplex

  constructor() {
    const self = this
    this.socket = {
      pause() {
        self.paused++
      },
      resume() {
        self.resumed++
      },
      get writableNeedDrain() {
        return self.writableNeedDrain
      },
    } as unknown as Duplex
  }

  unthrottled(): void {
    this.unthrottledCalls++
  }

  flow(): Flow {
    return new Flow(this)
  }
}

/**
 * The in-memory session store, answering its writes later as a remote store
 * (Redis) does: what the acknowledgement of a message must wait for.
 */
export class DurableMemoryStore extends MemorySessionStore {
  writes = 0

  override putInflight(clientId: string, entry: OutgoingEntry): Written {
    super.putInflight(clientId, entry)
    this.writes++
    return new Promise((resolve) => setImmediate(resolve))
  }
}

export function sessionContext(over: Partial<SessionContext> = {}): SessionContext & { dropped: string[]; delivered: string[] } {
  const dropped: string[] = []
  const delivered: string[] = []
  return {
    store: new MemorySessionStore(),
    maxQueued: 1000,
    maxQueuedBytes: 1e9,
    maxInflightBytes: 1e9,
    dropNewest: false,
    onDelivered: (m) => {
      delivered.push(m.topic)
    },
    onDropped: () => {},
    onMessageDropped: () => {},
    onQueueFull: (quota) => {
      dropped.push(quota)
    },
    onStoreError: (err) => {
      throw err
    },
    queuedTtlMs: undefined,
    ...over,
    dropped,
    delivered,
  }
}

/** The broker's services with in-memory stores, a silent log and `hooks` (allow-all by default). */
export function services(config: ConfigInput = {}, hooks: HookRunner = passThroughHooks): CoreServices {
  const log = createLogger('silent')
  const refusals = new Refusals(log)
  const quota = quotaCounters()
  return {
    id: 'node-test',
    tracer: new Tracer('node-test'),
    config: parseConfig(config),
    log,
    emitter: new BrokerEmitter(log),
    stores: memoryStores(),
    router: new Router(),
    cluster: undefined,
    hooks,
    refusals,
    bans: new BanList({ store: new MemoryBanStore(), log, live: () => [] }),
    quotas: new QuotaRefusals(quota, log),
    stats: {
      received: [0, 0, 0],
      sent: [0, 0, 0],
      dropped: 0,
      connectionsTotal: 0,
      clientsConnected: 0,
      clientsPeak: 0,
      refused: refusals.counts,
      quota,
      unencodable: 0,
    },
  }
}
