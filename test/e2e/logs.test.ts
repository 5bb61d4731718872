import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test, type TestContext } from 'node:test'
import { fileURLToPath } from 'node:url'
import { defer } from '../helpers.js'

// What an operator reads in the log: its format (JSON or lines for a human).

const bin = fileURLToPath(new URL('../../../bin/hookmq.js', import.meta.url))

/** `hookmq` started in a folder with `config` as its hookmq.config.json; resolves with its stdout once `until` matches it. */
async function cliOutput(t: TestContext, config: object, until: RegExp): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'hookmq-logs-'))
  defer(t, () => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(join(dir, 'hookmq.config.json'), JSON.stringify(config))
  const child = spawn(process.execPath, [bin], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] })
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  defer(t, async () => {
    child.kill('SIGKILL')
    await exited
  })
  let out = ''
  return new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no match within 10 s: ${out}`)), 10000)
    child.stdout!.on('data', (b: Buffer) => {
      out += b.toString()
      if (until.test(out)) {
        clearTimeout(timer)
        resolve(out)
      }
    })
    child.stderr!.on('data', (b: Buffer) => (out += b.toString()))
    child.once('exit', () => {
      clearTimeout(timer)
      reject(new Error(`hookmq exited: ${out}`))
    })
  })
}

test('log.format pretty: lines for a human with a local date and time, not JSON; auto on a pipe: JSON', async (t) => {
  const pretty = await cliOutput(t, { port: 0, ws: false, log: { format: 'pretty' } }, /listening[\s\S]*url: "mqtt:\/\/127\.0\.0\.1:\d+"/)
  const lines = pretty.split('\n').filter((l) => l.trim() !== '')
  for (const l of lines) assert.throws(() => JSON.parse(l), SyntaxError, `a JSON line: ${l}`)
  assert.match(pretty, /^\[\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3} [+-]\d{4}\] INFO \(hookmq\): listening$/m)
  assert.doesNotMatch(pretty, /"time":|\b1\d{12}\b/) // no epoch milliseconds
  assert.equal(pretty.includes('\u001b['), false) // no colours when stdout is not a terminal
  const json = await cliOutput(t, { port: 0, ws: false }, /"msg":"listening"/)
  const record = JSON.parse(json.split('\n').find((l) => l.includes('"listening"'))!) as { time: number; level: number }
  assert.equal(typeof record.time, 'number')
  assert.equal(record.level, 30)
})
