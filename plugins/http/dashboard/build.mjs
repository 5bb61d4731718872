// The dashboard's build (npm run build, after tsc has type-checked it with
// plugins/http/dashboard/tsconfig.json): esbuild bundles app.ts (uPlot
// included: the broker may have no internet) and style.css (uPlot's CSS
// included) next to the compiled HTTP plugin, and copies index.html and the icon.
import { build } from 'esbuild'
import { copyFileSync, mkdirSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const out = join(here, '../../../dist/plugins/http/dashboard')
mkdirSync(out, { recursive: true })
await build({
  entryPoints: [join(here, 'app.ts'), join(here, 'style.css')],
  outdir: out,
  bundle: true,
  minify: true,
  format: 'iife',
  target: ['es2022'],
  legalComments: 'eof',
  logLevel: 'warning',
})
for (const file of ['index.html', 'icon.svg']) copyFileSync(join(here, file), join(out, file))
