// The one catalogue of coded errors: every error hookmq throws is a
// HookmqError with a code from ErrorCode, and its MQTT reason code is derived
// in one place (the ErrorCode table, read by the HookmqError constructor). `Connection.refuse()` turns one into a
// DISCONNECT / CONNACK and a socket close (`Connection.closeWith()` closes with
// a reason code chosen on purpose: a takeover, a shutdown, a timeout).

export const ReasonCode = {
  Success: 0x00,
  GrantedQoS1: 0x01,
  GrantedQoS2: 0x02,
  DisconnectWithWill: 0x04,
  NoMatchingSubscribers: 0x10,
  NoSubscriptionExisted: 0x11,
  UnspecifiedError: 0x80,
  MalformedPacket: 0x81,
  ProtocolError: 0x82,
  ImplementationSpecificError: 0x83,
  UnsupportedProtocolVersion: 0x84,
  ClientIdentifierNotValid: 0x85,
  BadUserNameOrPassword: 0x86,
  NotAuthorized: 0x87,
  ServerUnavailable: 0x88,
  ServerBusy: 0x89,
  /** CONNACK only (MQTT 5.0 table 3-1); a banned client already connected is disconnected with AdministrativeAction */
  Banned: 0x8a,
  ServerShuttingDown: 0x8b,
  BadAuthenticationMethod: 0x8c,
  KeepAliveTimeout: 0x8d,
  SessionTakenOver: 0x8e,
  TopicFilterInvalid: 0x8f,
  TopicNameInvalid: 0x90,
  PacketIdentifierInUse: 0x91,
  PacketIdentifierNotFound: 0x92,
  ReceiveMaximumExceeded: 0x93,
  TopicAliasInvalid: 0x94,
  PacketTooLarge: 0x95,
  QuotaExceeded: 0x97,
  AdministrativeAction: 0x98,
  MaximumConnectTime: 0xa0,
  PayloadFormatInvalid: 0x99,
  RetainNotSupported: 0x9a,
  QoSNotSupported: 0x9b,
  SharedSubscriptionsNotSupported: 0x9e,
  SubscriptionIdentifiersNotSupported: 0xa1,
  WildcardSubscriptionsNotSupported: 0xa2,
} as const

export type ReasonCodeValue = (typeof ReasonCode)[keyof typeof ReasonCode]

export const ErrorCode = {
  MALFORMED_PACKET: ReasonCode.MalformedPacket,
  PROTOCOL_ERROR: ReasonCode.ProtocolError,
  UNSUPPORTED_PROTOCOL: ReasonCode.UnsupportedProtocolVersion,
  CLIENT_ID_INVALID: ReasonCode.ClientIdentifierNotValid,
  /**
   * A 3.1.1 CONNECT's keep-alive outside 1..limits.maxKeepalive. 3.1.1 has no
   * code for it: return code 2, as Mosquitto answers (an MQTT 5 client is told
   * a Server Keep Alive instead, and connects).
   */
  KEEPALIVE_NOT_ALLOWED: ReasonCode.ClientIdentifierNotValid,
  TOPIC_NAME_INVALID: ReasonCode.TopicNameInvalid,
  RECEIVE_MAXIMUM_EXCEEDED: ReasonCode.ReceiveMaximumExceeded,
  TOPIC_ALIAS_INVALID: ReasonCode.TopicAliasInvalid,
  PACKET_TOO_LARGE: ReasonCode.PacketTooLarge,
  QUOTA_EXCEEDED: ReasonCode.QuotaExceeded,
  QOS_NOT_SUPPORTED: ReasonCode.QoSNotSupported,
  /** a length the MQTT encoding cannot represent (a string over 65,535 bytes, a packet over 268,435,455): never written */
  NOT_ENCODABLE: ReasonCode.ImplementationSpecificError,
  CONFIG_INVALID: ReasonCode.UnspecifiedError,
  /** a ban that cannot be added or removed as asked (empty value, bad CIDR, expiry in the past, a ban from the config file) */
  BAN_INVALID: ReasonCode.UnspecifiedError,
  /** the command line was wrong (unknown flag, missing argument) */
  USAGE: ReasonCode.UnspecifiedError,
  /** a broker method called at the wrong time (use() after listen(), listen() twice) */
  BROKER_STATE: ReasonCode.UnspecifiedError,
  /** in a cluster, another identity's CONNECT took the client id while this one was being accepted (Cluster.claim) */
  CLIENT_ID_TAKEN: ReasonCode.ClientIdentifierNotValid,
  /** a store (Redis) cannot be reached: what needs it is refused */
  STORE_UNAVAILABLE: ReasonCode.ServerUnavailable,
  /** ctx.forward to a webhook that is not configured */
  WEBHOOK_UNKNOWN: ReasonCode.UnspecifiedError,
  /** a hook called what hooks may not (process.exit, process.kill, ...) */
  HOOK_FORBIDDEN: ReasonCode.UnspecifiedError,
  /** a hook file failed to load (compile, top level, definition, config); at start-up with hooks.onStartupFailure exit, the broker does not start */
  HOOK_LOAD_FAILED: ReasonCode.UnspecifiedError,
  /** a hook answered what its method may not answer: a failed call */
  HOOK_INVALID_ANSWER: ReasonCode.UnspecifiedError,
  /** a call reached a hook version that was replaced (its worker answers nothing more) */
  HOOK_RETIRED: ReasonCode.UnspecifiedError,
  /** a hook's worker stopped (crash, heap limit, terminated when stuck) */
  HOOK_WORKER_LOST: ReasonCode.UnspecifiedError,
  /** a hook did not answer within its deadline */
  HOOK_TIMEOUT: ReasonCode.UnspecifiedError,
  UNSPECIFIED: ReasonCode.UnspecifiedError,
} as const

export type ErrorCodeName = keyof typeof ErrorCode

export class HookmqError extends Error {
  readonly code: `HOOKMQ_ERR_${ErrorCodeName}`
  readonly reasonCode: number

  constructor(name: ErrorCodeName, message: string) {
    super(message)
    this.name = 'HookmqError'
    this.code = `HOOKMQ_ERR_${name}`
    this.reasonCode = ErrorCode[name]
  }
}

export function protocolError(message: string): HookmqError {
  return new HookmqError('PROTOCOL_ERROR', message)
}

export function malformed(message: string): HookmqError {
  return new HookmqError('MALFORMED_PACKET', message)
}

/** MQTT 3.1.1 CONNACK return codes for the reason codes a v3 client can be told. */
export function v3ConnackCode(reasonCode: number): number {
  switch (reasonCode) {
    case 0:
      return 0
    case ReasonCode.UnsupportedProtocolVersion:
      return 1
    case ReasonCode.ClientIdentifierNotValid:
      return 2
    case ReasonCode.ServerUnavailable:
    case ReasonCode.ServerBusy:
    case ReasonCode.QuotaExceeded:
    case ReasonCode.ServerShuttingDown:
      return 3
    case ReasonCode.BadUserNameOrPassword:
      return 4
    default:
      return 5
  }
}
