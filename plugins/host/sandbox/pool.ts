import { Worker } from 'node:worker_threads'
import type { Compiled } from '../compile.js'
import { HookLoadError } from '../compile.js'
import { WorkerFlags, type CompiledData, type FromWorker, type HookMeta, type SerializedError } from './protocol.js'
import { watchThread } from './memory-watch.js'

// Hook workers, and the preflight: every new version of a hook file is first
// evaluated in a throwaway worker with a time limit, so that a loop, a throw or
// a process.exit at its top level is refused there while the previous version
// keeps serving. One spare worker is kept warm (its runtime and zod loaded) so
// that neither a preflight nor a hook's own worker waits for a thread to boot.

const WORKER_URL = new URL('./hook-worker.js', import.meta.url)
/** the longest a worker may take to boot before it evaluates anything */
export const BOOT_MS = 30000

let spare: { worker: Worker; memoryMb: number } | undefined

/** A new worker (never used) whose heap is limited to `memoryMb`. */
export function takeWorker(memoryMb: number): Worker {
  let worker: Worker
  if (spare !== undefined && spare.memoryMb === memoryMb) {
    worker = spare.worker
    worker.removeAllListeners('error')
  } else {
    spare?.worker.terminate().catch(() => {})
    worker = spawn(memoryMb)
  }
  spare = undefined
  setImmediate(refill, memoryMb)
  return worker
}

function refill(memoryMb: number): void {
  if (spare !== undefined) return
  const worker = spawn(memoryMb)
  worker.on('error', () => {
    if (spare?.worker === worker) spare = undefined
  })
  spare = { worker, memoryMb }
}

/**
 * V8's own heap limit for a hook's thread, well above `memoryMb`. Node's worker
 * heap limit is best effort: some allocations past it (one large array growing
 * in a loop) abort the whole process instead of ending the worker
 * (nodejs/node#47224). So memoryMb is enforced by the worker's own watch
 * (heap and Buffers, every 50 ms), a runaway synchronous allocation by the
 * broker thread's watch (memory-watch.ts: the process's growth while the
 * thread runs, every 25 ms), and this limit is only the last line, far enough
 * away that the watches come first.
 */
function v8HeapLimitMb(memoryMb: number): number {
  return Math.max(1024, memoryMb * 8)
}

function spawn(memoryMb: number): Worker {
  const worker = new Worker(WORKER_URL, {
    resourceLimits: { maxOldGenerationSizeMb: v8HeapLimitMb(memoryMb), maxYoungGenerationSizeMb: Math.max(4, Math.min(32, memoryMb >> 3)) },
  })
  worker.unref() // an idle hook thread does not keep the process alive
  return worker
}

/** What crosses to a worker of a compilation. */
export function compiledData(c: Compiled): CompiledData {
  return { file: c.file, code: c.code, mapJson: c.mapJson, inputs: c.inputs, sourceHash: c.sourceHash }
}

/** A load error reported by a worker, at the hook's file (and line, when known). */
export function loadError(e: SerializedError, file: string): HookLoadError {
  return new HookLoadError(e.message, e.file ?? file, e.line, e.column)
}

/** What a worker's 'error' event says, for the log. */
export function workerFailure(err: Error): string {
  const code = (err as Error & { code?: string }).code
  return code === 'ERR_WORKER_OUT_OF_MEMORY' ? 'its heap limit (memoryMb) was reached' : err.message
}

/**
 * Evaluates a compiled hook file in a throwaway worker: its module shape and
 * its config (`hooks.<name>` of `hookConfig`) are checked there. Answers what
 * the hook declares; throws a HookLoadError (file:line when known) otherwise.
 */
export async function preflight(compiled: Compiled, hookConfig: Record<string, unknown>, ms: number, memoryMb: number): Promise<HookMeta> {
  const worker = takeWorker(memoryMb)
  const flags = new WorkerFlags()
  let unwatch = (): void => {}
  try {
    return await new Promise<HookMeta>((resolve, reject) => {
      // the limit counts from the start of the evaluation (a thread may take a while to boot on a busy machine)
      const limit = (what: string, after: number): NodeJS.Timeout => setTimeout(() => reject(new HookLoadError(what, compiled.file)), after)
      let timer = limit(`its worker did not start within ${BOOT_MS} ms`, BOOT_MS)
      const done = (): void => clearTimeout(timer)
      unwatch = watchThread({
        flags,
        // the ceiling, not memoryMb: the hook's own memoryMb is not known before its top level ran
        memoryMb: Infinity,
        overrun: (grownMb, budgetMb) => {
          done()
          reject(
            new HookLoadError(
              `its top level grew the process by ${grownMb} MiB, more than ${budgetMb} MiB, in synchronous code (V8 would have ended the broker); evaluated in a throwaway worker, which was stopped`,
              compiled.file,
            ),
          )
        },
      })
      worker.on('message', (m: FromWorker) => {
        if (m.t === 'evaluating') {
          done()
          timer = limit(`its top level did not finish within ${ms} ms (a loop?); evaluated in a throwaway worker, which was stopped`, ms)
        } else if (m.t === 'loaded') {
          done()
          resolve(m.meta)
        } else if (m.t === 'failed') {
          done()
          reject(loadError(m.error, compiled.file))
        }
      })
      worker.on('error', (err) => {
        done()
        reject(new HookLoadError(`evaluating it stopped its worker: ${workerFailure(err)}`, compiled.file))
      })
      worker.on('exit', (code) => {
        done()
        reject(new HookLoadError(`evaluating it ended its worker (exit code ${code})`, compiled.file))
      })
      worker.postMessage({ t: 'load', mode: 'preflight', compiled: compiledData(compiled), config: hookConfig, setupMs: 0, flags: flags.buffer })
    })
  } finally {
    worker.removeAllListeners()
    worker.on('error', () => {})
    // watched until its thread is gone: what its top level grew by after its last beat is still resident until then
    void worker.terminate().then(unwatch, unwatch)
  }
}
