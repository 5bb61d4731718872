import uPlot from 'uplot'
import { h, num } from './dom.js'
import type { Stats } from './types.js'

// The live charts: /admin/stats sampled each second, up to the last five minutes shown.
// Counters become rates (per second, from the difference of two samples; a
// counter that went back, as after a restart, reads 0); gauges are drawn as
// they are. Hovering a chart shows that second's values in its header.

const KEEP = 300
/** seconds the x axis spans at least (it grows to KEEP as samples come) */
const MIN_SPAN = 60

type Value = (s: Stats, prev: Stats | undefined) => number | null

interface SeriesSpec {
  label: string
  color: string
  value: Value
}

interface ChartSpec {
  title: string
  /** shown beside the title ('' for none) */
  unit: string
  series: SeriesSpec[]
}

const gauge =
  (key: keyof Stats): Value =>
  (s) =>
    s[key] as number

const rate =
  (key: keyof Stats): Value =>
  (s, prev) => {
    if (prev === undefined || s.at <= prev.at) return null
    return Math.max(0, (s[key] as number) - (prev[key] as number)) / ((s.at - prev.at) / 1000)
  }

export const CHARTS: ChartSpec[] = [
  // clients: CONNACK sent (sockets still before their CONNECT are not counted); older brokers only tell connections
  { title: 'Connections', unit: '', series: [{ label: 'clients', color: '#4ea1ff', value: (s) => s.clients ?? s.connections }] },
  {
    title: 'Messages',
    unit: 'per second',
    series: [
      { label: 'in', color: '#3fb950', value: rate('messagesIn') },
      { label: 'out', color: '#a371f7', value: rate('messagesOut') },
    ],
  },
  { title: 'Drops', unit: 'per second', series: [{ label: 'dropped', color: '#f0883e', value: rate('dropped') }] },
  {
    title: 'Hooks',
    unit: 'per second',
    series: [
      { label: 'calls', color: '#4ea1ff', value: rate('hookCalls') },
      { label: 'denies', color: '#d29922', value: rate('hookDenies') },
      { label: 'errors', color: '#f85149', value: rate('hookErrors') },
    ],
  },
  {
    title: 'Webhooks',
    unit: '',
    series: [
      { label: 'queued', color: '#39c5cf', value: gauge('webhookQueued') },
      { label: 'dead letters', color: '#f85149', value: gauge('webhookDeadLettered') },
    ],
  },
]

class Chart {
  readonly el: HTMLElement
  private readonly values: HTMLElement[]
  private readonly plot: uPlot
  private readonly data: Array<Array<number | null>>
  private hovered: number | null = null

  constructor(private readonly spec: ChartSpec) {
    this.values = spec.series.map(() => h('b', {}, '–'))
    const legend = h(
      'div',
      { class: 'chart-values' },
      ...spec.series.map((s, i) => h('span', { class: 'chart-value' }, h('i', { class: 'dot', 'data-color': s.color }), s.label, ' ', this.values[i]!)),
    )
    const holder = h('div', { class: 'chart-plot' })
    this.el = h(
      'figure',
      { class: 'chart', 'aria-label': `${spec.title} chart` },
      h('figcaption', {}, h('span', { class: 'chart-title' }, spec.title, spec.unit !== '' ? h('span', { class: 'unit' }, ` ${spec.unit}`) : null), legend),
      holder,
    )
    for (const dot of legend.querySelectorAll<HTMLElement>('.dot')) dot.style.background = dot.dataset.color!
    this.data = [[], ...spec.series.map(() => [])]
    const axis = { stroke: '#8b96a5', font: '10px system-ui, sans-serif', grid: { stroke: '#232a34', width: 1 }, ticks: { show: false } }
    this.plot = new uPlot(
      {
        width: 300,
        height: 104,
        legend: { show: false },
        cursor: { drag: { x: false, y: false }, points: { size: 6 } },
        scales: {
          x: { time: true, range: (_u, min, max) => [Math.min(max - MIN_SPAN, Math.max(min, max - KEEP)), max] },
          y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.15 : 1] },
        },
        axes: [
          { ...axis, size: 20, space: 70, values: (_u, ticks) => ticks.map(timeOfDay) },
          { ...axis, size: 38, values: (_u, ticks) => ticks.map((t) => compact(t)) },
        ],
        // only the first series is filled: overlapping fills would hide each other
        series: [
          {},
          ...spec.series.map((s, i) => ({ label: s.label, stroke: s.color, width: 1.5, fill: i === 0 ? `${s.color}26` : undefined, points: { show: false } })),
        ],
        hooks: {
          setCursor: [
            (u: uPlot) => {
              this.hovered = u.cursor.idx ?? null
              this.showValues()
            },
          ],
        },
      },
      this.data as uPlot.AlignedData,
      holder,
    )
    new ResizeObserver(() => {
      const width = holder.clientWidth
      if (width > 0 && width !== this.plot.width) this.plot.setSize({ width, height: 104 })
    }).observe(holder)
  }

  push(s: Stats, prev: Stats | undefined): void {
    this.data[0]!.push(s.at / 1000)
    this.spec.series.forEach((series, i) => this.data[i + 1]!.push(series.value(s, prev)))
    if (this.data[0]!.length > KEEP) for (const column of this.data) column.shift()
    this.plot.setData(this.data as uPlot.AlignedData)
    this.showValues()
  }

  private showValues(): void {
    const last = this.data[0]!.length - 1
    const at = this.hovered ?? last
    this.spec.series.forEach((_s, i) => {
      const v = at >= 0 ? this.data[i + 1]![at] : null
      this.values[i]!.textContent = v === null || v === undefined ? '–' : num(v)
    })
  }
}

/** 14:05, or 14:05:30 between whole minutes (seconds since the epoch) */
function timeOfDay(t: number): string {
  const d = new Date(t * 1000)
  const p = (n: number): string => String(n).padStart(2, '0')
  return `${p(d.getHours())}:${p(d.getMinutes())}${d.getSeconds() !== 0 ? `:${p(d.getSeconds())}` : ''}`
}

/** 1.2k, 3.4M: axis labels that fit */
function compact(n: number): string {
  if (Math.abs(n) >= 1e6) return `${num(n / 1e6)}M`
  if (Math.abs(n) >= 1e3) return `${num(n / 1e3)}k`
  return num(n)
}

export class Charts {
  readonly el: HTMLElement
  private readonly charts = CHARTS.map((spec) => new Chart(spec))
  private prev: Stats | undefined

  constructor() {
    this.el = h('section', { class: 'charts', 'aria-label': 'live charts' }, ...this.charts.map((c) => c.el))
  }

  push(s: Stats): void {
    // a sample from another node (a load balancer in front of a cluster) is not a difference
    const prev = this.prev?.node === s.node ? this.prev : undefined
    for (const c of this.charts) c.push(s, prev)
    this.prev = s
  }
}
