// acl.test.ts — what acl.ts decides, checked offline: `hookmq test hooks.example`.
// loadHook loads the hook as the broker does; each answer is the broker's decision.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { loadHook } from 'hookmq/testing'

const config = {
  superusers: ['admin'],
  rules: [
    { user: '*', allow: 'both', topics: ['public/#', 'clients/%c/#'] },
    { user: '*', allow: 'subscribe', topics: ['users/%u/#'] },
    { user: 'alice', deny: 'publish', topics: ['public/announcements'] },
  ],
}

test('acl: allow rules, a deny rule that wins, and a deny when no rule matches', async (t) => {
  const acl = await loadHook(new URL('./acl.ts', import.meta.url), { config })
  t.after(() => acl.close())
  const alice = { id: 'alice-phone', username: 'alice' }
  assert.deepEqual(await acl.authorizePublish({ client: alice, topic: 'public/news', payload: 'hi' }), { result: 'allow' })
  assert.deepEqual(await acl.authorizePublish({ client: alice, topic: 'public/announcements', payload: 'hi' }), {
    result: 'deny',
    reasonCode: 0x87,
    reason: 'publish to public/announcements is denied',
    hook: 'acl', // (the broker's log and audit name the hook that denied)
    hookVersion: 1,
  })
  assert.deepEqual(await acl.authorizePublish({ client: alice, topic: 'private/x', payload: 'hi' }), {
    result: 'deny',
    reasonCode: 0x87,
    reason: 'no rule allows publish to private/x',
    hook: 'acl',
    hookVersion: 1,
  })
  // %c is the client id, %u the user name (users/%u/# may be read, not written)
  assert.deepEqual(await acl.authorizePublish({ client: alice, topic: 'clients/alice-phone/battery' }), { result: 'allow' })
  assert.equal((await acl.authorizePublish({ client: alice, topic: 'clients/bob-phone/battery' })).result, 'deny')
  assert.deepEqual(await acl.authorizeSubscribe({ client: alice, filter: 'users/alice/#' }), { result: 'allow' })
  assert.equal((await acl.authorizePublish({ client: alice, topic: 'users/alice/inbox' })).result, 'deny')
  // superusers may do anything
  assert.deepEqual(await acl.authorizePublish({ client: { id: 'ops', username: 'admin' }, topic: 'private/x' }), { result: 'allow' })
  assert.deepEqual(acl.failures, [])
})

test('acl: a filter is allowed only when an allowed pattern covers all of it; the user attached by auth.ts counts', async (t) => {
  const acl = await loadHook(new URL('./acl.ts', import.meta.url), { config })
  t.after(() => acl.close())
  const bob = { id: 'bob-1', username: 'bob' }
  assert.deepEqual(await acl.authorizeSubscribe({ client: bob, filter: 'public/news/+' }), { result: 'allow' })
  assert.equal((await acl.authorizeSubscribe({ client: bob, filter: '#' })).result, 'deny')
  assert.equal((await acl.authorizeSubscribe({ client: bob, filter: 'clients/+/battery' })).result, 'deny')
  // client.user (what an authenticate hook attached) before the CONNECT user name
  assert.deepEqual(await acl.authorizeSubscribe({ client: { id: 'x', username: 'mallory', user: { name: 'bob' } }, filter: 'users/bob/#' }), {
    result: 'allow',
  })
  // a client id with a wildcard gets nothing from a %c rule
  assert.equal((await acl.authorizeSubscribe({ client: { id: '+' }, filter: 'clients/+/#' })).result, 'deny')
})
