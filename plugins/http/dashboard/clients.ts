import { ApiError, unavailable, type Api } from './api.js'
import { badge, button, bytes, confirmDialog, duration, field, formDialog, h, num, Table, toast, when } from './dom.js'
import type { Ban, ClientDetail, ClientRow } from './types.js'
import { act, type View } from './view.js'

// Connected clients (every node): a prefix filter, kick, ban, trace; one
// client's detail beside the list; the bans in force below it.

const PROTOCOLS: Record<number, string> = { 3: '3.1', 4: '3.1.1', 5: '5.0' }
const PAGE = 200
const KINDS: Record<Ban['kind'], string> = { clientId: 'client id', username: 'username', address: 'address' }

export class ClientsView implements View {
  readonly title = 'Clients'
  readonly el: HTMLElement
  private readonly by = h(
    'select',
    { 'aria-label': 'filter by' },
    h('option', { value: 'clientId' }, 'client id'),
    h('option', { value: 'username' }, 'username'),
    h('option', { value: 'address' }, 'address'),
  )
  private readonly prefix = h('input', { type: 'search', placeholder: 'prefix…', 'aria-label': 'client filter', spellcheck: 'false' })
  private readonly count = h('span', { class: 'muted' })
  private readonly table: Table<ClientRow>
  private readonly detail = h('aside', { class: 'detail', hidden: true, 'aria-label': 'client detail' })
  private readonly bans: Table<Ban>
  private readonly bansNote = h('p', { class: 'muted', hidden: true })
  private readonly bansBox = h('div', { class: 'scroll short' })
  private selected: string | undefined

  constructor(
    private readonly api: Api,
    private readonly trace: (clientId: string) => void,
  ) {
    this.table = new Table<ClientRow>(
      [
        {
          title: 'Client id',
          class: 'mono',
          cell: (c) => h('a', { href: '#', class: 'link', onclick: (e) => (e.preventDefault(), this.select(c.clientId)) }, c.clientId),
        },
        { title: 'Username', class: 'mono', cell: (c) => c.username ?? h('span', { class: 'muted' }, '–') },
        { title: 'Address', class: 'mono', cell: (c) => c.address },
        { title: 'MQTT', cell: (c) => PROTOCOLS[c.protocolVersion] ?? String(c.protocolVersion) },
        { title: 'Listener', cell: (c) => c.listener },
        { title: 'Node', class: 'mono', cell: (c) => c.node },
        { title: 'Connected', cell: (c) => h('span', { title: c.connectedAt }, when(c.connectedAt)) },
        {
          title: '',
          class: 'actions',
          cell: (c) => [
            button('Trace', () => this.trace(c.clientId), { kind: 'ghost', ariaLabel: `Trace ${c.clientId}` }),
            button('Kick', () => void this.kick(c.clientId), { kind: 'danger', ariaLabel: `Kick ${c.clientId}` }),
            button('Ban', () => void this.ban('clientId', c.clientId), { kind: 'danger ban-action', ariaLabel: `Ban ${c.clientId}` }),
          ],
        },
      ],
      (c) => c.clientId,
      'No client is connected.',
      'clients',
    )
    this.bans = new Table<Ban>(
      [
        { title: 'Kind', cell: (b) => KINDS[b.kind] ?? b.kind },
        { title: 'Value', class: 'mono', cell: (b) => b.value },
        { title: 'Reason', class: 'wrap', cell: (b) => b.reason ?? '' },
        { title: 'By', cell: (b) => b.by ?? '' },
        { title: 'Since', cell: (b) => when(b.createdAt) },
        { title: 'Expires', cell: (b) => (b.expiresAt === undefined ? 'never' : when(b.expiresAt)) },
        { title: '', class: 'actions', cell: (b) => button('Lift', () => void this.lift(b), { kind: 'ghost', ariaLabel: `Lift ban ${b.value}` }) },
      ],
      (b) => b.id,
      'No ban is in force.',
      'bans',
    )
    this.bansBox.append(this.bans.el)
    let typing: ReturnType<typeof setTimeout> | undefined
    const changed = (): void => {
      clearTimeout(typing)
      typing = setTimeout(() => void this.refresh(), 250)
    }
    this.prefix.addEventListener('input', changed)
    this.by.addEventListener('change', changed)
    this.el = h(
      'div',
      { class: 'view' },
      h(
        'div',
        { class: 'toolbar' },
        this.by,
        this.prefix,
        this.count,
        h('span', { class: 'grow' }),
        button('Add ban…', () => void this.ban('clientId', ''), { kind: 'ghost ban-action' }),
      ),
      h('div', { class: 'split' }, h('div', { class: 'scroll' }, this.table.el), this.detail),
      h('h3', {}, 'Bans'),
      this.bansNote,
      this.bansBox,
    )
  }

  async refresh(): Promise<void> {
    const q = new URLSearchParams({ limit: String(PAGE) })
    if (this.prefix.value !== '') q.set(this.by.value, this.prefix.value)
    const list = await this.api.get<{ total: number; clients: ClientRow[]; missingNodes?: string[] }>(`/admin/clients?${q}`)
    this.table.update(list.clients)
    this.count.textContent =
      `${num(list.clients.length)} of ${num(list.total)} clients` + (list.missingNodes?.length ? ` (no answer from ${list.missingNodes.join(', ')})` : '')
    await Promise.all([this.showDetail(), this.refreshBans()])
  }

  private select(clientId: string): void {
    this.selected = this.selected === clientId ? undefined : clientId
    void this.showDetail()
  }

  private async showDetail(): Promise<void> {
    const id = this.selected
    if (id === undefined) return void (this.detail.hidden = true)
    let c: ClientDetail
    try {
      c = await this.api.get<ClientDetail>(`/admin/clients/${encodeURIComponent(id)}`)
    } catch (err) {
      if (!(err instanceof ApiError) || err.status !== 404) throw err
      this.detail.replaceChildren(this.detailHead(id), h('p', { class: 'muted' }, 'Not connected any more.'))
      this.detail.hidden = false
      return
    }
    const row = (k: string, v: string): HTMLElement[] => [h('dt', {}, k), h('dd', {}, v)]
    this.detail.replaceChildren(
      this.detailHead(c.clientId),
      h(
        'dl',
        {},
        ...row('user', c.username ?? '–'),
        ...row('address', `${c.address} (${c.listener})`),
        ...row('MQTT', PROTOCOLS[c.protocolVersion] ?? String(c.protocolVersion)),
        ...row('keep-alive', `${c.keepaliveSeconds}s`),
        ...row('session expiry', duration(c.sessionExpirySeconds)),
        ...row('in flight / queued', `${num(c.inflight)} / ${num(c.queued)}`),
        ...row('bytes in / out', `${bytes(c.bytesIn)} / ${bytes(c.bytesOut)}`),
        ...row('connected', `${when(c.connectedAt)} on ${c.node}`),
      ),
      h('h4', {}, `Subscriptions (${c.subscriptions.length})`),
      h('ul', { class: 'subs mono' }, ...c.subscriptions.map((s) => h('li', {}, s.filter, ' ', badge(`QoS ${s.qos}`, 'muted')))),
    )
    this.detail.hidden = false
  }

  private detailHead(clientId: string): HTMLElement {
    return h(
      'div',
      { class: 'detail-head' },
      h('h3', { class: 'mono' }, clientId),
      button('×', () => this.select(clientId), { kind: 'ghost', ariaLabel: 'close detail' }),
    )
  }

  private async refreshBans(): Promise<void> {
    if (this.el.classList.contains('no-bans')) return // a broker does not gain them while it runs
    try {
      const { bans } = await this.api.get<{ bans: Ban[] }>('/admin/bans')
      this.bans.update(bans)
      this.bansNote.hidden = true
      this.bansBox.hidden = false
    } catch (err) {
      if (!unavailable(err)) throw err
      this.bansNote.textContent = 'Bans are not available on this broker (the API answered 501).'
      this.bansNote.hidden = false
      this.bansBox.hidden = true
      this.el.classList.add('no-bans')
    }
  }

  private async kick(clientId: string): Promise<void> {
    if (!(await confirmDialog('Kick client', `Disconnect "${clientId}"? (MQTT 5 clients get DISCONNECT 0x98, Administrative action)`, 'Kick'))) return
    await act(async () => {
      const r = await this.api.post<{ kicked: string; node: string }>(`/admin/clients/${encodeURIComponent(clientId)}/kick`)
      toast(`Kicked ${r.kicked} (node ${r.node})`)
      await this.refresh()
    })
  }

  private async ban(kind: Ban['kind'], value: string): Promise<void> {
    const kinds = h(
      'select',
      { name: 'kind' },
      h('option', { value: 'clientId' }, 'client id'),
      h('option', { value: 'username' }, 'username'),
      h('option', { value: 'address' }, 'address or CIDR'),
    )
    kinds.value = kind
    const expiry = h(
      'select',
      { name: 'expires' },
      ...[
        ['', 'never'],
        ['600', '10 minutes'],
        ['3600', '1 hour'],
        ['86400', '1 day'],
        ['604800', '7 days'],
      ].map(([v, label]) => h('option', { value: v! }, label!)),
    )
    const form = await formDialog(
      'Ban',
      [
        field('Ban by', kinds),
        field('Value', h('input', { name: 'value', value, required: true, spellcheck: 'false', 'aria-label': 'ban value' })),
        field('Reason', h('input', { name: 'reason', maxlength: 200, placeholder: 'optional' })),
        field('Expires', expiry),
        h('p', { class: 'muted' }, 'Connected clients that match are disconnected.'),
      ],
      'Ban',
      'danger',
    )
    if (form === undefined) return
    const body: Record<string, unknown> = { [String(form.get('kind'))]: String(form.get('value')) }
    if (form.get('reason') !== '') body.reason = String(form.get('reason'))
    if (form.get('expires') !== '') body.expiresInSeconds = Number(form.get('expires'))
    await act(async () => {
      await this.api.post('/admin/bans', body)
      toast(`Banned ${KINDS[form.get('kind') as Ban['kind']]} ${String(form.get('value'))}`)
      await this.refresh()
    })
  }

  private async lift(b: Ban): Promise<void> {
    await act(async () => {
      await this.api.del(`/admin/bans/${encodeURIComponent(b.id)}`)
      toast(`Lifted the ban on ${b.value}`)
      await this.refresh()
    })
  }
}
