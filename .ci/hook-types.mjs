// Build step (npm run build, after tsc): dist/hook-types/, the declarations a
// hooks folder is typed against without a node_modules of its own. `hookmq init`
// copies it into the folder as .hookmq/; `hookmq check` uses it for a folder
// without a tsconfig.json.
//
// What it holds is what the compiler reads for `import ... from 'hookmq' |
// 'hookmq/testing' | 'zod'` with Node's types: tsc's own declaration output
// (dist/plugins/hook-types.d.ts, dist/plugins/testing.d.ts and what they
// import) and the declaration files of the packages they reach, found by
// compiling a probe that imports them. A tsconfig.json beside them maps each
// package name to its copy (`paths`), so nothing resolves outside the folder.
import { copyFileSync, cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { isBuiltin } from 'node:module'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import ts from 'typescript'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const dist = join(root, 'dist')
const out = join(dist, 'hook-types')

/** what a hook file or its test imports of the broker's own */
const IMPORTS = ['hookmq', 'hookmq/testing', 'zod', 'zod/v4']
const ENTRIES = { hookmq: 'plugins/hook-types.d.ts', 'hookmq/testing': 'plugins/testing.d.ts' }

/** the compiler options of a hooks folder: bundler resolution, as esbuild compiles it */
const OPTIONS = {
  target: 'ES2022',
  module: 'ESNext',
  moduleResolution: 'Bundler',
  lib: ['ES2023'],
  types: ['node'],
  strict: true,
  noEmit: true,
  skipLibCheck: true,
  isolatedModules: true,
  esModuleInterop: true,
  allowImportingTsExtensions: true,
  forceConsistentCasingInFileNames: true,
}

/** a program of one probe file (in `dir`) that imports IMPORTS, with `json` compiler options */
function probeProgram(json, dir) {
  // as a tsconfig.json in `dir` would be read (relative paths from there); 18002: "the files list is empty"
  const { options, errors } = ts.parseJsonConfigFileContent({ compilerOptions: json, files: [] }, ts.sys, dir)
  if (errors.some((e) => e.code !== 18002)) fail(errors)
  const probe = join(dir, '__probe.ts')
  const text = IMPORTS.map((s, i) => `import * as m${i} from '${s}'\nexport { m${i} }\n`).join('')
  const host = ts.createCompilerHost(options)
  const { getSourceFile, fileExists, readFile } = host
  host.getSourceFile = (f, ...rest) => (f === probe ? ts.createSourceFile(f, text, ts.ScriptTarget.ES2022) : getSourceFile.call(host, f, ...rest))
  host.fileExists = (f) => f === probe || fileExists.call(host, f)
  host.readFile = (f) => (f === probe ? text : readFile.call(host, f))
  const program = ts.createProgram([probe], options, host)
  const diagnostics = ts.getPreEmitDiagnostics(program)
  if (diagnostics.length > 0) fail(diagnostics)
  return { program, options, probe, text }
}

function fail(diagnostics) {
  const host = { getCanonicalFileName: (f) => f, getCurrentDirectory: () => root, getNewLine: () => '\n' }
  throw new Error(`hook-types: ${ts.formatDiagnostics(diagnostics, host)}`)
}

/** where a declaration file goes in dist/hook-types */
function location(file) {
  if (file.startsWith(dist + '/')) return 'hookmq/' + relative(dist, file)
  const i = file.lastIndexOf('/node_modules/')
  if (i < 0) throw new Error(`hook-types: ${file} is neither hookmq's nor a package's`)
  return file.slice(i + '/node_modules/'.length)
}

/** the name of the package holding `file` ('hookmq' for hookmq's own) */
function packageName(file) {
  const parts = location(file).split('/')
  return parts[0].startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]
}

/** the folder of the package holding `file` */
function packageRoot(file) {
  return file.slice(0, file.lastIndexOf('/node_modules/') + '/node_modules/'.length) + packageName(file)
}

rmSync(out, { recursive: true, force: true })
const build = probeProgram(
  { ...OPTIONS, typeRoots: [join(root, 'node_modules/@types')], paths: Object.fromEntries(Object.entries(ENTRIES).map(([k, v]) => [k, [join(dist, v)]])) },
  out,
)
// (a package named as a Node module, as 'buffer' is, is found here only because this repository installed it: a
// hooks folder gets Node's own module from @types/node, as intended by what imports it)
const files = build.program
  .getSourceFiles()
  .filter((sf) => sf.fileName !== build.probe && !build.program.isSourceFileDefaultLibrary(sf) && !isBuiltin(packageName(sf.fileName)))
const known = new Map(files.map((sf) => [sf.fileName, location(sf.fileName)]))
const taken = new Map()
for (const [file, to] of known) {
  if (taken.has(to)) throw new Error(`hook-types: ${file} and ${taken.get(to)} would both be ${to} (two versions of one package)`)
  taken.set(to, file)
}

// every package name imported (by the probe or a declaration file) -> its copy
const paths = {}
for (const [file, text] of [[build.probe, build.text], ...files.map((sf) => [sf.fileName, sf.text])]) {
  for (const { fileName: spec } of ts.preProcessFile(text, true, true).importedFiles) {
    if (spec.startsWith('.') || spec.startsWith('/') || isBuiltin(spec)) continue
    const resolved = ts.resolveModuleName(spec, file, build.options, ts.sys).resolvedModule?.resolvedFileName
    if (resolved === undefined || !known.has(resolved)) continue
    const to = './' + known.get(resolved)
    if (paths[spec] !== undefined && paths[spec][0] !== to) throw new Error(`hook-types: "${spec}" is both ${paths[spec][0]} and ${to}`)
    paths[spec] = [to]
  }
}

const licensed = new Set()
for (const [file, to] of known) {
  mkdirSync(dirname(join(out, to)), { recursive: true })
  copyFileSync(file, join(out, to))
  if (to.startsWith('hookmq/')) continue
  const pkg = packageRoot(file)
  if (licensed.has(pkg)) continue
  licensed.add(pkg)
  for (const f of readdirSync(pkg).filter((f) => /^(licen[sc]e|notice)/i.test(f))) copyFileSync(join(pkg, f), join(out, location(join(pkg, f))))
}
const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
writeFileSync(join(out, 'hookmq/package.json'), JSON.stringify({ name: 'hookmq', version, types: './plugins/hook-types.d.ts' }, null, 2) + '\n')
const sorted = Object.fromEntries(Object.entries(paths).sort(([a], [b]) => a.localeCompare(b)))
const config = { compilerOptions: { ...OPTIONS, typeRoots: ['./@types'], paths: sorted } }
writeFileSync(join(out, 'tsconfig.json'), JSON.stringify(config, null, 2) + '\n')

// the copy alone must do, away from this repository's node_modules: compiled again from a copy of it in a
// temporary folder, the probe has no error and reads no file of anywhere else
const away = mkdtempSync(join(tmpdir(), 'hookmq-hook-types-'))
try {
  cpSync(out, away, { recursive: true })
  const check = probeProgram(config.compilerOptions, away)
  const used = check.program.getSourceFiles().filter((sf) => sf.fileName !== check.probe && !check.program.isSourceFileDefaultLibrary(sf))
  const outside = used.filter((sf) => !sf.fileName.startsWith(away + '/'))
  if (outside.length > 0) throw new Error(`hook-types: the copy still reads ${outside.map((sf) => sf.fileName).join(', ')}`)
  if (used.length !== known.size) throw new Error(`hook-types: the copy reads ${used.length} declaration files, ${known.size} were copied`)
} finally {
  rmSync(away, { recursive: true, force: true })
}
console.log(`hook-types: ${known.size} declaration files, ${Object.keys(sorted).length} packages mapped -> ${relative(root, out)}`)
