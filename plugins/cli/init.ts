import { cpSync, existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { join, relative, resolve } from 'node:path'
import { HOOK_TYPES } from './typecheck.js'

// `hookmq init [DIR]`: a hooks folder typed from the first keystroke with
// nothing installed in it. Its tsconfig.json extends .hookmq/tsconfig.json, a
// copy of the declarations hookmq's build writes for hooks folders
// (dist/hook-types/: hookmq's hook API, hookmq/testing, zod and Node's types,
// each package name mapped to its copy), so an editor, `tsc -p DIR` and
// `hookmq check` read the same types wherever the folder is.

export const INIT_USAGE = `usage: hookmq init [DIR] [--types]
  make DIR (default ./hooks) a typed hooks folder with nothing to install: a tsconfig.json, hookmq's
  declarations in DIR/.hookmq/ (for 'hookmq', 'hookmq/testing', 'zod' and Node), an example hook and
  its test; writes nothing when one of these exists already (and names it)
  --types   write DIR/.hookmq/ alone, again (after an upgrade of hookmq)`

/** the folder's own copy of dist/hook-types */
const TYPES = '.hookmq'

const TSCONFIG = `{
  "extends": "./${TYPES}/tsconfig.json",
  "include": ["**/*.ts", "**/*.mts", "**/*.cts"]
}
`

const EXAMPLE = `// own-topics.ts — an example hook written by \`hookmq init\`: a client may publish
// and subscribe under its own prefix, "clients/<client id>/", and nowhere else.
// Its config is \`hooks["own-topics"]\` in the main config, e.g. { "prefix": "devices/" }.
//
// Edit it or replace it; \`hookmq check\` type-checks and preflights this folder,
// \`hookmq test\` runs its *.test.ts files; \`hookmq --hooks <this folder>\` serves it.
import { defineHook, type ClientInfo } from 'hookmq'
import { z } from 'zod'

export default defineHook({
  name: 'own-topics',
  config: z.object({ prefix: z.string().default('clients/') }),

  authorizePublish({ client, topic }, { config }) {
    return under(ownPrefix(config.prefix, client), topic)
  },

  authorizeSubscribe({ client, filter }, { config }) {
    return under(ownPrefix(config.prefix, client), filter)
  },
})

/** A client id with "/", "+" or "#" would reach other clients' topics: such a client gets no prefix. */
function ownPrefix(prefix: string, client: ClientInfo): string | undefined {
  return client.id === '' || /[/+#]/.test(client.id) ? undefined : prefix + client.id + '/'
}

function under(prefix: string | undefined, topic: string) {
  if (prefix === undefined) return { deny: 'this client id cannot own topics' }
  return topic.startsWith(prefix) ? true : { deny: \`only \${prefix}# is yours\` }
}
`

const EXAMPLE_TEST = `// own-topics.test.ts — run by \`hookmq test\` (node:test). loadHook compiles and
// loads the hook as the broker does; each call answers the broker's decision.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { loadHook } from 'hookmq/testing'

test('a client publishes and subscribes under clients/<its id>/ only', async (t) => {
  const hook = await loadHook(new URL('./own-topics.ts', import.meta.url))
  t.after(() => hook.close())
  const client = { id: 'sensor-1' }
  assert.deepEqual(await hook.authorizePublish({ client, topic: 'clients/sensor-1/temperature', payload: '21.5' }), { result: 'allow' })
  assert.deepEqual(await hook.authorizePublish({ client, topic: 'clients/sensor-2/temperature', payload: '21.5' }), {
    result: 'deny',
    reasonCode: 0x87,
    reason: 'only clients/sensor-1/# is yours',
    hook: 'own-topics',
    hookVersion: 1,
  })
  assert.deepEqual(await hook.authorizeSubscribe({ client, filter: 'clients/sensor-1/#' }), { result: 'allow' })
  assert.equal((await hook.authorizeSubscribe({ client, filter: 'clients/#' })).result, 'deny')
  // a wildcard in a client id does not make it everyone's
  assert.equal((await hook.authorizeSubscribe({ client: { id: '+' }, filter: 'clients/+/#' })).result, 'deny')
})

test('the prefix comes from its config', async (t) => {
  const hook = await loadHook(new URL('./own-topics.ts', import.meta.url), { config: { prefix: 'devices/' } })
  t.after(() => hook.close())
  assert.deepEqual(await hook.authorizePublish({ client: { id: 'd1' }, topic: 'devices/d1/state' }), { result: 'allow' })
  assert.equal((await hook.authorizePublish({ client: { id: 'd1' }, topic: 'clients/d1/state' })).result, 'deny')
})
`

export function init(argv: string[]): number {
  const flags = argv.filter((a) => a.startsWith('-'))
  const dirs = argv.filter((a) => !a.startsWith('-'))
  const unknown = flags.find((f) => f !== '--types')
  if (unknown !== undefined || dirs.length > 1) {
    process.stderr.write(`hookmq init: unexpected argument ${JSON.stringify(unknown ?? dirs[1])} (see hookmq init --help)\n`)
    return 1
  }
  if (!existsSync(join(HOOK_TYPES, 'tsconfig.json'))) {
    process.stderr.write(`hookmq init: ${HOOK_TYPES} is missing: this hookmq was not built completely (npm run build)\n`)
    return 1
  }
  const dir = resolve(dirs[0] ?? './hooks')
  const types = join(dir, TYPES)
  if (flags.includes('--types')) {
    // (a .hookmq/ without its tsconfig.json is not one this command wrote: left alone)
    if (existsSync(types) && !existsSync(join(types, 'tsconfig.json'))) {
      process.stderr.write(`hookmq init: ${types} exists and was not written by hookmq init: nothing written\n`)
      return 1
    }
    rmSync(types, { recursive: true, force: true })
    cpSync(HOOK_TYPES, types, { recursive: true })
    process.stdout.write(`wrote ${types}/\n`)
    return 0
  }
  const files: Record<string, string> = { 'tsconfig.json': TSCONFIG, 'own-topics.ts': EXAMPLE, 'own-topics.test.ts': EXAMPLE_TEST }
  const there = [...Object.keys(files), TYPES].filter((f) => existsSync(join(dir, f)))
  if (there.length > 0) {
    process.stderr.write(`hookmq init: ${dir} already has ${there.join(', ')}: nothing written (hookmq init --types writes ${TYPES}/ alone)\n`)
    return 1
  }
  mkdirSync(dir, { recursive: true })
  cpSync(HOOK_TYPES, types, { recursive: true })
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text)
  const near = relative(process.cwd(), dir)
  const shown = near === '' ? '.' : near.startsWith('..') ? dir : near
  process.stdout.write(
    `wrote ${dir}/
  tsconfig.json        for editors, tsc and hookmq check: 'hookmq' and 'zod' resolve with nothing installed
  ${TYPES}/             the declarations it points to (hookmq init --types ${shown} writes them again)
  own-topics.ts        an example hook
  own-topics.test.ts   its test
next: hookmq check ${shown} && hookmq test ${shown}, then hookmq --hooks ${shown}
`,
  )
  return 0
}
