import type * as Esbuild from 'esbuild'
import { createRequire, SourceMap } from 'node:module'
import { dirname, resolve } from 'node:path'

// Compiling and evaluating one hook file. esbuild bundles the file with its
// relative imports into CommonJS; packages stay external and are required at
// run time ('hookmq' and 'zod' from the running broker, others from the hook's
// own folder). The code runs as a plain function (new Function, named by a
// sourceURL), not an ES module or a vm.Script: Node 20 keeps every vm.Script
// alive (about 5 KB per reload here), while a function is collected once the
// host lets go of the old version.

/** new Function puts two lines before the body: `function anonymous(...` and `) {`. */
const LINE_OFFSET = 2

export interface LoadError {
  message: string
  file?: string
  line?: number
  column?: number
}

export class HookLoadError extends Error implements LoadError {
  constructor(message: string, readonly file?: string, readonly line?: number, readonly column?: number) {
    super(message)
  }
}

/** Where a load error points, `file:line:column` (or `file` alone), as every report writes it. */
export function where(e: LoadError, file = ''): string {
  return `${e.file ?? file}${e.line ? `:${e.line}:${e.column ?? 0}` : ''}`
}

/** Any thrown value as a load error of `file` (compile and evaluate throw located ones already). */
export function asLoadError(err: unknown, file: string): HookLoadError {
  return err instanceof HookLoadError ? err : new HookLoadError((err as Error).message, file)
}

export interface Compiled {
  file: string
  code: string
  map: SourceMap | undefined
  /** absolute paths of every source file bundled in (the hook and its helpers) */
  inputs: string[]
}

export async function compile(file: string): Promise<Compiled> {
  const outfile = file.replace(/\.[cm]?[jt]s$/, '') + '.hookmq-out.js'
  // loaded with the first hook file: a broker without hook files does not carry esbuild
  const esbuild = await import('esbuild')
  let result: Esbuild.BuildResult<{ write: false; metafile: true }>
  try {
    result = await esbuild.build({
      entryPoints: [file],
      outfile,
      bundle: true,
      write: false,
      format: 'cjs',
      platform: 'node',
      target: 'node20',
      sourcemap: 'external',
      sourcesContent: false,
      metafile: true,
      logLevel: 'silent',
      packages: 'external',
    })
  } catch (err) {
    const first = (err as { errors?: Esbuild.Message[] }).errors?.[0]
    if (!first) throw err
    const loc = first.location
    throw new HookLoadError(first.text, loc ? resolve(loc.file) : file, loc?.line, loc ? loc.column + 1 : undefined)
  }
  const js = result.outputFiles.find((f) => f.path.endsWith('.js'))!
  const mapFile = result.outputFiles.find((f) => f.path.endsWith('.map'))
  const map = mapFile ? new SourceMap(JSON.parse(mapFile.text) as ConstructorParameters<typeof SourceMap>[0]) : undefined
  const inputs = Object.keys(result.metafile.inputs).map((p) => resolve(p))
  return { file, code: js.text, map, inputs }
}

let evaluations = 0

/** Runs compiled code; returns its default export. Errors carry the original file and line. */
export function evaluate(compiled: Compiled, modules: Record<string, unknown>): unknown {
  const filename = `${compiled.file}#hookmq-${++evaluations}`
  const local = createRequire(compiled.file)
  const require = (id: string): unknown => (Object.hasOwn(modules, id) ? modules[id] : local(id))
  const module = { exports: {} as Record<string, unknown> }
  try {
    // eslint-disable-next-line @typescript-eslint/no-implied-eval
    const fn = new Function('exports', 'require', 'module', '__filename', '__dirname', `${compiled.code}\n//# sourceURL=${filename}`) as
      (e: unknown, r: unknown, m: unknown, f: string, d: string) => void
    fn(module.exports, require, module, compiled.file, dirname(compiled.file))
  } catch (err) {
    throw located(err, compiled)
  }
  return module.exports.default
}

/** Maps an error thrown by hook code to a HookLoadError at the original file and line. */
export function located(err: unknown, compiled: Compiled): HookLoadError {
  const message = err instanceof Error ? err.message : String(err)
  const stack = err instanceof Error ? err.stack ?? '' : ''
  const re = new RegExp(`${escape(compiled.file)}#hookmq-\\d+:(\\d+):(\\d+)`)
  const m = re.exec(stack)
  if (!m || !compiled.map) return new HookLoadError(message, compiled.file)
  const entry = compiled.map.findEntry(Number(m[1]) - 1 - LINE_OFFSET, Number(m[2]) - 1) as { originalSource?: string; originalLine?: number; originalColumn?: number }
  if (entry.originalSource === undefined) return new HookLoadError(message, compiled.file)
  const source = entry.originalSource.startsWith('file://') ? new URL(entry.originalSource).pathname : resolve(dirname(compiled.file), entry.originalSource)
  return new HookLoadError(message, source, (entry.originalLine ?? 0) + 1, (entry.originalColumn ?? 0) + 1)
}

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}
