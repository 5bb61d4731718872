import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'

// Hooks that hung the broker's thread, remembered across restarts: a hook file
// whose inline call blocked the event loop is recorded here (by the file and
// the hash of its sources) before the watchdog ends the process; on the
// next start that version runs in worker isolation. A new version of the file
// (another hash) is not quarantined. The record lives in the hooks folder's
// `.hookmq/` (which the loader does not read as hooks).

export interface QuarantineEntry {
  /** sha1 of the sources of the version that hung */
  hash: string
  since: number
  reason: string
  /** file:line:column where it was stuck */
  at?: string
}

export class Quarantine {
  readonly path: string
  private entries: Record<string, QuarantineEntry> = {}

  constructor(readonly dir: string) {
    this.path = join(dir, '.hookmq', 'quarantine.json')
    try {
      if (existsSync(this.path)) this.entries = JSON.parse(readFileSync(this.path, 'utf8')) as Record<string, QuarantineEntry>
    } catch {
      this.entries = {} // unreadable: start afresh
    }
  }

  /** The entry for this version of `file`, if it is quarantined. */
  get(file: string, hash: string): QuarantineEntry | undefined {
    const e = this.entries[this.key(file)]
    return e !== undefined && e.hash === hash ? e : undefined
  }

  /** Records (synchronously: the process is about to end) that this version of `file` hung the broker. */
  add(file: string, entry: QuarantineEntry): void {
    this.entries[this.key(file)] = entry
    this.write()
  }

  /** Forgets `file` (a new version, or it was deleted). */
  clear(file: string): void {
    const key = this.key(file)
    if (!(key in this.entries)) return
    delete this.entries[key]
    this.write()
  }

  private key(file: string): string {
    return relative(this.dir, file)
  }

  private write(): void {
    try {
      mkdirSync(dirname(this.path), { recursive: true })
      const tmp = `${this.path}.${process.pid}.tmp`
      writeFileSync(tmp, JSON.stringify(this.entries, null, 2))
      renameSync(tmp, this.path)
    } catch {
      // a read-only folder: the hook is not quarantined after the restart; the log still names it
    }
  }
}
