// A tiny dependency-free SVG line chart for the bench's cost curves (curves.ts):
// x on a log scale, y linear from 0 (or log), one line per series, axis labels, legend.

export interface Series {
  name: string
  /** [x, y]; points whose y is not finite are left out (the line breaks there) */
  points: Array<[number, number]>
}

export interface ChartOptions {
  title: string
  xLabel: string
  yLabel: string
  series: Series[]
  logY?: boolean
  width?: number
  height?: number
}

const colors: Record<string, string> = { hookmq: '#d62728', aedes: '#1f77b4', mosquitto: '#2ca02c' }
const hookmqs = ['#d62728', '#ff7f0e', '#8c564b']
const spare = ['#9467bd', '#ff7f0e', '#8c564b', '#e377c2', '#7f7f7f']

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')

/** 1.5k, 20k, 1M, 0.25: short labels */
export function short(v: number): string {
  const a = Math.abs(v)
  const t = (x: number, u: string): string => `${Number(x.toPrecision(3))}${u}`
  if (a >= 1e9) return t(v / 1e9, 'G')
  if (a >= 1e6) return t(v / 1e6, 'M')
  if (a >= 1e3) return t(v / 1e3, 'k')
  return a === 0 ? '0' : t(v, '')
}

/** about `n` round ticks from 0 to at least `max` */
function linearTicks(max: number, n = 5): number[] {
  if (!(max > 0)) return [0, 1]
  const raw = max / n
  const mag = 10 ** Math.floor(Math.log10(raw))
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw)!
  const ticks: number[] = []
  for (let v = 0; v < max + step * 0.999; v += step) ticks.push(Number(v.toPrecision(12)))
  return ticks
}

/** powers of ten covering [min, max] */
function logTicks(min: number, max: number): number[] {
  const out: number[] = []
  for (let e = Math.floor(Math.log10(min)); e <= Math.ceil(Math.log10(max)); e++) out.push(10 ** e)
  return out
}

export function lineChart(o: ChartOptions): string {
  const W = o.width ?? 640
  const H = o.height ?? 400
  const m = { left: 70, right: 150, top: 36, bottom: 50 }
  const pw = W - m.left - m.right
  const ph = H - m.top - m.bottom
  const pts = o.series.flatMap((s) => s.points.filter(([x, y]) => x > 0 && Number.isFinite(y) && (!o.logY || y > 0)))
  const xs = pts.map(([x]) => x)
  const ys = pts.map(([, y]) => y)
  const xTicks = xs.length ? logTicks(Math.min(...xs), Math.max(...xs)) : [1, 10]
  const [x0, x1] = [Math.log10(xTicks[0]!), Math.log10(xTicks.at(-1)!)]
  const yTicks = o.logY && ys.length ? logTicks(Math.min(...ys), Math.max(...ys)) : linearTicks(ys.length ? Math.max(...ys) : 1)
  const yf = (v: number): number => (o.logY ? Math.log10(v) : v)
  const [y0, y1] = [yf(yTicks[0]!), yf(yTicks.at(-1)!)]
  const X = (x: number): number => m.left + ((Math.log10(x) - x0) / (x1 - x0 || 1)) * pw
  const Y = (y: number): number => m.top + ph - ((yf(y) - y0) / (y1 - y0 || 1)) * ph
  const f = (v: number): string => v.toFixed(1)
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2 - m.right / 2 + m.left / 2}" y="20" text-anchor="middle" font-size="14" font-weight="bold">${esc(o.title)}</text>`,
  ]
  for (const t of xTicks) {
    out.push(`<line x1="${f(X(t))}" y1="${m.top}" x2="${f(X(t))}" y2="${m.top + ph}" stroke="#ddd"/>`)
    out.push(`<text x="${f(X(t))}" y="${m.top + ph + 16}" text-anchor="middle">${short(t)}</text>`)
  }
  for (const t of yTicks) {
    out.push(`<line x1="${m.left}" y1="${f(Y(t))}" x2="${m.left + pw}" y2="${f(Y(t))}" stroke="#ddd"/>`)
    out.push(`<text x="${m.left - 6}" y="${f(Y(t) + 4)}" text-anchor="end">${short(t)}</text>`)
  }
  out.push(`<rect x="${m.left}" y="${m.top}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`)
  out.push(`<text x="${m.left + pw / 2}" y="${H - 12}" text-anchor="middle">${esc(o.xLabel)} (log scale)</text>`)
  out.push(`<text transform="translate(16 ${m.top + ph / 2}) rotate(-90)" text-anchor="middle">${esc(o.yLabel)}${o.logY ? ' (log scale)' : ''}</text>`)
  o.series.forEach((s, i) => {
    // hookmq variants (hookmq@<dir>) in reds and oranges, after plain hookmq's
    const variant = o.series.filter((x) => x.name.startsWith('hookmq')).indexOf(s)
    const color = colors[s.name] ?? (variant >= 0 ? hookmqs[variant % hookmqs.length]! : spare[i % spare.length]!)
    // a break in the line wherever a point is missing (n/a, over the time cap)
    let d = ''
    let pen = false
    for (const [x, y] of s.points) {
      if (!(x > 0 && Number.isFinite(y) && (!o.logY || y > 0))) {
        pen = false
        continue
      }
      d += `${pen ? 'L' : 'M'}${f(X(x))},${f(Y(y))} `
      pen = true
      out.push(
        `<circle cx="${f(X(x))}" cy="${f(Y(y))}" r="3" fill="${color}"><title>${esc(`${s.name} ${short(x)}: ${Number(y.toPrecision(4))}`)}</title></circle>`,
      )
    }
    if (d) out.push(`<path d="${d.trim()}" fill="none" stroke="${color}" stroke-width="2"/>`)
    const ly = m.top + 10 + i * 18
    out.push(`<line x1="${m.left + pw + 12}" y1="${ly}" x2="${m.left + pw + 32}" y2="${ly}" stroke="${color}" stroke-width="2"/>`)
    out.push(`<text x="${m.left + pw + 36}" y="${ly + 4}">${esc(s.name)}</text>`)
  })
  out.push('</svg>')
  return out.join('\n') + '\n'
}
