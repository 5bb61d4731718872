import type { Logger } from './logger.js'

/** What the $SYS publisher reads and publishes through (the Broker). */
export interface SysSource {
  readonly log: Logger
  /** the values to publish now, keyed relative to $SYS/broker/ */
  sysSnapshot(): Promise<Record<string, string | number>>
  publish(options: { topic: string; payload: string; retain: boolean }): Promise<void>
}

/** Publishes $SYS/broker/... topics (retained) every `intervalMs`. */
export class SysPublisher {
  private readonly timer: NodeJS.Timeout
  private readonly prefix = '$SYS/broker/'

  constructor(
    private readonly source: SysSource,
    intervalMs: number,
  ) {
    this.publishOnce()
    this.timer = setInterval(() => this.publishOnce(), intervalMs)
    this.timer.unref()
  }

  private publishOnce(): void {
    const s = this.source
    s.sysSnapshot().then(
      (values) => {
        for (const [key, value] of Object.entries(values)) {
          s.publish({ topic: this.prefix + key, payload: String(value), retain: true }).catch((err: unknown) => s.log.error({ err }, '$SYS publish failed'))
        }
      },
      (err: unknown) => s.log.error({ err }, '$SYS values could not be read'),
    )
  }

  stop(): void {
    clearInterval(this.timer)
  }
}
