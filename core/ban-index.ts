import { createHash } from 'node:crypto'
import { BlockList, isIP } from 'node:net'
import type { Ban, BanKind } from './ban-store.js'

// Finding the ban a client falls under, cheaply: a Map per name (client id,
// user name) and one BlockList of every banned address and CIDR, asked first;
// only a client it matches is compared with each address ban to name the one.
// node:net's BlockList compares an IPv4-mapped IPv6 address (::ffff:1.2.3.4)
// with IPv4 rules and the other way round.

/** What a ban is matched against: a connecting or connected client. */
export interface BannableClient {
  id: string
  username?: string | undefined
  remoteAddress: string
}

interface ParsedAddress {
  address: string
  type: 'ipv4' | 'ipv6'
  /** undefined: a single address */
  prefix: number | undefined
}

/** The address or CIDR `value` names, or undefined when it names none. */
export function parseAddress(value: string): ParsedAddress | undefined {
  const slash = value.indexOf('/')
  const address = slash < 0 ? value : value.slice(0, slash)
  const version = isIP(address)
  if (version === 0) return undefined
  const type = version === 4 ? 'ipv4' : 'ipv6'
  if (slash < 0) return { address, type, prefix: undefined }
  const bits = value.slice(slash + 1)
  if (!/^\d{1,3}$/.test(bits) || Number(bits) > (version === 4 ? 32 : 128)) return undefined
  return { address, type, prefix: Number(bits) }
}

/** Why `value` is no address ban, or undefined when it is one. */
export function addressProblem(value: string): string | undefined {
  return parseAddress(value) === undefined ? `"${value}" is not an IP address or a CIDR (such as 10.0.0.0/8 or fd00::/8)` : undefined
}

/** The id of the ban of `kind` on `value`: the same on every node, URL-safe. */
export function banId(kind: BanKind, value: string): string {
  return createHash('sha256').update(`${kind}\0${value}`).digest('hex').slice(0, 16)
}

function addTo(list: BlockList, a: ParsedAddress): void {
  if (a.prefix === undefined) list.addAddress(a.address, a.type)
  else list.addSubnet(a.address, a.prefix, a.type)
}

function typeOf(address: string): 'ipv4' | 'ipv6' | undefined {
  const v = isIP(address)
  return v === 4 ? 'ipv4' : v === 6 ? 'ipv6' : undefined
}

/** One BlockList per address ban, made once. */
const single = new WeakMap<Ban, BlockList>()

/** True when `ban` applies to `client` (expiry aside). */
export function banMatches(ban: Ban, client: BannableClient): boolean {
  if (ban.kind === 'clientId') return ban.value === client.id
  if (ban.kind === 'username') return client.username !== undefined && ban.value === client.username
  const type = typeOf(client.remoteAddress)
  if (type === undefined) return false
  let list = single.get(ban)
  if (list === undefined) {
    const parsed = parseAddress(ban.value)
    if (parsed === undefined) return false
    list = new BlockList()
    addTo(list, parsed)
    single.set(ban, list)
  }
  return list.check(client.remoteAddress, type)
}

/** Later expiry wins (none: the latest): when it has expired, so has the other ban on the same name. */
function longer(a: Ban | undefined, b: Ban | undefined): Ban | undefined {
  if (a === undefined) return b
  if (b === undefined) return a
  if (a.expiresAt === undefined) return a
  if (b.expiresAt === undefined) return b
  return a.expiresAt >= b.expiresAt ? a : b
}

/** The bans in force, indexed for match(). */
export class BanIndex {
  private readonly clientIds = new Map<string, Ban>()
  private readonly usernames = new Map<string, Ban>()
  private addresses: Ban[] = []
  private blocked: BlockList | undefined

  /** The bans now on the name `value` of `kind` (client id or user name): at most one per source (run time, config). */
  setName(kind: 'clientId' | 'username', value: string, bans: Array<Ban | undefined>): void {
    const map = kind === 'clientId' ? this.clientIds : this.usernames
    let best: Ban | undefined
    for (const b of bans) best = longer(best, b)
    if (best === undefined) map.delete(value)
    else map.set(value, best)
  }

  /** Every address ban now (an address ban added or removed: the BlockList is made again). */
  setAddresses(bans: Ban[]): void {
    this.addresses = bans
    this.blocked = undefined
    if (bans.length === 0) return
    this.blocked = new BlockList()
    for (const b of bans) addTo(this.blocked, parseAddress(b.value)!)
  }

  /** The ban in force at `now` that `client` falls under, or undefined. */
  match(client: BannableClient, now: number): Ban | undefined {
    if (this.clientIds.size > 0) {
      const b = this.clientIds.get(client.id)
      if (b !== undefined && inForce(b, now)) return b
    }
    if (this.usernames.size > 0 && client.username !== undefined) {
      const b = this.usernames.get(client.username)
      if (b !== undefined && inForce(b, now)) return b
    }
    const blocked = this.blocked
    if (blocked === undefined) return undefined
    const type = typeOf(client.remoteAddress)
    if (type === undefined || !blocked.check(client.remoteAddress, type)) return undefined
    let found: Ban | undefined
    for (const b of this.addresses) if (inForce(b, now) && banMatches(b, client)) found = longer(found, b)
    return found
  }
}

/** Not expired at `now` (the expiry timer may not have run yet). */
function inForce(ban: Ban, now: number): boolean {
  return ban.expiresAt === undefined || ban.expiresAt > now
}
