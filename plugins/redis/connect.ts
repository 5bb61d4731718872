import { createRequire } from 'node:module'
import type * as IORedis from 'ioredis'
import type { Redis, RedisOptions } from 'ioredis'
import type { RedisConfig } from '../config.js'

// One way to open Redis for the broker, the CLI and the tests: a plain URL,
// Sentinel (a master name and sentinel addresses) or Redis Cluster (seed
// nodes), each through ioredis' own support.

function hostPort(url: string): { host: string; port: number } {
  const u = new URL(url)
  return { host: u.hostname, port: Number(u.port || 6379) }
}

/**
 * Opens (lazily: call connect()) the client `config` describes. Cluster clients
 * answer the same commands; the types say Redis so that the stores need not care.
 */
export function openRedis(config: RedisConfig, options: RedisOptions = {}): Redis {
  // loaded when Redis is configured: an in-memory broker does not carry ioredis (~20 MB of RSS)
  const { Cluster, Redis } = createRequire(import.meta.url)('ioredis') as typeof IORedis
  if (config.cluster !== undefined) {
    const first = new URL(config.cluster[0]!)
    const auth = { username: first.username || undefined, password: first.password || undefined }
    return new Cluster(config.cluster.map(hostPort), {
      lazyConnect: true,
      enableAutoPipelining: options.enableAutoPipelining,
      enableOfflineQueue: options.enableOfflineQueue,
      redisOptions: { ...options, ...auth },
    }) as unknown as Redis
  }
  if (config.sentinels !== undefined) {
    const u = new URL(config.url)
    return new Redis({
      ...options,
      sentinels: config.sentinels.map(hostPort),
      name: config.sentinelName,
      username: u.username || undefined,
      password: u.password || undefined,
      db: Number(u.pathname.slice(1) || 0),
      lazyConnect: true,
    })
  }
  return new Redis(config.url, { ...options, lazyConnect: true })
}
