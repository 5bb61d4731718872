import net from 'node:net'
import type { TestContext } from 'node:test'
import { createLogger } from '../../core/logger.js'

// What every test needs: clean-up in the right order, waiting without fixed sleeps, a free port.

/** the brokers' log: silent unless TEST_LOG names a level (e.g. TEST_LOG=debug to follow a failing test) */
export const silent = createLogger(process.env.TEST_LOG ?? 'silent')

const stacks = new WeakMap<TestContext, Array<() => unknown>>()

/**
 * Registers a clean-up that runs after the test, last registered first (node:test
 * runs t.after hooks first registered first, which would stop a server before
 * the clients that use it).
 */
export function defer(t: TestContext, fn: () => unknown): void {
  let stack = stacks.get(t)
  if (!stack) {
    const list: Array<() => unknown> = []
    stack = list
    stacks.set(t, list)
    t.after(async () => {
      while (list.length > 0) {
        try {
          await list.pop()!()
        } catch {
          // clean-up goes on
        }
      }
    })
  }
  stack.push(fn)
}

/** Resolves with the first emission of `event`, or rejects after `ms`. */
export function once<T extends unknown[]>(emitter: { once(e: string, fn: (...a: T) => void): unknown }, event: string, ms = 5000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for "${event}"`)), ms)
    emitter.once(event, (...args: T) => {
      clearTimeout(timer)
      resolve(args)
    })
  })
}

/** Waits until `cond()` holds, checking on every turn of the event loop (no fixed sleep), or fails after `ms`. */
export async function until(cond: () => boolean | Promise<boolean>, ms = 5000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 5))
  }
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port
      srv.close(() => resolve(port))
    })
  })
}
