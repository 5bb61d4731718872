/** The nearest-rank percentile `p` (0..1) of `values`, 0 when there are none. (Hook call durations, webhook latencies.) */
export function percentile(values: ArrayLike<number> | Iterable<number>, p: number): number {
  const sorted = Array.from(values).sort((a, b) => a - b)
  if (sorted.length === 0) return 0
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(sorted.length * p) - 1))]!
}
