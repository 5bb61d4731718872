import type * as Esbuild from 'esbuild'
import { spawn } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { constants } from 'node:os'
import { dirname, join, relative, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { listFolder } from '../host/loader.js'

// `hookmq test [DIR]`: the folder's *.test.ts files run by node:test. Each is
// compiled by esbuild (its relative imports bundled in, packages left to
// Node) into a dot-folder of DIR, removed after the run, so that the packages
// it imports resolve from DIR as they would beside it; its imports of
// 'hookmq', 'hookmq/testing' and 'zod' are this hookmq's own, as a hook's are.
// import.meta.url and __dirname keep naming the .ts file.

export const TEST_USAGE = `usage: hookmq test [DIR] [--test-* options of node --test]
  run the *.test.ts files of DIR (default ./hooks) with node:test, each compiled by esbuild; their
  imports of 'hookmq', 'hookmq/testing' (loadHook) and 'zod' are this hookmq's own; exit 1 when a
  test fails (e.g. hookmq test hooks --test-name-pattern=acl)`

const TEST_FILE = /\.test\.(ts|mts|js|mjs)$/

/** Every test file below `dir` (node_modules and dot-folders skipped, as for hook files). */
export function listTestFiles(dir: string): string[] {
  return listFolder(dir, (path) => TEST_FILE.test(path))
}

/** What a test's imports of the broker's own modules are: this package's files ('zod': where this package finds it). */
function ownModules(): Record<string, string> {
  const own: Record<string, string> = {
    hookmq: new URL('../index.js', import.meta.url).href,
    'hookmq/testing': new URL('../testing.js', import.meta.url).href,
  }
  // (import.meta.resolve is Node >= 20.6; before it, 'zod' resolves from the folder)
  if (typeof import.meta.resolve === 'function') for (const id of ['zod', 'zod/v4']) own[id] = import.meta.resolve(id)
  return own
}

export async function runTests(argv: string[]): Promise<number> {
  const dirs = argv.filter((a) => !a.startsWith('-'))
  const passOn = argv.filter((a) => a.startsWith('--test'))
  const other = argv.find((a) => a.startsWith('-') && !a.startsWith('--test'))
  if (other !== undefined || dirs.length > 1) {
    process.stderr.write(`hookmq test: unexpected argument ${JSON.stringify(other ?? dirs[1])} (see hookmq test --help)\n`)
    return 1
  }
  const dir = resolve(dirs[0] ?? './hooks')
  if (!existsSync(dir)) {
    process.stderr.write(`hookmq test: ${dir}: no such folder\n`)
    return 1
  }
  const files = listTestFiles(dir)
  if (files.length === 0) {
    process.stderr.write(`hookmq test: no *.test.ts file in ${dir}\n`)
    return 1
  }
  const out = mkdtempSync(join(dir, '.hookmq-test-'))
  try {
    const compiled: string[] = []
    for (const file of files) {
      const built = await build(file, join(out, relative(dir, file)).replace(/\.[cm]?[jt]s$/, '.mjs'))
      if (typeof built !== 'string') {
        process.stderr.write(`hookmq test: ${built.where}: ${built.message}\n`)
        return 1
      }
      compiled.push(built)
    }
    return await nodeTest([...passOn, ...compiled])
  } finally {
    rmSync(out, { recursive: true, force: true })
  }
}

/** Compiles one test file to `outfile`; answers it, or where and why it does not compile. */
async function build(file: string, outfile: string): Promise<string | { where: string; message: string }> {
  const esbuild = await import('esbuild')
  const own = ownModules()
  const plugin: Esbuild.Plugin = {
    name: 'hookmq-own',
    setup(b) {
      b.onResolve({ filter: /^(hookmq|hookmq\/testing|zod|zod\/v4)$/ }, (args) => (own[args.path] ? { path: own[args.path], external: true } : undefined))
    },
  }
  mkdirSync(dirname(outfile), { recursive: true })
  try {
    await esbuild.build({
      entryPoints: [file],
      outfile,
      bundle: true,
      format: 'esm',
      platform: 'node',
      target: 'node20',
      sourcemap: 'inline',
      packages: 'external',
      logLevel: 'silent',
      plugins: [plugin],
      define: {
        'import.meta.url': JSON.stringify(pathToFileURL(file).href),
        'import.meta.filename': JSON.stringify(file),
        'import.meta.dirname': JSON.stringify(dirname(file)),
        __filename: JSON.stringify(file),
        __dirname: JSON.stringify(dirname(file)),
      },
    })
  } catch (err) {
    const first = (err as { errors?: Esbuild.Message[] }).errors?.[0]
    if (!first) throw err
    const loc = first.location
    return { where: loc ? `${resolve(loc.file)}:${loc.line}:${loc.column + 1}` : file, message: first.text }
  }
  return outfile
}

/** `node --test` over `args`; answers its exit code. A SIGINT or SIGTERM is passed on and its end awaited, so the compiled files are removed. */
function nodeTest(args: string[]): Promise<number> {
  // (run from a test of node:test itself, NODE_TEST_CONTEXT would make it report to that runner, not print)
  const { NODE_TEST_CONTEXT: _, ...env } = process.env
  const child = spawn(process.execPath, ['--enable-source-maps', '--test', ...args], { stdio: 'inherit', env })
  const pass = (signal: NodeJS.Signals): void => void child.kill(signal)
  process.on('SIGINT', pass)
  process.on('SIGTERM', pass)
  return new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      process.off('SIGINT', pass)
      process.off('SIGTERM', pass)
      resolve(code ?? 128 + (signal !== null ? constants.signals[signal] : 0))
    })
  })
}
