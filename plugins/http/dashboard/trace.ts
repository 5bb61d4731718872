import type { Api } from './api.js'
import { button, clock, h, num } from './dom.js'
import type { TraceEvent } from './types.js'
import { act, type View } from './view.js'

// The live trace: a client id (its packets in and out, and the hook decisions
// on them) or a topic filter (every PUBLISH on it), streamed from
// /admin/trace; newest first, the last 2,000 events kept. It keeps running
// while another tab is open.

const KEEP = 2000
const ARROWS = { in: '→ in', out: '← out', hook: '⚙ hook' } as const

export class TraceView implements View {
  readonly title = 'Trace'
  readonly el: HTMLElement
  private readonly mode = h(
    'select',
    { 'aria-label': 'trace by' },
    h('option', { value: 'clientId' }, 'client id'),
    h('option', { value: 'topic' }, 'topic filter'),
  )
  private readonly target = h('input', {
    type: 'search',
    placeholder: 'client id, or a filter such as sensors/#',
    'aria-label': 'trace target',
    spellcheck: 'false',
    required: true,
  })
  private readonly toggle = h('button', { type: 'submit', class: 'btn primary' }, 'Start')
  private readonly status = h('span', { class: 'muted', role: 'status' }, 'Not tracing.')
  private readonly body = h('tbody')
  private readonly empty = h('tr', { class: 'empty' }, h('td', { colspan: 9 }, 'Events appear here as they happen.'))
  private running: AbortController | undefined
  private count = 0

  constructor(private readonly api: Api) {
    const form = h(
      'form',
      { class: 'toolbar' },
      this.mode,
      this.target,
      this.toggle,
      button('Clear', () => this.clear(), { kind: 'ghost' }),
      this.status,
    )
    form.addEventListener('submit', (e) => {
      e.preventDefault()
      if (this.running !== undefined) this.stop()
      else this.start()
    })
    const head = ['Time', 'Dir', 'Client', 'Node', 'Packet', 'Topic / filters', 'QoS', 'Bytes', 'Reason / decision']
    this.body.append(this.empty)
    this.el = h(
      'div',
      { class: 'view' },
      form,
      h(
        'div',
        { class: 'scroll' },
        h('table', { 'aria-label': 'trace events', class: 'trace' }, h('thead', {}, h('tr', {}, ...head.map((t) => h('th', {}, t)))), this.body),
      ),
    )
  }

  /** Starts tracing `clientId` (the clients tab's Trace button). */
  traceClient(clientId: string): void {
    this.stop()
    this.mode.value = 'clientId'
    this.target.value = clientId
    this.start()
  }

  start(): void {
    const value = this.target.value.trim()
    if (value === '') return void this.target.focus()
    const controller = new AbortController()
    this.running = controller
    this.toggle.textContent = 'Stop'
    this.mode.disabled = this.target.disabled = true
    this.status.textContent = 'Connecting…'
    const q = new URLSearchParams({ [this.mode.value]: value })
    let tracing = ''
    let lost = 0
    void act(async () => {
      try {
        await this.api.stream(
          `/admin/trace?${q}`,
          controller.signal,
          (e) => this.add(e as TraceEvent),
          (comment) => {
            const dropped = /^(\d+) event/.exec(comment)
            if (comment.startsWith('tracing')) {
              tracing = `Tracing ${this.mode.value === 'clientId' ? 'client' : 'topic'} ${value} (${comment.replace(/^tracing .* on node /, 'node ')})`
              this.status.textContent = tracing
            } else if (dropped !== null) {
              // the server drops what a slow reader cannot take, and says how many
              lost += Number(dropped[1])
              this.status.textContent = `${tracing} · ${num(lost)} events dropped: the page read slower than the traffic`
            }
          },
        )
        if (this.running === controller) this.status.textContent = 'The broker ended the trace.'
      } catch (err) {
        if (controller.signal.aborted) return
        this.status.textContent = 'Not tracing.'
        throw err
      } finally {
        if (this.running === controller) this.reset()
      }
    })
  }

  stop(): void {
    if (this.running === undefined) return
    this.running.abort()
    this.reset()
    this.status.textContent = `Stopped after ${num(this.count)} events.`
  }

  private reset(): void {
    this.running = undefined
    this.toggle.textContent = 'Start'
    this.mode.disabled = this.target.disabled = false
  }

  private clear(): void {
    this.body.replaceChildren(this.empty)
    this.count = 0
  }

  private add(e: TraceEvent): void {
    this.count++
    this.empty.remove()
    const reason =
      e.dir === 'hook'
        ? `${e.hook ?? ''}${e.version !== undefined ? ` v${e.version}` : ''}: ${e.answer ?? ''} (${num(e.ms)} ms)`
        : e.reasonCode !== undefined
          ? hex(e.reasonCode)
          : ''
    const granted = e.granted !== undefined ? ` → ${e.granted.map(hex).join(', ')}` : ''
    const tr = h(
      'tr',
      { class: `dir-${e.dir}` },
      h('td', { class: 'mono' }, clock(e.at)),
      h('td', {}, ARROWS[e.dir] ?? e.dir),
      h('td', { class: 'mono' }, e.clientId),
      h('td', { class: 'mono muted' }, e.node),
      h('td', {}, e.type),
      h('td', { class: 'mono wrap' }, e.topic ?? (e.filters !== undefined ? e.filters.join(', ') + granted : '')),
      h('td', { class: 'num' }, e.qos ?? ''),
      h('td', { class: 'num' }, e.payloadBytes ?? ''),
      h('td', { class: e.answer?.startsWith('deny') === true || (e.reasonCode ?? 0) >= 0x80 ? 'error' : '' }, reason),
    )
    this.body.prepend(tr)
    while (this.body.childElementCount > KEEP) this.body.lastElementChild!.remove()
  }
}

function hex(code: number): string {
  return `0x${code.toString(16).padStart(2, '0')}`
}
