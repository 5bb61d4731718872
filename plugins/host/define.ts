import type { z } from 'zod'
import type {
  AuthenticateInput,
  BrokerEvents,
  BrokerEventName,
  ClientInfo,
  Logger,
  MessageProperties,
  PublishOptions,
  QoS,
  SessionChoice,
} from '../../core/index.js'

// The types a hook author writes against. `defineHook` only returns its
// argument: its value is that an editor autocompletes every input and answer.

export type Awaitable<T> = T | Promise<T>

/** What every hook call gets besides its input. */
export interface CallContext<C> {
  /** the hook's parsed config (`hooks.<name>` in the main config) */
  readonly config: C
  readonly log: Logger
  /** aborted when the call's deadline passes */
  readonly signal: AbortSignal
  /** queue a delivery to the named webhook (same outbox, retries and signing as forwarded messages) */
  forward(webhook: string, body: unknown): Promise<void>
}

/** What `setup` gets. */
export interface HookContext<C> {
  readonly name: string
  readonly config: C
  readonly log: Logger
  /** publish a message from the hook (not authorized; transforms apply) */
  publish(message: PublishOptions): Promise<void>
  /** aborted when this version of the hook is replaced, removed or the broker stops */
  readonly signal: AbortSignal
  /** queue a delivery to the named webhook */
  forward(webhook: string, body: unknown): Promise<void>
}

/** What authenticate gets (the core's own types). */
export type { AuthenticateInput, ExistingSession, SessionChoice } from '../../core/index.js'

/**
 * `undefined` passes to the next hook; `false` = bad credentials (0x86); `{ deny }` = not authorized (0x87).
 * `session` decides what happens to the client id's existing session (`input.session`): `resume` it,
 * start `fresh`, or `refuse` the connection (0x85); without it, a session of the same identity is
 * resumed and another identity's gets `sessions.identityMismatch`.
 */
export type AuthenticateAnswer =
  | boolean
  | undefined
  | void
  | {
      allow: true
      user?: unknown
      authenticationMethod?: string
      /** MQTT 5 enhanced authentication: Authentication Data for the CONNACK (or AUTH 0x00) that accepts the method (e.g. SCRAM's server signature) */
      authenticationData?: Buffer | Uint8Array | string
      session?: SessionChoice
    }
  | DenyAnswer
  | ContinueAnswer

/**
 * Another step of MQTT 5 enhanced authentication: the client gets AUTH 0x18
 * (Continue authentication) with `continue` as Authentication Data; its answer
 * comes to this hook alone, with `step` (1, 2, ...), its `authenticationData`
 * and this `state` (copied: a plain value — strings, numbers, arrays, plain
 * objects — kept by the broker for this connection). At most 10 steps, each
 * answered within `limits.connectTimeoutMs`, or the client is refused (0x87).
 */
export interface ContinueAnswer {
  continue: Buffer | Uint8Array | string
  state?: unknown
}

export interface DenyAnswer {
  deny: string
  /** an MQTT 5 reason code >= 0x80 (default 0x87 Not authorized) */
  reasonCode?: number
}

export interface PublishInput {
  client: ClientInfo
  topic: string
  payload: Buffer
  qos: QoS
  retain: boolean
  properties: MessageProperties | undefined
}

export type PublishAnswer = boolean | undefined | void | { allow: true } | DenyAnswer

export interface SubscribeInput {
  client: ClientInfo
  filter: string
  qos: QoS
}

/** `{ qos }` grants the subscription at a lower QoS. */
export type SubscribeAnswer = PublishAnswer | { qos: QoS }

export interface TransformInput {
  /** undefined for messages published by the broker or from code */
  client: ClientInfo | undefined
  topic: string
  payload: Buffer
  qos: QoS
  retain: boolean
  properties: MessageProperties | undefined
}

/** A partial message changes those fields; `null` drops the message; `undefined` leaves it. */
export type TransformAnswer =
  | null
  | undefined
  | void
  | {
      topic?: string
      payload?: Buffer | Uint8Array | string
      qos?: QoS
      retain?: boolean
      properties?: MessageProperties
    }

/**
 * A publish's fields as one subscriber gets them: `client` is the subscriber
 * this copy goes to; `payload` the bytes every subscriber shares (answer a new
 * payload, never change these in place); `qos` the lower of the message's and
 * its subscription's; `retain` the flag it goes with (a retained message sent
 * on subscribe, or Retain As Published).
 */
export interface DeliverInput extends PublishInput {
  /** client id of the publisher; undefined for messages the broker or code published */
  publisher: string | undefined
}

/**
 * `undefined`: send it as it is; `{ skip: true }`: not to this subscriber (a
 * QoS 1/2 message counts as delivered); `{ payload?, properties? }`: this
 * subscriber's copy with those changed (`properties` replaces them all); the
 * other subscribers get the original.
 */
export type DeliverAnswer =
  | undefined
  | void
  | { skip: true }
  | {
      payload?: Buffer | Uint8Array | string
      properties?: MessageProperties
    }

/** What event handlers get after the event's own arguments. */
export interface EventContext<C> {
  readonly config: C
  readonly log: Logger
  /** queue a delivery to the named webhook */
  forward(webhook: string, body: unknown): Promise<void>
}

export type EventHandlers<C = unknown> = { [E in BrokerEventName]?: (...args: [...BrokerEvents[E], EventContext<C>]) => Awaitable<void> }

export interface HookDefinition<S extends z.ZodType = z.ZodType<unknown>> {
  /** unique name; also the key of this hook's config: `hooks.<name>` */
  name: string
  /** lower runs first (default 0); ties by file name */
  order?: number
  /** deadline of one call in ms (default: `hookTimeoutMs`, 1000) */
  timeoutMs?: number
  /**
   * where this hook runs (default: `hooks.isolation`): `worker`, a thread of its own
   * (deadlines hold even on synchronous loops, `memoryMb` caps its heap, a crash
   * restarts only it), or `inline`, in the broker's thread (fastest)
   */
  isolation?: 'inline' | 'worker'
  /** heap limit of this hook's worker in MiB (worker isolation; default `hooks.memoryMb`) */
  memoryMb?: number
  /** zod schema of this hook's config values */
  config?: S
  /** limit authorizePublish, transform and deliver to these topic filters */
  filter?: { topics: string[] }
  /** try this version on live traffic before it enforces (README: Shadow and canary rollout) */
  rollout?: Rollout
  /** runs once per loaded version; may return a teardown function */
  setup?(ctx: HookContext<z.output<S>>): Awaitable<void | (() => Awaitable<void>)>
  /** runs when this version is replaced or removed, after its running calls finish */
  teardown?(ctx: HookContext<z.output<S>>): Awaitable<void>
  authenticate?(input: AuthenticateInput, ctx: CallContext<z.output<S>>): Awaitable<AuthenticateAnswer>
  authorizePublish?(input: PublishInput, ctx: CallContext<z.output<S>>): Awaitable<PublishAnswer>
  authorizeSubscribe?(input: SubscribeInput, ctx: CallContext<z.output<S>>): Awaitable<SubscribeAnswer>
  transform?(input: TransformInput, ctx: CallContext<z.output<S>>): Awaitable<TransformAnswer>
  /** per subscriber, just before a message is sent to it: change that subscriber's copy, or skip it */
  deliver?(input: DeliverInput, ctx: CallContext<z.output<S>>): Awaitable<DeliverAnswer>
  /** lifecycle events; each handler gets the event's arguments, then { config, log } */
  on?: EventHandlers<z.output<S>>
}

/**
 * `{ mode: 'shadow' }`: its decisions and transforms run after the enforced ones (a share `sample` of
 * them, default all), are compared and counted, never enforced or applied. `{ canary: 0.1 }` in a
 * `<name>.canary.ts` file beside the hook of the same `name`: this version serves that share of client
 * ids (a hash of the id: the same clients every time), the other version the rest.
 */
export type Rollout = { mode: 'shadow'; sample?: number } | { canary: number }

/** Declares a hook. Default-export it from a file in the hooks folder, or pass it to createBroker({ hooks }). */
export function defineHook<S extends z.ZodType = z.ZodType<unknown>>(hook: HookDefinition<S>): HookDefinition<S> {
  return hook
}
