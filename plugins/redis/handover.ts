import type { Broker, ClaimIdentity, Session } from '../../core/index.js'
import { HookmqError, Router } from '../../core/index.js'
import { busMessageFromJson, CLAIM_IDENTITY_CHANGED, compareIds } from './cluster-redis.js'
import { isGroupFieldOf } from './groups.js'
import type { ClusterNode } from './node.js'
import { willFromJson } from './stores.js'

// Sessions changing node: one taken over from a live node (catchUp) or from a
// dead one (adoptDead). Either way, what the old node had not read of the
// others' streams when it let go is delivered to the sessions from its cursors,
// so that nothing acknowledged elsewhere meanwhile misses them.

/** What the handover needs of the membership running it. */
export interface HandoverHost {
  /** stops reading `node`'s stream and forgets its shared groups */
  forgetPeer(node: string): void
  /** the session of `clientId` no longer lives on this node */
  released(clientId: string): void
}

const READ_COUNT = 1000
/** how long a claim waits for the old node's answer before it takes what is stored */
const CLAIM_WAIT_MS = 3000

export class Handover {
  /** client ids being taken over: what to run when the old node says it let go */
  private readonly claims = new Map<string, (from?: string, cursors?: Record<string, string>) => Promise<void>>()

  constructor(
    private readonly self: ClusterNode,
    private readonly broker: Broker,
    private readonly host: HandoverHost,
  ) {}

  /**
   * Makes `clientId` this node's. When another live node has it, asks that node
   * (on this node's stream) to let go; its answer comes on its stream, and the
   * session is loaded while the reader waits, so what that node publishes after
   * letting go reaches it here.
   */
  async claim(clientId: string, load: () => Promise<void>, identity?: ClaimIdentity): Promise<void> {
    const { redis, me } = this.self
    const seen = identity?.seen?.owner === undefined ? '' : JSON.stringify(identity.seen.owner)
    const owner = identity === undefined ? '' : JSON.stringify(identity.owner)
    const old = await redis.hookmqClaim(this.self.key('owners'), this.self.key('identities'), clientId, me, this.self.key('node', ''), seen, owner)
    if (old === CLAIM_IDENTITY_CHANGED) throw new HookmqError('CLIENT_ID_TAKEN', `client id ${clientId}: another identity's session was opened meanwhile`)
    if (typeof old !== 'string') return load()
    await this.self.reader.follow(old)
    await new Promise<void>((resolve, reject) => {
      let finished = false
      const claims = this.claims
      const finish = (from?: string, cursors?: Record<string, string>): Promise<void> => {
        if (finished) return Promise.resolve()
        finished = true
        clearTimeout(timer)
        if (claims.get(clientId) === finish) claims.delete(clientId)
        // answered (on the reader): first read as far as the old node had, so the reader brings the session nothing it already had
        const p =
          from === undefined
            ? load()
            : this.self.reader
                .readUpTo(cursors!, from)
                .then(load)
                .then(() => this.catchUp(clientId, from, cursors!))
        p.then(resolve, reject)
        return p.catch(() => {})
      }
      const timer = setTimeout(finish, CLAIM_WAIT_MS) // the old node did not answer: take what is stored
      void claims.get(clientId)?.()
      claims.set(clientId, finish)
      this.self.append('t', JSON.stringify({ c: clientId, to: old })).catch(() => finish())
    })
  }

  /** A 't' entry from `node`: if it asks this node to let a session go, do, and answer. */
  takeover(node: string, data: string): Promise<unknown> | undefined {
    const { c, to } = JSON.parse(data) as { c: string; to: string }
    if (to !== this.self.me) return undefined
    this.broker.sessions.release(c) // writes what it must before the answer below, on the same connection
    // with how far this node had read each stream: the new node delivers to the session what lies beyond
    return this.self.append('r', JSON.stringify({ c, to: node, k: this.self.reader.positions() })).catch(() => {})
  }

  /** An 'r' entry from `node`: a session this node claimed is free; the promise settles once it is loaded. */
  released(node: string, data: string): Promise<void> | undefined {
    const { c, to, k } = JSON.parse(data) as { c: string; to: string; k?: Record<string, string> }
    if (to !== this.self.me) return undefined
    return this.claims.get(c)?.(node, k ?? {})
  }

  /** A session just taken over from the live node `from`, which had read each stream up to `theirs`. */
  private async catchUp(clientId: string, from: string, theirs: Record<string, string>): Promise<void> {
    const session = this.broker.sessions.sessions.get(clientId)
    if (session !== undefined && session.subscriptions.size > 0) await this.replayFor([session], from, theirs)
  }

  /**
   * Takes over a dead node: its persistent sessions move here, what it had not
   * read for them is replayed, and the wills of its connected clients are published.
   */
  async adoptDead(dead: string): Promise<void> {
    const { redis, me, log } = this.self
    const broker = this.broker
    const key = this.self.key.bind(this.self)
    log.warn({ node: dead }, 'cluster node is gone; taking its sessions over')
    const cursors = await redis.hgetall(key('node', dead, 'cursors'))
    await this.self.reader.readUpTo(cursors, dead) // what it had read is in its sessions already
    const adopted: Session[] = []
    for (const id of await redis.smembers(key('node', dead, 'owned'))) {
      if ((await redis.hookmqMoveIfOwner(key('owners'), id, dead, me, key('node', ''))) !== 1) continue
      const state = await broker.stores.sessions.load(id)
      const session = state === undefined ? undefined : broker.sessions.adopt(state)
      if (session !== undefined) adopted.push(session)
      else if (state === undefined) this.host.released(id) // a clean session: it ended with its node
    }
    if (adopted.length > 0) await this.replayFor(adopted, dead, cursors)
    await this.publishLeftWills(dead)
    this.host.forgetPeer(dead)
    const m = redis.multi()
    for (const f of await redis.hkeys(key('groups'))) if (isGroupFieldOf(f, dead)) m.hdel(key('groups'), f)
    m.del(
      key('node', dead, 'owned'),
      key('node', dead, 'cursors'),
      key('node', dead, 'wills'),
      key('node', dead, 'since'),
      key('node', dead, 'interest'),
      key('node', dead, 'announces'),
    ).set(key('node', dead, 'adopted'), me, 'EX', 3600)
    await m.exec()
    log.info({ node: dead, sessions: adopted.length }, 'took over the sessions of a dead node')
  }

  /** Publishes the wills of clients that were connected to `node` when it went (sessions adopted here keep theirs). */
  async publishLeftWills(node: string): Promise<void> {
    const { redis } = this.self
    const broker = this.broker
    const wills = await redis.hgetall(this.self.key('node', node, 'wills'))
    for (const [clientId, json] of Object.entries(wills)) {
      const session = broker.sessions.sessions.get(clientId)
      if (session !== undefined && (session.will !== undefined || session.outlet !== null)) continue // its delay runs here now, or it is back
      await broker.sessions.sendWill(clientId, willFromJson(json))
    }
    await redis.del(this.self.key('node', node, 'wills'))
  }

  /**
   * Routes to `sessions` only, as `asNode` would have (its shared-group picks),
   * every message of each stream between `cursors` (where `asNode` stopped) and
   * where this node is (its own stream: its last entry).
   */
  private async replayFor(sessions: Session[], asNode: string, cursors: Record<string, string>): Promise<void> {
    const router = new Router(asNode)
    for (const s of sessions) for (const sub of s.subscriptions.values()) router.add(s, sub)
    for (const [source, from] of Object.entries(cursors)) {
      if (source === asNode) continue
      const to = source === this.self.me ? await this.self.reader.lastEntry(source) : this.self.reader.cursor(source)
      if (to !== undefined && compareIds(from, to) < 0) await this.replay(router, source, from, to)
    }
  }

  private async replay(router: Router, source: string, from: string, to: string): Promise<void> {
    let start = from
    for (;;) {
      const entries = await this.self.redis.xrange(this.self.key('bus', source), '(' + start, to, 'COUNT', READ_COUNT)
      if (entries.length === 0) return
      const pending: unknown[] = []
      for (const [id, fields] of entries) {
        start = id
        if (fields[1] !== 'm') continue
        const message = busMessageFromJson(fields[3]!)
        message.node = source
        const routed = router.route(message, null)
        if (typeof routed !== 'number') pending.push(...routed.writes)
      }
      await Promise.allSettled(pending)
    }
  }
}
