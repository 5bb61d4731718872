import type { Api } from './api.js'
import { badge, button, confirmDialog, h, num, Table, toast, when } from './dom.js'
import type { HookRow } from './types.js'
import { act, type View } from './view.js'

// Hooks: state, version, last load error (with file:line), calls, denies,
// errors, p99; reload, disable, enable.

const STATE_TONE = { loaded: 'ok', failed: 'bad', tripped: 'warn', disabled: 'muted' } as const

export class HooksView implements View {
  readonly title = 'Hooks'
  readonly el: HTMLElement
  private readonly table: Table<HookRow>

  constructor(private readonly api: Api) {
    this.table = new Table<HookRow>(
      [
        { title: 'Hook', class: 'mono', cell: (x) => h('span', {}, x.name, x.file !== undefined ? h('div', { class: 'muted small' }, x.file) : null) },
        { title: 'State', cell: (x) => [badge(x.state, STATE_TONE[x.state] ?? 'muted'), x.quarantined ? badge('quarantined', 'warn') : null] },
        { title: 'Version', class: 'num', cell: (x) => (x.version > 0 ? `v${x.version}` : '–') },
        { title: 'Isolation', cell: (x) => x.isolation ?? '–' },
        { title: 'Loaded', cell: (x) => when(x.loadedAt) },
        { title: 'Calls', class: 'num', cell: (x) => num(x.calls) },
        { title: 'Denies', class: 'num', cell: (x) => num(x.denies) },
        { title: 'Errors', class: 'num', cell: (x) => num(x.errors + x.timeouts) },
        { title: 'p99', class: 'num', cell: (x) => `${num(x.p99Ms)} ms` },
        { title: 'Last error', class: 'wrap', cell: (x) => lastError(x) },
        {
          title: '',
          class: 'actions',
          cell: (x) => [
            button('Reload', () => void this.run(x.name, 'reload'), { kind: 'ghost', ariaLabel: `Reload ${x.name}` }),
            x.state === 'disabled'
              ? button('Enable', () => void this.run(x.name, 'enable'), { kind: 'ghost', ariaLabel: `Enable ${x.name}` })
              : button('Disable', () => void this.run(x.name, 'disable'), { kind: 'danger', ariaLabel: `Disable ${x.name}` }),
          ],
        },
      ],
      (x) => x.file ?? x.name,
      'No hook is loaded.',
      'hooks',
    )
    this.el = h(
      'div',
      { class: 'view' },
      h('p', { class: 'muted' }, 'Errors count throws and timeouts. A failed file keeps its previous version serving.'),
      h('div', { class: 'scroll' }, this.table.el),
    )
  }

  async refresh(): Promise<void> {
    this.table.update(await this.api.get<HookRow[]>('/admin/hooks'))
  }

  private async run(name: string, action: 'reload' | 'disable' | 'enable'): Promise<void> {
    if (action === 'disable' && !(await confirmDialog('Disable hook', `Disable "${name}"? It is skipped, as if absent, until enabled.`, 'Disable'))) return
    await act(async () => {
      const r = await this.api.post<HookRow>(`/admin/hooks/${encodeURIComponent(name)}/${action}`)
      if (action !== 'reload') toast(`${name}: ${action}d`)
      else if (r.state !== 'failed') toast(`Reloaded ${name}: v${r.version} ${r.state}`)
      else toast(`${name} did not load: ${r.error?.message ?? 'failed'}${r.version > 0 ? ` (v${r.version} still serving)` : ''}`, 'bad')
      await this.refresh()
    })
  }
}

function lastError(x: HookRow): Node | string {
  const e = x.error
  if (e === undefined) return ''
  const where = e.file !== undefined ? `${e.file}${e.line !== undefined ? `:${e.line}` : ''}${e.column !== undefined ? `:${e.column}` : ''}` : undefined
  return h('span', { class: 'error' }, where !== undefined ? h('code', {}, where) : null, where !== undefined ? ' ' : null, e.message)
}
