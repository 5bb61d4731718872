import { z } from 'zod'
import type { AuthenticateDecision, PublishDecision, SubscribeDecision, QoS } from '../../core/index.js'
import { HOOK_SETTINGS, parseConfig, type Config } from '../../core/config.js'
import { ReasonCode } from '../../core/errors.js'
import { checkMessageProperties } from '../../core/properties.js'
import { checkTopicName } from '../../core/topic.js'
import type { HookDefinition } from './define.js'
import { HookmqError } from '../../core/errors.js'

// zod schemas for what a hook file exports and for every answer a hook gives.
// Answers are normalised here into the core's explicit decisions.

export const EVENT_NAMES = [
  'ready',
  'closed',
  'clientConnected',
  'clientDisconnecting',
  'clientDisconnected',
  'clientError',
  'keepaliveTimeout',
  'published',
  'delivered',
  'subscribed',
  'unsubscribed',
  'audit',
  'sessionCreated',
  'sessionResumed',
  'sessionExpired',
  'messageDropped',
  'publishDenied',
  'subscribeDenied',
] as const

const fn = z.custom<(...args: never[]) => unknown>((v) => typeof v === 'function', { message: 'expected a function' })

export const hookModuleSchema = z.strictObject({
  name: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, 'letters, digits, "_", "-" and "." only')
    .refine((n) => !(HOOK_SETTINGS as readonly string[]).includes(n), 'reserved: hooks.<this name> is a setting of the hook host'),
  order: z.number().finite().optional(),
  timeoutMs: z.int().min(1).max(600000).optional(),
  isolation: z.enum(['inline', 'worker']).optional(),
  memoryMb: z.int().min(16).max(65536).optional(),
  config: z.custom<z.ZodType>((v) => v instanceof z.ZodType, { message: 'expected a zod schema (import { z } from "zod")' }).optional(),
  filter: z.strictObject({ topics: z.array(z.string().min(1)).min(1) }).optional(),
  rollout: z
    .union([z.strictObject({ mode: z.literal('shadow'), sample: z.number().gt(0).max(1).optional() }), z.strictObject({ canary: z.number().min(0).max(1) })])
    .optional(),
  setup: fn.optional(),
  teardown: fn.optional(),
  authenticate: fn.optional(),
  authorizePublish: fn.optional(),
  authorizeSubscribe: fn.optional(),
  transform: fn.optional(),
  deliver: fn.optional(),
  on: z.partialRecord(z.enum(EVENT_NAMES), fn).optional(),
})

/** Checks a module's default export; returns it typed or throws a one-line reason. */
export function checkHookModule(value: unknown): HookDefinition {
  if (value === undefined) throw new HookmqError('HOOK_LOAD_FAILED', 'no default export: `export default defineHook({ ... })`')
  const r = hookModuleSchema.safeParse(value)
  if (!r.success) {
    const issue = r.error.issues[0]!
    const where = issue.path.join('.')
    const what = issue.code === 'unrecognized_keys' ? `unknown key "${issue.keys[0]}"` : issue.message
    throw new HookmqError('HOOK_LOAD_FAILED', `invalid hook${where ? ` (${where})` : ''}: ${what}`)
  }
  return value as HookDefinition
}

const denySchema = z.strictObject({ deny: z.string(), reasonCode: z.int().min(0x80).max(0xff).optional() })
/** Authentication Data: bytes (a Buffer, or a Uint8Array as it comes back from a worker) or a string (UTF-8), within a property's 65,535 bytes */
const authData = z
  .union([z.instanceof(Uint8Array), z.string()])
  .transform((v) => (typeof v === 'string' ? Buffer.from(v) : Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength)))
  .refine((b) => b.length <= 65535, 'longer than 65,535 bytes')
const authSchema = z.union([
  z.strictObject({
    allow: z.literal(true),
    user: z.unknown().optional(),
    authenticationMethod: z.string().optional(),
    authenticationData: authData.optional(),
    session: z.enum(['resume', 'fresh', 'refuse']).optional(),
  }),
  denySchema,
  z.strictObject({ continue: authData, state: z.unknown().optional() }),
])
const publishSchema = z.union([z.strictObject({ allow: z.literal(true) }), denySchema])
const qosSchema = z.union([z.literal(0), z.literal(1), z.literal(2)])
const subscribeSchema = z.union([z.strictObject({ allow: z.literal(true) }), denySchema, z.strictObject({ qos: qosSchema })])
export const PASS = Object.freeze({ result: 'pass' as const })
const ALLOW = Object.freeze({ result: 'allow' as const })

/** What ctx.publish answers (a rejection) when given no message at all. */
export const NOT_A_MESSAGE = 'ctx.publish needs a message: { topic, payload?, qos?, retain? }'

/** Thrown for an answer that fails its schema: counted as the hook's error. */
export class InvalidAnswer extends HookmqError {
  constructor(message: string) {
    super('HOOK_INVALID_ANSWER', message)
  }
}

/** `what`: the thing found invalid ("authorizePublish answer", "message"). */
function invalid(what: string, issue: z.core.$ZodIssue | undefined): InvalidAnswer {
  return new InvalidAnswer(`invalid ${what}${issue?.path.length ? ` at ${issue.path.join('.')}` : ''}: ${issue?.message ?? 'unexpected value'}`)
}

/**
 * The reason codes MQTT 5 lets each answer carry (a code outside its packet's
 * list would make a strict client drop the connection): another becomes 0x87.
 */
const CONNACK_CODES = new Set([0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x8c, 0x90, 0x95, 0x97, 0x99, 0x9a, 0x9b, 0x9c, 0x9d, 0x9f])
const PUBACK_CODES = new Set([0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99])
const SUBACK_CODES = new Set([0x80, 0x83, 0x87, 0x8f, 0x91, 0x97, 0x9e, 0xa1, 0xa2])

/** Longest reason string passed on (a Reason String is diagnostics, and a string field holds 65,535 bytes at most). */
const MAX_REASON = 1024

function denial(d: { deny: string; reasonCode?: number }, codes: ReadonlySet<number>): { result: 'deny'; reasonCode: number; reason: string } {
  const reasonCode = d.reasonCode !== undefined && codes.has(d.reasonCode) ? d.reasonCode : ReasonCode.NotAuthorized
  return { result: 'deny', reasonCode, reason: d.deny.length > MAX_REASON ? d.deny.slice(0, MAX_REASON) : d.deny }
}

// Answers that need no checking are constants: a decision runs for every message.
const DENY_LOGIN = Object.freeze({ result: 'deny' as const, reasonCode: ReasonCode.BadUserNameOrPassword, reason: 'bad user name or password' })
export const DENY = Object.freeze({ result: 'deny' as const, reasonCode: ReasonCode.NotAuthorized, reason: 'not authorized' })

/** undefined = pass, true = allow, false = `no`; anything else is checked by `schema` and turned into a decision by `from`. */
function decision<D, T>(v: unknown, kind: string, no: NoInfer<D>, schema: z.ZodType<T>, from: (answer: T) => D): D | typeof PASS | typeof ALLOW {
  if (v === undefined) return PASS
  if (v === true) return ALLOW
  if (v === false) return no
  const r = schema.safeParse(v)
  if (!r.success) throw invalid(`${kind} answer`, r.error.issues[0])
  return from(r.data)
}

const fromAuth = (d: z.output<typeof authSchema>): AuthenticateDecision =>
  'allow' in d
    ? d.authenticationData === undefined
      ? { result: 'allow', user: d.user, authenticationMethod: d.authenticationMethod, session: d.session }
      : { result: 'allow', user: d.user, authenticationMethod: d.authenticationMethod, authenticationData: d.authenticationData, session: d.session } // (the key only when given: an allow keeps its shape)
    : 'continue' in d
      ? { result: 'continue', authenticationData: d.continue, state: d.state }
      : denial(d, CONNACK_CODES)
const fromPublish = (d: z.output<typeof publishSchema>): PublishDecision => ('allow' in d ? ALLOW : denial(d, PUBACK_CODES))
const fromSubscribe = (d: z.output<typeof subscribeSchema>): SubscribeDecision =>
  'qos' in d ? { result: 'allow', qos: d.qos as QoS } : 'allow' in d ? ALLOW : denial(d, SUBACK_CODES)

export function toAuthDecision(v: unknown): AuthenticateDecision {
  return decision(v, 'authenticate', DENY_LOGIN, authSchema, fromAuth)
}

export function toPublishDecision(v: unknown): PublishDecision {
  return decision(v, 'authorizePublish', DENY, publishSchema, fromPublish)
}

export function toSubscribeDecision(v: unknown): SubscribeDecision {
  return decision(v, 'authorizeSubscribe', DENY, subscribeSchema, fromSubscribe)
}

// ---- transform answers: checked like a client's PUBLISH

/** The broker limits a transform's answer is held to, as a client's PUBLISH is. */
export type TransformLimits = Pick<Config['limits'], 'maxTopicLength' | 'maxTopicLevels' | 'maxUserProperties' | 'maxPropertyBytes' | 'maxPacketSize'>

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/

/** A topic name by the broker's own rules (core/topic.ts) and limits; UTF-16 that UTF-8 can carry. */
function topicName(limits: TransformLimits, publishable: boolean): z.ZodType<string> {
  return z.string().check((ctx) => {
    const t = ctx.value
    const problem =
      checkTopicName(t, limits) ??
      (LONE_SURROGATE.test(t) ? 'unpaired surrogate in topic' : undefined) ??
      (publishable && t.startsWith('$SYS') ? 'not a topic name a message may be published to' : undefined)
    if (problem !== undefined) ctx.issues.push({ code: 'custom', message: problem, input: t })
  })
}

/** An MQTT UTF-8 string: no U+0000 [MQTT-1.5.4-2], nothing UTF-8 cannot encode [MQTT-1.5.4-1] (its length is checkMessageProperties'). */
const mqttString = z.string().refine((v) => !v.includes('\u0000') && !LONE_SURROGATE.test(v), 'U+0000 or an unpaired surrogate: not an MQTT string')

/** true when a payload is larger than a client could publish (strings measured only when they might be) */
function tooLarge(payload: Uint8Array | string, max: number): boolean {
  return typeof payload === 'string' ? payload.length * 3 > max && Buffer.byteLength(payload) > max : payload.length > max
}

/** Only what a publisher may set [MQTT-3.3.2], with its MQTT type; no Topic Alias or Subscription Identifier. */
function propertiesSchema(limits: TransformLimits): z.ZodType<MessagePropertiesAnswer> {
  return z
    .strictObject({
      payloadFormatIndicator: z.boolean().optional(),
      messageExpiryInterval: z.int().min(0).max(0xffffffff).optional(),
      contentType: mqttString.optional(),
      responseTopic: topicName(limits, false).optional(), // [MQTT-3.3.2-14]
      correlationData: z.instanceof(Uint8Array).optional(),
      userProperties: z.record(mqttString, z.union([mqttString, z.array(mqttString)])).optional(),
    })
    .check((ctx) => {
      const problem = checkMessageProperties(ctx.value as never, limits)
      if (problem !== undefined) ctx.issues.push({ code: 'custom', message: problem, input: ctx.value })
    })
}

interface MessagePropertiesAnswer {
  payloadFormatIndicator?: boolean
  messageExpiryInterval?: number
  contentType?: string
  responseTopic?: string
  correlationData?: Uint8Array
  userProperties?: Record<string, string | string[]>
}

function transformSchemaFor(limits: TransformLimits) {
  const bytes = z
    .union([z.instanceof(Uint8Array), z.string()])
    .refine((p) => !tooLarge(p, limits.maxPacketSize), `larger than limits.maxPacketSize (${limits.maxPacketSize} bytes)`)
  return z.strictObject({
    topic: topicName(limits, true).optional(),
    payload: bytes.optional(),
    qos: qosSchema.optional(),
    retain: z.boolean().optional(),
    properties: propertiesSchema(limits).optional(),
  })
}

const defaultLimits: TransformLimits = parseConfig({}).limits

/** The answer schema against the default limits (a broker checks against its own: makeTransformCheck). */
export const transformSchema = transformSchemaFor(defaultLimits)

export type TransformPatch = z.output<typeof transformSchema>

/** `{ payload }` with a string or Buffer and nothing else: what transformSchema would accept unchanged. */
function isPayloadOnly(v: unknown): v is TransformPatch & { payload: string | Buffer } {
  if (typeof v !== 'object' || v === null || Object.getPrototypeOf(v) !== Object.prototype) return false
  let n = 0
  for (const k in v) {
    if (k !== 'payload') return false
    n++
  }
  const p = (v as { payload?: unknown }).payload
  return n === 1 && (typeof p === 'string' || Buffer.isBuffer(p))
}

/**
 * The check of a transform's answer against `limits`, as a client's PUBLISH
 * is checked: null = drop, undefined = unchanged, else the fields to change.
 * Throws InvalidAnswer for anything else (a failed transform: the original
 * message goes on, the hook's error is counted).
 */
export function makeTransformCheck(limits: TransformLimits = defaultLimits, what = 'transform answer'): (v: unknown) => TransformPatch | null | undefined {
  const schema = limits === defaultLimits ? transformSchema : transformSchemaFor(limits)
  return (v) => {
    if (v === undefined || v === null) return v
    if (isPayloadOnly(v)) {
      // the common answer, checked without a schema run per message
      if (tooLarge(v.payload, limits.maxPacketSize))
        throw new InvalidAnswer(`invalid ${what} at payload: larger than limits.maxPacketSize (${limits.maxPacketSize} bytes)`)
      return v
    }
    const r = schema.safeParse(v)
    if (!r.success) throw invalid(what, r.error.issues[0])
    return r.data
  }
}

// ---- deliver answers: a subscriber's copy, checked as a transform's answer is

/** `{ skip: true }` and nothing else */
function isSkip(v: unknown): boolean {
  if (typeof v !== 'object' || v === null || (v as { skip?: unknown }).skip !== true) return false
  for (const k in v) if (k !== 'skip') return false
  return true
}

/**
 * The check of a deliver hook's answer: undefined = send as is, `{ skip: true }`
 * = null (not to this subscriber), `{ payload?, properties? }` = the changes
 * for this subscriber's copy, held to the limits a client's PUBLISH is. Throws
 * InvalidAnswer otherwise (the original goes out: deliver fails open).
 */
export function makeDeliverCheck(limits: TransformLimits = defaultLimits): (v: unknown) => TransformPatch | null | undefined {
  const bytes = z
    .union([z.instanceof(Uint8Array), z.string()])
    .refine((p) => !tooLarge(p, limits.maxPacketSize), `larger than limits.maxPacketSize (${limits.maxPacketSize} bytes)`)
  const schema = z.strictObject({ payload: bytes.optional(), properties: propertiesSchema(limits).optional() })
  return (v) => {
    if (v === undefined) return undefined
    if (isSkip(v)) return null
    if (isPayloadOnly(v)) {
      if (tooLarge(v.payload, limits.maxPacketSize))
        throw new InvalidAnswer(`invalid deliver answer at payload: larger than limits.maxPacketSize (${limits.maxPacketSize} bytes)`)
      return v
    }
    const r = schema.safeParse(v)
    if (!r.success) throw invalid('deliver answer (undefined, { skip: true } or { payload?, properties? })', r.error.issues[0])
    return r.data
  }
}
