import { existsSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type * as TS from 'typescript'

// `hookmq check`'s type check: the TypeScript compiler API over a hooks folder,
// as an editor sees it (the folder's tsconfig.json, or without one the
// declarations hookmq ships for hooks folders, dist/hook-types/). TypeScript is
// an optional peer dependency: the broker never needs it, and an editor brings
// its own; `check` says so and goes on without it.

/** dist/hook-types/: what a hooks folder is typed against (the build writes it: .ci/hook-types.mjs) */
export const HOOK_TYPES = fileURLToPath(new URL('../../hook-types/', import.meta.url))

export type TypeScript = typeof TS

export interface TypeProblem {
  /** undefined for a problem of the configuration as a whole */
  file: string | undefined
  line: number | undefined
  column: number | undefined
  message: string
}

export interface TypeCheck {
  /** the tsconfig.json read (the folder's own, or hookmq's for hooks folders) */
  config: string
  /** the files the compiler was asked to check */
  files: number
  problems: TypeProblem[]
  ms: number
}

/**
 * The `typescript` package as the hooks folder, the working directory or
 * hookmq's own install resolves it, the first that has one (a project's own
 * TypeScript before one beside hookmq); undefined when none has.
 */
export function findTypescript(dir: string): { ts: TypeScript; path: string } | undefined {
  for (const from of [join(dir, 'noop.js'), join(process.cwd(), 'noop.js'), fileURLToPath(import.meta.url)]) {
    const require = createRequire(from)
    let path: string
    try {
      path = require.resolve('typescript')
    } catch {
      continue
    }
    return { ts: require(path) as TypeScript, path }
  }
  return undefined
}

/** Every error the compiler finds in the TypeScript files of `dir` (never writes a file). */
export function typecheck(ts: TypeScript, dir: string): TypeCheck {
  const started = performance.now()
  const problems: TypeProblem[] = []
  const own = join(dir, 'tsconfig.json')
  const config = existsSync(own) ? own : join(HOOK_TYPES, 'tsconfig.json')
  const host: TS.ParseConfigFileHost = { ...ts.sys, onUnRecoverableConfigFileDiagnostic: (d) => problems.push(problem(ts, d)) }
  const parsed = existsSync(own)
    ? ts.getParsedCommandLineOfConfigFile(own, undefined, host)
    : ts.parseJsonConfigFileContent({ extends: config, include: ['**/*.ts', '**/*.mts', '**/*.cts'] }, ts.sys, dir, undefined, join(dir, 'tsconfig.json'))
  if (parsed === undefined) return { config, files: 0, problems, ms: performance.now() - started }
  // a check writes nothing, whatever the folder's config would emit
  const options: TS.CompilerOptions = { ...parsed.options, noEmit: true, declaration: false, emitDeclarationOnly: false, composite: false, incremental: false }
  const program = ts.createProgram({ rootNames: parsed.fileNames, options, projectReferences: parsed.projectReferences })
  // 18003: no .ts file in the folder (a folder of .js hooks): nothing to check
  const diagnostics = [...parsed.errors.filter((d) => d.code !== 18003), ...ts.getPreEmitDiagnostics(program)]
  for (const d of diagnostics) if (d.category === ts.DiagnosticCategory.Error) problems.push(problem(ts, d))
  return { config, files: parsed.fileNames.length, problems, ms: performance.now() - started }
}

function problem(ts: TypeScript, d: TS.Diagnostic): TypeProblem {
  const message = ts.flattenDiagnosticMessageText(d.messageText, '\n    ')
  if (d.file === undefined || d.start === undefined) return { file: d.file?.fileName, line: undefined, column: undefined, message }
  const { line, character } = d.file.getLineAndCharacterOfPosition(d.start)
  return { file: d.file.fileName, line: line + 1, column: character + 1, message }
}

/**
 * `hookmq check`'s type check of `dir`: says in one line what was checked and
 * how long it took (or why nothing was), and answers the errors by file (a
 * problem of the configuration as a whole under the tsconfig.json's path).
 */
export function checkTypes(dir: string, say: (line: string) => void): Map<string, TypeProblem[]> {
  const byFile = new Map<string, TypeProblem[]>()
  const found = findTypescript(dir)
  if (found === undefined) {
    say(
      'types  not checked: TypeScript is not installed (npm install --save-dev typescript, where the hooks folder or the working directory finds it); compile and preflight still run',
    )
    return byFile
  }
  const r = typecheck(found.ts, dir)
  say(`types  ${r.files} file(s) checked by TypeScript ${found.ts.version} in ${(r.ms / 1000).toFixed(1)} s (${r.config}): ${r.problems.length} error(s)`)
  for (const p of r.problems) {
    const key = p.file ?? r.config
    byFile.set(key, [...(byFile.get(key) ?? []), { ...p, file: key }])
  }
  return byFile
}
