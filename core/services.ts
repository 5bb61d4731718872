import type { Cluster } from './cluster.js'
import type { Config } from './config.js'
import type { BanList } from './bans.js'
import type { BrokerEmitter } from './events.js'
import type { HookRunner } from './hooks.js'
import type { Logger } from './logger.js'
import type { QuotaName, QuotaRefusals } from './quota.js'
import type { RefusalCounts, Refusals } from './refusals.js'
import type { Router } from './router.js'
import type { Stores } from './stores.js'
import type { Tracer } from './trace.js'

// What the broker's parts share. The Broker (broker.ts) makes these and hands
// each part the narrow view it needs; no part imports the Broker back.

export interface BrokerStats {
  /** PUBLISH packets received from clients, by QoS */
  received: [number, number, number]
  /** PUBLISH packets sent to clients, by QoS */
  sent: [number, number, number]
  dropped: number
  connectionsTotal: number
  /** clients connected now (CONNACK sent, not yet closed): what $SYS clients/connected says */
  clientsConnected: number
  /** the most clients connected at once since start */
  clientsPeak: number
  /** connections and sockets refused, by cause (see core/refusals.ts) */
  refused: RefusalCounts
  /** what each quota refused (SUBACK/PUBACK 0x97, retained messages not stored, queued messages dropped) */
  quota: Record<QuotaName, number>
  /** deliveries dropped because MQTT cannot represent them (a string over 65,535 bytes, a packet over 268,435,455) */
  unencodable: number
}

/** Configuration, logging, events, persistence, routing and counters: the leaves every part may use. */
export interface CoreServices {
  /** this node's id */
  readonly id: string
  readonly config: Config
  readonly log: Logger
  readonly emitter: BrokerEmitter
  readonly stores: Stores
  readonly router: Router
  /** nodes sharing state (the Redis plugin); undefined on a single node */
  readonly cluster: Cluster | undefined
  /** the hook runner the core calls (the hook host replaces the allow-all default when it starts) */
  readonly hooks: HookRunner
  readonly refusals: Refusals
  /** the bans in force (a banned CONNECT is refused before the authenticate hooks) */
  readonly bans: BanList
  readonly quotas: QuotaRefusals
  readonly stats: BrokerStats
  /** live trace (core/trace.ts): inactive, one boolean read per packet, while no one watches */
  readonly tracer: Tracer
}
