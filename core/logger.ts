import { createRequire } from 'node:module'
import { pino } from 'pino'
import type PinoPretty from 'pino-pretty'
import { maskCredentials } from './secrets.js'

export type Logger = pino.Logger

/** `auto`: pretty when stdout is a terminal, JSON otherwise */
export type LogFormat = 'auto' | 'json' | 'pretty'

/** A logger at `level`: JSON lines on stdout, or lines for a human (pino-pretty) when `format` asks for them. Redaction and masking apply to both. */
export function createLogger(level: string, format: LogFormat = 'json'): Logger {
  const options: pino.LoggerOptions = {
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
  }
  return (format === 'auto' ? process.stdout.isTTY === true : format === 'pretty') ? pino(options, prettyStream()) : pino(options)
}

/** pino-pretty, loaded only when chosen (a JSON logger does not carry it); what it writes is what pino made: redacted and masked already. */
function prettyStream(): PinoPretty.PrettyStream {
  const pretty = createRequire(import.meta.url)('pino-pretty') as typeof PinoPretty
  // local date and time, not epoch ms; written at once, as pino's own stdout is (a crash loses no line)
  return pretty({ translateTime: 'SYS:standard', sync: true })
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
