import assert from 'node:assert/strict'
import { test } from 'node:test'
import { inCanary, isCanaryFile, roleOf } from '../../plugins/host/rollout.js'

test('a canary share is a stable hash of the client id: the share of ids it claims, the same ids every time, growing with the share', () => {
  const ids = Array.from({ length: 20000 }, (_, i) => `sensor-${i}`)
  const at = (share: number): Set<string> => new Set(ids.filter((id) => inCanary('acl', id, share)))
  const tenth = at(0.1)
  assert.ok(tenth.size > 1800 && tenth.size < 2200, `${tenth.size} of 20000 at 0.1`)
  assert.deepEqual(at(0.1), tenth) // the same answer every time
  const fifth = at(0.2)
  assert.ok(
    [...tenth].every((id) => fifth.has(id)),
    'a client in the canary stays in it as the share grows',
  )
  assert.equal(at(0).size, 0)
  assert.equal(at(1).size, ids.length)
  // another hook's canary picks its own clients
  const other = new Set(ids.filter((id) => inCanary('rate-limit', id, 0.1)))
  const both = [...tenth].filter((id) => other.has(id)).length
  assert.ok(both > 100 && both < 300, `independent: ${both} in both (about 200)`)
})

test('a version is a canary only in a <name>.canary file that declares its share; rollout.canary elsewhere is ignored, said why', () => {
  assert.ok(isCanaryFile('/h/acl.canary.ts') && isCanaryFile('/h/acl.canary.mjs') && !isCanaryFile('/h/acl.ts') && !isCanaryFile('/h/canary.ts'))
  assert.deepEqual(roleOf({ rollout: { canary: 0.2 } }, '/h/acl.canary.ts'), { role: 'canary', share: 0.2 })
  assert.throws(() => roleOf({}, '/h/acl.canary.ts'), /must declare rollout: \{ canary/)
  assert.throws(() => roleOf({ rollout: { mode: 'shadow' } }, '/h/acl.canary.ts'), /must declare/)
  const promoted = roleOf({ rollout: { canary: 0.2 } }, '/h/acl.ts')
  assert.equal(promoted.role, 'serve')
  assert.match(promoted.ignored!, /ignored outside a <name>\.canary\.ts file/)
  assert.deepEqual(roleOf({ rollout: { mode: 'shadow', sample: 0.5 } }, '/h/acl-next.ts'), { role: 'shadow', share: 0 })
  assert.deepEqual(roleOf({ rollout: { canary: 0.3 } }, undefined), { role: 'canary', share: 0.3 }) // an embedded hook has no file to name
})
