import { Writable } from 'node:stream'
import { pino } from 'pino'
import type { Logger } from '../core/index.js'

/** A logger whose records the test can read (and wait for). */
export interface CapturedLog {
  logger: Logger
  records: Array<Record<string, unknown>>
  /** the first record (from the start) for which `match` holds; waits for it */
  find(match: (r: Record<string, unknown>) => boolean, ms?: number): Promise<Record<string, unknown>>
}

export function captureLog(level = 'info'): CapturedLog {
  const records: Array<Record<string, unknown>> = []
  let waiters: Array<() => void> = []
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) if (line.trim() !== '') records.push(JSON.parse(line) as Record<string, unknown>)
      const w = waiters
      waiters = []
      for (const fn of w) fn()
      done()
    },
  })
  const logger = pino({ level, base: { name: 'hookmq' } }, stream)
  return {
    logger,
    records,
    find(match, ms = 5000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no such log record within ${ms} ms; have: ${records.map((r) => r.msg).join(' | ')}`)), ms)
        const check = (): void => {
          const r = records.find(match)
          if (r) {
            clearTimeout(timer)
            resolve(r)
          } else waiters.push(check)
        }
        check()
      })
    },
  }
}
