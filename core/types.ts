import type { UserProperties } from 'mqtt-packet'

export type QoS = 0 | 1 | 2

/** MQTT 5 PUBLISH properties that travel with a message from publisher to subscribers. */
export interface MessageProperties {
  payloadFormatIndicator?: boolean
  messageExpiryInterval?: number
  contentType?: string
  responseTopic?: string
  correlationData?: Buffer
  userProperties?: UserProperties
}

/** A message as the broker routes it. */
export interface Message {
  topic: string
  payload: Buffer
  qos: QoS
  retain: boolean
  properties?: MessageProperties
  /** epoch ms after which the message is not delivered (from Message Expiry Interval) */
  expiresAt?: number
  /** client id of the publisher (for No Local); undefined for broker-originated messages */
  origin?: string
  /** id of the node that accepted it (for clustering) */
  node?: string
  /**
   * In a cluster: for each shared group (`<group>/<filter>`) with members on
   * other nodes, the node whose member gets this message (decided where it was published).
   */
  shares?: Record<string, string>
  /**
   * Encoded QoS 0 PUBLISH bytes shared by every subscriber that gets the same
   * bytes (index: MQTT 5 ? 2 : 0, plus 1 when retained). A cache: never stored,
   * and dropped by anything that copies the message to change it.
   */
  encoded?: Buffer[]
  /**
   * The message's own MQTT 5 properties as written in a PUBLISH (codec.ts
   * encodeMessageProperties), encoded once for every MQTT 5 subscriber; null
   * when they cannot be encoded. A cache like `encoded`.
   */
  propertyBlock?: Buffer | null
  /** messageSize (quota.ts), counted once for every queue and window it enters. A cache like `encoded`. */
  size?: number
  /** keep() made its payload and Correlation Data its own: the first session, queue or store that keeps it does, the others find it done */
  kept?: boolean
}

export interface SubscriptionOptions {
  qos: QoS
  /** No Local */
  nl: boolean
  /** Retain As Published */
  rap: boolean
  /** Retain Handling */
  rh: 0 | 1 | 2
  /** Subscription Identifier */
  id?: number
}

export interface Subscription extends SubscriptionOptions {
  /** the filter as the client sent it, `$share/...` included */
  filter: string
}

/** What hooks and events see of a client. */
export interface ClientInfo {
  id: string
  username?: string
  remoteAddress: string
  protocolVersion: 3 | 4 | 5
  /** record attached by an authenticate hook */
  user?: unknown
  listener: string
}

/** bytes a kept payload's buffer may hold beyond the payload before it is copied (ownBytes) */
const PINNED_SLACK = 1024

/**
 * `bytes`, or a copy of its own when it is a view of a much larger buffer. A
 * payload is parsed as a view of the socket read it came in, up to 64 KB of
 * other packets; kept beyond that read (retained, queued, in flight, a will),
 * a 16-byte payload kept all of those bytes alive, and no limit saw them (they
 * count the payload): 5,000 retained messages of 16 bytes, each sent beside
 * 60 KB of junk, grew the broker by 306 MB.
 */
export function ownBytes(bytes: Buffer): Buffer {
  if (bytes.buffer.byteLength - bytes.length <= PINNED_SLACK) return bytes
  const own = Buffer.allocUnsafeSlow(bytes.length)
  own.set(bytes) // (not bytes.copy(own): Node's copy would move a small copy's bytes off V8's heap, ~100 bytes more each)
  return own
}

/** Makes `message` fit to be kept beyond the read it came in: its payload and Correlation Data its own (ownBytes). Checked once per message, however many keep it. */
export function keep(message: Message): void {
  if (message.kept === true) return
  message.kept = true
  message.payload = ownBytes(message.payload)
  message.properties = ownProperties(message.properties)
}

/** `props`, or a copy of it whose Correlation Data is its own (ownBytes): never changed in place, as a caller's (broker.publish) may be frozen or kept by it. */
export function ownProperties<P extends { correlationData?: unknown }>(props: P | undefined): P | undefined {
  const cd = props?.correlationData
  if (!Buffer.isBuffer(cd)) return props
  const own = ownBytes(cd)
  return own === cd ? props : { ...props!, correlationData: own }
}

/**
 * A message with every field present, so all messages share one shape (V8
 * hidden class): adding `node` or a cache later would change it on the
 * publish path.
 */
export function newMessage(topic: string, payload: Buffer, qos: QoS, retain: boolean, origin: string | undefined, properties?: MessageProperties): Message {
  const exp = properties?.messageExpiryInterval
  return {
    topic,
    payload,
    qos,
    retain,
    properties,
    expiresAt: exp === undefined ? undefined : Date.now() + exp * 1000,
    origin,
    node: undefined,
    shares: undefined,
    encoded: undefined,
    propertyBlock: undefined,
    size: undefined,
    kept: false,
  }
}
