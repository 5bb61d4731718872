import type { z } from 'zod'
import type { Logger, PublishOptions } from '../../core/index.js'
import { newMessage, type Message, type MessageProperties } from '../../core/types.js'
import type { HookContext, HookDefinition } from './define.js'
import type { TransformPatch } from './schemas.js'
import { enterHook, leaveHook } from './sandbox/guard.js'
import { HookmqError } from '../../core/errors.js'

// A hook version's life: config parsed, setup run, teardown run once its
// calls have finished. And the one way a transform answer changes a message.

const SETUP_DEADLINE_MS = 10000

export interface SetupResult {
  ctx: HookContext<unknown>
  teardown: (() => unknown) | undefined
  abort(): void
}

/** `hooks.<name>` (own keys only: a hook named `constructor` gets no config from Object.prototype). */
export function configOf(hookConfig: Record<string, unknown>, name: string): unknown {
  return Object.hasOwn(hookConfig, name) ? hookConfig[name] : undefined
}

/** Parses `hooks.<name>` with the hook's schema; the error names the key. */
export function parseHookConfig(def: HookDefinition, value: unknown): unknown {
  if (!def.config) return value
  const r = (def.config as z.ZodType).safeParse(value ?? {})
  if (r.success) return r.data
  const issue = r.error.issues[0]!
  const key = ['hooks', def.name, ...issue.path.map(String)].join('.')
  const extra = issue.code === 'unrecognized_keys' ? `unknown key "${issue.keys[0]}"` : issue.message
  throw new HookmqError('CONFIG_INVALID', `config ${key}: ${extra}`)
}

export async function runSetup(
  def: HookDefinition,
  base: { name: string; config: unknown; log: Logger; publish(m: PublishOptions): Promise<void>; forward(webhook: string, body: unknown): Promise<void> },
): Promise<SetupResult> {
  const ctrl = new AbortController()
  const ctx: HookContext<unknown> = { ...base, signal: ctrl.signal }
  let teardown: (() => unknown) | undefined
  if (def.setup) {
    let timer: NodeJS.Timeout | undefined
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new HookmqError('HOOK_TIMEOUT', `setup did not finish within ${SETUP_DEADLINE_MS} ms`)), SETUP_DEADLINE_MS)
    })
    try {
      const r = await Promise.race([Promise.resolve(callHook(() => def.setup!(ctx))), deadline])
      if (typeof r === 'function') teardown = r
    } catch (err) {
      ctrl.abort()
      throw err
    } finally {
      clearTimeout(timer)
    }
  }
  return { ctx, teardown, abort: () => ctrl.abort() }
}

/** Runs the version's teardown(s); errors are logged, never thrown. */
export async function runTeardown(def: HookDefinition, setup: SetupResult, log: Logger): Promise<void> {
  for (const fn of [setup.teardown, def.teardown ? () => def.teardown!(setup.ctx) : undefined]) {
    if (!fn) continue
    try {
      await callHook(fn)
    } catch (err) {
      log.error({ err, hook: def.name }, 'hook teardown failed')
    }
  }
}

/** A new message with the transform's changes (an answer checked by makeTransformCheck); the original is never mutated. */
export function applyPatch(message: Message, patch: TransformPatch): Message {
  const payload =
    patch.payload === undefined
      ? message.payload
      : typeof patch.payload === 'string'
        ? Buffer.from(patch.payload)
        : Buffer.isBuffer(patch.payload)
          ? patch.payload
          : Buffer.from(patch.payload)
  const next = newMessage(
    patch.topic ?? message.topic,
    payload,
    patch.qos ?? message.qos,
    patch.retain ?? message.retain,
    message.origin,
    patch.properties !== undefined ? toProperties(patch.properties) : message.properties,
  )
  if (patch.properties === undefined) next.expiresAt = message.expiresAt // the original deadline stands
  return next
}

/** Runs hook code's synchronous part under the process guard. */
function callHook<T>(fn: () => T): T {
  enterHook()
  try {
    return fn()
  } finally {
    leaveHook()
  }
}

/** The answer's properties as the message's own: a copy (the hook keeps its object), Correlation Data as a Buffer. */
function toProperties(p: NonNullable<TransformPatch['properties']>): MessageProperties {
  const out = { ...p } as MessageProperties
  if (p.correlationData !== undefined && !Buffer.isBuffer(p.correlationData)) out.correlationData = Buffer.from(p.correlationData)
  return out
}
