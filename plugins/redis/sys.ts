import type { SysRecord } from '../../core/index.js'
import type { ClusterNode } from './node.js'

// $SYS across the nodes (core/sys.ts): each node keeps its figures under
// node:<id>:sys, expiring unless renewed; every node reads every live node's,
// and the live node with the smallest id publishes the broker-wide sums. Two
// nodes that both take themselves for it for a moment (one just joined) sum
// the same records (give or take an interval): the value does not flap.

export async function shareSys(self: ClusterNode, record: SysRecord, ttlMs: number): Promise<{ records: SysRecord[]; publisher: boolean }> {
  const { redis, me } = self
  const [, [, ids]] = (await redis
    .multi()
    .set(self.key('node', me, 'sys'), JSON.stringify(record), 'PX', ttlMs)
    .smembers(self.key('nodes'))
    .exec())! as [unknown, [Error | null, string[]]]
  const values = ids.length === 0 ? [] : await redis.mget(ids.map((n) => self.key('node', n, 'sys')))
  const records: SysRecord[] = []
  for (const v of values) {
    if (v === null) continue // a node gone (or not publishing $SYS)
    try {
      records.push(JSON.parse(v) as SysRecord)
    } catch {
      // a record this version cannot read: left out
    }
  }
  let publisher = true
  for (const peer of self.peers) if (peer < me) publisher = false
  return { records, publisher }
}
