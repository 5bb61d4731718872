// Writes what is derived from the zod config schema (run: npm run docs): the
// configuration table in README.md, and docs/hookmq.config.schema.json (the
// JSON Schema of hookmq.config.json, for editors: "$schema" in the file), and
// docs/admin-api.openapi.json.
import { readFileSync, writeFileSync } from 'node:fs'
import { configJsonSchema, configReference } from '../dist/core/config.js'
import { hookmqConfigSchema } from '../dist/plugins/config.js'

const readme = new URL('../README.md', import.meta.url)
const rows = configReference(hookmqConfigSchema).map(
  (r) => `| \`${r.key}\` | ${r.default ? '`' + r.default + '`' : ''} | ${r.description.replace(/\|/g, '\\|')} |`,
)
const table = ['| key | default | meaning |', '| --- | --- | --- |', ...rows].join('\n')
const text = readFileSync(readme, 'utf8')
const start = '<!-- config:start -->'
const end = '<!-- config:end -->'
const a = text.indexOf(start)
const b = text.indexOf(end)
if (a < 0 || b < a) throw new Error('README.md lacks the config markers')
writeFileSync(readme, text.slice(0, a + start.length) + '\n' + table + '\n' + text.slice(b))
writeFileSync(
  new URL('../docs/hookmq.config.schema.json', import.meta.url),
  JSON.stringify({ ...configJsonSchema(hookmqConfigSchema), title: 'hookmq.config.json' }, null, 2) + '\n',
)
// and the admin API's OpenAPI description (served at /admin/openapi.json too)
const { adminApiDescription } = await import('../dist/plugins/http/admin.js')
const { version } = await import('../dist/plugins/version.js')
writeFileSync(new URL('../docs/admin-api.openapi.json', import.meta.url), JSON.stringify(adminApiDescription(version), null, 2) + '\n')
