import { Api, ApiError } from './api.js'
import { Charts } from './charts.js'
import { ClientsView } from './clients.js'
import { button, duration, h, plural } from './dom.js'
import { HooksView } from './hooks.js'
import { RetainedView } from './retained.js'
import type { Stats } from './types.js'
import { TraceView } from './trace.js'
import type { View } from './view.js'
import { WebhooksView } from './webhooks.js'

// The dashboard: asks for the admin token when the API refuses (401), then
// samples /admin/stats each second for the header and the charts, and
// refreshes the open tab every two seconds. A 401 at any time stops it all
// and asks again; the page shows no data it was not given with a token.

const TAB_EVERY_MS = 2000

class Dashboard {
  private readonly api = new Api()
  private live: { stop(): void } | undefined

  constructor() {
    this.api.onUnauthorized = (message) => this.login(this.api.token === undefined ? 'The admin API needs a token.' : `The token was refused: ${message}`)
  }

  /** First look: does the API answer without asking (a stored token, or loopback with no token configured)? */
  async boot(): Promise<void> {
    try {
      const stats = await this.api.get<Stats>('/admin/stats')
      this.start(stats)
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) return // onUnauthorized showed the form
      this.login(err instanceof ApiError ? `The admin API answered ${err.status}: ${err.message}` : `The broker does not answer: ${(err as Error).message}`)
    }
  }

  /** The token form, in the "unauthorized" state: nothing of the broker on the page. */
  private login(message: string): void {
    this.live?.stop()
    this.live = undefined
    const input = h('input', {
      type: 'password',
      name: 'token',
      autocomplete: 'current-password',
      required: true,
      'aria-label': 'admin token',
      placeholder: 'http.token',
    })
    const form = h(
      'form',
      { class: 'login', 'aria-label': 'sign in' },
      h('div', { class: 'brand' }, h('img', { src: '/dashboard/icon.svg', alt: '', width: 28, height: 28 }), h('span', {}, 'hookmq')),
      h('h1', {}, 'Unauthorized'),
      h('p', { class: 'error', role: 'alert' }, message),
      h('label', { class: 'field' }, h('span', {}, 'Admin token'), input),
      h('button', { type: 'submit', class: 'btn primary' }, 'Open the dashboard'),
      h('p', { class: 'muted small' }, 'The token is kept in this tab only (sessionStorage).'),
    )
    form.addEventListener('submit', (e) => {
      e.preventDefault()
      this.api.token = input.value.trim()
      void this.boot()
    })
    document.body.dataset.state = 'unauthorized'
    document.body.replaceChildren(h('main', { class: 'login-page' }, form))
    input.focus()
  }

  private start(first: Stats): void {
    const charts = new Charts()
    const trace = new TraceView(this.api)
    const views: View[] = [
      new ClientsView(this.api, (clientId) => {
        select(views.indexOf(trace))
        trace.traceClient(clientId)
      }),
      new HooksView(this.api),
      new WebhooksView(this.api),
      new RetainedView(this.api),
      trace,
    ]
    const node = h('span', { class: 'mono' })
    const uptime = h('span', {})
    const figures = h('span', { class: 'muted' })
    const state = h('span', { class: 'state ok', role: 'status' }, 'live')
    const signOut = button(
      'Sign out',
      () => {
        this.api.token = undefined
        this.login('Signed out.')
      },
      { kind: 'ghost' },
    )
    const header = h(
      'header',
      { class: 'top' },
      h('div', { class: 'brand' }, h('img', { src: '/dashboard/icon.svg', alt: '', width: 22, height: 22 }), h('span', {}, 'hookmq')),
      h('span', {}, 'node ', node),
      h('span', {}, 'up ', uptime),
      figures,
      h('span', { class: 'grow' }),
      state,
      this.api.token !== undefined ? signOut : null,
    )
    const tabs = views.map((v, i) => h('button', { type: 'button', role: 'tab', class: 'tab', 'aria-selected': 'false', onclick: () => select(i) }, v.title))
    const panel = h('section', { class: 'panel', role: 'tabpanel' })
    const problem = h('p', { class: 'banner error', role: 'alert', hidden: true })
    let current = 0
    let refreshing = false
    const refreshTab = async (): Promise<void> => {
      const view = views[current]!
      if (refreshing || view.refresh === undefined) return
      refreshing = true
      try {
        await view.refresh()
        problem.hidden = true
      } catch (err) {
        if (err instanceof ApiError && err.status === 401) return
        console.error(err)
        problem.textContent = `${view.title} could not be read: ${(err as Error).message}`
        problem.hidden = false
      } finally {
        refreshing = false
      }
    }
    const select = (i: number): void => {
      current = i
      tabs.forEach((t, j) => t.setAttribute('aria-selected', String(i === j)))
      panel.replaceChildren(views[i]!.el)
      void refreshTab()
    }
    const show = (s: Stats): void => {
      node.textContent = s.node
      uptime.textContent = duration(s.uptimeSeconds)
      figures.textContent = `${plural(s.clients ?? s.connections, 'client')} · ${plural(s.subscriptions, 'subscription')}`
      state.textContent = 'live'
      state.className = 'state ok'
      charts.push(s)
    }
    document.body.dataset.state = 'live'
    document.body.replaceChildren(h('div', { class: 'app' }, header, charts.el, h('nav', { class: 'tabs', role: 'tablist' }, ...tabs), problem, panel))
    show(first)
    select(0)

    let sampling = false
    const sample = async (): Promise<void> => {
      if (sampling) return
      sampling = true
      try {
        show(await this.api.get<Stats>('/admin/stats'))
      } catch (err) {
        if (err instanceof ApiError && err.status === 401) return
        state.textContent = err instanceof ApiError ? `error ${err.status}` : 'offline'
        state.className = 'state bad'
      } finally {
        sampling = false
      }
    }
    const timers = [setInterval(() => void sample(), 1000), setInterval(() => void refreshTab(), TAB_EVERY_MS)]
    this.live = {
      stop: () => {
        for (const t of timers) clearInterval(t)
        trace.stop()
      },
    }
  }
}

void new Dashboard().boot()
