// What the watchdog's two sides (watchdog.ts on the broker's thread,
// watchdog-worker.ts in its own) agree on.

/** the broker's thread shows it is alive at least this often */
export const BEAT_MS = 50

/** Why a blocked thread is ended: the time it was blocked, and what the process grew by meanwhile when that was the trigger. */
export function blockedReason(blockedMs: number, grownMb: number): string {
  return grownMb > 0
    ? `grew the process by ${grownMb} MiB in ${blockedMs} ms of synchronous code (more than hooks.memoryMb)`
    : `blocked the event loop for ${blockedMs} ms`
}
