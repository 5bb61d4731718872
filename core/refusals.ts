import { throttled, type Logger } from './logger.js'

// What the broker refused, by cause: a counter each (BrokerStats.refused, for
// /metrics and $SYS) and a log line per cause at most every 10 s, telling how
// many it stands for, so a flood of bad clients cannot flood the log.

export interface RefusalCounts {
  /**
   * connections closed for a malformed packet (0x81): codec errors, ill-formed
   * UTF-8 or U+0000, bytes left after a CONNECT, reserved packet types, bad property lengths
   */
  malformedPacket: number
  /**
   * connections closed for a protocol error (0x82): packet id 0, SUBSCRIBE/UNSUBSCRIBE
   * without filters, a property not allowed or repeated, an acknowledgement out of its flow
   */
  protocolError: number
  /** connections closed because their CONNECT exceeded limits.maxConnectPacketSize */
  connectTooLarge: number
  /** connections closed because their partial CONNECT would have taken the pre-login bytes past limits.maxPreLoginBytes */
  preLoginBytes: number
  /** sockets closed at accept because limits.maxConnections sockets were open */
  maxConnections: number
  /** sockets closed for sending no CONNECT (or no TLS handshake / WebSocket upgrade) within limits.connectTimeoutMs */
  connectTimeout: number
  /** connections closed for no complete packet within 1.5 times their keep-alive */
  keepaliveTimeout: number
  /** PUBLISH packets refused (0x97, connection kept) for too many or too large MQTT 5 properties (limits.maxUserProperties / maxPropertyBytes) */
  properties: number
  /** CONNECT packets refused (0x8A; MQTT 3.1.1: return code 5) because a ban matched their client id, user name or address */
  banned: number
}

export type RefusalCause = keyof RefusalCounts

export interface RefusalDetail {
  remoteAddress?: string | undefined
  clientId?: string | undefined
  listener?: string | undefined
  reason?: string | undefined
}

export class Refusals {
  readonly counts: RefusalCounts = {
    malformedPacket: 0,
    protocolError: 0,
    connectTooLarge: 0,
    preLoginBytes: 0,
    maxConnections: 0,
    connectTimeout: 0,
    keepaliveTimeout: 0,
    properties: 0,
    banned: 0,
  }
  private readonly logs = new Map<RefusalCause, (detail: unknown) => void>()

  constructor(private readonly log: Logger) {}

  /** Counts one refusal and logs it (throttled per cause). */
  note(cause: RefusalCause, detail: RefusalDetail): void {
    this.counts[cause]++
    let write = this.logs.get(cause)
    if (write === undefined) {
      write = throttled((last, count) => this.log.info({ cause, count, last }, `refused: ${cause} (${count} since the last such line)`))
      this.logs.set(cause, write)
    }
    write(detail)
  }
}
