// auth.test.ts — who auth.ts lets in, checked offline: `hookmq test hooks.example`.
import assert from 'node:assert/strict'
import { randomBytes, scryptSync } from 'node:crypto'
import { test } from 'node:test'
import { loadHook } from 'hookmq/testing'

/** what `hookmq passwd` prints */
function hash(password: string): string {
  const salt = randomBytes(16)
  return `scrypt:${salt.toString('hex')}:${scryptSync(password, salt, 32).toString('hex')}`
}

const config = { users: { alice: { password: hash('wonderland') } } }

test('auth: the right password lets in and names the user; a wrong one or an unknown user is 0x86', async (t) => {
  const auth = await loadHook(new URL('./auth.ts', import.meta.url), { config })
  t.after(() => auth.close())
  const ok = await auth.authenticate({ clientId: 'alice-phone', username: 'alice', password: 'wonderland' })
  assert.equal(ok.result, 'allow')
  assert.deepEqual(ok.result === 'allow' && ok.user, { name: 'alice' })
  const bad = { result: 'deny', reasonCode: 0x86, reason: 'bad user name or password', hook: 'auth', hookVersion: 1 }
  assert.deepEqual(await auth.authenticate({ username: 'alice', password: 'rabbit' }), bad)
  assert.deepEqual(await auth.authenticate({ username: 'alice' }), bad)
  assert.deepEqual(await auth.authenticate({ username: 'bob', password: 'wonderland' }), bad)
  // a user name that is an Object.prototype key is nobody, not an error
  assert.deepEqual(await auth.authenticate({ username: 'constructor', password: 'x' }), bad)
  assert.deepEqual(auth.failures, [])
})

test('auth: a client without a user name is not its business (pass: the next hook or the default decides)', async (t) => {
  const auth = await loadHook(new URL('./auth.ts', import.meta.url), { config })
  t.after(() => auth.close())
  assert.deepEqual(await auth.authenticate({ clientId: 'anonymous-1' }), { result: 'pass' })
})

test('auth: a stored hash that is not "scrypt:<salt>:<hash>" is refused when the hook loads, naming the key', async () => {
  await assert.rejects(loadHook(new URL('./auth.ts', import.meta.url), { config: { users: { alice: { password: 'wonderland' } } } }), {
    code: 'HOOKMQ_ERR_HOOK_LOAD_FAILED',
    message: /hooks\.auth\.users\.alice\.password: expected "scrypt:<salt hex>:<hash hex>"/,
  })
})
