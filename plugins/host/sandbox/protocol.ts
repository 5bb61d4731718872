import type { Compiled } from '../compile.js'
import type { AnswerBatch, CallBatch, SerializedError } from './batch.js'

export { asBuffer, type SerializedError } from './batch.js'

// What crosses between the broker's thread and a hook's worker. Calls of one
// tick travel as one `calls` message (parallel arrays, no object per call
// beyond its input); answers come back the same way.

/** Method names by their code (batch.ts). */
export const METHODS = ['authenticate', 'authorizePublish', 'authorizeSubscribe', 'transform', 'event', 'deliver'] as const

/** What the broker learns of a hook from evaluating it in a worker. */
export interface HookMeta {
  name: string
  order?: number
  timeoutMs?: number
  isolation?: 'inline' | 'worker'
  memoryMb?: number
  filter?: { topics: string[] }
  rollout?: { mode: 'shadow'; sample?: number } | { canary: number }
  /** which of authenticate, authorizePublish, authorizeSubscribe, transform, deliver it has */
  methods: string[]
  /** the lifecycle events it handles */
  events: string[]
  /** how long its top level took to evaluate, in ms */
  evalMs?: number
}

export type CompiledData = Omit<Compiled, 'map'>

/** The exit code of a worker that ended itself for using more than memoryMb. */
export const MEMORY_EXIT = 75

/**
 * What a worker shares with the broker, in 32 bytes of shared memory: when its
 * current synchronous batch began (0: idle; advisory, read to find it stuck),
 * the last batch it began (an atomic store after it copied the batch out of
 * the ring: the broker's atomic load then orders its writes of the next batch
 * after those reads), its event loop's heartbeat (Date.now() every BEAT_MS;
 * advisory: memory-watch.ts reads a quiet one as synchronous code) and the
 * memory its heap and buffers held at that beat.
 */
export class WorkerFlags {
  readonly buffer: SharedArrayBuffer
  private readonly slots: Float64Array
  private readonly seenSeq: BigInt64Array

  constructor(buffer = new SharedArrayBuffer(32)) {
    this.buffer = buffer
    this.slots = new Float64Array(buffer, 0, 4) // [busySince, (seen), beat, mem]
    this.seenSeq = new BigInt64Array(buffer, 8, 1)
  }

  get busySince(): number {
    return this.slots[0]!
  }

  set busySince(ms: number) {
    this.slots[0] = ms
  }

  get seen(): number {
    return Number(Atomics.load(this.seenSeq, 0))
  }

  set seen(seq: number) {
    Atomics.store(this.seenSeq, 0, BigInt(seq))
  }

  get beat(): number {
    return this.slots[2]!
  }

  set beat(ms: number) {
    this.slots[2] = ms
  }

  /** bytes of its heap (committed) and buffers at its last beat */
  get mem(): number {
    return this.slots[3]!
  }

  set mem(bytes: number) {
    this.slots[3] = bytes
  }
}

export type ToWorker =
  | {
      t: 'load'
      mode: 'preflight' | 'serve'
      compiled: CompiledData
      config: unknown
      setupMs: number
      flags?: SharedArrayBuffer
      ring?: SharedArrayBuffer
      memoryMb?: number
      logLevel?: number
    }
  | CallBatch
  | { t: 'abort'; ids: number[] }
  | { t: 'reply'; id: number; error?: SerializedError }
  | { t: 'retire'; ms: number }
  /** the broker's log level changed (a config reload): what the worker's ctx.log drops */
  | { t: 'logLevel'; level: number }

export type FromWorker =
  /** booted, evaluating the file now (a time limit on evaluation starts here) */
  | { t: 'evaluating' }
  | { t: 'loaded'; meta: HookMeta }
  | { t: 'failed'; error: SerializedError }
  | AnswerBatch
  | { t: 'log'; level: string; obj: unknown; msg: string | undefined }
  | { t: 'req'; id: number; kind: 'publish' | 'forward'; args: unknown[] }
  | { t: 'unhandled'; error: SerializedError }
  | { t: 'retired' }
  /** heap and buffers passed memoryMb: the worker ends itself (exit code MEMORY_EXIT) */
  | { t: 'memory'; usedMb: number }

/** pino's level numbers, on both sides of the thread boundary (a worker's ctx.log drops what the broker's level would). */
export const LOG_LEVELS: Record<string, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60, silent: 100 }

/** An error from the other thread as an Error again (`at`, `code` kept). */
export function reviveError(e: SerializedError): Error {
  const err = new Error(e.message) as Error & { at?: string; code?: string }
  if (e.name) err.name = e.name
  if (e.stack) err.stack = e.stack
  if (e.at) err.at = e.at
  if (e.code) err.code = e.code
  return err
}
