import { spawn } from 'node:child_process'
import { copyFileSync, mkdtempSync, renameSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TestContext } from 'node:test'
import { fileURLToPath } from 'node:url'
import type { Broker } from '../../core/index.js'
import { createBroker, type HookmqBroker, type HookmqOptions } from '../../plugins/index.js'
import { defer, silent } from './lifecycle.js'

// Brokers: in this process (startBroker) or as their own process (brokerProcess), and hook folders written on disk.

/** A broker on free ports (TCP and WebSocket), closed after the test. */
export async function startBroker(t: TestContext, options: HookmqOptions = {}): Promise<HookmqBroker> {
  // (no warm-up: hundreds of brokers start in the suite; test/e2e/warmup.test.ts has it)
  const broker = createBroker({ port: 0, ws: { port: 0, path: '/mqtt' }, logger: silent, warmup: false, ...options })
  await broker.listen()
  defer(t, () => broker.close())
  return broker
}

export function urlOf(broker: Broker, listener = 'tcp'): string {
  const a = broker.addresses.find((l) => l.name === listener)
  if (!a) throw new Error(`no ${listener} listener`)
  return a.url
}

export function portOf(broker: Broker, listener = 'tcp'): number {
  return broker.addresses.find((l) => l.name === listener)!.port
}

/** A temporary hooks folder holding these hooks.example files and a node_modules (this repository's), as a user's folder would. */
export function exampleFolder(t: TestContext, files: string[]): string {
  const dir = hooksFolder(t)
  const root = fileURLToPath(new URL('../../../', import.meta.url))
  for (const f of files) copyFileSync(join(root, 'hooks.example', f), join(dir, f))
  symlinkSync(join(root, 'node_modules'), join(dir, 'node_modules'), 'dir')
  return dir
}

/** A temporary hooks folder, removed after the test. */
export function hooksFolder(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'hookmq-hooks-'))
  defer(t, () => rmSync(dir, { recursive: true, force: true }))
  return dir
}

export interface HookChange {
  key: string
  kind: 'loaded' | 'failed' | 'removed'
  name?: string
  version?: number
  error?: { message: string; file?: string; line?: number; column?: number }
}

/** Resolves with the next change of hook file `file` (a path in the folder). */
export function nextChange(broker: HookmqBroker, file: string, ms = 5000): Promise<HookChange> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      broker.hookHost.events.off('change', on)
      reject(new Error(`no hook change for ${file} within ${ms} ms`))
    }, ms)
    const on = (c: HookChange): void => {
      if (c.key !== file) return
      clearTimeout(timer)
      broker.hookHost.events.off('change', on)
      resolve(c)
    }
    broker.hookHost.events.on('change', on)
  })
}

/** Writes `content` to `file` as an editor's atomic save does (temp file, then rename). */
export function atomicWrite(file: string, content: string): void {
  const tmp = `${file}.${process.pid}.tmp~`
  writeFileSync(tmp, content)
  renameSync(tmp, file)
}

/** Writes a file and waits until the host has (re)loaded or rejected it. */
export async function writeHook(broker: HookmqBroker, file: string, content: string): Promise<HookChange> {
  const change = nextChange(broker, file)
  writeFileSync(file, content)
  return change
}

export async function deleteHook(broker: HookmqBroker, file: string): Promise<HookChange> {
  const change = nextChange(broker, file)
  unlinkSync(file)
  return change
}

/** The broker as its own process (so it can really be killed), started from a config file. */
export async function brokerProcess(t: TestContext, config: object): Promise<{ url: string; kill(): Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'hookmq-proc-'))
  writeFileSync(join(dir, 'hookmq.config.json'), JSON.stringify(config))
  const child = spawn(process.execPath, [fileURLToPath(new URL('../../../bin/hookmq.js', import.meta.url))], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  defer(t, async () => {
    child.kill('SIGKILL')
    await exited
  })
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`broker did not start: ${out}`)), 10000)
    child.stdout!.on('data', (b: Buffer) => {
      out += b.toString()
      const m = /"url":"(mqtt:\/\/[^"]+)"/.exec(out)
      if (m) {
        clearTimeout(timer)
        resolve(m[1]!)
      }
    })
    child.stderr!.on('data', (b: Buffer) => {
      out += b.toString()
    })
    child.once('exit', () => {
      clearTimeout(timer)
      reject(new Error(`broker exited: ${out}`))
    })
  })
  return {
    url,
    kill: async () => {
      child.kill('SIGKILL')
      await exited
    },
  }
}
