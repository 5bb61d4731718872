import { ReasonCode } from './errors.js'
import type { ClientInfo, Message, QoS } from './types.js'

// The typed hook catalogue the core calls through. The plugin host implements
// HookRunner; the default below allows everything and changes nothing. Every
// method may answer synchronously (no extra tick) or with a promise.

export interface AuthenticateInput {
  clientId: string
  username?: string
  password?: Buffer
  remoteAddress: string
  protocolVersion: 3 | 4 | 5
  listener: string
  /** the peer certificate on TLS listeners with requestCert */
  certificate?: object
  /**
   * MQTT 5 enhanced authentication, in one step: the CONNECT's Authentication
   * Method and Data. A hook that accepts it answers allow naming the same
   * method; any other answer leaves the method unsupported (CONNACK 0x8C).
   */
  authenticationMethod?: string
  authenticationData?: Buffer
  /** set when a connected client re-authenticates (an AUTH packet, reason 0x19): no password then */
  reauthenticate?: true
  /**
   * Multi-step enhanced authentication: absent on the CONNECT (or the AUTH 0x19
   * that begins a re-authentication); 1, 2, ... on the client's answers (AUTH
   * 0x18) to the hook's `continue`, with that answer's `state` and the client's
   * `authenticationData`. Only the hook that answered `continue` is asked.
   */
  step?: number
  /** what the hook's last `continue` answer gave as `state` (its memory of this exchange) */
  state?: unknown
  /**
   * The session this client id already has, connected or not, on this node or
   * (in a cluster) another; absent when it has none. Compare its owner with the
   * identity this client will have (see `identityOf`) to decide `session`.
   */
  session?: ExistingSession
}

/** What the authenticate hooks are told of a client id's existing session. */
export interface ExistingSession {
  /**
   * Who owns it: an identity (see `identityOf`), null for an anonymous client,
   * undefined when unknown (stored before owners were recorded: the first
   * identity to resume it becomes its owner).
   */
  owner: string | null | undefined
}

/**
 * What an allowed CONNECT does with an existing session: `resume` it (as the
 * client asks: Clean Start still discards it), start `fresh` (the old session
 * is discarded, its connection closed with 0x8E), or `refuse` the connection
 * (CONNACK 0x85, MQTT 3.1.1 return code 2).
 */
export type SessionChoice = 'resume' | 'fresh' | 'refuse'

/** `hook`, `hookVersion` on a deny: which hook (and version of it) gave it, when the runner says (the hook host does) */
export type Decision<Allow extends object = object> =
  | ({ result: 'allow' } & Allow)
  | { result: 'deny'; reasonCode?: number; reason?: string; hook?: string; hookVersion?: number }
  | { result: 'pass' }

/**
 * `session`: what to do with an existing session (default: resume one of the same identity, `sessions.identityMismatch` for another's);
 * `authenticationData`: sent back in the CONNACK (or AUTH 0x00 of a re-authentication) that accepts the method.
 * `continue`: another step of MQTT 5 enhanced authentication: AUTH 0x18 with this Authentication Data goes to
 * the client; its answer goes to the same hook (`hook`), with `state`.
 */
export type AuthenticateDecision =
  | Decision<{ user?: unknown; authenticationMethod?: string; authenticationData?: Buffer; session?: SessionChoice }>
  | AuthContinue

/** An authenticate decision that ends the exchange (anything but `continue`). */
export type FinalAuthDecision = Exclude<AuthenticateDecision, AuthContinue>

export interface AuthContinue {
  result: 'continue'
  authenticationData: Buffer
  state?: unknown
  /** the hook that continues the exchange (the hook host names it) */
  hook?: string
}
export type PublishDecision = Decision
export type SubscribeDecision = Decision<{ qos?: QoS }>

export interface SubscribeInput {
  filter: string
  qos: QoS
}

/** hook name → input and answer; the kind says how several hooks compose. */
export interface HookCatalogue {
  authenticate: { kind: 'decision'; input: AuthenticateInput; output: AuthenticateDecision }
  authorizePublish: { kind: 'decision'; input: { client: ClientInfo; message: Message }; output: PublishDecision }
  authorizeSubscribe: { kind: 'decision'; input: { client: ClientInfo; subscription: SubscribeInput }; output: SubscribeDecision }
  transform: { kind: 'transform'; input: { client: ClientInfo | undefined; message: Message }; output: Message | null }
  deliver: { kind: 'transform'; input: { client: ClientInfo; message: Message; qos: QoS; retain: boolean }; output: Message | null }
}

export type HookName = keyof HookCatalogue
type Answer<T> = T | Promise<T>

/**
 * Where a publish decision given later goes, on the per-message path: to a
 * receiver, with the message it is for, instead of through a promise. A hook
 * in a worker keeps hundreds of calls waiting at once; a promise, its
 * reactions and their closures for each of them cost the garbage collector
 * more than the hook does.
 */
export interface DecisionReceiver {
  decided(decision: PublishDecision, message: Message): void
}

/** The answer is given later, to the DecisionReceiver the call was given. */
export const LATER: unique symbol = Symbol('later')
export type Later = typeof LATER

export interface HookRunner {
  /** `continuing`: the hook that answered `continue` at the previous step (only it is asked) */
  authenticate(input: AuthenticateInput, continuing?: string): Answer<AuthenticateDecision>
  /**
   * `into`: given, a decision that comes later may go to it instead (the call
   * answers LATER); otherwise it comes as a promise.
   */
  authorizePublish(client: ClientInfo, message: Message): Answer<PublishDecision>
  authorizePublish(client: ClientInfo, message: Message, into: DecisionReceiver | undefined): Answer<PublishDecision> | Later
  authorizeSubscribe(client: ClientInfo, subscription: SubscribeInput): Answer<SubscribeDecision>
  /** the message to route (the same object when unchanged), or null to drop it */
  transform(client: ClientInfo | undefined, message: Message): Answer<Message | null>
  /** false when no publish-path hook (authorizePublish/transform) can apply to `topic` */
  appliesToPublish(topic: string): boolean
  /**
   * True while some deliver hook is loaded: the delivery path reads only this
   * (then appliesToDeliver) before a PUBLISH goes to a subscriber.
   */
  readonly delivering?: boolean
  /** false when no deliver hook can apply to `topic` */
  appliesToDeliver?(topic: string): boolean
  /**
   * The copy of `message` this subscriber gets at `qos`/`retain`: the same
   * object when unchanged, another (never the shared one changed) when a hook
   * changed it, or null to skip this subscriber. Fails open. `slot`: given, an
   * answer that comes later may go to the receiver `slot.later()` makes for
   * this delivery (the call then answers LATER) instead of in a promise.
   */
  deliver?(client: ClientInfo, message: Message, qos: QoS, retain: boolean, slot?: DeliverySlot): Answer<Message | null> | Later
}

/** Where a deliver answer given later goes: the message asked about, and what to send instead (null: nothing). */
export interface DeliveryReceiver {
  readonly message: Message
  delivered(answer: Message | null): void
}

/** The delivery being asked about, as it waits for an answer given later (core/outbound.ts). */
export interface DeliverySlot {
  /** queues it (in order) and answers the receiver of its answer */
  later(): DeliveryReceiver
}

const PASS = Object.freeze({ result: 'pass' as const })

/** Allow everything, change nothing: the core's behaviour with no plugin host. */
export const passThroughHooks: HookRunner = {
  authenticate: () => PASS,
  authorizePublish: () => PASS,
  authorizeSubscribe: () => PASS,
  transform: (_client, message) => message,
  appliesToPublish: () => false,
  delivering: false,
}

/**
 * The one rule for what a decision means: a deny refuses; a pass (no hook
 * decided) falls to the default (`allowedByDefault`: defaults.publish /
 * defaults.subscribe, or whether anonymous clients are let in).
 */
export function refused(d: Decision, allowedByDefault: boolean): boolean {
  return d.result === 'deny' || (d.result === 'pass' && !allowedByDefault)
}

/** The reason code a refused decision answers: the deny's own, else 0x87 Not authorized. */
export function refusalCode(d: Decision): number {
  return d.result === 'deny' ? (d.reasonCode ?? ReasonCode.NotAuthorized) : ReasonCode.NotAuthorized
}

/** For `.then(noop)` and `.catch(noop)`: a promise's value, or its failure, that nobody needs. */
export function noop(): void {}

export function isPromise<T>(v: T | Promise<T>): v is Promise<T> {
  return v !== null && typeof v === 'object' && typeof (v as Promise<T>).then === 'function'
}
