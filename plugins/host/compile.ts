import type * as Esbuild from 'esbuild'
import { createHash } from 'node:crypto'
import { readFileSync, statSync, type Stats } from 'node:fs'
import { createRequire, SourceMap } from 'node:module'
import { dirname, resolve } from 'node:path'
import { enterHook, guardedProcess, leaveHook } from './sandbox/guard.js'
import { HookmqError } from '../../core/errors.js'
import * as zod from 'zod'

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

/** A hook file that did not load, where (HOOKMQ_ERR_HOOK_LOAD_FAILED). */
export class HookLoadError extends HookmqError implements LoadError {
  constructor(
    message: string,
    readonly file?: string,
    readonly line?: number,
    readonly column?: number,
  ) {
    super('HOOK_LOAD_FAILED', message)
  }
}

/** Where a load error points, `file:line:column` (or `file` alone), as every report writes it. */
export function where(e: { file?: string; line?: number; column?: number }, file = ''): string {
  return `${e.file ?? file}${e.line ? `:${e.line}:${e.column ?? 0}` : ''}`
}

/** Any thrown value as a load error of `file` (compile and evaluate throw located ones already). */
export function asLoadError(err: unknown, file: string): HookLoadError {
  return err instanceof HookLoadError ? err : new HookLoadError((err as Error).message, file)
}

export interface Compiled {
  file: string
  code: string
  /** the source map as esbuild wrote it (what crosses to a worker) */
  mapJson: string | undefined
  map: SourceMap | undefined
  /** absolute paths of every source file bundled in (the hook and its helpers) */
  inputs: string[]
  /** the script URL of its last evaluation in this thread (`file#hookmq-N`: stack frames name it) */
  url?: string
  /** sha1 of the source text of every input: a version's identity (the quarantine's key) */
  sourceHash: string
}

/**
 * What a hook file's imports of the broker resolve to, whatever its folder
 * holds: `hookmq` (the package entry, or in a hook's worker its hook API) and
 * the broker's own zod. compile() keeps them out of the bundle.
 */
export function brokerModules(hookmq: unknown): Record<string, unknown> {
  return { hookmq, zod, 'zod/v4': zod }
}

/** (exactly these names: what else a hook imports is its folder's, as `packages: 'external'` leaves it) */
const EXTERNAL = Object.keys(brokerModules(null))

/** the largest hook file compiled: a hook is code, not data (a symlink to a device or a huge file would be read without end) */
const MAX_SOURCE_BYTES = 8 * 1024 * 1024

export async function compile(file: string): Promise<Compiled> {
  let st: Stats
  try {
    st = statSync(file) // (through a symlink: what would be read)
  } catch (err) {
    throw new HookLoadError(`cannot be read: ${(err as Error).message}`, file)
  }
  // a FIFO blocks the read (and the broker's shutdown) until a writer comes; a device (/dev/zero) never ends
  if (!st.isFile()) throw new HookLoadError('not a regular file (a FIFO, a device, a socket?): not read', file)
  if (st.size > MAX_SOURCE_BYTES) throw new HookLoadError(`${st.size} bytes: a hook file may have at most ${MAX_SOURCE_BYTES} (8 MiB)`, file)
  const outfile = file.replace(/\.[cm]?[jt]s$/, '') + '.hookmq-out.js'
  // loaded with the first hook file: a broker without hook files does not carry esbuild
  const esbuild = await import('esbuild')
  let result: Esbuild.BuildResult<{ write: false; metafile: true }>
  try {
    result = await bundle(esbuild, file, outfile).catch(async (err: Error) => {
      // esbuild's process died (killed, out of memory): every later build would fail until it is started again
      if (!/The service (is no longer running|was stopped)/.test(err.message ?? '')) throw err
      await esbuild.stop()
      return bundle(esbuild, file, outfile)
    })
  } catch (err) {
    const first = (err as { errors?: Esbuild.Message[] }).errors?.[0]
    if (!first) throw err
    const loc = first.location
    throw new HookLoadError(first.text, loc ? resolve(loc.file) : file, loc?.line, loc ? loc.column + 1 : undefined)
  }
  const js = result.outputFiles.find((f) => f.path.endsWith('.js'))!
  const mapFile = result.outputFiles.find((f) => f.path.endsWith('.map'))
  const inputs = Object.keys(result.metafile.inputs).map((p) => resolve(p))
  return withMap({ file, code: js.text, mapJson: mapFile?.text, inputs, sourceHash: hashSources(inputs) })
}

function bundle(esbuild: typeof Esbuild, file: string, outfile: string): Promise<Esbuild.BuildResult<{ write: false; metafile: true }>> {
  return esbuild.build({
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
    // what a hook imports of the broker is the running broker's own (evaluate() hands it over), even where
    // the folder's tsconfig maps 'hookmq' to a source path for the editor (paths are applied before `packages`)
    external: EXTERNAL,
  })
}

/** A compilation received as plain data (in a worker): its source map made usable again. */
export function withMap(c: Omit<Compiled, 'map'>): Compiled {
  return { ...c, map: c.mapJson ? new SourceMap(JSON.parse(c.mapJson) as ConstructorParameters<typeof SourceMap>[0]) : undefined }
}

function hashSources(inputs: string[]): string {
  const h = createHash('sha1')
  for (const f of inputs) {
    try {
      h.update(f).update(readFileSync(f))
    } catch {
      h.update(f) // gone since: the path alone
    }
  }
  return h.digest('hex')
}

let evaluations = 0

/**
 * Runs compiled code; returns its default export. Errors carry the original
 * file and line. `named` learns the script's URL before any of its code runs
 * (the watchdog finds a hook stuck in its top level by it).
 */
export function evaluate(compiled: Compiled, modules: Record<string, unknown>, named?: (url: string) => void): unknown {
  const filename = `${compiled.file}#hookmq-${++evaluations}`
  compiled.url = filename
  named?.(filename)
  const local = createRequire(compiled.file)
  const require = (id: string): unknown => (Object.hasOwn(modules, id) ? modules[id] : id === 'process' || id === 'node:process' ? guardedProcess : local(id))
  const module = { exports: {} as Record<string, unknown> }
  enterHook()
  try {
    // `process` is the hook's own guarded view of it (no exit door)
    const fn = new Function('exports', 'require', 'module', '__filename', '__dirname', 'process', `${compiled.code}\n//# sourceURL=${filename}`) as (
      e: unknown,
      r: unknown,
      m: unknown,
      f: string,
      d: string,
      p: NodeJS.Process,
    ) => void
    fn(module.exports, require, module, compiled.file, dirname(compiled.file), guardedProcess)
  } catch (err) {
    throw located(err, compiled)
  } finally {
    leaveHook()
  }
  return module.exports.default
}

/** Maps an error thrown by hook code to a HookLoadError at the original file and line. */
export function located(err: unknown, compiled: Compiled): HookLoadError {
  const message = err instanceof Error ? err.message : String(err)
  const at = firstFrame(err instanceof Error ? (err.stack ?? '') : '', compiled)
  return new HookLoadError(message, at?.file ?? compiled.file, at?.line, at?.column)
}

export interface SourcePosition {
  file: string
  line: number
  column: number
}

/** The .ts position of the first frame of `stack` in the hook's compiled code. */
export function firstFrame(stack: string, compiled: Compiled): SourcePosition | undefined {
  const m = frameRe(compiled).exec(stack)
  return m ? original(compiled, Number(m[1]), Number(m[2])) : undefined
}

/** `stack` with every frame in the hook's compiled code at its .ts file, line and column. */
export function mapStack(stack: string, compiled: Compiled): string {
  return stack.replace(new RegExp(frameRe(compiled).source, 'g'), (whole, line: string, column: string) => {
    const p = original(compiled, Number(line), Number(column))
    return p ? `${p.file}:${p.line}:${p.column}` : whole
  })
}

/** A position in the code as run (1-based line of the function body, 1-based column) in the hook's own source. */
export function original(compiled: Compiled, line: number, column: number): SourcePosition | undefined {
  if (!compiled.map) return undefined
  const entry = compiled.map.findEntry(line - 1 - LINE_OFFSET, column - 1) as { originalSource?: string; originalLine?: number; originalColumn?: number }
  if (entry.originalSource === undefined) return undefined
  const source = entry.originalSource.startsWith('file://') ? new URL(entry.originalSource).pathname : resolve(dirname(compiled.file), entry.originalSource)
  return { file: source, line: (entry.originalLine ?? 0) + 1, column: (entry.originalColumn ?? 0) + 1 }
}

function frameRe(compiled: Compiled): RegExp {
  return new RegExp(`${escape(compiled.file)}#hookmq-\\d+:(\\d+):(\\d+)`)
}

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}
