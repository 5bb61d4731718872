export { Broker } from './broker.js'
export { Tracer } from './trace.js'
export type { TraceEvent, TraceFilter } from './trace.js'
export type { Connection } from './connection.js'
export type { BrokerOptions, BrokerPlugin, PublishOptions, BrokerStats, RuleKey } from './broker.js'
export { LIVE_LIMITS, RESTART_LIMITS } from './live-limits.js'
export { configSchema, parseConfig, parseConfigWith, configReference, HOOK_SETTINGS } from './config.js'
export type { Config, ConfigInput } from './config.js'
export { HookmqError, ReasonCode, ErrorCode } from './errors.js'
export { BanList } from './bans.js'
export type { Bans, BanTarget, ConfiguredBan } from './bans.js'
export { MemoryBanStore } from './ban-store.js'
export type { Ban, BanChange, BanInput, BanKind, BanStore } from './ban-store.js'
export { addressProblem, banId } from './ban-index.js'
export type { BannableClient } from './ban-index.js'
export { checkTopicFilter, checkTopicName, matchesFilter, sharedKey, splitSharedKey, TopicMemo } from './topic.js'
export { Matches, TopicTree } from './topic-tree.js'
export { Router } from './router.js'
export type { Session } from './session.js'
export type { ClaimIdentity, Cluster, FilterChange, LocalGroupChange, RemoteGroups, SysRecord } from './cluster.js'
export type { Logger, LogFormat } from './logger.js'
export { createLogger, throttled } from './logger.js'
export { isPromise, LATER, noop, refused, refusalCode } from './hooks.js'
export { DecisionAudit, deciderOf } from './audit.js'
export type { AuditRecord, AuditSettings, Decided, DecisionKind, DecisionWatcher, DenialInfo } from './audit.js'
export { deniedSubscriptions } from './resume.js'
export type { BrokerEvents, BrokerEventName, BrokerListener, DropReason, SessionEventInfo } from './events.js'
export { passThroughHooks } from './hooks.js'
export type {
  HookRunner,
  HookCatalogue,
  DecisionReceiver,
  DeliveryReceiver,
  DeliverySlot,
  Later,
  HookName,
  Decision,
  AuthenticateInput,
  AuthenticateDecision,
  AuthContinue,
  FinalAuthDecision,
  PublishDecision,
  SubscribeDecision,
  SubscribeInput,
  ExistingSession,
  SessionChoice,
} from './hooks.js'
export { identityOf } from './identity.js'
export type { Identity } from './identity.js'
export { MemoryBus, MemoryRetainedStore, MemorySessionStore, memoryStores, RETAINED_PAGE } from './stores.js'
export type {
  MessageBus,
  RetainedStore,
  RetainedUsage,
  SessionStore,
  SubscriptionChange,
  Written,
  SessionState,
  StoredSession,
  OutgoingEntry,
  QueuedEntry,
  Stores,
  Will,
} from './stores.js'
export type { ClientInfo, Message, MessageProperties, QoS, Subscription, SubscriptionOptions } from './types.js'
export { newMessage } from './types.js'
export { checkMessageProperties } from './properties.js'
export type { PropertyLimits } from './properties.js'
export { isLoopback } from './listeners/index.js'
export { maskCredentials } from './secrets.js'
export { QUOTA_NAMES, messageSize } from './quota.js'
export type { QuotaName } from './quota.js'
