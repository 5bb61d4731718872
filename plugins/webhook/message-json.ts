import type { Message } from '../../core/index.js'

// The one writer of a published message's delivery JSON: its fields, their
// order and their format. The durable outbox writes it as a string; the
// in-memory outbox writes it as bytes straight from its queue's records
// (byte-queue.ts). Both go through writeMessageJson(), so they cannot drift.

/**
 * Where writeMessageJson() writes. `Text` and `Bytes` are the message's values
 * as the writer's source holds them: strings and a Buffer, or places in a
 * record's bytes.
 */
export interface JsonOut<Text, Bytes> {
  /** text known to be ASCII, as is */
  ascii(text: string): void
  /** text as a JSON string, escaped as JSON.stringify escapes it */
  string(value: Text): void
  /** bytes in base64, without quotes */
  base64(value: Bytes): void
  /** text that is JSON already, as is */
  json(value: Text): void
}

/** `,"qos":…,"retain":…,"payload":"` by qos | (retain ? 4 : 0): the constant middle, made once */
const QOS_RETAIN = Array.from({ length: 8 }, (_, f) => `,"qos":${f & 3},"retain":${(f & 4) !== 0},"payload":"`)

/** A published message's delivery: this runs for every forwarded message. */
export function writeMessageJson<Text, Bytes>(
  out: JsonOut<Text, Bytes>,
  id: string,
  at: number,
  clientId: Text | null,
  topic: Text,
  qos: number,
  retain: boolean,
  payload: Bytes,
  properties: Text | undefined,
): void {
  out.ascii('{"id":"')
  out.ascii(id)
  out.ascii('","event":"published","timestamp":"')
  out.ascii(iso(at))
  out.ascii('","clientId":')
  if (clientId === null) out.ascii('null')
  else out.string(clientId)
  out.ascii(',"topic":')
  out.string(topic)
  out.ascii(QOS_RETAIN[qos | (retain ? 4 : 0)]!)
  out.base64(payload)
  if (properties === undefined) {
    out.ascii('"}')
    return
  }
  out.ascii('","properties":')
  out.json(properties)
  out.ascii('}')
}

/** writeMessageJson() into a string, from a message's own values */
class StringJson implements JsonOut<string, Buffer> {
  text = ''
  ascii(text: string): void {
    this.text += text
  }
  string(value: string): void {
    this.text += JSON.stringify(value)
  }
  base64(value: Buffer): void {
    this.text += value.toString('base64')
  }
  json(value: string): void {
    this.text += value
  }
}

const stringJson = new StringJson()

/** A published message's delivery as JSON text (the durable outbox's form). */
export function messageJson(id: string, at: number, clientId: string | null, m: Message): string {
  stringJson.text = ''
  writeMessageJson(stringJson, id, at, clientId, m.topic, m.qos, m.retain, m.payload, propertiesJson(m))
  const text = stringJson.text
  stringJson.text = ''
  return text
}

/** A message's properties as the delivery's JSON (Buffers in base64); undefined when it has none. */
export function propertiesJson(m: Message): string | undefined {
  if (m.properties === undefined) return undefined
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(m.properties)) out[k] = Buffer.isBuffer(v) ? v.toString('base64') : v
  return JSON.stringify(out)
}

let isoMs = -1
let isoText = ''

/** ISO time of `ms`; many deliveries share a millisecond, so the last one is kept. */
function iso(ms: number): string {
  if (ms !== isoMs) {
    isoMs = ms
    isoText = new Date(ms).toISOString()
  }
  return isoText
}
