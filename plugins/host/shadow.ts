import type { AuthenticateDecision, ClientInfo, Decided, Decision, Logger, Message } from '../../core/index.js'
import { deciderOf, isPromise, throttled } from '../../core/index.js'
import type { PublishInput, TransformInput } from './define.js'
import { invoke, type HookMethod } from './invoke.js'
import { applyPatch } from './lifecycle.js'
import { messageInput, type Runnable, type TransformCheck } from './runners.js'
import { toAuthDecision, toPublishDecision, toSubscribeDecision, type TransformPatch } from './schemas.js'

// Shadow hooks (rollout: { mode: 'shadow' }): each enforced decision of a kind
// some shadow decides is queued (core/audit.ts tells the host, after the
// decision is known) and the shadows run on it a tick later, through the same
// choke point as any hook (deadline, breaker, answer checks), with nothing
// waiting for them. Their answers are compared with what was enforced and
// counted; the last disagreements are kept. A shadow's failure is counted,
// never enforced. What waits is bounded: past it, calls are skipped (counted).

/** Disagreements kept per shadow version. */
export const KEEP = 20
/** Decisions waiting for the shadows to run; past it they are skipped. */
const MAX_QUEUE = 1024
/** Shadow calls still waiting for an answer (worker-isolated or asynchronous shadows); past it new ones are skipped. */
const MAX_IN_FLIGHT = 1024

export interface Disagreement {
  time: string
  kind: 'authenticate' | 'publish' | 'subscribe' | 'transform'
  clientId: string | undefined
  username?: string
  /** the topic (publish, transform) or filter (subscribe) */
  target?: string
  /** what the shadow answered */
  shadow: string
  /** what was enforced (and by which hook) */
  enforced: string
}

/** One shadow version's comparison, as /hooks and the admin API show it. */
export interface ShadowReport {
  sample: number
  /** answers that matched what was enforced (allow/deny; for a transform: the same message, or both dropped) */
  agree: number
  disagree: number
  /** answered pass: left the decision to the others */
  passed: number
  /** threw, timed out, answered nonsense, or was tripped */
  failed: number
  /** not run: too many waiting */
  skipped: number
  /** the last disagreements, newest last */
  disagreements: Disagreement[]
}

export class ShadowStats {
  agree = 0
  disagree = 0
  passed = 0
  failed = 0
  skipped = 0
  private readonly last: Disagreement[] = []
  private readonly line: (d: unknown) => void

  constructor(
    readonly sample: number,
    log: Logger,
  ) {
    this.line = throttled(
      (d, count) => log.info({ ...(d as object), ...(count > 1 ? { disagreedSinceLastLine: count - 1 } : {}) }, 'shadow hook disagrees'),
      10000,
    )
  }

  disagreed(d: Disagreement): void {
    this.disagree++
    if (this.last.length === KEEP) this.last.shift()
    this.last.push(d)
    this.line(d)
  }

  report(): ShadowReport {
    const { sample, agree, disagree, passed, failed, skipped } = this
    return { sample, agree, disagree, passed, failed, skipped, disagreements: [...this.last] }
  }
}

/** A shadow version as the runner sees it. */
export interface Shadow extends Runnable {
  readonly shadow: ShadowStats
}

export interface ShadowLists {
  authenticate: Shadow[]
  authorizePublish: Shadow[]
  authorizeSubscribe: Shadow[]
  transform: Shadow[]
}

/** The marker a failed shadow call answers (its fallback): counted as failed. */
const FAILED = Object.freeze({ result: 'failed' }) as unknown as Decision

type Job =
  | { kind: 'decision'; method: Exclude<HookMethod, 'transform' | 'deliver'>; input: unknown; decided: Decided; topic: string | undefined }
  | { kind: 'transform'; input: TransformInput; message: Message; enforced: Message | null }

export class ShadowRunner {
  private queue: Job[] = []
  private scheduled = false
  private inFlight = 0

  constructor(
    /** the shadows now (read when they run: a reload since the decision is honoured) */
    private readonly lists: () => ShadowLists,
    private readonly checkTransform: TransformCheck,
  ) {}

  /** An enforced decision: queued for the shadows of its kind. */
  decided(d: Decided): void {
    if (d.kind === 'authenticate') this.push({ kind: 'decision', method: 'authenticate', input: d.input, decided: d, topic: undefined })
    else if (d.kind === 'subscribe')
      this.push({ kind: 'decision', method: 'authorizeSubscribe', input: { client: d.client, ...d.subscription }, decided: d, topic: undefined })
    else {
      const m = d.message
      // (the input as it was decided: routing changes the message later)
      const input: PublishInput = { client: d.client, topic: m.topic, payload: m.payload, qos: m.qos, retain: m.retain, properties: m.properties }
      this.push({ kind: 'decision', method: 'authorizePublish', input, decided: d, topic: m.topic })
    }
  }

  /** The enforced transforms' outcome for `message` (now or later): queued for the shadow transforms. */
  transformed(client: ClientInfo | undefined, message: Message, out: Message | null | Promise<Message | null>): void {
    const input: TransformInput = messageInput(client, message)
    if (isPromise(out)) out.then((enforced) => this.push({ kind: 'transform', input, message, enforced }), noop)
    else this.push({ kind: 'transform', input, message, enforced: out })
  }

  private push(job: Job): void {
    if (this.queue.length >= MAX_QUEUE) {
      for (const s of this.listOf(job)) s.shadow.skipped++
      return
    }
    this.queue.push(job)
    if (!this.scheduled) {
      this.scheduled = true
      setImmediate(this.flush)
    }
  }

  private listOf(job: Job): Shadow[] {
    return this.lists()[job.kind === 'transform' ? 'transform' : job.method]
  }

  private readonly flush = (): void => {
    this.scheduled = false
    const jobs = this.queue
    this.queue = []
    for (const job of jobs) {
      for (const s of this.listOf(job)) {
        if (s.retired) continue
        const topic = job.kind === 'transform' ? job.input.topic : job.topic
        if (topic !== undefined && s.filter !== null && !s.filter(topic)) continue
        if (s.shadow.sample < 1 && Math.random() >= s.shadow.sample) continue
        if (this.inFlight >= MAX_IN_FLIGHT) {
          s.shadow.skipped++
          continue
        }
        if (job.kind === 'transform') this.runTransform(s, job)
        else this.runDecision(s, job)
      }
    }
  }

  private runDecision(s: Shadow, job: Extract<Job, { kind: 'decision' }>): void {
    const check = job.method === 'authenticate' ? toAuthDecision : job.method === 'authorizePublish' ? toPublishDecision : toSubscribeDecision
    const answer = invoke<Decision | AuthenticateDecision>(s, job.method, job.input, check, FAILED)
    if (!isPromise(answer)) return compareDecision(s, job.decided, answer)
    this.inFlight++
    answer.then((a) => {
      this.inFlight--
      compareDecision(s, job.decided, a)
    }, noop)
  }

  private runTransform(s: Shadow, job: Extract<Job, { kind: 'transform' }>): void {
    const answer = invoke<TransformPatch | null | undefined | Decision>(s, 'transform', job.input, this.checkTransform, FAILED)
    if (!isPromise(answer)) return compareTransform(s, job, answer)
    this.inFlight++
    answer.then((a) => {
      this.inFlight--
      compareTransform(s, job, a)
    }, noop)
  }
}

function compareDecision(s: Shadow, d: Decided, answer: Decision | AuthenticateDecision): void {
  const stats = s.shadow
  if (answer === FAILED) return void stats.failed++
  // (pass, or an authenticate shadow's `continue`: a shadow takes no step of an exchange, so it decided nothing)
  if (answer.result !== 'allow' && answer.result !== 'deny') return void stats.passed++
  if ((answer.result === 'allow') === d.allowed) return void stats.agree++
  const who = d.kind === 'authenticate' ? { clientId: d.input.clientId, username: d.input.username } : { clientId: d.client.id, username: d.client.username }
  stats.disagreed({
    time: new Date().toISOString(),
    kind: d.kind,
    ...who,
    ...(d.kind === 'publish' ? { target: d.message.topic } : d.kind === 'subscribe' ? { target: d.subscription.filter } : {}),
    shadow: describe(answer, answer.result === 'allow'),
    enforced: describe(d.decision, d.allowed, d.reasonCode),
  })
}

function compareTransform(s: Shadow, job: Extract<Job, { kind: 'transform' }>, answer: TransformPatch | null | undefined | Decision): void {
  const stats = s.shadow
  if (answer === FAILED) return void stats.failed++
  const mine = answer === undefined ? job.message : answer === null ? null : applyPatch(job.message, answer as TransformPatch)
  if (sameMessage(mine, job.enforced)) return void stats.agree++
  stats.disagreed({
    time: new Date().toISOString(),
    kind: 'transform',
    clientId: job.input.client?.id,
    username: job.input.client?.username,
    target: job.input.topic,
    shadow: describeMessage(mine, job.message),
    enforced: describeMessage(job.enforced, job.message),
  })
}

/** `allow (acl v2)`, `deny 0x87 not allowed (default)`: an answer as a line shows it. */
export function describe(d: Decision, allowed: boolean, reasonCode?: number): string {
  const { hook, hookVersion } = deciderOf(d, allowed)
  const by = hook === 'default' ? ' (default)' : ` (${hook} v${hookVersion})`
  if (allowed) return `allow${by}`
  const code = reasonCode ?? (d.result === 'deny' ? d.reasonCode : undefined) ?? 0x87
  const reason = d.result === 'deny' && d.reason !== undefined ? ` ${d.reason}` : ''
  return `deny 0x${code.toString(16)}${reason}${by}`
}

function sameMessage(a: Message | null, b: Message | null): boolean {
  if (a === b) return true
  if (a === null || b === null) return false
  return a.topic === b.topic && a.qos === b.qos && a.retain === b.retain && a.payload.equals(b.payload)
}

function describeMessage(m: Message | null, original: Message): string {
  if (m === null) return 'drop'
  const changed: string[] = []
  if (m.topic !== original.topic) changed.push(`topic=${m.topic}`)
  if (m.qos !== original.qos) changed.push(`qos=${m.qos}`)
  if (m.retain !== original.retain) changed.push(`retain=${m.retain}`)
  if (!m.payload.equals(original.payload)) changed.push(`payload (${m.payload.length} bytes)`)
  return changed.length === 0 ? 'unchanged' : `changed ${changed.join(' ')}`
}

function noop(): void {}
