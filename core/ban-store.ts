// What a ban is, and where the bans added at run time are kept: in memory by
// default; with Redis, in a hash every node reads (plugins/redis/bans.ts).
// Bans from the config file are each node's own and never stored here.

/** address: an IP (v4 or v6) or a CIDR (10.0.0.0/8, fd00::/8) */
export type BanKind = 'clientId' | 'username' | 'address'

export interface Ban {
  /** the same for the same kind and value on every node (adding it again replaces it) */
  id: string
  kind: BanKind
  value: string
  reason?: string
  /** ms since the epoch */
  createdAt: number
  /** ms since the epoch; never when absent */
  expiresAt?: number
  /** who added it (an operator's name, `config`, `flapping`) */
  by?: string
}

export interface BanInput {
  kind: BanKind
  value: string
  reason?: string
  expiresAt?: number
  by?: string
}

/** A change another node made (`reload`: read everything again, the store was away and changes may have been missed). */
export type BanChange = { kind: 'added'; ban: Ban } | { kind: 'removed'; id: string } | { kind: 'reload' }

export interface BanStore {
  /** every stored ban (a store may leave out, and drop, those expired) */
  load(): Promise<Ban[]>
  /** stores `ban`, replacing the one of its id; the other nodes learn of it */
  add(ban: Ban): Promise<void>
  /** answers whether it was stored; the other nodes learn of it */
  remove(id: string): Promise<boolean>
  /** drops expired bans (every node may ask for the same: nothing is announced) */
  forget(ids: string[]): void
  /** what other nodes change (a store may report this node's own changes too: applying one twice changes nothing); answers the unsubscribe */
  watch(onChange: (change: BanChange) => void): () => void
  close(): Promise<void>
}

/** Bans of one process; brokers sharing one instance share their bans, as with MemoryBus. */
export class MemoryBanStore implements BanStore {
  private readonly bans = new Map<string, Ban>()
  private watchers: Array<(change: BanChange) => void> = []

  async load(): Promise<Ban[]> {
    return [...this.bans.values()]
  }

  async add(ban: Ban): Promise<void> {
    this.bans.set(ban.id, ban)
    this.tell({ kind: 'added', ban })
  }

  async remove(id: string): Promise<boolean> {
    const had = this.bans.delete(id)
    if (had) this.tell({ kind: 'removed', id })
    return had
  }

  forget(ids: string[]): void {
    for (const id of ids) this.bans.delete(id)
  }

  watch(onChange: (change: BanChange) => void): () => void {
    this.watchers = [...this.watchers, onChange]
    return () => {
      this.watchers = this.watchers.filter((w) => w !== onChange)
    }
  }

  async close(): Promise<void> {}

  private tell(change: BanChange): void {
    for (const w of this.watchers) w(change)
  }
}
