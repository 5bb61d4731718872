import { encodePublish, type PublishProperties } from './codec.js'
import { throttled, type Logger } from './logger.js'
import { encodeMessageProperties } from './properties.js'
import type { Message, QoS } from './types.js'

// The bytes of one PUBLISH to one client. What is shared is encoded once per
// message: the message's own MQTT 5 properties (a block copied into every
// MQTT 5 subscriber's packet), and the whole packet for QoS 0 subscribers that
// need no properties of their own. Per client: the packet id, and (MQTT 5)
// message expiry left, subscription identifiers, topic alias.

const EMPTY = Buffer.alloc(0)

/** What counts and logs a message that cannot be encoded. */
interface DeliveryContext {
  readonly stats: { unencodable: number }
  readonly log: Logger
}

/** The client a PUBLISH is encoded for (a Connection). */
export interface DeliveryTarget {
  readonly ctx: DeliveryContext
  readonly protocolVersion: 3 | 4 | 5
  /** the client's Maximum Packet Size */
  readonly maxOutgoingPacket: number
  /** the client's Topic Alias Maximum */
  readonly topicAliasMaxOut: number
  /** outbound topic aliases, made on first use: topic -> alias */
  aliasesOut: Map<string, number> | null
  /** characters of the topics in aliasesOut (at most ALIAS_CHARS_OUT) */
  aliasCharsOut: number
}

/** the topics one connection's outbound aliases may keep, in characters: past it, topics go unaliased (65,535 aliases of 60 KB topics held 3.1 GB) */
const ALIAS_CHARS_OUT = 65536

/** reused for every delivery with properties of its own (nothing holds it across calls) */
const form: PublishProperties = { shared: EMPTY, expiry: -1, alias: 0, ids: undefined }

/**
 * Encodes `message` for `conn`; undefined when it cannot go to this client
 * (MQTT cannot represent it, or it is larger than the client's Maximum Packet
 * Size) and is dropped for this client only.
 */
export function encodeDelivery(
  conn: DeliveryTarget,
  message: Message,
  qos: QoS,
  retain: boolean,
  ids: number[] | undefined,
  packetId: number,
  dup: boolean,
): Buffer | undefined {
  const v5 = conn.protocolVersion === 5
  if (v5 && (ids !== undefined || conn.topicAliasMaxOut > 0 || message.expiresAt !== undefined || message.properties?.messageExpiryInterval !== undefined)) {
    return encodeForClient(conn, message, qos, retain, ids, packetId, dup)
  }
  const shared = v5 && message.properties !== undefined ? propertyBlock(conn.ctx, message) : undefined
  if (shared === null) return undefined
  if (shared !== undefined) {
    form.shared = shared
    form.expiry = -1
  }
  let buf: Buffer | undefined
  if (qos === 0 && !retain) {
    // the same bytes for every such subscriber: encoded once per message (EMPTY: it cannot be). Not with
    // the retain flag: those go to one subscriber at a time from the retained store, which would keep the bytes
    const slot = v5 ? 1 : 0
    buf = message.encoded?.[slot]
    if (buf === undefined) {
      buf = encode(conn.ctx, message, message.topic, 0, retain, false, 0, v5, shared === undefined ? undefined : form)
      ;(message.encoded ??= [])[slot] = buf ?? EMPTY
    } else if (buf === EMPTY) {
      conn.ctx.stats.unencodable++
      buf = undefined
    }
  } else {
    buf = encode(conn.ctx, message, message.topic, qos, retain, dup, packetId, v5, shared === undefined ? undefined : form)
  }
  form.shared = EMPTY
  return buf === undefined || buf.length > conn.maxOutgoingPacket ? undefined : buf
}

/** An MQTT 5 PUBLISH with this client's own properties (and the message's shared block). */
function encodeForClient(
  conn: DeliveryTarget,
  message: Message,
  qos: QoS,
  retain: boolean,
  ids: number[] | undefined,
  packetId: number,
  dup: boolean,
): Buffer | undefined {
  const shared = message.properties === undefined ? EMPTY : propertyBlock(conn.ctx, message)
  if (shared === null) return undefined
  form.shared = shared
  form.expiry = expiryLeft(message)
  form.ids = ids
  form.alias = 0
  let topic = message.topic
  let newAlias = false
  if (conn.topicAliasMaxOut > 0) {
    const map = (conn.aliasesOut ??= new Map())
    const alias = map.get(topic)
    if (alias !== undefined) {
      form.alias = alias
      topic = ''
    } else if (map.size < conn.topicAliasMaxOut && conn.aliasCharsOut + topic.length <= ALIAS_CHARS_OUT) {
      form.alias = map.size + 1
      map.set(topic, form.alias)
      conn.aliasCharsOut += topic.length
      newAlias = true
    }
  }
  const buf = encode(conn.ctx, message, topic, qos, retain, dup, packetId, true, form)
  form.shared = EMPTY
  form.ids = undefined
  form.alias = 0
  if (buf === undefined || buf.length > conn.maxOutgoingPacket) {
    if (newAlias) {
      conn.aliasesOut!.delete(message.topic) // the client never learnt it
      conn.aliasCharsOut -= message.topic.length
    }
    return undefined
  }
  return buf
}

/** Message Expiry Interval to send: what is left of it [MQTT-3.3.2-6]; -1 when the message has none. */
function expiryLeft(message: Message): number {
  if (message.expiresAt !== undefined) return Math.max(1, Math.ceil((message.expiresAt - Date.now()) / 1000))
  return message.properties?.messageExpiryInterval ?? -1
}

/** The message's property block, encoded on first use; null when it cannot be encoded (then for no MQTT 5 client). */
function propertyBlock(ctx: DeliveryContext, message: Message): Buffer | null {
  let block = message.propertyBlock
  if (block === undefined) {
    try {
      block = encodeMessageProperties(message.properties!)
    } catch (err) {
      warn(ctx, message, err)
      block = null
    }
    message.propertyBlock = block
  }
  if (block === null) ctx.stats.unencodable++
  return block
}

function encode(
  ctx: DeliveryContext,
  message: Message,
  topic: string,
  qos: QoS,
  retain: boolean,
  dup: boolean,
  packetId: number,
  v5: boolean,
  props: PublishProperties | undefined,
): Buffer | undefined {
  try {
    return encodePublish(topic, message.payload, qos, retain, dup, packetId, v5, props)
  } catch (err) {
    ctx.stats.unencodable++
    warn(ctx, message, err)
    return undefined
  }
}

const warnings = new WeakMap<DeliveryContext, (what: unknown) => void>()

/** A message MQTT cannot carry in some form: logged at most every 10 s per broker (a client could repeat it endlessly). */
function warn(ctx: DeliveryContext, message: Message, err: unknown): void {
  let write = warnings.get(ctx)
  if (write === undefined) {
    write = throttled((what, count) => ctx.log.warn({ ...(what as object), count }, 'message could not be encoded: not delivered'))
    warnings.set(ctx, write)
  }
  write({ err, topic: message.topic.slice(0, 200) })
}
