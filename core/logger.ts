import { pino } from 'pino'
import { maskCredentials } from './secrets.js'

export type Logger = pino.Logger

export function createLogger(level: string): Logger {
  return pino({
    level,
    base: { name: 'hookmq' },
    redact: { paths: ['password', '*.password', 'secret', '*.secret', 'token', '*.token', 'headers.authorization'], censor: '[redacted]' },
    // URLs with passwords in a message or an error (a Redis URL in a driver's error) are masked
    serializers: { err: maskError },
    hooks: {
      logMethod(args, method) {
        for (let i = 0; i < args.length; i++) if (typeof args[i] === 'string') args[i] = maskCredentials(args[i] as string)
        method.apply(this, args)
      },
    },
  })
}

/** An error as a log line shows it, credentials masked; anything thrown (null, a Proxy, an object whose getters throw) is logged, never thrown again. */
function maskError(err: unknown): unknown {
  if (typeof err === 'string') return maskCredentials(err)
  if (err === null || typeof err !== 'object') return String(err)
  try {
    const out = pino.stdSerializers.err(err as Error) as { message?: unknown; stack?: unknown } | undefined
    if (out === undefined || out === null) return String(err)
    if (typeof out.message === 'string') out.message = maskCredentials(out.message)
    if (typeof out.stack === 'string') out.stack = maskCredentials(out.stack)
    return out
  } catch {
    return '(an error that cannot be read)'
  }
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
