import assert from 'node:assert/strict'
import { test } from 'node:test'
import * as entry from '../../plugins/index.js'
import * as hookApi from '../../plugins/host/sandbox/hook-api.js'

// What `import ... from 'hookmq'` gives a worker-isolated hook (and what a hooks folder is typed as:
// plugins/hook-types.ts) is a part of the package entry: the same names, the same values.

test("a worker-isolated hook's 'hookmq' is the package entry's own values, identityOf included (the README's session rules name it)", () => {
  const names = Object.keys(hookApi)
  assert.ok(names.includes('defineHook') && names.includes('identityOf'), names.join(', '))
  for (const name of names) assert.equal((entry as Record<string, unknown>)[name], (hookApi as Record<string, unknown>)[name], name)
  assert.equal(hookApi.identityOf({ id: 'c', username: 'alice', remoteAddress: '', protocolVersion: 5, listener: 'tcp' }), 'alice')
})
