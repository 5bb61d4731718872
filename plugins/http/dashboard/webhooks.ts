import type { Api } from './api.js'
import { button, confirmDialog, h, num, Table, toast, when } from './dom.js'
import type { DeadLetter, WebhookRow } from './types.js'
import { act, type View } from './view.js'

// Webhooks: each one's queue, in flight, delivered, retries, dead letters;
// the dead letters themselves, replayed (queued again) or purged per webhook.

export class WebhooksView implements View {
  readonly title = 'Webhooks'
  readonly el: HTMLElement
  private readonly table: Table<WebhookRow>
  private readonly dead: Table<DeadLetter>
  private readonly deadCount = h('span', { class: 'muted' })

  constructor(private readonly api: Api) {
    this.table = new Table<WebhookRow>(
      [
        { title: 'Webhook', class: 'mono', cell: (w) => h('span', {}, w.name, h('div', { class: 'muted small' }, w.url)) },
        { title: 'Queued', class: 'num', cell: (w) => num(w.queued) },
        { title: 'In flight', class: 'num', cell: (w) => num(w.inFlight) },
        { title: 'Delivered', class: 'num', cell: (w) => num(w.delivered) },
        { title: 'Retried', class: 'num', cell: (w) => num(w.retried) },
        { title: 'Failed', class: 'num', cell: (w) => num(w.failed) },
        { title: 'Dead letters', class: 'num', cell: (w) => h('span', { class: w.deadLettered > 0 ? 'error' : '' }, num(w.deadLettered)) },
        { title: 'Dropped', class: 'num', cell: (w) => num(w.dropped) },
        { title: 'p99', class: 'num', cell: (w) => `${num(w.p99LatencyMs)} ms` },
        {
          title: '',
          class: 'actions',
          cell: (w) => [
            button('Replay', () => void this.replay(w.name), { kind: 'primary', ariaLabel: `Replay dead letters of ${w.name}` }),
            button('Purge', () => void this.purge(w.name), { kind: 'danger', ariaLabel: `Purge dead letters of ${w.name}` }),
          ],
        },
      ],
      (w) => w.name,
      'No webhook is configured.',
      'webhooks',
    )
    this.dead = new Table<DeadLetter>(
      [
        { title: 'At', cell: (d) => h('span', { title: d.at }, when(d.at)) },
        { title: 'Webhook', class: 'mono', cell: (d) => d.webhook },
        { title: 'Deliveries', class: 'num', cell: (d) => num(d.deliveries.length) },
        { title: 'Topics / events', class: 'mono wrap', cell: (d) => summary(d) },
        { title: 'Attempts', class: 'num', cell: (d) => num(d.attempts) },
        { title: 'Reason', class: 'wrap', cell: (d) => h('span', { class: 'error' }, d.reason) },
      ],
      (d) => d.id,
      'No dead letter.',
      'dead letters',
    )
    this.el = h(
      'div',
      { class: 'view' },
      h('div', { class: 'scroll short' }, this.table.el),
      h(
        'div',
        { class: 'toolbar' },
        h('h3', {}, 'Dead letters'),
        this.deadCount,
        h('span', { class: 'grow' }),
        button('Replay all', () => void this.replay(), { kind: 'primary' }),
        button('Purge all', () => void this.purge(), { kind: 'danger' }),
      ),
      h('div', { class: 'scroll' }, this.dead.el),
    )
  }

  async refresh(): Promise<void> {
    const [hooks, dead] = await Promise.all([
      this.api.get<WebhookRow[]>('/admin/webhooks'),
      this.api.get<{ deadLetters: DeadLetter[] }>('/admin/webhooks/dead-letters'),
    ])
    this.table.update(hooks)
    this.dead.update(dead.deadLetters)
    this.deadCount.textContent = `${num(dead.deadLetters.length)} batches`
  }

  private async replay(webhook?: string): Promise<void> {
    await act(async () => {
      const r = await this.api.post<{ requeued: number }>(`/admin/webhooks/dead-letters/replay${query(webhook)}`)
      toast(`Queued ${r.requeued} dead letter${r.requeued === 1 ? '' : 's'} again`)
      await this.refresh()
    })
  }

  private async purge(webhook?: string): Promise<void> {
    if (!(await confirmDialog('Purge dead letters', `Delete the dead letters of ${webhook ?? 'every webhook'}? They cannot be replayed afterwards.`, 'Purge')))
      return
    await act(async () => {
      const r = await this.api.del<{ purged: number }>(`/admin/webhooks/dead-letters${query(webhook)}`)
      toast(`Purged ${r.purged} dead letter${r.purged === 1 ? '' : 's'}`)
      await this.refresh()
    })
  }
}

function query(webhook: string | undefined): string {
  return webhook === undefined ? '' : `?webhook=${encodeURIComponent(webhook)}`
}

function summary(d: DeadLetter): string {
  const names = [...new Set(d.deliveries.map((x) => x.topic ?? x.event))]
  return names.length > 3 ? `${names.slice(0, 3).join(', ')} +${names.length - 3}` : names.join(', ')
}
