import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import mqtt from 'mqtt'

// The hook sandbox's own figures: how long a call stuck in synchronous code
// takes to answer its fallback (its deadline, plus finding the worker stuck).

/** A hooks folder whose worker-isolated hook loops forever on `stuck/#` (deadline `timeoutMs`). */
export function stuckHookFolder(timeoutMs: number): { hooksDir: string; hooks: Record<string, unknown> } {
  const dir = mkdtempSync(join(tmpdir(), 'hookmq-bench-stuck-'))
  writeFileSync(
    join(dir, 'stuck.ts'),
    `import { defineHook } from 'hookmq'
export default defineHook({
  name: 'stuck',
  isolation: 'worker',
  timeoutMs: ${timeoutMs},
  filter: { topics: ['stuck/#'] },
  authorizePublish() { while (true) {} },
})
`,
  )
  return { hooksDir: dir, hooks: { breaker: { maxFailures: 1000 } } }
}

/**
 * `n` QoS 1 publishes to `stuck/x`, one after another: ms from each PUBLISH to
 * its PUBACK (0x87: the deny a stuck decision fails closed to). Each one's
 * worker is terminated and replaced; the next waits for the new worker.
 */
export async function stuckToFallback(port: number, n: number): Promise<{ samples: number[] }> {
  const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { protocolVersion: 5, reconnectPeriod: 0 })
  const samples: number[] = []
  try {
    for (let i = 0; i < n; i++) {
      const t0 = performance.now()
      const code = await new Promise<number>((resolve) => {
        const on = (p: { cmd: string; reasonCode?: number }): void => {
          if (p.cmd !== 'puback') return
          c.off('packetreceive', on)
          resolve(p.reasonCode ?? 0)
        }
        c.on('packetreceive', on)
        c.publish('stuck/x', 'x', { qos: 1 })
      })
      samples.push(performance.now() - t0)
      if (code !== 0x87) throw new Error(`expected 0x87, got ${code}`)
      await new Promise((r) => setTimeout(r, 1000)) // the replacement worker starts
    }
  } finally {
    await c.endAsync(true)
  }
  return { samples }
}
