// DOM helpers: elements built with h() (text only through textContent: client
// ids, topics and payloads come from the network), a keyed table that leaves
// unchanged rows alone (so a button under the pointer is not replaced by the
// next refresh), confirmation and form dialogs, toasts, formatting.

export type Child = Node | string | number | null | undefined | false
type Attrs = Record<string, string | number | boolean | undefined | ((e: Event) => void)>

export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag)
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue
    if (typeof v === 'function') el.addEventListener(k.slice(2).toLowerCase(), v)
    else if (k === 'class') el.className = String(v)
    else if (v === true) el.setAttribute(k, '')
    else el.setAttribute(k, String(v))
  }
  append(el, children)
  return el
}

export function append(el: Element, children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue
    el.append(typeof c === 'object' ? c : String(c))
  }
}

/** `kind`: CSS classes besides btn (danger, primary, ghost) */
export function button(label: string, onClick: () => void, options: { kind?: string; title?: string; ariaLabel?: string } = {}): HTMLButtonElement {
  return h('button', { type: 'button', class: `btn ${options.kind ?? ''}`, title: options.title, 'aria-label': options.ariaLabel, onclick: onClick }, label)
}

export function badge(text: string, tone: 'ok' | 'warn' | 'bad' | 'muted'): HTMLSpanElement {
  return h('span', { class: `badge ${tone}` }, text)
}

export interface Column<T> {
  title: string
  cell(row: T): Child | Child[]
  /** CSS classes of its cells: num (right-aligned figures), mono (ids, topics), wrap (long text), clip, actions */
  class?: string
}

/** A table whose rows are keyed: a row whose data did not change keeps its elements. */
export class Table<T> {
  readonly el: HTMLTableElement
  private readonly body: HTMLTableSectionElement
  private readonly rows = new Map<string, { tr: HTMLTableRowElement; sig: string }>()
  private readonly emptyRow: HTMLTableRowElement

  constructor(
    private readonly columns: Array<Column<T>>,
    private readonly key: (row: T) => string,
    empty: string,
    label: string,
  ) {
    this.body = h('tbody')
    this.emptyRow = h('tr', { class: 'empty' }, h('td', { colspan: columns.length }, empty))
    this.el = h('table', { 'aria-label': label }, h('thead', {}, h('tr', {}, ...columns.map((c) => h('th', { class: c.class }, c.title)))), this.body)
    this.body.append(this.emptyRow)
  }

  update(data: readonly T[]): void {
    const want: HTMLTableRowElement[] = []
    const seen = new Set<string>()
    for (const row of data) {
      const k = this.key(row)
      seen.add(k)
      const sig = JSON.stringify(row)
      let entry = this.rows.get(k)
      if (entry === undefined || entry.sig !== sig) {
        entry = { tr: h('tr', {}, ...this.columns.map((c) => h('td', { class: c.class }, ...[c.cell(row)].flat()))), sig }
        this.rows.set(k, entry)
      }
      want.push(entry.tr)
    }
    for (const k of this.rows.keys()) if (!seen.has(k)) this.rows.delete(k)
    if (want.length === 0) want.push(this.emptyRow)
    // the wanted rows first, in order (moving only those out of place), then whatever is left goes
    want.forEach((tr, i) => {
      const at = this.body.children[i]
      if (at !== tr) this.body.insertBefore(tr, at ?? null)
    })
    while (this.body.children.length > want.length) this.body.lastElementChild!.remove()
  }
}

/** A modal question; resolves true when confirmed. */
export function confirmDialog(title: string, message: string, action: string): Promise<boolean> {
  return formDialog(title, [h('p', {}, message)], action, 'danger').then((form) => form !== undefined)
}

/** A modal form; resolves with its values, or undefined when cancelled. */
export function formDialog(title: string, fields: Node[], action: string, kind: 'danger' | 'primary' = 'primary'): Promise<FormData | undefined> {
  return new Promise((resolve) => {
    const form = h(
      'form',
      { method: 'dialog' },
      h('h2', {}, title),
      ...fields,
      h(
        'div',
        { class: 'dialog-actions' },
        h('button', { type: 'button', class: 'btn ghost', value: 'cancel', onclick: () => dialog.close('cancel') }, 'Cancel'),
        h('button', { type: 'submit', class: `btn ${kind}`, value: 'ok' }, action),
      ),
    )
    const dialog = h('dialog', { 'aria-label': title }, form)
    form.addEventListener('submit', (e) => {
      e.preventDefault()
      dialog.close('ok')
    })
    dialog.addEventListener('close', () => {
      dialog.remove()
      resolve(dialog.returnValue === 'ok' ? new FormData(form) : undefined)
    })
    document.body.append(dialog)
    dialog.showModal()
  })
}

export function field(label: string, input: HTMLElement): HTMLLabelElement {
  return h('label', { class: 'field' }, h('span', {}, label), input)
}

let toasts: HTMLElement | undefined

/** A short message in the corner (role=status, so screen readers and tests read it). */
export function toast(message: string, tone: 'ok' | 'bad' = 'ok'): void {
  toasts ??= document.body.appendChild(h('div', { class: 'toasts', role: 'status', 'aria-live': 'polite' }))
  const t = h('div', { class: `toast ${tone}` }, message)
  toasts.append(t)
  while (toasts.childElementCount > 3) toasts.firstElementChild!.remove()
  setTimeout(() => t.remove(), tone === 'bad' ? 8000 : 4000)
}

const numbers = new Intl.NumberFormat('en-US', { maximumFractionDigits: 1 })

export function num(n: number | undefined): string {
  return n === undefined || !Number.isFinite(n) ? '–' : numbers.format(n)
}

/** "1 client", "3 clients" */
export function plural(n: number, noun: string): string {
  return `${num(n)} ${noun}${n === 1 ? '' : 's'}`
}

export function bytes(n: number): string {
  if (n < 1024) return `${n} B`
  if (n < 1 << 20) return `${numbers.format(n / 1024)} KiB`
  return `${numbers.format(n / (1 << 20))} MiB`
}

/** "3d 4h", "5m 12s", "40s" */
export function duration(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds))
  const parts: Array<[number, string]> = [
    [Math.floor(s / 86400), 'd'],
    [Math.floor((s % 86400) / 3600), 'h'],
    [Math.floor((s % 3600) / 60), 'm'],
    [s % 60, 's'],
  ]
  const first = parts.findIndex(([v]) => v > 0)
  if (first < 0) return '0s'
  return parts
    .slice(first, first + 2)
    .map(([v, u]) => `${v}${u}`)
    .join(' ')
}

/** A moment: its time of day when today, else its date and time */
export function when(at: string | number | undefined): string {
  if (at === undefined) return '–'
  const d = new Date(at)
  if (!Number.isFinite(d.getTime())) return '–'
  const p = (n: number): string => String(n).padStart(2, '0')
  const time = `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`
  return d.toDateString() === new Date().toDateString() ? time : `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${time}`
}

export function clock(ms: number): string {
  const d = new Date(ms)
  const p = (n: number, w = 2): string => String(n).padStart(w, '0')
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`
}
