// How a thread shows it is alive, for those who watch it: the watchdog of
// inline hooks (watchdog.ts on the broker's thread, watchdog-worker.ts in its
// own) and the broker's memory watch of hook threads (memory-watch.ts, fed by
// hook-worker.ts).

/** a watched thread beats at least this often */
export const BEAT_MS = 50
/** no beat for this long: the thread is in synchronous code */
export const QUIET_MS = 3 * BEAT_MS

/**
 * A blocked thread that grew the process by this much (MiB) is ended without
 * waiting for blockedLoopMs: V8 ends the whole process when one array or Map
 * outgrows its largest table (about 1 GiB). Far above what a top level or a
 * call builds in one go; not hooks.memoryMb, which inline hooks are not held to.
 */
export const BLOCKED_GROWTH_MB = 512

/** Why a blocked thread is ended: the time it was blocked, and what the process grew by meanwhile when that was the trigger. */
export function blockedReason(blockedMs: number, grownMb: number): string {
  return grownMb > 0
    ? `grew the process by ${grownMb} MiB in ${blockedMs} ms of synchronous code (the watchdog ends a blocked thread past ${BLOCKED_GROWTH_MB} MiB)`
    : `blocked the event loop for ${blockedMs} ms`
}
