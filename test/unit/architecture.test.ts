import assert from 'node:assert/strict'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'

// The shape of the code, checked on its sources: core/ has no import cycle
// (type-only imports count: a cycle of types is a cycle of knowledge), does
// not import plugins/, and reads no files (node:fs is for the package entry,
// the CLI and the plugins).

const root = fileURLToPath(new URL('../../../', import.meta.url))

/** Every .ts file under `dir`, relative to the repository. */
function sources(dir: string): string[] {
  const out: string[] = []
  for (const name of readdirSync(join(root, dir))) {
    const path = join(dir, name)
    if (statSync(join(root, path)).isDirectory()) out.push(...sources(path))
    else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) out.push(path)
  }
  return out
}

/** What `file` imports or re-exports, static or dynamic: relative ones as repository paths, packages as written. */
export function importsOf(file: string, text: string): string[] {
  const out: string[] = []
  const specifiers = /(?:^|[;\s])(?:import|export)\s+(?:type\s+)?(?:[\w*${}\s,]+?\s+from\s+)?['"]([^'"]+)['"]|\bimport\(\s*['"]([^'"]+)['"]\s*\)/g
  for (const m of text
    .replace(/\/\*[\s\S]*?\*\//g, '')
    .replace(/\/\/.*$/gm, '')
    .matchAll(specifiers)) {
    const spec = (m[1] ?? m[2])!
    out.push(spec.startsWith('.') ? relative(root, resolve(root, dirname(file), spec.replace(/\.js$/, '.ts'))) : spec)
  }
  return out
}

function graph(files: string[]): Map<string, string[]> {
  const g = new Map<string, string[]>()
  for (const f of files) g.set(f, importsOf(f, readFileSync(join(root, f), 'utf8')))
  return g
}

/**
 * The strongly connected components with more than one file (Tarjan). A file
 * importing itself is not one (plugins/index.ts hands its own namespace to
 * hook files).
 */
function cycles(g: Map<string, string[]>): string[][] {
  let next = 0
  const index = new Map<string, number>()
  const low = new Map<string, number>()
  const stack: string[] = []
  const onStack = new Set<string>()
  const found: string[][] = []
  const visit = (v: string): void => {
    index.set(v, next)
    low.set(v, next++)
    stack.push(v)
    onStack.add(v)
    for (const w of g.get(v) ?? []) {
      if (!g.has(w) || w === v) continue
      if (!index.has(w)) {
        visit(w)
        low.set(v, Math.min(low.get(v)!, low.get(w)!))
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!))
    }
    if (low.get(v) === index.get(v)) {
      const scc: string[] = []
      let w: string
      do {
        w = stack.pop()!
        onStack.delete(w)
        scc.push(w)
      } while (w !== v)
      if (scc.length > 1) found.push(scc.sort())
    }
  }
  for (const v of g.keys()) if (!index.has(v)) visit(v)
  return found
}

test('the import scanner sees static, type-only, re-exported and dynamic imports, not commented ones', () => {
  const text = [
    "import { a } from './a.js'",
    "import type { B } from '../b.js'",
    "export { c } from './c.js'",
    "export * from './d.js'",
    "import './e.js'",
    "const f = await import('./f.js')",
    "import {\n  g,\n  type G,\n} from 'node:fs'",
    "// import { h } from './h.js'",
    "/* import { i } from './i.js' */",
  ].join('\n')
  assert.deepEqual(importsOf('core/x.ts', text), ['core/a.ts', 'b.ts', 'core/c.ts', 'core/d.ts', 'core/e.ts', 'core/f.ts', 'node:fs'])
  assert.deepEqual(
    cycles(
      new Map([
        ['a', ['b']],
        ['b', ['c']],
        ['c', ['a', 'c']],
        ['d', ['a']],
      ]),
    ),
    [['a', 'b', 'c']],
  )
})

test('core/ has no import cycle, type-only imports included', () => {
  const found = cycles(graph(sources('core')))
  assert.deepEqual(found, [], `import cycles in core/:\n${found.map((c) => '  ' + c.join(' <-> ')).join('\n')}`)
})

test('core/ imports nothing from plugins/ and reads no files (node:fs)', () => {
  const bad: string[] = []
  for (const [file, deps] of graph(sources('core'))) {
    for (const d of deps)
      if (d.startsWith('plugins/') || d === 'node:fs' || d === 'fs' || d.startsWith('node:fs/') || d === 'fs/promises') bad.push(`${file} -> ${d}`)
  }
  assert.deepEqual(bad, [])
})

test('plugins/ has no import cycle either', () => {
  const found = cycles(graph(sources('plugins')))
  assert.deepEqual(found, [], `import cycles in plugins/:\n${found.map((c) => '  ' + c.join(' <-> ')).join('\n')}`)
})
