import assert from 'node:assert/strict'
import { test } from 'node:test'
import { brokerWide } from '../../core/sys.js'

test('broker-wide $SYS: counts add up, uptime and p99 take the largest, the rest is the first node’s (version, a shared store’s retained count, hook versions and states)', () => {
  const a = {
    version: 'hookmq 1.0.0',
    uptime: 30,
    'clients/connected': 2,
    'clients/total': 3,
    'connections/total': 10,
    'messages/received': 5,
    'subscriptions/count': 4,
    'retained messages/count': 7,
    'hooks/acl/version': 2,
    'hooks/acl/state': 'loaded',
    'hooks/acl/calls': 100,
    'hooks/acl/p99ms': 0.5,
    'webhooks/w/queued': 9,
    'webhooks/w/delivered': 1,
    'cluster/nodes': 2,
  }
  const b = {
    ...a,
    version: 'hookmq 1.0.1',
    uptime: 90,
    'clients/connected': 1,
    'messages/received': 6,
    'hooks/acl/state': 'tripped',
    'hooks/acl/p99ms': 2,
    'only/b': 'x',
  }
  const all = brokerWide([
    { node: 'a', figures: a, peak: 0 },
    { node: 'b', figures: b, peak: 0 },
  ])
  assert.deepEqual(all, {
    version: 'hookmq 1.0.0',
    uptime: 90,
    'clients/connected': 3,
    'clients/total': 6,
    'connections/total': 20,
    'messages/received': 11,
    'subscriptions/count': 8,
    'retained messages/count': 7,
    'hooks/acl/version': 2,
    'hooks/acl/state': 'loaded',
    'hooks/acl/calls': 200,
    'hooks/acl/p99ms': 2,
    'webhooks/w/queued': 9,
    'webhooks/w/delivered': 2,
    'cluster/nodes': 2,
    'only/b': 'x',
  })
})
