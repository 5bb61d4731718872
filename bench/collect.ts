import v8 from 'node:v8'
import vm from 'node:vm'

// For the bench's memory figures: a Node broker under test runs a full garbage
// collection when sent SIGUSR2 (brokers.ts collectedRss), so that its RSS
// before and after clients connect counts what they hold, not garbage left
// from start-up. `gc` is exposed for contexts made after the flag is set.

export function collectOnSignal(): void {
  v8.setFlagsFromString('--expose-gc')
  const gc = vm.runInNewContext('gc') as () => void
  process.on('SIGUSR2', () => gc())
}
