import { ApiError, type Api } from './api.js'
import { badge, button, bytes, confirmDialog, h, num, Table, toast } from './dom.js'
import type { RetainedMessage, RetainedRow } from './types.js'
import { act, type View } from './view.js'

// Retained messages: listed by topic filter a page at a time, one read whole
// beside the list, cleared (an empty retained message on its topic).

const PAGE = 50

export class RetainedView implements View {
  readonly title = 'Retained'
  readonly el: HTMLElement
  private readonly filter = h('input', { type: 'search', value: '#', 'aria-label': 'retained filter', spellcheck: 'false' })
  private readonly status = h('span', { class: 'muted' })
  private readonly prev = button('← Prev', () => void this.page(-1), { kind: 'ghost' })
  private readonly next = button('Next →', () => void this.page(1), { kind: 'ghost' })
  private readonly table: Table<RetainedRow>
  private readonly detail = h('aside', { class: 'detail wide', hidden: true, 'aria-label': 'retained message' })
  private offset = 0
  private loaded = false

  constructor(private readonly api: Api) {
    this.table = new Table<RetainedRow>(
      [
        {
          title: 'Topic',
          class: 'mono',
          cell: (m) => h('a', { href: '#', class: 'link', onclick: (e) => (e.preventDefault(), void this.view(m.topic)) }, m.topic),
        },
        { title: 'QoS', class: 'num', cell: (m) => m.qos },
        { title: 'Size', class: 'num', cell: (m) => bytes(m.bytes) },
        { title: 'Payload', class: 'mono clip', cell: (m) => preview(m) },
        {
          title: '',
          class: 'actions',
          cell: (m) => [
            button('View', () => void this.view(m.topic), { kind: 'ghost', ariaLabel: `View ${m.topic}` }),
            button('Clear', () => void this.clear(m.topic), { kind: 'danger', ariaLabel: `Clear ${m.topic}` }),
          ],
        },
      ],
      (m) => m.topic,
      'No retained message matches.',
      'retained messages',
    )
    const form = h(
      'form',
      { class: 'toolbar' },
      h('label', { class: 'inline' }, 'Filter ', this.filter),
      h('button', { type: 'submit', class: 'btn primary' }, 'List'),
      this.status,
      h('span', { class: 'grow' }),
      this.prev,
      this.next,
    )
    form.addEventListener('submit', (e) => {
      e.preventDefault()
      this.offset = 0
      void act(() => this.load())
    })
    this.el = h('div', { class: 'view' }, form, h('div', { class: 'split' }, h('div', { class: 'scroll' }, this.table.el), this.detail))
  }

  /** The list is read when the tab first opens and when asked (a large store is not walked every few seconds). */
  async refresh(): Promise<void> {
    if (!this.loaded) await this.load()
  }

  private async load(): Promise<void> {
    const q = new URLSearchParams({ filter: this.filter.value || '#', limit: String(PAGE), offset: String(this.offset) })
    const r = await this.api.get<{ messages: RetainedRow[] }>(`/admin/retained?${q}`)
    this.loaded = true
    this.table.update(r.messages)
    const first = r.messages.length > 0 ? this.offset + 1 : this.offset
    this.status.textContent = `${num(first)}–${num(this.offset + r.messages.length)} on ${q.get('filter')}`
    this.prev.disabled = this.offset === 0
    this.next.disabled = r.messages.length < PAGE
  }

  private async page(step: number): Promise<void> {
    this.offset = Math.max(0, this.offset + step * PAGE)
    await act(() => this.load())
  }

  private async view(topic: string): Promise<void> {
    await act(async () => {
      let m: RetainedMessage
      try {
        m = await this.api.get<RetainedMessage>(`/admin/retained/message?topic=${encodeURIComponent(topic)}`)
      } catch (err) {
        if (err instanceof ApiError && err.status === 404)
          return void this.detail.replaceChildren(h('h3', { class: 'mono' }, topic), h('p', { class: 'muted' }, 'Cleared.'))
        throw err
      }
      const properties = Object.keys(m.properties).length > 0 ? h('pre', { class: 'props' }, JSON.stringify(m.properties, null, 2)) : null
      this.detail.replaceChildren(
        h(
          'div',
          { class: 'detail-head' },
          h('h3', { class: 'mono' }, m.topic),
          button('×', () => (this.detail.hidden = true), { kind: 'ghost', ariaLabel: 'close message' }),
        ),
        h('p', {}, badge(`QoS ${m.qos}`, 'muted'), ' ', badge(m.encoding, 'muted'), ' ', bytes(m.bytes), m.truncated ? ' (cut at 1 MiB)' : ''),
        h('pre', { class: 'payload', 'aria-label': 'payload' }, m.payload),
        ...(properties !== null ? [properties] : []),
        h(
          'div',
          { class: 'toolbar' },
          button('Clear', () => void this.clear(m.topic), { kind: 'danger', ariaLabel: `Clear ${m.topic}` }),
        ),
      )
      this.detail.hidden = false
    })
  }

  private async clear(topic: string): Promise<void> {
    if (!(await confirmDialog('Clear retained message', `Clear the retained message on "${topic}"?`, 'Clear'))) return
    await act(async () => {
      await this.api.del(`/admin/retained/message?topic=${encodeURIComponent(topic)}`)
      toast(`Cleared ${topic}`)
      this.detail.hidden = true
      await this.load()
    })
  }
}

function preview(m: RetainedRow): string {
  const text = m.encoding === 'utf8' ? m.payload : `base64 ${m.payload}`
  return text.length > 120 ? `${text.slice(0, 120)}…` : text
}
