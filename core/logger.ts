import { pino } from 'pino'

export type Logger = pino.Logger

export function createLogger(level: string): Logger {
  return pino({
    level,
    base: { name: 'hookmq' },
    redact: { paths: ['password', '*.password', 'secret', '*.secret', 'headers.authorization'], censor: '[redacted]' },
  })
}

/**
 * For a failure that can repeat with every message (a store that is away):
 * `write` runs at most once per `ms`, told how many failures it stands for.
 */
export function throttled(write: (err: unknown, count: number) => void, ms = 10000): (err: unknown) => void {
  let count = 0
  let last = 0
  return (err) => {
    count++
    const now = Date.now()
    if (now - last < ms) return
    last = now
    write(err, count)
    count = 0
  }
}
