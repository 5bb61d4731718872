import type { Duplex } from 'node:stream'

// Sockets a listener has accepted that are not MQTT connections yet: a TLS
// socket in its handshake, a WebSocket listener's HTTP socket before its
// upgrade. They count toward limits.maxConnections like connections do, and the
// broker's sweep closes those still pending after limits.connectTimeoutMs.

export class PendingSockets {
  private readonly opened = new Map<Duplex, number>()

  get size(): number {
    return this.opened.size
  }

  add(socket: Duplex): void {
    this.opened.set(socket, Date.now())
    socket.once('close', () => this.opened.delete(socket))
  }

  /**
   * The socket became a connection: no longer pending. Answers when it was
   * accepted (undefined when it never was pending). A TLS socket is found by the
   * TCP socket under it (Node's `_parent`; the TLS test fails if that changes).
   */
  take(socket: Duplex): number | undefined {
    for (let s: Duplex | null | undefined = socket; s != null; s = (s as Duplex & { _parent?: Duplex | null })._parent) {
      const at = this.opened.get(s)
      if (at !== undefined) {
        this.opened.delete(s)
        return at
      }
    }
    return undefined
  }

  /** Destroys the sockets pending for longer than `ms`; answers how many. */
  expire(now: number, ms: number): number {
    let n = 0
    for (const [socket, at] of this.opened) {
      if (now - at <= ms) continue
      this.opened.delete(socket)
      socket.destroy()
      n++
    }
    return n
  }
}
