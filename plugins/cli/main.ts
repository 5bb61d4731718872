import { existsSync, readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { HookmqError, maskCredentials, parseConfigWith } from '../../core/index.js'
import { version } from '../version.js'
import { hookmqConfigSchema, type HookmqConfigInput } from '../config.js'
import { createBroker, hookModules, type HookmqBroker, type HookmqOptions } from '../index.js'
import { listHookFiles, preflightFile } from '../host/loader.js'
import type { HookSettings } from '../host/host.js'
import { HookLoadError, asLoadError, compile, evaluate, where } from '../host/compile.js'
import { ADMIN_COMMANDS, ADMIN_USAGE, adminCommand } from './admin.js'
import { checkTypes, type TypeProblem } from './typecheck.js'
import { init, INIT_USAGE } from './init.js'
import { runTests, TEST_USAGE } from './run-tests.js'
import { replay, REPLAY_USAGE } from './replay.js'
import { roleOf } from '../host/rollout.js'

const CHECK_USAGE = `usage: hookmq check [DIR] [--config FILE]
  type-check the TypeScript files of DIR (default ./hooks) as an editor does (its tsconfig.json, or
  hookmq's declarations for hooks folders; needs the typescript package, skipped without it), then
  compile and preflight every hook file, each in a throwaway worker with a time limit, with its
  config from FILE; prints ok or error file:line:column: message per file, exit 1 on any error`
const WEBHOOKS_USAGE = `usage: hookmq webhooks dead-letters [--replay] [--config FILE] [--redis URL]
  list the dead letters kept in Redis (--replay: queue them again; a running broker sends them)`
const PASSWD_USAGE = `usage: hookmq passwd [--stdin]
  print a password hash for hooks.example/auth.ts ("scrypt:<salt>:<hash>", to put in hooks.auth.users.<name>.password)
  asks twice on the terminal without echoing; --stdin reads one line from standard input instead`

const USAGE = `usage: hookmq [options]
       hookmq init [DIR]    make a typed hooks folder (default ./hooks): tsconfig.json, types, an example hook and its test
       hookmq check [DIR]   type-check, compile and validate a hooks folder (default ./hooks), exit 1 on any error
       hookmq test [DIR]    run the folder's *.test.ts files (node:test, hookmq/testing), exit 1 when one fails
       hookmq replay DIR FILE [--fail-on-diff]   decide recorded decisions (hooks.record) again with a hooks folder
       hookmq webhooks dead-letters [--replay] [--config FILE]   list (or queue again) dead letters in Redis
       hookmq passwd [--stdin]   print a password hash for hooks.example/auth.ts
  a running broker, over its admin API (--url, --token, --json; see each command's --help):
       hookmq clients | client ID | kick ID | ban ... | bans | unban ID
       hookmq sessions | session ID [--delete] | subscriptions TOPIC
       hookmq retained [FILTER] | publish TOPIC [PAYLOAD] | dead-letters [--replay|--purge]
       hookmq hooks [reload|disable|enable NAME] | reload | trace (--client ID | --topic FILTER)
       hookmq COMMAND --help     usage of one command
  --config FILE     config file (.json, .ts, .js or .mjs); default ./hookmq.config.json or .ts if present
  --host ADDR       bind address of the listeners (default 127.0.0.1)
  --port N          MQTT TCP port (default 1883)
  --ws-port N       WebSocket port (default 8083)
  --no-ws           do not open the WebSocket listener
  --http N          open the HTTP endpoint (/health, /live, /metrics, /hooks) on port N
  --hooks DIR       hooks folder (default ./hooks)
  --redis URL       Redis for sessions, retained messages and the webhook outbox (redis://host:port/db)
  --log-level LVL   fatal|error|warn|info|debug|trace|silent
  --help, --version`

export async function main(argv: string[]): Promise<void> {
  const help = {
    init: INIT_USAGE,
    test: TEST_USAGE,
    check: CHECK_USAGE,
    replay: REPLAY_USAGE,
    webhooks: WEBHOOKS_USAGE,
    passwd: PASSWD_USAGE,
    ...ADMIN_USAGE,
  }[argv[0] ?? '']
  if (help !== undefined && (argv.includes('--help') || argv.includes('-h'))) {
    process.stdout.write(help + '\n')
    return
  }
  if (ADMIN_COMMANDS.includes(argv[0] ?? '')) {
    process.exitCode = await adminCommand(argv[0]!, argv.slice(1), async (file) => (await loadConfigFile(file)) as Record<string, unknown>)
    return
  }
  if (argv[0] === 'passwd') {
    process.exitCode = await passwd(argv.slice(1))
    return
  }
  if (argv[0] === 'replay') {
    process.exitCode = await replay(argv.slice(1), loadConfigFile)
    return
  }
  if (argv[0] === 'init' || argv[0] === 'test') {
    process.exitCode = argv[0] === 'init' ? init(argv.slice(1)) : await runTests(argv.slice(1))
    return
  }
  if (argv[0] === 'check') {
    process.exitCode = await check(argv.slice(1))
    return
  }
  if (argv[0] === 'webhooks') {
    process.exitCode = await deadLetters(argv.slice(1))
    return
  }
  let broker: HookmqBroker
  // a SIGINT/SIGTERM during start-up (the warm-up, a hook folder's first load) stops the broker once it is up, gracefully
  let early: string | undefined
  const noteEarly = (signal: string) => (): void => {
    early ??= signal
  }
  const earlyInt = noteEarly('SIGINT')
  const earlyTerm = noteEarly('SIGTERM')
  process.on('SIGINT', earlyInt)
  process.on('SIGTERM', earlyTerm)
  try {
    const config = await resolveConfig(argv)
    if (config === undefined) return
    const { hooks, ...rest } = config
    broker = createBroker({
      ...rest,
      hooks: hooks as Record<string, unknown> | undefined,
      hooksDir: config.hooksDir ?? './hooks',
      configSource: () => configAgain(argv),
    } as HookmqOptions)
    await broker.listen()
  } catch (err) {
    // a mistake in the command line, the config or a hook file names itself; anything else failed starting
    const named = err instanceof HookmqError && SAYS_ITSELF.has(err.code)
    const message = named ? err.message : `start-up failed: ${(err as Error).message}`
    process.stderr.write(`hookmq: ${maskCredentials(message)}\n`)
    process.exit(1) // whatever the half-started broker opened must not keep the process alive
  }
  const rule =
    broker.config.allowAnonymous === undefined
      ? 'anonymous clients allowed on loopback listeners only'
      : broker.config.allowAnonymous
        ? 'anonymous clients allowed (allowAnonymous: true)'
        : 'anonymous clients refused (allowAnonymous: false)'
  broker.log.info({ rule }, 'authentication')
  let stopping = false
  const stop = (signal: string): void => {
    if (stopping) return
    stopping = true
    broker.log.info({ signal }, 'shutting down')
    broker.close().then(
      () => process.exit(0),
      (err: unknown) => {
        broker.log.error({ err }, 'shutdown failed')
        process.exit(1)
      },
    )
  }
  process.off('SIGINT', earlyInt)
  process.off('SIGTERM', earlyTerm)
  process.on('SIGINT', () => stop('SIGINT'))
  process.on('SIGTERM', () => stop('SIGTERM'))
  if (early !== undefined) stop(early)
  // Mosquitto's users send HUP to reload: the config file and the command line are read again and applied
  // (broker.reload: what changes live takes effect at once, the rest is named; an invalid file changes nothing)
  process.on('SIGHUP', () => {
    broker.log.info('SIGHUP: reading the config again')
    // (the broker logs the outcome: what was applied and what needs a restart, or why nothing was)
    broker.reload().catch(() => {})
  })
}

/** The config as at start: the same file and command line, read again. */
async function configAgain(argv: string[]): Promise<HookmqConfigInput> {
  const config = await resolveConfig(argv)
  if (config === undefined) throw usage('no config (--help or --version)') // (not reached: such a command line starts no broker)
  return { ...config, hooksDir: config.hooksDir ?? './hooks' }
}

/** `hookmq passwd [--stdin]`: a scrypt hash as hooks.example/auth.ts reads it; the password is never echoed or printed. */
async function passwd(argv: string[]): Promise<number> {
  const unknown = argv.filter((a) => a !== '--stdin')
  if (unknown.length > 0) {
    process.stderr.write(`hookmq passwd: unknown argument ${JSON.stringify(unknown[0])} (see hookmq passwd --help)\n`)
    return 1
  }
  let password: string
  if (argv.includes('--stdin') || !process.stdin.isTTY) {
    const chunks: Buffer[] = []
    for await (const c of process.stdin) chunks.push(c as Buffer)
    password = Buffer.concat(chunks).toString('utf8').split(/\r?\n/)[0]!
  } else {
    try {
      password = await askHidden('password: ')
      if ((await askHidden('again: ')) !== password) {
        process.stderr.write('hookmq passwd: the two do not match\n')
        return 1
      }
    } catch {
      return 130 // Ctrl-C
    }
  }
  if (password.length === 0) {
    process.stderr.write('hookmq passwd: empty password\n')
    return 1
  }
  const { randomBytes, scryptSync } = await import('node:crypto')
  const salt = randomBytes(16)
  process.stdout.write(`scrypt:${salt.toString('hex')}:${scryptSync(password, salt, 32).toString('hex')}\n`)
  return 0
}

/** One line from the terminal, not echoed (raw mode: backspace edits, Ctrl-C gives up). */
function askHidden(prompt: string): Promise<string> {
  const stdin = process.stdin
  process.stderr.write(prompt)
  stdin.setRawMode(true)
  stdin.resume()
  let typed = ''
  return new Promise((resolve, reject) => {
    const finish = (): void => {
      stdin.off('data', onData)
      stdin.setRawMode(false)
      stdin.pause()
      process.stderr.write('\n')
    }
    const onData = (buf: Buffer): void => {
      for (const ch of buf.toString('utf8')) {
        if (ch === '\r' || ch === '\n') {
          finish()
          return resolve(typed)
        }
        if (ch === '\u0003') {
          finish()
          return reject(new Error('interrupted'))
        }
        typed = ch === '\u007f' || ch === '\b' ? typed.slice(0, -1) : typed + ch
      }
    }
    stdin.on('data', onData)
  })
}

/** Config file, then CLI flags over it; validated by the one schema. Undefined for --help/--version. */
export async function resolveConfig(argv: string[]): Promise<HookmqConfigInput | undefined> {
  let parsed
  try {
    parsed = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        config: { type: 'string' },
        host: { type: 'string' },
        port: { type: 'string' },
        'ws-port': { type: 'string' },
        'no-ws': { type: 'boolean' },
        http: { type: 'string' },
        hooks: { type: 'string' },
        redis: { type: 'string' },
        'log-level': { type: 'string' },
        help: { type: 'boolean' },
        version: { type: 'boolean' },
      },
    })
  } catch (err) {
    throw usage(`${(err as Error).message.split('\n')[0]} (see --help)`)
  }
  const flags = parsed.values
  if (flags.help) {
    process.stdout.write(USAGE + '\n')
    return undefined
  }
  if (flags.version) {
    process.stdout.write(version + '\n')
    return undefined
  }
  const config = (await loadConfigFile(flags.config)) as Record<string, unknown>
  if (flags.host !== undefined) config.host = flags.host
  if (flags.port !== undefined) config.port = toPort('--port', flags.port)
  if (flags['ws-port'] !== undefined) config.ws = { ...(typeof config.ws === 'object' ? config.ws : {}), port: toPort('--ws-port', flags['ws-port']) }
  if (flags['no-ws']) config.ws = false
  if (flags.http !== undefined) config.http = { ...(typeof config.http === 'object' ? config.http : {}), port: toPort('--http', flags.http) }
  if (flags.hooks !== undefined) config.hooksDir = flags.hooks
  if (flags.redis !== undefined) config.redis = { ...(typeof config.redis === 'object' ? config.redis : {}), url: flags.redis }
  if (flags['log-level'] !== undefined) config.log = { ...(typeof config.log === 'object' ? config.log : {}), level: flags['log-level'] }
  parseConfigWith(hookmqConfigSchema, config) // fail here, before anything starts
  return config as HookmqConfigInput
}

function toPort(flag: string, value: string): number {
  const n = Number(value)
  if (!/^\d+$/.test(value) || n > 65535) throw usage(`${flag} ${JSON.stringify(value)}: expected a port number 0..65535`)
  return n
}

const SAYS_ITSELF = new Set<string>(['HOOKMQ_ERR_USAGE', 'HOOKMQ_ERR_CONFIG_INVALID', 'HOOKMQ_ERR_HOOK_LOAD_FAILED'])

/** Looked for in the working directory, in this order, without --config. */
const CONFIG_FILES = ['hookmq.config.json', 'hookmq.config.ts', 'hookmq.config.mjs', 'hookmq.config.js']

async function loadConfigFile(file: string | undefined): Promise<object> {
  const path = file !== undefined ? resolve(file) : CONFIG_FILES.map((f) => resolve(f)).find((p) => existsSync(p))
  if (path === undefined) return {}
  if (!existsSync(path)) throw usage(`--config ${file}: no such file`)
  if (/\.[cm]?ts$/.test(path)) {
    // TypeScript, through defineConfig: compiled by esbuild like a hook file ('hookmq' and 'zod' resolve to the broker's own)
    try {
      return { ...((evaluate(await compile(path), hookModules) as object | undefined) ?? {}) }
    } catch (err) {
      const e = asLoadError(err, path)
      throw usage(`${where(e, path)}: ${e.message.split('\n')[0]}`)
    }
  }
  if (path.endsWith('.json')) {
    let parsed: Record<string, unknown>
    try {
      parsed = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>
    } catch (err) {
      throw usage(`${path}: ${(err as Error).message}`)
    }
    delete parsed.$schema // it names docs/hookmq.config.schema.json, for editors
    return parsed
  }
  if (/\.(m?js)$/.test(path)) {
    const mod = (await import(pathToFileURL(path).href)) as { default?: object }
    return { ...(mod.default ?? {}) }
  }
  throw usage(`--config ${file}: expected a .json, .ts, .js or .mjs file`)
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  void main(process.argv.slice(2))
}

/** `hookmq check [DIR] [--config FILE]`: compile and preflight every hook file (a throwaway worker each, time-limited); 0 when all are good. */
async function check(argv: string[]): Promise<number> {
  const dirArg = argv.find((a, i) => !a.startsWith('-') && argv[i - 1] !== '--config')
  const configIndex = argv.indexOf('--config')
  let hookConfig: HookSettings
  try {
    const config = parseConfigWith(hookmqConfigSchema, await loadConfigFile(configIndex >= 0 ? argv[configIndex + 1] : undefined))
    hookConfig = config.hooks
  } catch (err) {
    process.stderr.write(`hookmq: ${maskCredentials((err as Error).message)}\n`)
    return 1
  }
  const dir = resolve(dirArg ?? './hooks')
  if (!existsSync(dir)) {
    process.stderr.write(`hookmq check: ${dir}: no such folder\n`)
    return 1
  }
  let failures = 0
  let ok = 0
  const say = (line: string): boolean => process.stdout.write(line + '\n')
  const typeErrors = checkTypes(dir, say)
  const names = new Map<string, string>()
  for (const file of listHookFiles(dir)) {
    const types = typeErrors.get(file) ?? []
    typeErrors.delete(file) // (a file that does not compile says so once, not again as type errors)
    let problems: Array<TypeProblem | HookLoadError> = types
    try {
      const { meta } = await preflightFile(file, hookConfig, hookConfig)
      const slot = roleOf(meta, file).role === 'canary' ? `${meta.name}#canary` : meta.name // (a canary shares its stable version's name)
      const other = names.get(slot)
      if (other) throw new HookLoadError(`hook name "${meta.name}" is already used by ${other}`, file)
      names.set(slot, file)
      if (types.length === 0) {
        ok++
        say(`ok    ${file} (${meta.name})`)
        continue
      }
    } catch (err) {
      problems = [asLoadError(err, file)]
    }
    failures++
    for (const e of problems) say(`error ${where(e, file)}: ${e.message}`)
  }
  const elsewhere = [...typeErrors.values()].flat() // helpers, tests, the tsconfig.json
  for (const p of elsewhere) say(`error ${where(p)}: ${p.message}`)
  say(`${ok} hook(s) ok, ${failures} failed${elsewhere.length > 0 ? `; ${elsewhere.length} type error(s) in other files` : ''}`)
  return failures > 0 || elsewhere.length > 0 ? 1 : 0
}

/** `hookmq webhooks dead-letters [--replay] [--config FILE]`: the dead letters kept in Redis. */
async function deadLetters(argv: string[]): Promise<number> {
  if (argv[0] !== 'dead-letters') {
    process.stderr.write('usage: hookmq webhooks dead-letters [--replay] [--config FILE] [--redis URL]\n')
    return 1
  }
  let config
  try {
    config = await resolveConfig(argv.slice(1).filter((a) => a !== '--replay'))
  } catch (err) {
    process.stderr.write(`hookmq: ${maskCredentials((err as Error).message)}\n`)
    return 1
  }
  if (!config) return 0
  const parsed = parseConfigWith(hookmqConfigSchema, config)
  if (!parsed.redis) {
    process.stderr.write(
      'hookmq: dead letters outlive the broker only in Redis; without redis they are in the running broker (broker.webhooks.deadLetters())\n',
    )
    return 1
  }
  const { openRedis } = await import('../redis/connect.js')
  const { RedisOutbox } = await import('../webhook/redis-outbox.js')
  const { createLogger } = await import('../../core/index.js')
  const redis = openRedis(parsed.redis, { maxRetriesPerRequest: 1 })
  try {
    await redis.connect()
    const outbox = new RedisOutbox(
      redis,
      parsed.redis.keyPrefix,
      'cli',
      createLogger('silent'),
      parsed.webhooks.map((w) => w.name),
    )
    const dead = await outbox.deadLetters()
    for (const b of dead) process.stdout.write(`${b.webhook}\t${b.id}\t${b.deliveries.length} deliveries\t${b.attempts} attempts\t${b.at}\t${b.reason}\n`)
    if (argv.includes('--replay')) {
      const n = await outbox.replay()
      process.stdout.write(`queued ${n} deliveries again; a running broker sends them\n`)
    } else process.stdout.write(`${dead.length} dead batch(es)\n`)
    return 0
  } catch (err) {
    process.stderr.write(`hookmq: ${maskCredentials((err as Error).message)}\n`)
    return 1
  } finally {
    redis.disconnect()
  }
}

/** A mistake on the command line: said in one line, exit code 1. */
function usage(message: string): HookmqError {
  return new HookmqError('USAGE', message)
}
