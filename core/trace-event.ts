// One event of a live trace (core/trace.ts), as the admin API streams it: a
// file of its own, with no imports, so that the dashboard's browser code
// (plugins/http/dashboard/, built without Node's types) reads the same type.

export interface TraceEvent {
  /** ms since the epoch */
  at: number
  node: string
  clientId: string
  /** 'in': from the client; 'out': to it; 'hook': a hook's decision */
  dir: 'in' | 'out' | 'hook'
  /** packet type (connect, publish, suback...) or the hook point (authenticate, authorizePublish...) */
  type: string
  topic?: string
  qos?: number
  packetId?: number
  /** payload bytes of a PUBLISH */
  payloadBytes?: number
  /** reason code (MQTT 5) or return code (3.1.1), when the packet has one */
  reasonCode?: number
  /** SUBSCRIBE/SUBACK: the filters, the granted codes */
  filters?: string[]
  granted?: number[]
  /** a hook's decision */
  hook?: string
  version?: number
  answer?: string
  ms?: number
}
