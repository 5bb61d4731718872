import type { Broker } from './broker.js'
import { version } from './version.js'

/** Publishes $SYS/broker/... topics (retained) every `sys.intervalMs`. */
export class SysPublisher {
  private readonly timer: NodeJS.Timeout
  private readonly prefix = '$SYS/broker/'

  constructor(private readonly broker: Broker) {
    this.publishOnce()
    this.timer = setInterval(() => this.publishOnce(), broker.config.sys.intervalMs)
    this.timer.unref()
  }

  private publishOnce(): void {
    const b = this.broker
    b.stores.retained.count().then((retained) => {
      const values: Record<string, string | number> = {
        version: `hookmq ${version}`,
        uptime: Math.floor((Date.now() - b.startedAt) / 1000),
        'clients/connected': b.connectionCount,
        'clients/total': b.sessions.sessions.size,
        'clients/maximum': b.config.limits.maxConnections,
        'connections/total': b.stats.connectionsTotal,
        'messages/received': b.stats.received[0] + b.stats.received[1] + b.stats.received[2],
        'messages/sent': b.stats.sent[0] + b.stats.sent[1] + b.stats.sent[2],
        'messages/dropped': b.stats.dropped,
        'subscriptions/count': b.router.tree.size,
        'retained messages/count': retained,
        ...b.sysValues(),
      }
      for (const [key, value] of Object.entries(values)) {
        b.publish({ topic: this.prefix + key, payload: String(value), retain: true }).catch((err: unknown) => b.log.error({ err }, '$SYS publish failed'))
      }
    }, (err: unknown) => b.log.error({ err }, '$SYS retained count failed'))
  }

  stop(): void {
    clearInterval(this.timer)
  }
}
