import type { Worker } from 'node:worker_threads'
import { HookmqError } from '../../../core/index.js'
import type { Compiled } from '../compile.js'
import { BOOT_MS, compiledData, loadError, takeWorker, workerFailure } from './pool.js'
import { WorkerFlags, type FromWorker, type HookMeta, type ToWorker } from './protocol.js'
import { watchThread } from './memory-watch.js'

// Starting a hook's worker: a fresh thread (a warm spare when there is one)
// evaluates the file, checks it and its config and runs setup, within the
// deadlines (its boot, then evaluation and setup). What it says afterwards,
// and its death, go to the caller's handlers.

export interface LinkOptions {
  compiled: Compiled
  config: unknown
  memoryMb: number
  setupMs: number
  logLevel: number
  /** the shared memory of its calls (the ring) and of its flags */
  ring: SharedArrayBuffer
  flags: SharedArrayBuffer
}

export interface LinkHandlers {
  /** a message after loading (and, while loading, the requests setup makes: ctx.publish) */
  message(worker: Worker, m: FromWorker): void
  /** it stopped after loading: crashed, over its heap limit, or exited */
  lost(worker: Worker, reason: string): void
}

/** The worker once loaded, with what its hook declared; rejects (the worker ended) when loading fails. */
export function linkWorker(o: LinkOptions, on: LinkHandlers): Promise<{ worker: Worker; meta: HookMeta }> {
  const worker = takeWorker(o.memoryMb)
  return new Promise((resolve, reject) => {
    let loading = true
    const failLoad = (err: Error): void => {
      if (!loading) return
      loading = false
      clearTimeout(timer)
      void worker.terminate()
      reject(err)
    }
    // for its whole life (until its thread is gone: what it grew by stays resident until then): top level, setup, calls, its own timers
    const unwatch = watchThread({
      flags: new WorkerFlags(o.flags),
      memoryMb: o.memoryMb,
      overrun: (grownMb, budgetMb) => {
        const what = `in synchronous code it grew the process by ${grownMb} MiB, more than ${budgetMb} MiB (memoryMb); its thread was stopped`
        if (loading) failLoad(new HookmqError('HOOK_WORKER_LOST', what))
        else {
          void worker.terminate()
          on.lost(worker, what)
        }
      },
    })
    worker.once('exit', unwatch)
    const expire = (): void => failLoad(new HookmqError('HOOK_TIMEOUT', `evaluating the file and running setup did not finish within ${o.setupMs} ms`))
    let timer = setTimeout(expire, o.setupMs + BOOT_MS) // until it starts evaluating: its boot
    worker.on('message', (m: FromWorker) => {
      if (!loading) return on.message(worker, m)
      if (m.t === 'evaluating') {
        clearTimeout(timer)
        timer = setTimeout(expire, o.setupMs)
      } else if (m.t === 'failed') failLoad(loadError(m.error, o.compiled.file))
      else if (m.t === 'loaded') {
        loading = false
        clearTimeout(timer)
        resolve({ worker, meta: m.meta })
      } else on.message(worker, m) // setup's ctx.publish / ctx.forward / ctx.log
    })
    worker.on('error', (err) => {
      if (loading) failLoad(new HookmqError('HOOK_WORKER_LOST', `its worker stopped while loading: ${workerFailure(err)}`))
      else on.lost(worker, workerFailure(err))
    })
    worker.on('exit', (code) => {
      if (loading) failLoad(new HookmqError('HOOK_WORKER_LOST', `its worker exited while loading (code ${code})`))
      else on.lost(worker, `its worker exited (code ${code})`)
    })
    worker.postMessage({
      t: 'load',
      mode: 'serve',
      compiled: compiledData(o.compiled),
      config: o.config,
      setupMs: o.setupMs,
      flags: o.flags,
      ring: o.ring,
      logLevel: o.logLevel,
      memoryMb: o.memoryMb,
    } satisfies ToWorker)
  })
}
