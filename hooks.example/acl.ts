// acl.ts — who may publish and subscribe to what.
//
// Config (`hooks.acl`):
//
//   {
//     "superusers": ["admin"],
//     "rules": [
//       { "user": "*",     "allow": "both",      "topics": ["public/#", "clients/%c/#"] },
//       { "user": "*",     "allow": "subscribe", "topics": ["users/%u/#"] },
//       { "user": "alice", "deny":  "publish",   "topics": ["public/announcements"] }
//     ]
//   }
//
// "%u" stands for the user name (from auth.ts, or the CONNECT user name),
// "%c" for the client id. Superusers may do anything. Otherwise a matching deny
// rule wins, then a matching allow rule; with no match the answer is deny.
// A subscription filter is allowed when an allowed pattern covers all of it:
// "public/#" covers "public/news/+", but "public/+" does not cover "public/#".
import { defineHook, type ClientInfo } from 'hookmq'
import { z } from 'zod'

const action = z.enum(['publish', 'subscribe', 'both'])
const rule = z.union([
  z.object({ user: z.string(), allow: action, topics: z.array(z.string()).min(1) }),
  z.object({ user: z.string(), deny: action, topics: z.array(z.string()).min(1) }),
])
type Config = { superusers: string[]; rules: Array<z.infer<typeof rule>> }

export default defineHook({
  name: 'acl',
  order: 10,
  config: z.object({ superusers: z.array(z.string()).default([]), rules: z.array(rule).default([]) }),

  authorizePublish({ client, topic }, { config }) {
    return decide(compiled(config), client, 'publish', topic)
  },

  authorizeSubscribe({ client, filter }, { config }) {
    return decide(compiled(config), client, 'subscribe', filter)
  },
})

// Rules are split into levels once per config; a topic is then walked in place,
// without splitting it, since this runs for every message a client publishes.
interface Level {
  text: string
  /** "+", "#", or a name ("%u" / "%c" in it when template) */
  kind: '+' | '#' | 'name'
  template: boolean
}

interface Compiled {
  superusers: Set<string>
  deny: Array<{ user: string; what: string; patterns: Level[][] }>
  allow: Array<{ user: string; what: string; patterns: Level[][] }>
}

const cache = new WeakMap<Config, Compiled>()

function compiled(config: Config): Compiled {
  let c = cache.get(config)
  if (!c) {
    const level = (text: string): Level => ({ text, kind: text === '+' || text === '#' ? text : 'name', template: text.includes('%') })
    const split = (r: Config['rules'][number], what: string) => ({ user: r.user, what, patterns: r.topics.map((t) => t.split('/').map(level)) })
    c = {
      superusers: new Set(config.superusers),
      deny: config.rules.flatMap((r) => ('deny' in r ? [split(r, r.deny)] : [])),
      allow: config.rules.flatMap((r) => ('allow' in r ? [split(r, r.allow)] : [])),
    }
    cache.set(config, c)
  }
  return c
}

// Plain loops, no closures: this runs for every message a client publishes.
function decide(c: Compiled, client: ClientInfo, what: 'publish' | 'subscribe', topic: string) {
  const user = userName(client)
  if (user !== undefined && c.superusers.has(user)) return true
  // (for a topic name, which has no wildcards, sharing a topic with a pattern is being covered by it: the faster walk does)
  if (matches(c.deny, what, topic, user, client.id, what === 'subscribe')) return { deny: `${what} to ${topic} is denied` }
  if (matches(c.allow, what, topic, user, client.id)) return true
  return { deny: `no rule allows ${what} to ${topic}` }
}

/**
 * An allow rule must cover every topic of the filter; a deny rule applies when
 * it shares any topic with it (a subscription to "public/#" is denied by a deny
 * rule on "public/secret/#": it would receive those messages).
 */
function matches(rules: Compiled['deny'], what: string, topic: string, user: string | undefined, clientId: string, overlapping = false): boolean {
  const test = overlapping ? overlaps : covers
  for (const r of rules) {
    if ((r.what !== what && r.what !== 'both') || (r.user !== '*' && r.user !== user)) continue
    for (const p of r.patterns) if (test(p, topic, user, clientId)) return true
  }
  return false
}

function userName(client: ClientInfo): string | undefined {
  const attached = client.user as { name?: string } | undefined
  return attached?.name ?? client.username
}

/**
 * True when every topic matched by the filter `f` is also matched by the pattern
 * `p` ("%u" is the user name, "%c" the client id; a pattern needing a user name
 * does not apply without one). `f`'s levels are read in place: `start` is where
 * the current one begins, past the end when there are no more.
 */
function covers(p: Level[], f: string, user: string | undefined, clientId: string): boolean {
  let start = 0
  for (let i = 0; i < p.length; i++) {
    const level = p[i]!
    if (level.kind === '#') return !(i === 0 && f.startsWith('$'))
    if (start > f.length) return false // the filter has fewer levels
    let end = f.indexOf('/', start)
    if (end === -1) end = f.length
    if (end - start === 1 && f.charCodeAt(start) === 35) return false // "#" in the filter: more than a pattern level covers
    if (level.kind === '+') {
      if (i === 0 && f.startsWith('$')) return false
    } else {
      const want = level.template ? expand(level.text, user, clientId) : level.text
      if (want === undefined || want.length !== end - start || !f.startsWith(want, start)) return false
    }
    start = end + 1
  }
  return start === f.length + 1 // and the filter has no more levels
}

/**
 * True when some topic is matched by both the pattern `p` and the filter `f`
 * (a topic name is matched by itself).
 */
function overlaps(p: Level[], f: string, user: string | undefined, clientId: string): boolean {
  const levels = f.split('/')
  for (let i = 0; i < p.length; i++) {
    const level = p[i]!
    if (level.kind === '#') return !(i === 0 && f.startsWith('$'))
    if (i >= levels.length) return false
    const mine = levels[i]!
    if (mine === '#') return true
    if (level.kind === '+' || mine === '+') {
      if (i === 0 && f.startsWith('$') && level.kind === '+') return false
      continue
    }
    const want = level.template ? expand(level.text, user, clientId) : level.text
    if (want === undefined || want !== mine) return false
  }
  return levels.length === p.length
}

/**
 * A template level with the user name and client id put in. A name that holds
 * "+", "#" or "/" (or is empty) would make the level a wildcard or move its
 * levels: the rule does not apply to that client (as Mosquitto does).
 */
function expand(level: string, user: string | undefined, clientId: string): string | undefined {
  if (level.includes('%u') && !usable(user)) return undefined
  if (level.includes('%c') && !usable(clientId)) return undefined
  return level.replaceAll('%u', user ?? '').replaceAll('%c', clientId)
}

function usable(name: string | undefined): name is string {
  return name !== undefined && name.length > 0 && !/[+#/]/.test(name)
}
