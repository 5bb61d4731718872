import type { ClientInfo } from '../../../core/index.js'

export interface SerializedError {
  message: string
  name?: string
  code?: string
  /** source-mapped */
  stack?: string
  /** file:line:column in the hook's source */
  at?: string
  file?: string
  line?: number
  column?: number
}

/** A structured-cloned Buffer arrives as a Uint8Array: a Buffer view of the same bytes. */
export function asBuffer(v: unknown): unknown {
  return v instanceof Uint8Array && !Buffer.isBuffer(v) ? Buffer.from(v.buffer, v.byteOffset, v.byteLength) : v
}

// The calls of one tick as they cross to a hook's worker, in one message of
// parallel arrays. The per-message calls (authorizePublish, transform) travel
// flat: a client reference instead of the client (each client crosses once,
// and again when its user changes), the topic (all of a batch's topics in one
// string: an array of hundreds of strings costs five times as much to clone), flags, and the payload as an
// offset into a ring of shared memory the broker writes and the worker copies
// out of (a batch too large for the ring brings a buffer of its own). Other
// calls carry their input object. Answers come back as a code each (typed
// arrays: an array of numbers costs six times as much to clone), with the few
// values that are not true, false, null or undefined beside them.

/** Method codes (`calls.methods`); publish-shaped ones (authorizePublish, transform, deliver) travel flat. */
export const AUTHENTICATE = 0
export const AUTHORIZE_PUBLISH = 1
export const AUTHORIZE_SUBSCRIBE = 2
export const TRANSFORM = 3
export const EVENT = 4
export const DELIVER = 5
/** a slot of a call that could not be sent (its input cannot cross threads) */
export const SKIPPED = -1

export const RING_BYTES = 1 << 20

export interface CallBatch {
  t: 'calls'
  seq: number
  count: number
  /**
   * Where the call table (TABLE ints a call: id, method, client reference,
   * qos | retain << 2, payload offset and length, offsets from `at`, topic
   * length, publisher) and then the payloads are: at `at` in the shared ring, or at 0 in `pack`.
   */
  at: number
  pack: ArrayBuffer | null
  /** the calls' topics one after another, each as long as its TOPIC_LENGTH (none when not publish-shaped) */
  topics: string
  /** [index, input] of the calls that are not publish-shaped */
  inputs: Array<[number, unknown]> | null
  /** the publishers of deliver calls (PUBLISHER in the table: its place here, plus one; a run of one publisher's is one entry) */
  publishers: string[] | null
  /** [index, properties] of the publish-shaped calls that have them */
  properties: Array<[number, unknown]> | null
  /** clients the worker has not seen (or whose user changed): [reference, client] */
  newClients: Array<[number, ClientInfo]> | null
  /** references of clients that are gone */
  forget: number[] | null
}

/** Ints a call takes in the table, and their places. */
export const TABLE = 8
export const ID = 0
export const METHOD = 1
export const CLIENT = 2
export const FLAGS = 3
export const PAYLOAD_AT = 4
export const PAYLOAD_LENGTH = 5
export const TOPIC_LENGTH = 6
export const PUBLISHER = 7

/** Answer codes; VALUE takes the next of `values`. */
export const UNDEFINED = 0
export const TRUE = 1
export const FALSE = 2
export const VALUE = 3
export const NULL = 4

export interface AnswerBatch {
  t: 'answers'
  ids: Int32Array
  codes: Uint8Array
  values: unknown[]
  errors: Array<[number, SerializedError]> | null
}

export function answerCode(v: unknown): number {
  return v === undefined ? UNDEFINED : v === true ? TRUE : v === false ? FALSE : v === null ? NULL : VALUE
}

/**
 * Where a batch's payloads go in the shared ring: regions are handed out in
 * order and given back once the worker has begun (and so copied) their batch.
 */
export class Ring {
  readonly buffer = new SharedArrayBuffer(RING_BYTES)
  readonly bytes = new Uint8Array(this.buffer)
  private head = 0
  private tail = 0
  private readonly regions: Array<{ seq: number; end: number }> = []

  /** Gives back the regions of batches up to `seen`. */
  release(seen: number): void {
    const r = this.regions
    while (r.length > 0 && r[0]!.seq <= seen) this.tail = r.shift()!.end
    if (r.length === 0) this.head = this.tail = 0
  }

  /** The offset (a multiple of 4) of `size` free bytes for batch `seq`, or -1 (no room: the batch brings its own buffer). */
  take(size: number, seq: number): number {
    size = (size + 3) & ~3
    if (size > RING_BYTES / 4) return -1
    let at = -1
    if (this.regions.length === 0 || this.head > this.tail) {
      if (RING_BYTES - this.head >= size) at = this.head
      else if (size < this.tail) at = 0 // wrap; the end of the ring stays unused until this region is given back
    } else if (this.tail - this.head > size) at = this.head
    if (at === -1) return -1
    this.head = at + size
    this.regions.push({ seq, end: this.head === RING_BYTES ? 0 : this.head })
    return at
  }

  /** Forgets every region (a new worker). */
  reset(): void {
    this.regions.length = 0
    this.head = this.tail = 0
  }
}

/** The broker's side: fills one tick's batch (its table in a reused scratch array). */
export class BatchWriter {
  batch: CallBatch | null = null
  private table = new Int32Array(TABLE * 256)
  private payloads: Buffer[] = []
  private topics: string[] = []
  private size = 0
  private seq = 0
  private generation = 0
  private nextRef = 0
  private readonly sent = new WeakMap<ClientInfo, SentClient>()
  private forgotten: number[] | null = null
  private readonly gone = new FinalizationRegistry<number>((ref) => (this.forgotten ??= []).push(ref))
  readonly ring = new Ring()

  /** Adds a call; answers its batch's sequence number, or -1 when its client's user cannot cross to the worker (the call is not added). */
  add(id: number, method: number, input: unknown): number {
    const flat = method === AUTHORIZE_PUBLISH || method === TRANSFORM || method === DELIVER
    const client = flat ? (input as PublishShaped).client : undefined
    const known = client === undefined ? undefined : this.known(client)
    if (known?.crosses === false) return -1
    const b = (this.batch ??= {
      t: 'calls',
      seq: ++this.seq,
      count: 0,
      at: 0,
      pack: null,
      topics: '',
      inputs: null,
      publishers: null,
      properties: null,
      newClients: null,
      forget: null,
    })
    const i = b.count++
    if (this.table.length < b.count * TABLE) {
      const bigger = new Int32Array(this.table.length * 2)
      bigger.set(this.table)
      this.table = bigger
    }
    const t = this.table
    const o = i * TABLE
    t[o + ID] = id
    t[o + METHOD] = method
    if (flat) {
      const p = input as PublishShaped
      t[o + CLIENT] = known === undefined ? 0 : this.clientRef(b, client!, known)
      t[o + FLAGS] = p.qos | (p.retain ? 4 : 0)
      t[o + PAYLOAD_AT] = this.size
      t[o + PAYLOAD_LENGTH] = p.payload.length
      t[o + TOPIC_LENGTH] = p.topic.length
      this.payloads.push(p.payload)
      this.size += p.payload.length
      this.topics.push(p.topic)
      if (p.properties !== undefined) (b.properties ??= []).push([i, wireProperties(p.properties as Record<string, unknown>)])
      t[o + PUBLISHER] = p.publisher === undefined ? 0 : publisherRef(b, p.publisher)
    } else {
      t[o + CLIENT] = 0
      t[o + FLAGS] = 0
      t[o + PAYLOAD_AT] = 0
      t[o + PAYLOAD_LENGTH] = 0
      t[o + TOPIC_LENGTH] = 0
      t[o + PUBLISHER] = 0
      ;(b.inputs ??= []).push([i, method === EVENT ? input : wireObject(input)]) // (an event's arguments come wired: RemoteHook.notify)
    }
    return b.seq
  }

  /** What the worker knows of `client`; whether its `user` can cross at all is checked once per user. */
  private known(client: ClientInfo): SentClient {
    let e = this.sent.get(client)
    if (e === undefined) {
      e = { ref: ++this.nextRef, generation: -1, user: undefined, username: undefined, crosses: true }
      this.sent.set(client, e)
      this.gone.register(client, e.ref)
    }
    if (e.user !== client.user) {
      e.user = client.user
      e.generation = -1
      e.crosses = crosses(client.user)
    }
    return e
  }

  /** Its reference, the client sent along when the worker does not know it (or its user or name changed). */
  private clientRef(b: CallBatch, client: ClientInfo, e: SentClient): number {
    if (e.generation !== this.generation || e.username !== client.username) {
      e.generation = this.generation
      e.username = client.username
      ;(b.newClients ??= []).push([e.ref, { ...client }])
    }
    return e.ref
  }

  /** Drops the batch being filled (its calls answered elsewhere: the worker was lost). */
  discard(): void {
    this.batch = null
    this.payloads = []
    this.topics = []
    this.size = 0
  }

  /** Takes the batch to send, its table and payloads written into the ring (or a buffer of its own); `seen`: the last batch the worker began. */
  take(seen: number): CallBatch | null {
    const b = this.batch
    if (b === null) return null
    this.batch = null
    this.ring.release(seen)
    const tableBytes = b.count * TABLE * 4
    const bytes = tableBytes + this.size
    const at = this.ring.take(bytes, b.seq)
    let region: Uint8Array
    if (at === -1) {
      b.pack = new ArrayBuffer(bytes)
      b.at = 0
      region = new Uint8Array(b.pack)
    } else {
      b.at = at
      region = new Uint8Array(this.ring.buffer, at, bytes)
    }
    new Int32Array(region.buffer, region.byteOffset, b.count * TABLE).set(this.table.subarray(0, b.count * TABLE))
    let pos = tableBytes
    for (const p of this.payloads) {
      region.set(p, pos)
      pos += p.length
    }
    // payload offsets in the table count from the region's start
    const t = new Int32Array(region.buffer, region.byteOffset, b.count * TABLE)
    for (let i = 0; i < b.count; i++) t[i * TABLE + PAYLOAD_AT]! += tableBytes
    b.topics = this.topics.join('')
    this.payloads = []
    this.topics = []
    this.size = 0
    if (this.forgotten !== null) {
      b.forget = this.forgotten
      this.forgotten = null
    }
    return b
  }

  /** Marks call `i` of a taken batch as not sent (its input cannot cross threads). */
  skip(b: CallBatch, i: number): void {
    const region = b.pack ?? this.ring.buffer
    new Int32Array(region, b.at, b.count * TABLE)[i * TABLE + METHOD] = SKIPPED
  }

  /** A new worker knows no client and holds no ring region. */
  reset(): void {
    this.generation++
    this.ring.reset()
  }
}

/** `publisher`'s place in the batch's publishers, plus one (a fan-out's deliveries share their publisher: one entry) */
function publisherRef(b: CallBatch, publisher: string): number {
  const list = (b.publishers ??= [])
  if (list.length === 0 || list[list.length - 1] !== publisher) list.push(publisher)
  return list.length
}

interface SentClient {
  ref: number
  /** the worker generation that knows it (-1: none) */
  generation: number
  user: unknown
  username: string | undefined
  /** false: its user cannot be structured-cloned, and so its calls cannot go to a worker (they fail closed) */
  crosses: boolean
}

function crosses(user: unknown): boolean {
  if (user === null || typeof user !== 'object') return typeof user !== 'function' && typeof user !== 'symbol'
  try {
    structuredClone(user)
    return true
  } catch {
    return false
  }
}

interface PublishShaped {
  client: ClientInfo | undefined
  topic: string
  payload: Buffer
  qos: 0 | 1 | 2
  retain: boolean
  properties: object | undefined
  /** deliver calls: the publisher's client id */
  publisher?: string
}

/** An object as it crosses: Buffers at their own size (a view of a larger buffer would copy all of it), three levels down. */
/** A message's properties as they cross: copied only when a Buffer in them would otherwise take its whole pool slab along. */
export function wireProperties(p: Record<string, unknown>): Record<string, unknown> {
  if (!Buffer.isBuffer(p.correlationData)) return p
  return { ...p, correlationData: new Uint8Array(p.correlationData) }
}

export function wireObject(input: unknown, depth = 3): unknown {
  if (input === null || typeof input !== 'object') return input
  if (Buffer.isBuffer(input)) return new Uint8Array(input)
  if (depth === 0) return input
  if (Array.isArray(input)) return input.map((v) => wireObject(v, depth - 1))
  const w: Record<string, unknown> = {}
  for (const k in input as Record<string, unknown>) w[k] = wireObject((input as Record<string, unknown>)[k], depth - 1)
  return w
}

/**
 * A batch's table and the region its payloads are in. The worker copies the
 * table (`copy`): once it says it has begun the batch, the broker may write
 * the next batch over that part of the ring.
 */
export function batchTable(b: CallBatch, ring: SharedArrayBuffer | undefined, copy = false): { table: Int32Array; region: Uint8Array } {
  const buffer = b.pack ?? ring!
  const view = new Int32Array(buffer, b.at, b.count * TABLE)
  return { table: copy ? view.slice() : view, region: new Uint8Array(buffer, b.at) }
}

/** The topic of each call of a batch ('' for those not publish-shaped). */
export function batchTopics(b: CallBatch, table: Int32Array): string[] {
  const out = new Array<string>(b.count)
  let at = 0
  for (let i = 0; i < b.count; i++) {
    const n = table[i * TABLE + TOPIC_LENGTH]!
    out[i] = n === 0 ? '' : b.topics.slice(at, at + n)
    at += n
  }
  return out
}

/** The input of call `i` (a payload copied out of shared memory: the hook may keep it). */
export function readInput(
  topic: string,
  i: number,
  table: Int32Array,
  region: Uint8Array,
  clients: Map<number, ClientInfo>,
  inputs: Map<number, unknown> | null,
  properties: Map<number, unknown> | null,
  publishers: string[] | null = null,
): unknown {
  const o = i * TABLE
  const method = table[o + METHOD]!
  if (method !== AUTHORIZE_PUBLISH && method !== TRANSFORM && method !== DELIVER) return reviveBuffers(inputs?.get(i) as Record<string, unknown>)
  const at = table[o + PAYLOAD_AT]!
  const payload = Buffer.allocUnsafe(table[o + PAYLOAD_LENGTH]!)
  payload.set(region.subarray(at, at + payload.length))
  const flags = table[o + FLAGS]!
  const props = properties?.get(i) as Record<string, unknown> | undefined
  if (props?.correlationData !== undefined) props.correlationData = asBuffer(props.correlationData)
  const ref = table[o + CLIENT]!
  const client = ref === 0 ? undefined : clients.get(ref)
  if (method === DELIVER) {
    const pub = table[o + PUBLISHER]!
    return { client, topic, payload, qos: flags & 3, retain: (flags & 4) !== 0, properties: props, publisher: pub === 0 ? undefined : publishers![pub - 1] }
  }
  return { client, topic, payload, qos: flags & 3, retain: (flags & 4) !== 0, properties: props }
}

function reviveBuffers(input: Record<string, unknown>): unknown {
  if (input === null || typeof input !== 'object') return input
  for (const k in input) {
    const v = input[k]
    if (v instanceof Uint8Array) input[k] = asBuffer(v)
    else if (v !== null && typeof v === 'object' && !Array.isArray(v)) reviveBuffers(v as Record<string, unknown>)
  }
  if (Array.isArray(input.args)) for (const a of input.args) reviveBuffers(a as Record<string, unknown>)
  return input
}
