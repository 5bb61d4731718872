// Hook reload figures: time from saving a hook file to its rule being in force
// (median of 20, through the real watcher), and heap growth over 1,000 reloads
// of one hook (compile + evaluate + validate + swap each time).
// Run: npm run bench:hooks   (needs --expose-gc, which the script passes)
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseConfig } from '../core/config.js'
import { createLogger } from '../core/logger.js'
import { HookHost } from '../plugins/host/host.js'
import { createBroker, hookModules } from '../plugins/index.js'
import { HookFolderLoader } from '../plugins/host/loader.js'

const gc = (globalThis as { gc?: () => void }).gc
if (!gc) throw new Error('run with node --expose-gc')

const hook = (n: number): string => `import { defineHook } from 'hookmq'
import { z } from 'zod'
const limit = ${n}
export default defineHook({
  name: 'acl',
  config: z.object({ prefix: z.string().default('a/') }).default({ prefix: 'a/' }),
  authorizePublish: ({ topic, payload }, { config }) => topic.startsWith(config.prefix) && payload.length < limit ? undefined : { deny: 'v${'${limit}'}' },
})
`

async function saveToEffect(): Promise<number[]> {
  const dir = mkdtempSync(join(tmpdir(), 'hookmq-bench-'))
  const broker = createBroker({ port: 0, ws: false, sys: { enabled: false }, hooksDir: dir, log: { level: 'silent' } })
  await broker.listen()
  const file = join(dir, 'acl.ts')
  const times: number[] = []
  for (let i = 1; i <= 21; i++) {
    const loaded = new Promise<void>((resolve) => {
      const on = (c: { kind: string; version?: number }): void => {
        if (c.kind === 'loaded' && c.version === i) {
          broker.hookHost.events.off('change', on)
          resolve()
        }
      }
      broker.hookHost.events.on('change', on)
    })
    const t0 = performance.now()
    writeFileSync(file, hook(1000 + i))
    await loaded
    if (i > 1) times.push(performance.now() - t0) // the first load warms esbuild up
    await new Promise((r) => setTimeout(r, 100))
  }
  await broker.close()
  rmSync(dir, { recursive: true, force: true })
  return times
}

async function heapGrowth(reloads: number): Promise<{ before: number; after: number; perReloadMs: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'hookmq-bench-'))
  const file = join(dir, 'acl.ts')
  // inline: the heap of this thread is what is measured (a worker-isolated version's heap goes with its thread)
  const hookConfig = parseConfig({ hooks: { isolation: 'inline' } }).hooks
  const host = new HookHost({ log: createLogger('silent'), hookConfig, defaultTimeoutMs: 1000, revokedSubscriptions: 'remove', modules: hookModules })
  const loader = new HookFolderLoader(dir, host, createLogger('silent'))
  for (let i = 0; i < 50; i++) {
    writeFileSync(file, hook(i))
    await loader.load(file)
  } // warm up
  gc!()
  gc!()
  const before = process.memoryUsage().heapUsed
  const t0 = performance.now()
  for (let i = 0; i < reloads; i++) {
    writeFileSync(file, hook(100 + i))
    await loader.load(file)
  }
  const perReloadMs = (performance.now() - t0) / reloads
  await new Promise((r) => setTimeout(r, 50))
  gc!()
  gc!()
  const after = process.memoryUsage().heapUsed
  if (host.status()[0]?.version !== 50 + reloads) throw new Error(`expected version ${50 + reloads}, got ${host.status()[0]?.version}`)
  await host.stop()
  rmSync(dir, { recursive: true, force: true })
  return { before, after, perReloadMs }
}

const times = await saveToEffect()
const sorted = [...times].sort((a, b) => a - b)
const median = (sorted[9]! + sorted[10]!) / 2
console.log(
  `save → rule in force (20 saves through the watcher): median ${median.toFixed(1)} ms, min ${sorted[0]!.toFixed(1)} ms, max ${sorted[19]!.toFixed(1)} ms`,
)
const { before, after, perReloadMs } = await heapGrowth(1000)
const mb = (n: number): string => (n / 1024 / 1024).toFixed(2)
console.log(`1,000 reloads: heap ${mb(before)} MB → ${mb(after)} MB (growth ${mb(after - before)} MB), ${perReloadMs.toFixed(1)} ms per reload`)
