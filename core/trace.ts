import type { Packet } from 'mqtt-packet'
import { matchesFilter } from './topic.js'
import type { ClientInfo } from './types.js'
import type { TraceEvent } from './trace-event.js'

export type { TraceEvent }

// Live trace: the packets in and out of the clients an operator watches (by
// client id, or every client's PUBLISH on a topic filter) and the hook
// decisions on them. While no one watches, `active` is false and the one check
// a connection makes per packet is all it costs.

export interface TraceFilter {
  /** one client id */
  clientId?: string
  /** PUBLISH packets (and hook decisions on them) whose topic matches */
  topic?: string
}

interface Watcher {
  filter: TraceFilter
  send(event: TraceEvent): void
}

export class Tracer {
  /** true while someone watches: the only thing the packet paths read otherwise */
  active = false
  private readonly watchers = new Set<Watcher>()

  constructor(private readonly node: string) {}

  /** Calls `send` with every event the filter matches until the answered function is called. */
  watch(filter: TraceFilter, send: (event: TraceEvent) => void): () => void {
    const w: Watcher = { filter, send }
    this.watchers.add(w)
    this.active = true
    return () => {
      this.watchers.delete(w)
      this.active = this.watchers.size > 0
    }
  }

  get watching(): number {
    return this.watchers.size
  }

  /** A packet in or out of `client` (call only while active). */
  packet(client: ClientInfo, dir: 'in' | 'out', packet: Packet): void {
    const topic = packet.cmd === 'publish' ? packet.topic : undefined
    if (!this.wanted(client.id, topic)) return
    const e: TraceEvent = { at: Date.now(), node: this.node, clientId: client.id, dir, type: packet.cmd }
    const p = packet as Packet & {
      messageId?: number
      qos?: number
      payload?: Buffer | string
      reasonCode?: number
      returnCode?: number
      granted?: Array<number | { qos: number }>
      subscriptions?: Array<{ topic: string }>
      unsubscriptions?: string[]
      clientId?: string
    }
    if (topic !== undefined) e.topic = topic
    if (p.qos !== undefined && packet.cmd === 'publish') e.qos = p.qos
    if (p.messageId !== undefined) e.packetId = p.messageId
    if (p.payload !== undefined && p.payload !== null) e.payloadBytes = typeof p.payload === 'string' ? Buffer.byteLength(p.payload) : p.payload.length
    const code = p.reasonCode ?? p.returnCode
    if (code !== undefined) e.reasonCode = code
    if (p.subscriptions !== undefined) e.filters = p.subscriptions.map((s) => s.topic)
    if (p.unsubscriptions !== undefined) e.filters = [...p.unsubscriptions]
    if (p.granted !== undefined) e.granted = p.granted.map((g) => (typeof g === 'number' ? g : g.qos))
    this.emit(e)
  }

  /** A PUBLISH sent from an encoded message (the delivery path does not build a Packet). */
  delivery(client: ClientInfo, topic: string, qos: number, packetId: number, payloadBytes: number): void {
    if (!this.wanted(client.id, topic)) return
    this.emit({ at: Date.now(), node: this.node, clientId: client.id, dir: 'out', type: 'publish', topic, qos, packetId, payloadBytes })
  }

  /** A hook's decision on `client` (and the topic or filter it decided about). */
  decision(client: ClientInfo | undefined, point: string, hook: string, version: number | undefined, answer: string, ms: number, topic?: string): void {
    const id = client?.id ?? ''
    const published = point === 'authorizePublish' || point === 'transform' ? topic : undefined
    if (!this.wanted(id, published)) return
    const e: TraceEvent = { at: Date.now(), node: this.node, clientId: id, dir: 'hook', type: point, hook, answer, ms: Math.round(ms * 1000) / 1000 }
    if (version !== undefined) e.version = version
    if (topic !== undefined) e.topic = topic
    this.emit(e, published)
  }

  private wanted(clientId: string, topic: string | undefined): boolean {
    for (const w of this.watchers) if (matches(w.filter, clientId, topic)) return true
    return false
  }

  /** `topic`: what a topic filter is matched against (a PUBLISH's topic; none for a SUBSCRIBE's filters) */
  private emit(e: TraceEvent, topic = e.topic): void {
    for (const w of this.watchers) {
      if (!matches(w.filter, e.clientId, topic)) continue
      try {
        w.send(e)
      } catch {
        // a watcher that fails (a closed response) is the watcher's business
      }
    }
  }
}

function matches(f: TraceFilter, clientId: string, topic: string | undefined): boolean {
  return (f.clientId !== undefined && f.clientId === clientId) || (f.topic !== undefined && topic !== undefined && matchesFilter(f.topic, topic))
}
