// In a cluster, a CONNECT claims its client id (the node that had it lets go)
// before it opens the session. Another node may claim the id meanwhile: the
// CONNECT here has then lost it and must not open a second live connection.

/** A CONNECT of this node between claiming its client id and opening the session. */
export interface PendingClaim {
  readonly clientId: string
  /** another node asked for the client id meanwhile: it claimed after this one, and has it */
  lost: boolean
}

/** The pending claims of this node, by client id. */
export class PendingClaims {
  private readonly byId = new Map<string, Set<PendingClaim>>()

  add(clientId: string): PendingClaim {
    const claim: PendingClaim = { clientId, lost: false }
    let pending = this.byId.get(clientId)
    if (pending === undefined) this.byId.set(clientId, (pending = new Set()))
    pending.add(claim)
    return claim
  }

  /** `claim` has ended (its session opened, or it gave up) */
  settle(claim: PendingClaim): void {
    const pending = this.byId.get(claim.clientId)
    if (pending !== undefined && pending.delete(claim) && pending.size === 0) this.byId.delete(claim.clientId)
  }

  has(clientId: string): boolean {
    return this.byId.has(clientId)
  }

  /** Another node claimed `clientId`: every CONNECT of it pending here has lost. */
  outclaimed(clientId: string): void {
    const pending = this.byId.get(clientId)
    if (pending !== undefined) for (const claim of pending) claim.lost = true
  }
}
