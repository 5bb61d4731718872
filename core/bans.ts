import { addressProblem, banId, banMatches, BanIndex, type BannableClient } from './ban-index.js'
import type { Ban, BanChange, BanInput, BanKind, BanStore } from './ban-store.js'
import { HookmqError, ReasonCode } from './errors.js'
import { Flapping, type FlappingRule } from './flapping.js'
import type { Logger } from './logger.js'

// Bans: by client id, user name, or address / CIDR, with an optional expiry.
// Those added at run time live in the BanStore (shared by every node with
// Redis) and are applied here as the store reports them; those of the config
// file (`bans`) are this node's own, replaced as a set by configure(). A
// banned CONNECT is refused with 0x8A before the authenticate hooks run
// (handlers/connect.ts); a new ban closes the live connections it matches.

/** The bans API of a broker (`broker.bans`). */
export interface Bans {
  /** Validates and stores a ban (same kind and value: replaces it); closes the matching live clients on every node. */
  add(input: BanInput): Promise<Ban>
  /** Removes a ban added at run time; false when there was none of that id. A ban from the config file is removed there. */
  remove(id: string): Promise<boolean>
  /** the bans in force (run time and config), oldest first */
  list(): Ban[]
  /** the ban in force that `client` falls under */
  match(client: BannableClient): Ban | undefined
  /** Replaces the bans of the config file (those added at run time stay); the live clients a new one matches are closed. */
  configure(list: readonly ConfiguredBan[]): void
}

/** One entry of the config's `bans`: exactly one of clientId, username, address. */
export interface ConfiguredBan {
  clientId?: string | undefined
  username?: string | undefined
  address?: string | undefined
  reason?: string | undefined
  /** when it lifts: an ISO 8601 time or ms since the epoch */
  expires?: string | number | undefined
}

/** A connection as bans see it (core/connection.ts). */
export interface BanTarget {
  readonly client: BannableClient
  readonly state: { readonly kind: string }
  closeWith(code: number, text?: string): void
}

export interface BanListOptions {
  store: BanStore
  log: Logger
  /** this node's connections */
  live: () => Iterable<BanTarget>
  flapping?: FlappingRule | undefined
}

const KINDS: readonly BanKind[] = ['clientId', 'username', 'address']
/** ids of the config file's bans: never those of the store */
const CONFIG = 'config-'
/** setTimeout's longest delay */
const MAX_DELAY = 0x7fffffff

export class BanList implements Bans {
  private readonly index = new BanIndex()
  private runtime = new Map<string, Ban>()
  private configured = new Map<string, Ban>()
  private readonly flapping: Flapping | undefined
  private timer: NodeJS.Timeout | undefined
  private unwatch: (() => void) | undefined
  /** changes reported while the store is read: applied after */
  private held: BanChange[] | undefined

  constructor(private readonly o: BanListOptions) {
    this.flapping = o.flapping === undefined ? undefined : new Flapping(o.flapping)
  }

  /** Reads the stored bans and follows the store's changes (once the store is reachable: a plugin may open it). */
  async start(): Promise<void> {
    this.unwatch = this.o.store.watch((change) => this.changed(change))
    await this.reload()
  }

  async close(): Promise<void> {
    clearTimeout(this.timer)
    this.unwatch?.()
    this.flapping?.stop()
    await this.o.store.close()
  }

  async add(input: BanInput): Promise<Ban> {
    const ban = makeBan(input, Date.now())
    await this.o.store.add(ban)
    this.put(ban)
    return ban
  }

  async remove(id: string): Promise<boolean> {
    if (this.configured.has(id)) throw new HookmqError('BAN_INVALID', `ban ${id} comes from the config file (bans): remove it there`)
    const stored = await this.o.store.remove(id)
    return this.drop(id) || stored
  }

  list(): Ban[] {
    const now = Date.now()
    return [...this.configured.values(), ...this.runtime.values()].filter((b) => !expired(b, now)).sort((a, b) => a.createdAt - b.createdAt)
  }

  match(client: BannableClient): Ban | undefined {
    return this.index.match(client, Date.now())
  }

  /**
   * The ban that refuses a CONNECT, or undefined: one in force, or one the
   * flapping rule makes now (`counted`: the client chose its id).
   */
  admit(client: BannableClient, counted: boolean): Ban | undefined {
    const now = Date.now()
    const ban = this.index.match(client, now)
    if (ban !== undefined || !counted || this.flapping === undefined || !this.flapping.connected(client.id, now)) return ban
    const rule = this.flapping.rule
    const flapped = makeBan({ kind: 'clientId', value: client.id, reason: 'flapping', expiresAt: now + rule.banSeconds * 1000, by: 'flapping' }, now)
    this.o.log.info({ clientId: client.id, connects: rule.connects, windowSeconds: rule.windowSeconds, banSeconds: rule.banSeconds }, 'client banned: flapping')
    this.put(flapped) // in force here at once; the other nodes when stored
    this.o.store.add(flapped).catch((err: unknown) => this.o.log.warn({ err, clientId: client.id }, 'flapping ban not stored: it applies on this node only'))
    return flapped
  }

  configure(list: readonly ConfiguredBan[]): void {
    const now = Date.now()
    const next = new Map<string, Ban>()
    list.forEach((entry, i) => {
      const kind = KINDS.find((k) => entry[k] !== undefined)
      const expiresAt = typeof entry.expires === 'string' ? Date.parse(entry.expires) : entry.expires
      if (kind === undefined || KINDS.filter((k) => entry[k] !== undefined).length > 1)
        throw new HookmqError('BAN_INVALID', `bans[${i}]: give exactly one of clientId, username or address`)
      if (expiresAt !== undefined && expiresAt <= now) return // lifted already
      const id = CONFIG + banId(kind, entry[kind]!)
      const input = { kind, value: entry[kind]!, reason: entry.reason, expiresAt, by: 'config' }
      const ban = { ...makeBan(input, now, `bans[${i}]: `), id, createdAt: this.configured.get(id)?.createdAt ?? now }
      next.set(id, ban)
    })
    const before = this.configured
    this.configured = next
    this.reindex([...before.values(), ...next.values()])
    for (const [id, ban] of next) if (!before.has(id)) this.kick(ban)
  }

  /** Applies one change another node made (held while the store is being read). */
  private changed(change: BanChange): void {
    if (this.held !== undefined) {
      this.held.push(change)
      return
    }
    if (change.kind === 'reload') void this.reload()
    else if (change.kind === 'removed') this.drop(change.id)
    else {
      const ban = this.checked(change.ban)
      if (ban !== undefined) this.put(ban)
    }
  }

  /** Reads every stored ban again; while the store cannot be read, the bans known so far apply. */
  private async reload(): Promise<void> {
    this.held = []
    let stored: Ban[] | undefined
    try {
      stored = await this.o.store.load()
    } catch (err) {
      this.o.log.warn({ err }, 'bans could not be read: the bans known so far apply')
    }
    const held = this.held
    this.held = undefined
    if (stored !== undefined) {
      const next = new Map<string, Ban>()
      for (const b of stored) {
        const ban = this.checked(b)
        if (ban !== undefined) next.set(ban.id, ban)
      }
      const before = this.runtime
      this.runtime = next
      this.reindex([...before.values(), ...next.values()])
      for (const [id, ban] of next) if (!before.has(id)) this.kick(ban)
    }
    for (const c of held) this.changed(c)
  }

  /** A ban as a store gave it, or undefined (and a warning) when it is none, or has expired. */
  private checked(ban: Ban): Ban | undefined {
    try {
      const now = Date.now()
      if (ban.expiresAt !== undefined && ban.expiresAt <= now) return undefined
      makeBan(ban, 0)
      if (ban.id !== banId(ban.kind, ban.value)) throw new HookmqError('BAN_INVALID', `id ${ban.id} is not the ban's`)
      return ban
    } catch (err) {
      this.o.log.warn({ err, ban }, 'a stored ban is not valid: ignored')
      return undefined
    }
  }

  /** A ban added at run time is in force: indexed, timed, and its live clients closed (once: a store may report this node's own add). */
  private put(ban: Ban): void {
    const had = this.runtime.get(ban.id)
    if (had !== undefined && had.createdAt === ban.createdAt && had.expiresAt === ban.expiresAt && had.reason === ban.reason) return
    this.runtime.set(ban.id, ban)
    this.reindex([ban])
    this.kick(ban)
  }

  private drop(id: string): boolean {
    const ban = this.runtime.get(id)
    if (ban === undefined) return false
    this.runtime.delete(id)
    this.reindex([ban])
    return true
  }

  /** Indexes again the names (and addresses) of `changed`, and times the next expiry. */
  private reindex(changed: Iterable<Ban>): void {
    let addresses = false
    for (const b of changed) {
      if (b.kind === 'address') addresses = true
      else {
        const id = banId(b.kind, b.value)
        this.index.setName(b.kind, b.value, [this.runtime.get(id), this.configured.get(CONFIG + id)])
      }
    }
    if (addresses) this.index.setAddresses([...this.configured.values(), ...this.runtime.values()].filter((b) => b.kind === 'address'))
    this.schedule()
  }

  /** One timer, for the next ban to expire. */
  private schedule(): void {
    clearTimeout(this.timer)
    this.timer = undefined
    let next = Infinity
    for (const m of [this.runtime, this.configured]) for (const b of m.values()) if (b.expiresAt !== undefined && b.expiresAt < next) next = b.expiresAt
    if (next === Infinity) return
    this.timer = setTimeout(() => this.expire(), Math.min(Math.max(next - Date.now(), 0), MAX_DELAY))
    this.timer.unref()
  }

  private expire(): void {
    const now = Date.now()
    const gone: Ban[] = []
    for (const m of [this.runtime, this.configured])
      for (const [id, b] of m)
        if (expired(b, now)) {
          m.delete(id)
          gone.push(b)
        }
    for (const b of gone) this.o.log.info({ ban: b.id, kind: b.kind, value: b.value }, 'ban expired')
    const stored = gone.filter((b) => !b.id.startsWith(CONFIG)).map((b) => b.id)
    if (stored.length > 0) this.o.store.forget(stored)
    this.reindex(gone) // (and times the next)
  }

  /** Closes this node's connections `ban` matches: a connected client with 0x98 (MQTT 5 DISCONNECT has no 0x8A), a connecting one with CONNACK 0x8A. */
  private kick(ban: Ban): void {
    for (const conn of this.o.live()) {
      const state = conn.state.kind
      if (state === 'closing' || state === 'closed' || !banMatches(ban, conn.client)) continue
      if (state === 'connected') {
        this.o.log.info({ clientId: conn.client.id, remoteAddress: conn.client.remoteAddress, ban: ban.id, reason: ban.reason }, 'banned client disconnected')
        conn.closeWith(ReasonCode.AdministrativeAction, 'banned') // [MQTT-3.14.2-1] a DISCONNECT reason code from its table; the will is published
      } else conn.closeWith(ReasonCode.Banned, 'banned')
    }
  }
}

function expired(ban: Ban, now: number): boolean {
  return ban.expiresAt !== undefined && ban.expiresAt <= now
}

/** A ban of `input`, checked (`now` 0: no check of the expiry), or a BAN_INVALID error saying what is wrong. */
function makeBan(input: BanInput, now: number, where = ''): Ban {
  const bad = (why: string): HookmqError => new HookmqError('BAN_INVALID', where + why)
  const { kind, value, reason, expiresAt, by } = (input ?? {}) as Partial<BanInput>
  if (!KINDS.includes(kind!)) throw bad(`ban kind must be clientId, username or address (got ${JSON.stringify(kind) ?? 'nothing'})`)
  if (typeof value !== 'string' || value.length === 0) throw bad(`a ${kind} ban needs a non-empty value`)
  if (value.length > 65535) throw bad(`a ${kind} ban's value is longer than any MQTT string (65,535)`)
  if (kind === 'address') {
    const problem = addressProblem(value)
    if (problem !== undefined) throw bad(problem)
  }
  if (reason !== undefined && typeof reason !== 'string') throw bad('a ban reason must be a string')
  if (by !== undefined && typeof by !== 'string') throw bad("a ban's `by` must be a string")
  if (expiresAt !== undefined && (typeof expiresAt !== 'number' || !Number.isFinite(expiresAt))) throw bad('expiresAt must be a time in ms since the epoch')
  if (expiresAt !== undefined && now > 0 && expiresAt <= now) throw bad(`expiresAt (${new Date(expiresAt).toISOString()}) is not in the future`)
  const ban: Ban = { id: banId(kind!, value), kind: kind!, value, createdAt: now }
  if (reason !== undefined) ban.reason = reason
  if (expiresAt !== undefined) ban.expiresAt = expiresAt
  if (by !== undefined) ban.by = by
  return ban
}
