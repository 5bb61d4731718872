#!/usr/bin/env node
// npm run test:one -- test/e2e/qos.test.ts [more files] [node --test flags, e.g. --test-name-pattern=takeover]
//
// Runs some test files without a full build: tsc compiles only what changed
// since the last run (--incremental; its record is dist/.tsbuildinfo), then
// node --test runs the compiled files.
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'

const args = process.argv.slice(2)
const files = args.filter((a) => !a.startsWith('--'))
const flags = args.filter((a) => a.startsWith('--'))
if (files.length === 0) {
  console.error('usage: npm run test:one -- test/<dir>/<name>.test.ts [...] [--test-name-pattern=...]')
  process.exit(2)
}
const tsc = spawnSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.json', '--incremental', '--tsBuildInfoFile', 'dist/.tsbuildinfo'], {
  stdio: 'inherit',
})
if (tsc.status !== 0) process.exit(tsc.status ?? 1)
const compiled = files.map((f) => 'dist/' + f.replace(/\.ts$/, '.js'))
for (const f of compiled) {
  if (!existsSync(f)) {
    console.error(`${f}: not found (is ${f.slice(5).replace(/\.js$/, '.ts')} under test/?)`)
    process.exit(2)
  }
}
const run = spawnSync(process.execPath, ['--test', '--test-timeout=60000', ...flags, ...compiled], { stdio: 'inherit' })
process.exit(run.status ?? 1)
