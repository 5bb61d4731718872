import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TestContext } from 'node:test'
import { defer, freePort, until } from './lifecycle.js'

// A real redis-server (plain, one-node Cluster, or a Sentinel), started by the test on a free port.

/**
 * A real redis-server on a free port (AOF, fsync always). `cluster`: a one-node
 * Redis Cluster owning every slot. `sentinelFor`: a Sentinel watching that
 * master as `mymaster` instead.
 */
export async function startRedis(
  t: TestContext,
  mode: { cluster?: boolean; sentinelFor?: number } = {},
): Promise<{ url: string; port: number; stop(): Promise<void>; start(): Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'hookmq-redis-'))
  const port = await freePort()
  let child: import('node:child_process').ChildProcess | undefined
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'yes', '--appendfsync', 'always']
  if (mode.cluster) args.push('--cluster-enabled', 'yes', '--cluster-config-file', join(dir, 'nodes.conf'), '--cluster-announce-ip', '127.0.0.1')
  if (mode.sentinelFor !== undefined) {
    const conf = join(dir, 'sentinel.conf')
    writeFileSync(conf, `port ${port}\nbind 127.0.0.1\ndir ${dir}\nsentinel monitor mymaster 127.0.0.1 ${mode.sentinelFor} 1\n`)
    args.splice(0, args.length, conf, '--sentinel')
  }
  const start = async (): Promise<void> => {
    const proc = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] })
    child = proc
    await new Promise<void>((resolve, reject) => {
      let out = ''
      const timer = setTimeout(() => reject(new Error(`redis-server did not start: ${out}`)), 10000)
      proc.stdout!.on('data', (b: Buffer) => {
        out += b.toString()
        if (out.includes('Ready to accept connections') || out.includes('Sentinel ID is')) {
          clearTimeout(timer)
          resolve()
        }
      })
      proc.on('error', (err) => {
        clearTimeout(timer)
        reject(err)
      })
      proc.on('exit', (code) => {
        clearTimeout(timer)
        reject(new Error(`redis-server exited with ${code}: ${out}`))
      })
    })
  }
  const stop = async (): Promise<void> => {
    const c = child
    child = undefined
    if (!c || c.exitCode !== null) return
    const exited = new Promise((r) => c.once('exit', r))
    c.kill('SIGTERM')
    await exited
  }
  await start()
  defer(t, async () => {
    await stop()
    rmSync(dir, { recursive: true, force: true })
  })
  const cli = (...a: string[]): Promise<string> =>
    new Promise((resolve) => {
      const c = spawn('redis-cli', ['-p', String(port), ...a])
      let out = ''
      c.stdout.on('data', (b: Buffer) => {
        out += b.toString()
      })
      c.once('exit', () => resolve(out))
    })
  if (mode.cluster) {
    await cli('cluster', 'addslotsrange', '0', '16383')
    await until(async () => (await cli('cluster', 'info')).includes('cluster_state:ok'), 10000, 'the cluster to own every slot')
  }
  if (mode.sentinelFor !== undefined) {
    await until(
      async () => (await cli('sentinel', 'get-master-addr-by-name', 'mymaster')).includes(String(mode.sentinelFor)),
      10000,
      'the sentinel to know its master',
    )
  }
  return { url: `redis://127.0.0.1:${port}`, port, stop, start }
}
