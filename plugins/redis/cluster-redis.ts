import type { Redis } from 'ioredis'
import type { Message } from '../../core/index.js'
import { messageFromObject, messageToObject, type MessageJson } from './stores.js'

// The cluster's Redis side: the scripts that move a session's ownership
// atomically, and how stream entries are written.

// claim: make ARGV[2] the owner of client ARGV[1]; answers the previous owner when it is another live node
// claim: client ARGV[1] becomes node ARGV[2]'s (KEYS[1]); with an identity
// (ARGV[5], JSON) it is recorded (KEYS[2]) in the same step, unless another
// identity than the one the CONNECT saw (ARGV[4], '' for none) or its own was
// recorded meanwhile: then nothing changes and the answer is -1
const CLAIM = `
if ARGV[5] ~= '' then
  local cur = redis.call('HGET', KEYS[2], ARGV[1])
  if cur and cur ~= ARGV[4] and cur ~= ARGV[5] then return -1 end
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[5])
end
local old = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', ARGV[3] .. ARGV[2] .. ':owned', ARGV[1])
if old and old ~= ARGV[2] then
  redis.call('SREM', ARGV[3] .. old .. ':owned', ARGV[1])
  if redis.call('EXISTS', ARGV[3] .. old) == 1 then return old end
end
return false`

const MOVE_IF_OWNER = `
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('SREM', ARGV[4] .. ARGV[2] .. ':owned', ARGV[1])
redis.call('SADD', ARGV[4] .. ARGV[3] .. ':owned', ARGV[1])
return 1`

// release: node ARGV[2] no longer serves client ARGV[1]; when it was the owner, the client id is nobody's (nor is its identity, KEYS[2])
const RELEASE = `
redis.call('SREM', ARGV[3] .. ARGV[2] .. ':owned', ARGV[1])
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HDEL', KEYS[2], ARGV[1])
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0`

// set owner: the session of client ARGV[1] was opened by identity ARGV[3] on node ARGV[2], recorded (KEYS[2]) while that node still owns it (KEYS[1])
const SET_OWNER = `
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return 1`

/** hookmqClaim's answer when another identity took the client id meanwhile */
export const CLAIM_IDENTITY_CHANGED = -1

export type ClusterRedis = Redis & {
  /** the node that had the client id (to be asked to let it go), null when none, CLAIM_IDENTITY_CHANGED when refused */
  hookmqClaim(
    owners: string,
    identities: string,
    clientId: string,
    node: string,
    nodePrefix: string,
    seen: string,
    owner: string,
  ): Promise<string | number | null>
  hookmqMoveIfOwner(owners: string, clientId: string, from: string, to: string, nodePrefix: string): Promise<number>
  hookmqRelease(owners: string, identities: string, clientId: string, node: string, nodePrefix: string): Promise<number>
  hookmqSetOwner(owners: string, identities: string, clientId: string, node: string, identity: string): Promise<number>
}

/** The client with the cluster's scripts defined (once per client). */
export function clusterRedis(redis: Redis): ClusterRedis {
  const r = redis as ClusterRedis
  if (typeof r.hookmqClaim !== 'function') {
    r.defineCommand('hookmqClaim', { numberOfKeys: 2, lua: CLAIM })
    r.defineCommand('hookmqMoveIfOwner', { numberOfKeys: 1, lua: MOVE_IF_OWNER })
    r.defineCommand('hookmqRelease', { numberOfKeys: 2, lua: RELEASE })
    r.defineCommand('hookmqSetOwner', { numberOfKeys: 2, lua: SET_OWNER })
  }
  return r
}

/** orders two stream ids (`<ms>-<seq>`) */
export function compareIds(a: string, b: string): number {
  const [am, as] = a.split('-').map(Number) as [number, number]
  const [bm, bs] = b.split('-').map(Number) as [number, number]
  return am !== bm ? am - bm : as - bs
}

export function busMessageToJson(m: Message): string {
  const j: MessageJson & { s?: Record<string, string> } = messageToObject(m)
  if (m.shares !== undefined) j.s = m.shares
  return JSON.stringify(j)
}

export function busMessageFromJson(s: string): Message {
  const j = JSON.parse(s) as MessageJson & { s?: Record<string, string> }
  const m = messageFromObject(j)
  if (j.s !== undefined) m.shares = j.s
  return m
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}
