import { pino } from 'pino'

export type Logger = pino.Logger

export function createLogger(level: string): Logger {
  return pino({
    level,
    base: { name: 'hookmq' },
    redact: { paths: ['password', '*.password', 'secret', '*.secret', 'headers.authorization'], censor: '[redacted]' },
  })
}
