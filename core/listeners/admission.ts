import type { Duplex } from 'node:stream'
import type { Refusals } from '../refusals.js'

// Which sockets the broker takes. limits.maxConnections counts every socket open
// on any listener: connections, and sockets that are not connections yet (a TLS
// socket in its handshake, a WebSocket listener's HTTP socket before its
// upgrade). One more is closed at accept, before it costs anything. Sockets
// still pending after limits.connectTimeoutMs are closed by the broker's sweep.

export interface AdmissionContext {
  /** connections open now */
  connections(): number
  readonly limits: { maxConnections: number; connectTimeoutMs: number }
  readonly refusals: Refusals
}

export class SocketAdmission {
  /** pending sockets and when they were accepted */
  private readonly pending = new Map<Duplex, number>()

  constructor(private readonly ctx: AdmissionContext) {}

  /** Client sockets open on every listener. */
  get open(): number {
    return this.ctx.connections() + this.pending.size
  }

  /** A socket that is not a connection yet: false (and the socket closed) when maxConnections are open. */
  admitPending(socket: Duplex, listener: { name: string }, remoteAddress: string): boolean {
    if (!this.room(socket, listener, remoteAddress)) return false
    this.pending.set(socket, Date.now())
    socket.once('close', () => this.pending.delete(socket))
    return true
  }

  /**
   * A socket becoming a connection: answers when it was accepted, or undefined
   * (and the socket closed) when it is refused. `carrier` is the socket admitted
   * before, if any (the TCP socket under a WebSocket stream or TLS socket).
   */
  admit(socket: Duplex, carrier: Duplex, listener: { name: string }, remoteAddress: string): number | undefined {
    const at = this.take(carrier)
    if (at !== undefined) return at
    return this.room(socket, listener, remoteAddress) ? Date.now() : undefined
  }

  /** Closes the sockets pending for longer than connectTimeoutMs (all of them with `all`). */
  sweep(now: number, all = false): void {
    for (const [socket, at] of this.pending) {
      if (!all && now - at <= this.ctx.limits.connectTimeoutMs) continue
      this.pending.delete(socket)
      socket.destroy()
      if (!all) this.ctx.refusals.note('connectTimeout', { reason: 'no TLS handshake or WebSocket upgrade in time' })
    }
  }

  private room(socket: Duplex, listener: { name: string }, remoteAddress: string): boolean {
    if (this.open < this.ctx.limits.maxConnections) return true
    socket.destroy()
    this.ctx.refusals.note('maxConnections', { remoteAddress, listener: listener.name, reason: `${this.open} sockets open` })
    return false
  }

  /** A TLS socket is found by the TCP socket under it (Node's `_parent`; the TLS idle-socket test fails if that changes). */
  private take(socket: Duplex): number | undefined {
    for (let s: Duplex | null | undefined = socket; s != null; s = (s as Duplex & { _parent?: Duplex | null })._parent) {
      const at = this.pending.get(s)
      if (at !== undefined) {
        this.pending.delete(s)
        return at
      }
    }
    return undefined
  }
}
