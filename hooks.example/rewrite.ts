// rewrite.ts — move messages from old topics to new ones (devices that cannot be re-flashed).
//
// Config (`hooks.rewrite`):
//
//   {
//     "rules": [
//       { "from": "legacy/+/temp",     "to": "sensors/{1}/temperature" },
//       { "from": "legacy/+/status/#", "to": "devices/{1}/{2}" }
//     ]
//   }
//
// {1}, {2}... are what the wildcards of `from` matched, in order: a "+" one
// level, a "#" the rest of the topic (its "/" included; nothing when it matched
// no level). A message on legacy/kitchen/temp is routed to
// sensors/kitchen/temperature instead: subscribers of the old topic no longer
// get it, and a retained one is stored under the new topic.
//
// The first rule that matches wins, and a rewritten topic is never matched
// again: a message is rewritten at most once, so no set of rules can loop (a
// rule a → b beside a rule b → a swaps them, once). Messages the broker or a
// hook publishes are rewritten too.
//
// Only topics under FILTER below pay for this hook: for any other topic the
// broker does not call it. Every rule's `from` must lie under FILTER (checked
// when the hook loads, naming the rule): widen FILTER when you add a rule
// elsewhere. A rewritten topic that the broker's rules refuse (too long, too
// many levels) is a failed transform: the message goes on unchanged and the
// error is logged.
import { defineHook } from 'hookmq'
import { z } from 'zod'

/** the topics this hook is called for; every rule's `from` must lie under one of them */
const FILTER = ['legacy/#']

const rule = z.object({ from: z.string().min(1), to: z.string().min(1) }).check((ctx) => {
  const { from, to } = ctx.value
  const problem = checkRule(from, to)
  if (problem !== undefined) ctx.issues.push({ code: 'custom', message: problem, input: ctx.value })
})
type Rule = z.infer<typeof rule>

export default defineHook({
  name: 'rewrite',
  order: 15,
  filter: { topics: FILTER },
  config: z.object({ rules: z.array(rule).default([]) }),

  transform({ topic }, { config }) {
    const rules = compiled(config.rules)
    for (let i = 0; i < rules.length; i++) {
      const to = rewrite(rules[i]!, topic)
      if (to !== undefined) return { topic: to }
    }
    return undefined // no rule: the message goes on as it is
  },
})

interface Compiled {
  /** `from` split into levels */
  from: string[]
  /** `to` as text between captures: parts[0], capture refs[0], parts[1], ... */
  parts: string[]
  refs: number[]
}

const cache = new WeakMap<Rule[], Compiled[]>()

function compiled(rules: Rule[]): Compiled[] {
  let c = cache.get(rules)
  if (c === undefined) {
    c = rules.map(({ from, to }) => {
      const pieces = to.split(/\{(\d+)\}/) // odd indexes are capture numbers
      return {
        from: from.split('/'),
        parts: pieces.filter((_, i) => i % 2 === 0),
        refs: pieces.filter((_, i) => i % 2 === 1).map(Number),
      }
    })
    cache.set(rules, c)
  }
  return c
}

/** The new topic when `topic` matches the rule, else undefined. */
function rewrite(r: Compiled, topic: string): string | undefined {
  const levels = topic.split('/')
  const captures: string[] = []
  for (let i = 0; i < r.from.length; i++) {
    const level = r.from[i]!
    if (level === '#') {
      captures.push(levels.slice(i).join('/'))
      return fill(r, captures)
    }
    if (i >= levels.length) return undefined
    if (level === '+') captures.push(levels[i]!)
    else if (level !== levels[i]) return undefined
  }
  return levels.length === r.from.length ? fill(r, captures) : undefined
}

function fill(r: Compiled, captures: string[]): string {
  let out = r.parts[0]!
  for (let i = 0; i < r.refs.length; i++) out += captures[r.refs[i]! - 1]! + r.parts[i + 1]!
  return out
}

/** Why a rule is unusable, or undefined. */
function checkRule(from: string, to: string): string | undefined {
  const levels = from.split('/')
  for (let i = 0; i < levels.length; i++) {
    const l = levels[i]!
    if (l.includes('#') && (l !== '#' || i !== levels.length - 1)) return `"${from}": "#" must be the last level on its own`
    if (l.includes('+') && l !== '+') return `"${from}": "+" must be a whole level`
  }
  if (!FILTER.some((f) => within(from, f))) return `"${from}" is outside this hook's filter (${FILTER.join(', ')}): widen FILTER in rewrite.ts`
  if (/[+#]/.test(to)) return `"${to}": a topic name has no wildcards`
  const wildcards = levels.filter((l) => l === '+' || l === '#').length
  for (const m of to.matchAll(/\{(\d+)\}/g)) {
    const n = Number(m[1])
    if (n < 1 || n > wildcards) return `"${to}": {${n}} but "${from}" has ${wildcards} wildcard(s)`
  }
  return undefined
}

/** True when every topic the filter `inner` matches is matched by `outer`. */
function within(inner: string, outer: string): boolean {
  const a = inner.split('/')
  const b = outer.split('/')
  for (let i = 0; i < b.length; i++) {
    if (b[i] === '#') return !(i === 0 && inner.startsWith('$'))
    if (i >= a.length || a[i] === '#') return false
    if (b[i] === '+') {
      if (i === 0 && inner.startsWith('$')) return false
    } else if (a[i] !== b[i]) return false
  }
  return a.length === b.length
}
