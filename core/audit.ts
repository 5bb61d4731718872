import type { Config } from './config.js'
import { DenialLog } from './denials.js'
import type { AuthenticateInput, Decision, FinalAuthDecision, PublishDecision, SubscribeDecision, SubscribeInput } from './hooks.js'
import { throttled, type Logger } from './logger.js'
import type { ClientInfo, Message, QoS } from './types.js'

// Every decision the broker enforces on authenticate, authorizePublish and
// authorizeSubscribe passes through here: each deny, and an allow only while
// someone wants allows (`audit.allows`, or a watcher: the hook host's shadow
// hooks and record file). What one becomes: the throttled denial log line
// (denials.ts), an audit record (the `audit` event, at most
// `audit.maxPerSecond`, the rest counted as dropped), the watcher's call and,
// for a refused publish or subscription, the publishDenied / subscribeDenied
// event.

export type DecisionKind = 'authenticate' | 'publish' | 'subscribe'

/** One enforced decision, as the `audit` event (and a webhook's `decision` event) tells it. Never a password or payload. */
export interface AuditRecord {
  /** ISO 8601 */
  time: string
  /** the node that decided */
  node: string
  kind: DecisionKind
  clientId: string
  username?: string
  /** the client's address */
  address: string
  /** the hook that decided, or `default` when every hook passed (the defaults, the anonymous rule) */
  hook: string
  hookVersion?: number
  decision: 'allow' | 'deny'
  /** the reason code the client was answered (0 for an allow) */
  reasonCode: number
  reason?: string
  /** publish: the topic */
  topic?: string
  /** subscribe: the filter */
  filter?: string
}

/** Why a publish or a subscription was refused (the publishDenied / subscribeDenied events): the reason code answered, the reason, and the hook that denied it (`default`: no hook allowed it; none: the broker's own rule). */
export interface DenialInfo {
  reasonCode: number
  reason: string | undefined
  hook: string | undefined
}

/** An enforced decision with what it was asked, as a watcher sees it. */
export type Decided =
  | { kind: 'authenticate'; input: AuthenticateInput; decision: FinalAuthDecision; allowed: boolean; reasonCode: number; reason?: string }
  | { kind: 'publish'; client: ClientInfo; message: Message; decision: PublishDecision; allowed: boolean; reasonCode: number }
  | { kind: 'subscribe'; client: ClientInfo; subscription: SubscribeInput; decision: SubscribeDecision; allowed: boolean; reasonCode: number }

/** Told of every enforced decision of the kinds it names (allows and denies), synchronously: it must not hold the caller. */
export interface DecisionWatcher {
  readonly kinds: Readonly<Record<DecisionKind, boolean>>
  decided(d: Decided): void
}

export type AuditSettings = Config['audit']

/** Where records and denials go: the broker's emitter (named structurally: events.ts names AuditRecord, and core/ has no import cycle). */
interface AuditSink {
  has(event: 'audit' | 'publishDenied' | 'subscribeDenied'): boolean
  emit(event: 'audit', record: AuditRecord): void
  emit(event: 'publishDenied', message: Message, client: ClientInfo, info: DenialInfo): void
  emit(event: 'subscribeDenied', subscription: { filter: string; qos: QoS }, client: ClientInfo, info: DenialInfo): void
}

export class DecisionAudit {
  private readonly denials: DenialLog
  /** records made (denies always, allows with audit.allows) and records not emitted for being over audit.maxPerSecond */
  readonly counts = { allow: 0, deny: 0, dropped: 0 }
  // whether the allow path of each kind calls in: one boolean read there
  authenticateAllows = false
  publishAllows = false
  subscribeAllows = false
  private watcher: DecisionWatcher | undefined
  /** told whether any allow is wanted now (the hook host then names the hook on its allows) */
  private wanted: ((allows: boolean) => void) | undefined
  private tokens: number
  private refilledAt = Date.now()
  private readonly droppedLine: (detail: unknown) => void

  constructor(
    private readonly node: string,
    private readonly emitter: AuditSink,
    log: Logger,
    private settings: AuditSettings,
  ) {
    this.denials = new DenialLog(log)
    this.tokens = settings.maxPerSecond
    this.droppedLine = throttled(
      (_, count) => log.warn({ dropped: count, maxPerSecond: this.settings.maxPerSecond }, 'audit records dropped: more than audit.maxPerSecond'),
      10000,
    )
    this.update()
  }

  /** audit.* changed (a config reload) */
  configure(settings: AuditSettings): void {
    this.settings = settings
    this.tokens = Math.min(this.tokens, settings.maxPerSecond)
    this.update()
  }

  /** The one watcher (the hook host), or none. */
  watch(watcher: DecisionWatcher | undefined): void {
    this.watcher = watcher
    this.update()
  }

  /** `fn` is told now, and whenever it changes, whether some allow is wanted. */
  onAllowsWanted(fn: (allows: boolean) => void): void {
    this.wanted = fn
    this.update()
  }

  private update(): void {
    const all = this.settings.allows
    const w = this.watcher?.kinds
    this.authenticateAllows = all || w?.authenticate === true
    this.publishAllows = all || w?.publish === true
    this.subscribeAllows = all || w?.subscribe === true
    this.wanted?.(this.authenticateAllows || this.publishAllows || this.subscribeAllows)
  }

  authenticate(input: AuthenticateInput, decision: FinalAuthDecision, allowed: boolean, reasonCode: number, reason?: string): void {
    this.record('authenticate', input.clientId, input.username, input.remoteAddress, decision, allowed, reasonCode, reason, undefined)
    if (this.watcher?.kinds.authenticate === true) this.watcher.decided({ kind: 'authenticate', input, decision, allowed, reasonCode, reason })
  }

  publish(client: ClientInfo, message: Message, decision: PublishDecision, allowed: boolean, reasonCode: number): void {
    if (!allowed) {
      this.denials.note(client, 'publish', message.topic, reasonCode, decision)
      if (this.emitter.has('publishDenied')) this.emitter.emit('publishDenied', message, client, denialInfo(decision, reasonCode, 'publish'))
    }
    this.record('publish', client.id, client.username, client.remoteAddress, decision, allowed, reasonCode, undefined, message.topic)
    if (this.watcher?.kinds.publish === true) this.watcher.decided({ kind: 'publish', client, message, decision, allowed, reasonCode })
  }

  subscribe(client: ClientInfo, subscription: SubscribeInput, decision: SubscribeDecision, allowed: boolean, reasonCode: number): void {
    if (!allowed) {
      this.denials.note(client, 'subscribe', subscription.filter, reasonCode, decision)
      if (this.emitter.has('subscribeDenied')) this.emitter.emit('subscribeDenied', subscription, client, denialInfo(decision, reasonCode, 'subscribe'))
    }
    this.record('subscribe', client.id, client.username, client.remoteAddress, decision, allowed, reasonCode, undefined, subscription.filter)
    if (this.watcher?.kinds.subscribe === true) this.watcher.decided({ kind: 'subscribe', client, subscription, decision, allowed, reasonCode })
  }

  /** A publish the broker's own rule refused before any hook ($SYS): no hook decided, so no audit record or denial line, only the publishDenied event. */
  publishRefused(client: ClientInfo, message: Message, reasonCode: number, reason: string): void {
    if (this.emitter.has('publishDenied')) this.emitter.emit('publishDenied', message, client, { reasonCode, reason, hook: undefined })
  }

  private record(
    kind: DecisionKind,
    clientId: string,
    username: string | undefined,
    address: string,
    d: Decision,
    allowed: boolean,
    reasonCode: number,
    reason: string | undefined,
    target: string | undefined,
  ): void {
    if (allowed && !this.settings.allows) return // (a watcher's allow)
    this.counts[allowed ? 'allow' : 'deny']++
    if (!this.emitter.has('audit')) return
    if (!this.admit()) {
      this.counts.dropped++
      this.droppedLine(undefined)
      return
    }
    const { hook, hookVersion } = deciderOf(d, allowed)
    const record: AuditRecord = {
      time: new Date().toISOString(),
      node: this.node,
      kind,
      clientId,
      address,
      hook,
      decision: allowed ? 'allow' : 'deny',
      reasonCode,
    }
    if (username !== undefined) record.username = username
    if (hookVersion !== undefined) record.hookVersion = hookVersion
    const why = reason ?? (d.result === 'deny' ? d.reason : allowed ? undefined : `no hook allowed it (defaults)`)
    if (why !== undefined) record.reason = why
    if (kind === 'publish') record.topic = target
    else if (kind === 'subscribe') record.filter = target
    this.emitter.emit('audit', record)
  }

  /** A token bucket of audit.maxPerSecond: a burst of denies costs counters, not records. */
  private admit(): boolean {
    const max = this.settings.maxPerSecond
    if (this.tokens < 1) {
      const now = Date.now()
      this.tokens = Math.min(max, this.tokens + ((now - this.refilledAt) * max) / 1000)
      this.refilledAt = now
      if (this.tokens < 1) return false
    }
    this.tokens--
    return true
  }
}

/** Which hook (and version) a decision names: a deny or an allow the host signed; `default` when none decided. */
export function deciderOf(d: Decision, allowed: boolean): { hook: string; hookVersion?: number } {
  const signed = d as { hook?: string; hookVersion?: number }
  if (d.result === 'pass' || allowed !== (d.result === 'allow') || signed.hook === undefined) return { hook: 'default' }
  return { hook: signed.hook, hookVersion: signed.hookVersion }
}

/** What the publishDenied / subscribeDenied events tell of a refused decision (`code`: its refusalCode). */
function denialInfo(d: Decision, code: number, what: 'publish' | 'subscribe'): DenialInfo {
  return d.result === 'deny'
    ? { reasonCode: code, reason: d.reason, hook: d.hook }
    : { reasonCode: code, reason: `no hook allowed it (defaults.${what}: deny)`, hook: 'default' }
}
