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
    return decide(config, client, 'publish', topic)
  },

  authorizeSubscribe({ client, filter }, { config }) {
    return decide(config, client, 'subscribe', filter)
  },
})

function decide(config: Config, client: ClientInfo, what: 'publish' | 'subscribe', topic: string) {
  const user = userName(client)
  if (user !== undefined && config.superusers.includes(user)) return true
  const applies = (r: Config['rules'][number], kind: 'allow' | 'deny'): boolean => {
    const act = kind === 'allow' ? ('allow' in r ? r.allow : undefined) : ('deny' in r ? r.deny : undefined)
    if (act !== what && act !== 'both') return false
    if (r.user !== '*' && r.user !== user) return false
    return r.topics.some((pattern) => {
      const p = expand(pattern, user, client.id)
      return p !== undefined && covers(p, topic)
    })
  }
  if (config.rules.some((r) => applies(r, 'deny'))) return { deny: `${what} to ${topic} is denied` }
  if (config.rules.some((r) => applies(r, 'allow'))) return true
  return { deny: `no rule allows ${what} to ${topic}` }
}

function userName(client: ClientInfo): string | undefined {
  const attached = client.user as { name?: string } | undefined
  return attached?.name ?? client.username
}

/** Fills in %u and %c; a pattern needing a user name does not apply without one. */
function expand(pattern: string, user: string | undefined, clientId: string): string | undefined {
  if (pattern.includes('%u') && user === undefined) return undefined
  return pattern.replaceAll('%u', user ?? '').replaceAll('%c', clientId)
}

/** True when every topic matched by `filter` is also matched by `pattern`. */
function covers(pattern: string, filter: string): boolean {
  const p = pattern.split('/')
  const f = filter.split('/')
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '#') return !(i === 0 && f[0]!.startsWith('$'))
    if (i >= f.length) return false
    if (f[i] === '#') return false
    if (p[i] === '+') {
      if (i === 0 && f[0]!.startsWith('$')) return false
      continue
    }
    if (p[i] !== f[i]) return false
  }
  return p.length === f.length
}
