import type { Registration } from './invoke.js'
import type { BreakerState } from './sandbox/breaker.js'
import type { QuarantineEntry } from './sandbox/quarantine.js'
import type { Role } from './rollout.js'
import type { ShadowReport, ShadowStats } from './shadow.js'

// What the host tells of its hooks: HookStatus for broker.hookStatus(), /hooks
// and /metrics; $SYS values (states and counters, never error text: it can
// hold a connection string).

/** Why a hook file did not load, and where. */
export interface LoadFailure {
  message: string
  file?: string
  line?: number
  column?: number
  at: number
}

/** What the status reads of a loaded hook (the host's Entry). */
export interface StatusEntry extends Pick<Registration, 'name' | 'file' | 'version' | 'loadedAt' | 'isolation' | 'breaker' | 'stats'> {
  readonly key: string
  readonly quarantined: QuarantineEntry | undefined
  readonly worker: { readonly restarts: number; readonly workerState: NonNullable<HookStatus['worker']> } | undefined
  readonly role?: Role
  readonly share?: number
  readonly shadow?: ShadowStats | undefined
}

export interface HookStatus {
  name: string
  file?: string
  /** loaded; failed: its last load failed (a previous version may still serve); tripped: its breaker is open; disabled: turned off (setEnabled), skipped by every pipeline */
  state: 'loaded' | 'failed' | 'tripped' | 'disabled'
  /** version serving now (0 when none) */
  version: number
  loadedAt?: number
  error?: LoadFailure
  isolation?: 'inline' | 'worker'
  breaker?: BreakerState
  /** ms until a tripped hook is tried again */
  retryInMs?: number
  trips?: number
  /** calls answered at once while tripped */
  shortCircuited?: number
  /** this version hung the broker once: it runs in a worker until its file changes */
  quarantined?: { since: number; reason: string; at?: string }
  /** times its worker was replaced (stuck, crashed, over memoryMb) */
  workerRestarts?: number
  /** its worker now: ready, starting (loading), down (replaced, waiting to restart) */
  worker?: 'starting' | 'ready' | 'down' | 'retiring' | 'retired'
  /** a shadow (its comparison with what was enforced) or a canary (the share of client ids it serves): rollout.ts */
  rollout?: ({ mode: 'shadow' } & ShadowReport) | { canary: number }
  calls: number
  denies: number
  errors: number
  timeouts: number
  p99Ms: number
}

export function hookStatus(
  entries: readonly StatusEntry[],
  failures: ReadonlyMap<string, LoadFailure & { name?: string }>,
  disabled: ReadonlySet<string> = new Set(),
): HookStatus[] {
  const out: HookStatus[] = entries.map((e) => {
    const failure = failures.get(e.key)
    const b = e.breaker
    return {
      name: e.name,
      file: e.file,
      state: disabled.has(e.name) ? 'disabled' : failure ? 'failed' : b.state === 'tripped' ? 'tripped' : 'loaded',
      version: e.version,
      loadedAt: e.loadedAt,
      error: failure,
      isolation: e.isolation,
      breaker: b.state,
      retryInMs: b.retryInMs(),
      trips: b.trips,
      shortCircuited: b.shortCircuited,
      ...(e.quarantined ? { quarantined: { since: e.quarantined.since, reason: e.quarantined.reason, at: e.quarantined.at } } : {}),
      ...(e.worker ? { workerRestarts: e.worker.restarts, worker: e.worker.workerState } : {}),
      ...(e.role === 'shadow' && e.shadow ? { rollout: { mode: 'shadow' as const, ...e.shadow.report() } } : {}),
      ...(e.role === 'canary' ? { rollout: { canary: e.share! } } : {}),
      calls: e.stats.calls,
      denies: e.stats.denies,
      errors: e.stats.errors,
      timeouts: e.stats.timeouts,
      p99Ms: e.stats.p99(),
    }
  })
  for (const [key, f] of failures) {
    if (entries.some((e) => e.key === key)) continue
    out.push({
      name: f.name ?? key.replace(/^.*\//, '').replace(/\.[^.]+$/, ''),
      file: f.file ?? key,
      state: f.name !== undefined && disabled.has(f.name) ? 'disabled' : 'failed',
      version: 0,
      error: f,
      calls: 0,
      denies: 0,
      errors: 0,
      timeouts: 0,
      p99Ms: 0,
    })
  }
  return out
}

/** $SYS/broker/hooks/<name>/...: state and counters. */
export function hookSys(status: readonly HookStatus[]): Record<string, string | number> {
  const out: Record<string, string | number> = {}
  for (const s of status) {
    const p = s.rollout !== undefined && 'canary' in s.rollout ? `hooks/${s.name}/canary/` : `hooks/${s.name}/` // (a canary shares its name)
    out[p + 'state'] = s.state
    out[p + 'version'] = s.version
    out[p + 'calls'] = s.calls
    out[p + 'denies'] = s.denies
    out[p + 'errors'] = s.errors
    out[p + 'timeouts'] = s.timeouts
    out[p + 'p99ms'] = Number(s.p99Ms.toFixed(3))
    if (s.isolation) out[p + 'isolation'] = s.isolation
    if (s.breaker) out[p + 'breaker'] = s.breaker
    if (s.quarantined) out[p + 'quarantined'] = 1
    if (s.workerRestarts !== undefined) out[p + 'workerRestarts'] = s.workerRestarts
  }
  return out
}
