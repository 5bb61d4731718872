import assert from 'node:assert/strict'
import { test } from 'node:test'
import { Redis } from 'ioredis'
import { clusterRedis } from '../../plugins/redis/cluster-redis.js'
import { StreamReader } from '../../plugins/redis/streams.js'
import { defer, silent, startRedis, until } from '../helpers.js'

// The cluster's stream reader on a real redis-server, without brokers around it.

test('entries a handover read ahead (readUpTo) are not handled again when the same XREAD batch brings them', async (t) => {
  const redis = await startRedis(t)
  const conn = new Redis(redis.url)
  defer(t, () => conn.quit())
  const key = (...parts: string[]): string => 't:' + parts.join(':')
  // node A's stream holds one entry; node C's three. Both streams are read from their start, in one XREAD
  await conn
    .multi()
    .set(key('node', 'a', 'since'), '0-0')
    .set(key('node', 'c', 'since'), '0-0')
    .sadd(key('nodes'), 'a', 'c')
    .exec()
  await conn.xadd(key('bus', 'a'), '*', 'k', 'x', 'd', 'release')
  const ids: string[] = []
  for (const m of ['m1', 'm2', 'm3']) ids.push((await conn.xadd(key('bus', 'c'), '*', 'k', 'x', 'd', m))!)
  const handled: string[] = []
  const reader: StreamReader = new StreamReader({
    redis: clusterRedis(conn),
    key,
    me: 'b',
    log: silent,
    available: () => true,
    // A's entry stands for a released session: C's stream is read up to m2 before it is loaded
    handle: (node, fields) => {
      handled.push(`${node}:${fields[3]}`)
      return node === 'a' ? reader.readUpTo({ c: ids[1]! }, 'a') : undefined
    },
  })
  await reader.open()
  await reader.follow('a')
  await reader.follow('c')
  reader.run()
  defer(t, () => reader.stop())
  await until(() => handled.includes('c:m3'), 5000, 'every entry')
  assert.deepEqual(handled, ['a:release', 'c:m1', 'c:m2', 'c:m3'])
  assert.equal(reader.cursor('c'), ids[2])
  await until(async () => (await conn.hget(key('node', 'b', 'cursors'), 'c')) === ids[2], 2000, 'the cursor saved')
})
