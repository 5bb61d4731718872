import { watch, type FSWatcher } from 'chokidar'
import { existsSync, mkdirSync, readdirSync, statSync, type Stats } from 'node:fs'
import { basename, join, relative, resolve } from 'node:path'
import type { Logger } from '../../core/index.js'
import { compile, HookLoadError, located, type Compiled } from './compile.js'
import type { HookHost } from './host.js'
import { preflight } from './sandbox/pool.js'
import type { HookMeta } from './sandbox/protocol.js'

// Watch → compile → preflight (a throwaway worker) → load (inline or a worker of its own). Each file's loads run one
// after another. A change loads at once (leading edge); then, for a quiet
// window, further events only mark the file, and at the window's end it is
// loaded again if it changed since (chokidar swallows a second change of one
// path within 50 ms, so the window is longer and compares mtime, size and
// inode). A deletion takes effect only once the file has stayed away for
// REMOVE_MS: an editor's atomic save may be an unlink followed by an add, a
// burst of such saves leaves the file missing at any given moment, and an
// authorization rule must not vanish (failing open) in between.

const QUIET_MS = 60
const REMOVE_MS = 500

/** A hook file: .ts .mts .js .mjs, not a helper (_x, .x), declaration or test. */
export function isHookFile(path: string): boolean {
  const name = basename(path)
  if (name.startsWith('_') || name.startsWith('.')) return false
  if (/\.d\.[cm]?ts$/.test(name) || /\.test\.[cm]?[jt]s$/.test(name)) return false
  return /\.(ts|mts|js|mjs)$/.test(name)
}

/** Every hook file below `dir` (node_modules and dot-folders skipped). */
export function listHookFiles(dir: string): string[] {
  return listFolder(dir, isHookFile)
}

/** Every file below `dir` that `wanted` takes, sorted (node_modules and dot-folders skipped: what a hooks folder's walk skips). */
export function listFolder(dir: string, wanted: (path: string) => boolean): string[] {
  const out: string[] = []
  for (const name of readdirSync(dir)) {
    if (name === 'node_modules' || name.startsWith('.')) continue
    const path = join(dir, name)
    let folder = false
    try {
      folder = statSync(path).isDirectory()
    } catch {
      // a dangling or looping symlink: not a folder; a hook file of that name fails its load with the reason, anything else is not looked at
    }
    if (folder) out.push(...listFolder(path, wanted))
    else if (wanted(path)) out.push(path)
  }
  return out.sort()
}

/**
 * Compiles one hook file and evaluates it in a throwaway worker (preflight):
 * its shape and its config (`hooks.<name>` of `hookConfig`) are checked there,
 * and a loop, a throw or a process.exit at its top level is refused. What
 * `hookmq check` and the loader share.
 */
export async function preflightFile(
  file: string,
  hookConfig: Record<string, unknown>,
  settings: { preflightMs: number; memoryMb: number },
): Promise<{ meta: HookMeta; compiled: Compiled }> {
  const compiled = await compile(file)
  try {
    return { meta: await preflight(compiled, hookConfig, settings.preflightMs, settings.memoryMb), compiled }
  } catch (err) {
    throw err instanceof HookLoadError ? err : new HookLoadError((err as Error).message, file)
  }
}

export class HookFolderLoader {
  readonly dir: string
  private watcher: FSWatcher | undefined
  private readonly timers = new Map<string, NodeJS.Timeout>()
  private readonly dirty = new Set<string>()
  /** fingerprint of each file when its last load started */
  private readonly prints = new Map<string, string>()
  private readonly chains = new Map<string, Promise<void>>()
  /** hook file → the source files bundled into its loaded version */
  private readonly inputs = new Map<string, string[]>()
  /** hook file → when it was last seen missing with no event since saying it is back */
  private readonly goneSince = new Map<string, number>()
  private readonly removals = new Map<string, NodeJS.Timeout>()
  private stopped = false

  constructor(
    dir: string,
    private readonly host: HookHost,
    private readonly log: Logger,
  ) {
    this.dir = resolve(dir)
  }

  async start(): Promise<void> {
    if (!existsSync(this.dir)) mkdirSync(this.dir, { recursive: true })
    await Promise.all(listHookFiles(this.dir).map((f) => this.load(f)))
    this.watcher = watch(this.dir, {
      ignoreInitial: true,
      ignored: (path: string) => /(^|[/\\])(node_modules|\.[^/\\]+)([/\\]|$)/.test(relative(this.dir, path)),
    })
    this.watcher.on('all', (event, path) => this.changed(resolve(path), event === 'unlink'))
    this.watcher.on('error', (err) => this.log.error({ err }, 'hooks folder watcher error'))
    await new Promise<void>((r) => this.watcher!.once('ready', () => r()))
    this.log.info({ dir: this.dir, hooks: this.host.keys().length }, 'watching hooks folder')
  }

  async stop(): Promise<void> {
    this.stopped = true
    for (const t of this.timers.values()) clearTimeout(t)
    for (const t of this.removals.values()) clearTimeout(t)
    await this.watcher?.close()
    await Promise.all(this.chains.values())
  }

  /** A path changed: reload it if it is a hook, and every hook that bundles it. */
  private changed(path: string, removed = false): void {
    if (isHookFile(path) && path.startsWith(this.dir)) {
      if (!removed) this.goneSince.delete(path) // back (the removal, if it was waiting, finds it here)
      this.schedule(path, removed)
    }
    for (const [hook, inputs] of this.inputs) if (hook !== path && inputs.includes(path)) this.schedule(hook, false)
  }

  private schedule(file: string, removed: boolean): void {
    if (this.timers.has(file) || removed) {
      this.dirty.add(file)
      if (!this.timers.has(file))
        this.timers.set(
          file,
          setTimeout(() => this.settle(file), QUIET_MS),
        )
      return
    }
    void this.load(file)
    this.timers.set(
      file,
      setTimeout(() => this.settle(file), QUIET_MS),
    )
  }

  /** End of a quiet window: load again if anything happened or the file differs from what was loaded. */
  private settle(file: string): void {
    this.timers.delete(file)
    if (this.stopped) return
    const dirty = this.dirty.delete(file)
    void (this.chains.get(file) ?? Promise.resolve()).then(() => {
      if (dirty || fingerprint(file) !== this.prints.get(file)) this.schedule(file, false)
    })
  }

  /** Loads (or unloads, when gone) one file, after any load of it still running; `now`: a file found missing is removed at once (the caller removed it: a promotion), not after REMOVE_MS. */
  load(file: string, now = false): Promise<void> {
    const prev = this.chains.get(file) ?? Promise.resolve()
    const next = prev.then(() => (this.stopped ? undefined : this.loadNow(file, now)))
    this.chains.set(file, next)
    void next.finally(() => {
      if (this.chains.get(file) === next) this.chains.delete(file)
    })
    return next
  }

  private async loadNow(file: string, now = false): Promise<void> {
    if (!existsSync(file)) {
      if (!now && !this.goneForGood(file)) return
      this.goneSince.delete(file)
      this.prints.delete(file)
      this.inputs.delete(file)
      await this.host.remove(file)
      return
    }
    this.goneSince.delete(file)
    // an editor truncates before it writes: an empty file is most often one half-saved (a hook file is never empty)
    if (statSize(file) === 0) await new Promise((r) => setTimeout(r, QUIET_MS))
    this.prints.set(file, fingerprint(file))
    let compiled: Compiled | undefined
    let name: string | undefined
    try {
      const loaded = await preflightFile(file, this.host.options.hookConfig, this.host.settings)
      compiled = loaded.compiled
      name = loaded.meta.name
      this.inputs.set(file, compiled.inputs)
      const holder = this.host.keyOf(name)
      if (holder !== undefined && holder !== file && holder.startsWith(this.dir) && !existsSync(holder)) {
        await this.host.remove(holder) // renamed: the old path's deletion has not settled yet
      }
      await this.host.load(compiled, loaded.meta, file)
    } catch (err) {
      if (!existsSync(file)) return void this.load(file) // gone while it loaded (a save in progress): not a failure; the removal path decides
      const e = err instanceof HookLoadError ? err : compiled ? located(err, compiled) : new HookLoadError((err as Error).message ?? String(err), file)
      if (compiled && !this.inputs.has(file)) this.inputs.set(file, compiled.inputs)
      this.host.failed(file, { message: e.message, file: e.file ?? file, line: e.line, column: e.column }, name)
    }
  }

  /** Whether a missing file has stayed away REMOVE_MS (no event said it came back); if not yet, it is looked at again then. */
  private goneForGood(file: string): boolean {
    const now = performance.now()
    let since = this.goneSince.get(file)
    if (since === undefined) this.goneSince.set(file, (since = now))
    if (now - since >= REMOVE_MS) {
      this.goneSince.delete(file)
      return true
    }
    if (!this.removals.has(file))
      this.removals.set(
        file,
        setTimeout(
          () => {
            this.removals.delete(file)
            if (!this.stopped && !existsSync(file)) void this.load(file) // (back: its add event loaded it)
          },
          REMOVE_MS - (now - since),
        ),
      )
    return false
  }
}

function fingerprint(file: string): string {
  let st: Stats
  try {
    st = statSync(file)
  } catch {
    return 'gone'
  }
  return `${st.ino}:${st.size}:${st.mtimeMs}`
}

function statSize(file: string): number {
  try {
    return statSync(file).size
  } catch {
    return -1
  }
}
