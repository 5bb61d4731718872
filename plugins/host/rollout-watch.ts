import { copyFileSync, renameSync, unlinkSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import type { Broker, ClientInfo, Config, Decided, DecisionWatcher, Logger, Message } from '../../core/index.js'
import { HookmqError } from '../../core/index.js'
import type { HookDefinition } from './define.js'
import type { HookStats } from './invoke.js'
import { Recorder, type RecorderStats } from './record.js'
import type { MethodLists, Role } from './rollout.js'
import { ShadowRunner, ShadowStats, type Shadow, type ShadowReport } from './shadow.js'
import type { TransformCheck } from './runners.js'

// The host's side of the decisions the core enforced (core/audit.ts): the
// shadow hooks and hooks.record watch them; a hook names itself on its allows
// while anyone wants allows (the audit's allows, a shadow, the record). And
// what /admin/hooks/:name/rollout tells, and the promotion of a canary.

/** A loaded version as the rollout sees it (the host's Entry). */
export interface Version {
  readonly key: string
  readonly name: string
  readonly file: string | undefined
  readonly version: number
  readonly role: Role
  readonly share: number
  readonly shadow: ShadowStats | undefined
  readonly stats: HookStats
  signAllows: boolean
}

interface VersionReport {
  file?: string
  version: number
  calls: number
  denies: number
  errors: number
}

/** A hook's rollout: its shadow (compared, never enforced), its canary (a share of client ids) and stable version. */
export interface RolloutReport {
  name: string
  shadow?: VersionReport & ShadowReport
  canary?: VersionReport & { share: number }
  stable?: VersionReport
}

const NONE: MethodLists<Shadow> = { authenticate: [], authorizePublish: [], authorizeSubscribe: [], transform: [], deliver: [] }

export class RolloutWatch {
  /** a shadow has a transform: the host hands each transform's outcome over */
  shadowTransforms = false
  /** hooks name themselves on allows (told by the audit) */
  signAllows = false
  private shadows: MethodLists<Shadow> = NONE
  private readonly runner: ShadowRunner
  private broker: Broker | undefined
  private recorder: Recorder | undefined

  constructor(
    checkTransform: TransformCheck,
    private readonly versions: () => readonly Version[],
  ) {
    this.runner = new ShadowRunner(() => this.shadows, checkTransform)
  }

  start(broker: Broker, record: Config['hooks']['record'], log: Logger): void {
    this.broker = broker
    if (record !== undefined) this.recorder = new Recorder(record, broker, log.child({ plugin: 'record' }))
    broker.pipeline.audit.onAllowsWanted((wanted) => {
      this.signAllows = wanted
      for (const v of this.versions()) v.signAllows = wanted
    })
    this.sync()
  }

  async stop(): Promise<void> {
    this.broker?.pipeline.audit.watch(undefined)
    await this.recorder?.close()
  }

  /** Shadow stats for a new version that declares `rollout: { mode: 'shadow' }`. */
  statsFor(def: HookDefinition, log: Logger): ShadowStats | undefined {
    const r = def.rollout
    return r !== undefined && 'mode' in r ? new ShadowStats(r.sample ?? 1, log) : undefined
  }

  /** The host rebuilt its pipelines: these shadows serve now. */
  shadowsChanged(lists: MethodLists<{ readonly shadow: ShadowStats | undefined }>): void {
    this.shadows = lists as MethodLists<Shadow>
    this.shadowTransforms = lists.transform.length > 0
    this.sync()
  }

  /** Watches the kinds some shadow decides, or every kind while recording; nothing else. */
  private sync(): void {
    const audit = this.broker?.pipeline.audit
    if (audit === undefined) return
    const s = this.shadows
    const rec = this.recorder !== undefined
    const shadowKinds = { authenticate: s.authenticate.length > 0, publish: s.authorizePublish.length > 0, subscribe: s.authorizeSubscribe.length > 0 }
    const kinds = { authenticate: rec || shadowKinds.authenticate, publish: rec || shadowKinds.publish, subscribe: rec || shadowKinds.subscribe }
    if (!kinds.authenticate && !kinds.publish && !kinds.subscribe) return audit.watch(undefined)
    const watcher: DecisionWatcher = {
      kinds,
      decided: (d: Decided) => {
        if (shadowKinds[d.kind]) this.runner.decided(d)
        this.recorder?.decided(d)
      },
    }
    audit.watch(watcher)
  }

  transformed(client: ClientInfo | undefined, message: Message, out: Message | null | Promise<Message | null>): void {
    this.runner.transformed(client, message, out)
  }

  recording(): RecorderStats | undefined {
    return this.recorder?.status()
  }

  report(name: string): RolloutReport | undefined {
    const all = this.versions().filter((v) => v.name === name)
    if (all.length === 0) return undefined
    const out: RolloutReport = { name }
    for (const v of all) {
      const base: VersionReport = { file: v.file, version: v.version, calls: v.stats.calls, denies: v.stats.denies, errors: v.stats.errors }
      if (v.role === 'shadow') out.shadow = { ...base, ...v.shadow!.report() }
      else if (v.role === 'canary') out.canary = { ...base, share: v.share }
      else out.stable = base
    }
    return out
  }

  /**
   * A canary's promotion, on disk as by hand: its content replaces the stable
   * file (`acl.ts` beside `acl.canary.ts`; atomically: a copy renamed over
   * it), which is loaded again (`load`) while the canary still serves its
   * share; then the canary file goes, and is unloaded. Undefined when the hook
   * has no canary file.
   */
  async promote(name: string, load: ((file: string) => Promise<void>) | undefined): Promise<RolloutReport | undefined> {
    const canary = this.versions().find((v) => v.name === name && v.role === 'canary')
    if (canary?.file === undefined || load === undefined) return undefined
    const stable = this.versions().find((v) => v.name === name && v.role === 'serve')
    const to = canary.file.replace(/\.canary(\.[cm]?[jt]s)$/, '$1')
    if (stable?.file !== undefined && stable.file !== to)
      throw new HookmqError('BROKER_STATE', `the stable version is ${stable.file}, not ${to}: promote by hand (replace it with ${canary.file})`)
    const tmp = join(dirname(to), `.${basename(to)}.promote`) // (a dot-file: the folder's watcher ignores it)
    copyFileSync(canary.file, tmp)
    renameSync(tmp, to)
    await load(to)
    unlinkSync(canary.file)
    await load(canary.file)
    return this.report(name)
  }
}
