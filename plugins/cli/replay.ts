import { createReadStream, existsSync } from 'node:fs'
import { resolve } from 'node:path'
import { createInterface } from 'node:readline'
import { parseArgs } from 'node:util'
import { pino } from 'pino'
import type { AuthenticateDecision, ClientInfo, Decision, QoS } from '../../core/index.js'
import { maskCredentials, newMessage, parseConfigWith, ReasonCode, refusalCode, refused } from '../../core/index.js'
import { hookmqConfigSchema, type HookmqConfig } from '../config.js'
import { asLoadError, where } from '../host/compile.js'
import { HookHost } from '../host/host.js'
import { listHookFiles, preflightFile } from '../host/loader.js'
import type { DecisionRecord } from '../host/record.js'
import { describe } from '../host/shadow.js'
import { hookModules } from '../index.js'

// `hookmq replay DIR FILE`: the decisions hooks.record wrote, decided again by
// DIR's hooks offline, through a HookHost as the broker makes it (the same
// compile, preflight, isolation, deadlines and answer checks; canaries split
// by client id as they do live; shadows enforce nothing), with the broker's
// rules after them (a pass falls to the default, an authentication method
// must be accepted). Prints each decision that would change and the counts.

export const REPLAY_USAGE = `usage: hookmq replay DIR FILE [--fail-on-diff] [--config FILE] [--kinds LIST]
  decide the decisions recorded in FILE (hooks.record's JSONL) again with the hooks of DIR, offline,
  as the broker would (its compile, preflight, answer checks; hooks.<name> values and defaults from
  --config FILE, else the defaults recorded); print one line per decision that would change, then counts
  --fail-on-diff   exit 1 when any decision would change (a CI gate for ACL edits)
  --kinds LIST     authenticate,publish,subscribe (default all); authenticate records of a login with a
                   password, or over several AUTH steps, are skipped (neither is recorded)`

interface Outcome {
  allowed: boolean
  reasonCode: number
  /** subscribe: the QoS granted */
  qos?: number
  text: string
}

interface Counts {
  replayed: number
  changed: number
  allowToDeny: number
  denyToAllow: number
  other: number
  skipped: number
  unreadable: number
}

export async function replay(argv: string[], loadConfig: (file: string | undefined) => Promise<object>): Promise<number> {
  let args
  try {
    args = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: { 'fail-on-diff': { type: 'boolean' }, config: { type: 'string' }, kinds: { type: 'string' } },
    })
  } catch (err) {
    return usage((err as Error).message.split('\n')[0]!)
  }
  const [dirArg, fileArg, ...extra] = args.positionals
  if (dirArg === undefined || fileArg === undefined || extra.length > 0) return usage('expected a hooks folder and a record file')
  const dir = resolve(dirArg)
  const file = resolve(fileArg)
  if (!existsSync(dir)) return usage(`${dir}: no such folder`)
  if (!existsSync(file)) return usage(`${file}: no such file`)
  const kinds = new Set((args.values.kinds ?? 'authenticate,publish,subscribe').split(',').map((k) => k.trim()))
  for (const k of kinds) if (!['authenticate', 'publish', 'subscribe'].includes(k)) return usage(`--kinds: unknown kind "${k}"`)
  let config: HookmqConfig
  try {
    config = parseConfigWith(hookmqConfigSchema, await loadConfig(args.values.config))
  } catch (err) {
    process.stderr.write(`hookmq: ${maskCredentials((err as Error).message)}\n`)
    return 1
  }
  const host = await loadFolder(dir, config)
  if (host === undefined) return 1
  try {
    const counts = await replayFile(host, file, kinds, args.values.config !== undefined ? config : undefined)
    const changes = `${counts.changed} would change (allow -> deny ${counts.allowToDeny}, deny -> allow ${counts.denyToAllow}, other ${counts.other})`
    const skipped = counts.skipped > 0 ? `; ${counts.skipped} skipped (a login's password is not recorded, or a kind not asked for)` : ''
    const unreadable = counts.unreadable > 0 ? `; ${counts.unreadable} unreadable line(s)` : ''
    process.stdout.write(`${counts.replayed} decision(s) replayed: ${changes}${skipped}${unreadable}\n`)
    return counts.changed > 0 && args.values['fail-on-diff'] === true ? 1 : 0
  } finally {
    await host.stop()
  }
}

function usage(message: string): number {
  process.stderr.write(`hookmq replay: ${message}\n${REPLAY_USAGE}\n`)
  return 1
}

/** A host with every hook file of `dir` loaded as the broker loads them; undefined (said why) when one does not load. */
async function loadFolder(dir: string, config: HookmqConfig): Promise<HookHost | undefined> {
  const { record: _record, ...hookConfig } = config.hooks // (replay records nothing)
  const host = new HookHost({
    log: pino({ level: 'warn', base: { name: 'hookmq' } }, pino.destination(2)), // the hooks' own warnings and failures, on stderr
    hookConfig,
    defaultTimeoutMs: config.hookTimeoutMs,
    revokedSubscriptions: config.revokedSubscriptions,
    limits: config.limits,
    modules: hookModules,
  })
  host.rollout.signAllows = true // (an allow names its hook, as in the record)
  let failed = false
  for (const f of listHookFiles(dir)) {
    try {
      const { compiled, meta } = await preflightFile(f, hookConfig, hookConfig)
      await host.load(compiled, meta, f)
    } catch (err) {
      const e = asLoadError(err, f)
      process.stdout.write(`error ${where(e, f)}: ${e.message}\n`)
      failed = true
    }
  }
  if (!failed) return host
  await host.stop()
  return undefined
}

async function replayFile(host: HookHost, file: string, kinds: Set<string>, config: HookmqConfig | undefined): Promise<Counts> {
  const counts: Counts = { replayed: 0, changed: 0, allowToDeny: 0, denyToAllow: 0, other: 0, skipped: 0, unreadable: 0 }
  const lines = createInterface({ input: createReadStream(file), crlfDelay: Infinity })
  for await (const line of lines) {
    if (line.trim() === '') continue
    let r: DecisionRecord
    try {
      r = JSON.parse(line) as DecisionRecord
      if (r.v !== 1 || typeof r.kind !== 'string' || typeof r.client?.id !== 'string' || typeof r.outcome?.decision !== 'string')
        throw new Error('not a record')
    } catch {
      counts.unreadable++
      continue
    }
    if (!kinds.has(r.kind) || (r.kind === 'authenticate' && (r.hasPassword === true || r.steps !== undefined))) {
      counts.skipped++
      continue
    }
    const now = await decide(host, r, defaultOf(r, config))
    if (now === undefined) {
      counts.skipped++
      continue
    }
    counts.replayed++
    const before = recorded(r)
    if (now.allowed === before.allowed && (now.allowed ? now.qos === before.qos : now.reasonCode === before.reasonCode)) continue
    counts.changed++
    if (before.allowed && !now.allowed) counts.allowToDeny++
    else if (!before.allowed && now.allowed) counts.denyToAllow++
    else counts.other++
    process.stdout.write(`${r.kind.padEnd(12)} ${who(r)}: ${before.text} -> ${now.text}\n`)
  }
  return counts
}

/** What a pass means for this record: the defaults of --config, else those recorded. */
function defaultOf(r: DecisionRecord, config: HookmqConfig | undefined): boolean {
  if (config === undefined) return r.default === 'allow'
  if (r.kind === 'publish') return config.defaults.publish === 'allow'
  if (r.kind === 'subscribe') return config.defaults.subscribe === 'allow'
  const rule = config.defaults.authenticate
  return config.allowAnonymous ?? (rule === 'loopback' ? r.loopback === true : rule === 'allow')
}

/** undefined: cannot be decided offline (a hook asks for another step of enhanced authentication: the client's answer is not recorded) */
async function decide(host: HookHost, r: DecisionRecord, allowedByDefault: boolean): Promise<Outcome | undefined> {
  if (r.kind === 'authenticate') {
    const d: AuthenticateDecision = await host.authenticate({
      clientId: r.client.id,
      username: r.client.username,
      remoteAddress: r.client.address,
      protocolVersion: r.client.protocolVersion,
      listener: r.client.listener,
      authenticationMethod: r.authenticationMethod,
      reauthenticate: r.reauthenticate === true ? true : undefined,
      session: r.session,
    })
    if (d.result === 'continue') return undefined
    if (refused(d, allowedByDefault)) return outcome(d, false, refusalCode(d))
    if (r.authenticationMethod !== undefined && !(d.result === 'allow' && d.authenticationMethod === r.authenticationMethod))
      return { allowed: false, reasonCode: ReasonCode.BadAuthenticationMethod, text: 'deny 0x8c authentication method not supported (default)' }
    return outcome(d, true, 0)
  }
  const client: ClientInfo = {
    id: r.client.id,
    username: r.client.username,
    remoteAddress: r.client.address,
    protocolVersion: r.client.protocolVersion,
    listener: r.client.listener,
  }
  if (r.client.user !== undefined) client.user = r.client.user
  if (r.kind === 'subscribe') {
    const d = await host.authorizeSubscribe(client, { filter: r.filter!, qos: r.qos as QoS })
    if (refused(d, allowedByDefault)) return outcome(d, false, refusalCode(d))
    return outcome(d, true, 0, d.result === 'allow' && d.qos !== undefined && d.qos < r.qos! ? d.qos : undefined)
  }
  const payload = r.payload === undefined ? Buffer.alloc(0) : Buffer.from(r.payload, 'base64')
  const message = newMessage(r.topic!, payload, r.qos as QoS, r.retain === true, client.id, r.properties as never)
  const d = await host.authorizePublish(client, message)
  return refused(d, allowedByDefault) ? outcome(d, false, refusalCode(d)) : outcome(d, true, 0)
}

function outcome(d: Decision, allowed: boolean, reasonCode: number, qos?: number): Outcome {
  const text = describe(d, allowed, reasonCode) + (qos !== undefined ? ` qos ${qos}` : '')
  return { allowed, reasonCode, qos, text }
}

/** The recorded outcome, as the replayed one is told. */
function recorded(r: DecisionRecord): Outcome {
  const o = r.outcome
  const by = o.hook === 'default' ? ' (default)' : ` (${o.hook} v${o.hookVersion ?? '?'})`
  const allowed = o.decision === 'allow'
  const qos = allowed && o.qos !== undefined && r.qos !== undefined && o.qos < r.qos ? o.qos : undefined
  const text = allowed
    ? `allow${by}${qos !== undefined ? ` qos ${qos}` : ''}`
    : `deny 0x${o.reasonCode.toString(16)}${o.reason !== undefined ? ` ${o.reason}` : ''}${by}`
  return { allowed, reasonCode: o.reasonCode, qos, text }
}

function who(r: DecisionRecord): string {
  const user = r.client.username !== undefined ? ` (${r.client.username})` : ''
  const target = r.kind === 'publish' ? ` topic ${r.topic}` : r.kind === 'subscribe' ? ` filter ${r.filter}` : ''
  return `client ${r.client.id}${user}${target}`
}
