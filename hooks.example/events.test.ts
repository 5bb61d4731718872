// events.test.ts — what events.ts logs, checked offline: `hookmq test hooks.example`.
// hook.on.<event>(...) runs its handler as the broker would and waits for it; `logs` is its log.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { loadHook } from 'hookmq/testing'

test('events: connects and disconnects are logged with the client id', async (t) => {
  const events = await loadHook(new URL('./events.ts', import.meta.url))
  t.after(() => events.close())
  await events.on.clientConnected({ id: 'alice-phone', username: 'alice' }, { sessionPresent: false })
  await events.on.clientDisconnected({ id: 'alice-phone' }, { reasonCode: 0 })
  // (the broker's own lines about the hook, "hook loaded", are there too)
  const lines = events.logs
    .filter((l) => l.msg?.startsWith('client '))
    .map(({ msg, clientId, user, sessionPresent, reasonCode }) => ({ msg, clientId, user, sessionPresent, reasonCode }))
  assert.deepEqual(lines, [
    { msg: 'client connected', clientId: 'alice-phone', user: 'alice', sessionPresent: false, reasonCode: undefined },
    { msg: 'client disconnected', clientId: 'alice-phone', user: undefined, sessionPresent: undefined, reasonCode: 0 },
  ])
})
