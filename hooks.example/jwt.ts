// jwt.ts — log in with a JSON Web Token, checked with jose.
//
// Needs the `jose` package (version 5: it can be required from CommonJS, as
// hooks are compiled, on every Node 20; jose 6 is ESM-only). In the hooks folder:
//
//   npm install jose@5
//
// The client sends the token as its MQTT password (or, with "token": "username",
// as its user name). Keys come from one of (with none, every token is refused
// with 0x88 and the log says why):
//   "jwksUrl"    the issuer's JWKS (https://issuer/.well-known/jwks.json): fetched
//                on first use, kept `jwks.cacheMaxAgeMs`, fetched again at once for
//                a token signed by a key it does not know (key rotation; at most
//                once per `jwks.cooldownMs`)
//   "publicKey"  a PEM public key (RS*, PS*, ES*, EdDSA)
//   "secret"     a shared secret (HS256/384/512)
//
// Config (`hooks.jwt`):
//
//   {
//     "jwksUrl": "https://id.example.com/.well-known/jwks.json",
//     "issuer": "https://id.example.com/",
//     "audience": "mqtt",
//     "clockToleranceSeconds": 30,
//     "userClaim": "sub",
//     "topicsClaim": "mqtt"
//   }
//
// Checked: the signature, `exp` (required unless "requireExpiry": false), `nbf`,
// `iss` and `aud` when configured, each with the clock tolerance. Accepted, the
// client's `user` is { id, name, jwt: { iss, exp, publish?, subscribe? } }: `id`
// and `name` are the `userClaim` claim, so the session belongs to the token's
// subject (not to the CONNECT user name, which the client chose) and acl.ts's
// "%u" is that subject.
//
// With "topicsClaim", a token may carry its own ACL, e.g.
//   "mqtt": { "publish": ["devices/d-17/#"], "subscribe": ["commands/d-17/#"] }
// and then is the whole ACL of its client: a topic (or a filter, all of it)
// under one of the list's filters is allowed, any other denied (0x87). A token
// without that claim, and clients this hook did not log in, are left to the
// next hook (acl.ts). The token is checked at CONNECT only: a connection
// outlives its token's `exp`.
//
// Answers: a password that does not look like a JWT (three base64url parts) is
// passed on (auth.ts may know it). A token that fails a check: "bad user name or
// password" (MQTT 5 0x86, 3.1.1 return code 4): the token is at fault. When the
// keys cannot be had (the JWKS URL times out after `jwks.timeoutMs`, refuses,
// answers anything but 200 with a valid key set): "server unavailable" (0x88,
// 3.1.1 return code 3), never a login: the token may well be good, and 0x88
// tells the client to try again later instead of getting a new token or giving
// up. Either way the client is refused (fails closed).
import { createPublicKey, createSecretKey, type KeyObject } from 'node:crypto'
import { defineHook, matchesFilter, type ClientInfo } from 'hookmq'
import { createRemoteJWKSet, jwtVerify, type JWTPayload } from 'jose'
import { z } from 'zod'

const JWT = /^[\w-]+\.[\w-]+\.[\w-]*$/

/** jose's codes for a token that is at fault (0x86); any other failure is the key source's (0x88) */
const TOKEN_FAULTS = new Set([
  'ERR_JWT_EXPIRED',
  'ERR_JWT_CLAIM_VALIDATION_FAILED',
  'ERR_JWT_INVALID',
  'ERR_JWS_INVALID',
  'ERR_JWS_SIGNATURE_VERIFICATION_FAILED',
  'ERR_JOSE_ALG_NOT_ALLOWED',
  'ERR_JOSE_NOT_SUPPORTED',
  'ERR_JWKS_NO_MATCHING_KEY',
  'ERR_JWKS_MULTIPLE_MATCHING_KEYS',
])

const oneOrMany = z.union([z.string().min(1), z.array(z.string().min(1)).min(1)])

const config = z
  .object({
    token: z.enum(['password', 'username']).default('password'),
    jwksUrl: z.url({ protocol: /^https?$/ }).optional(),
    publicKey: z.string().optional(),
    secret: z.string().min(32, 'a shared secret needs at least 32 characters').optional(),
    /** allowed `alg` values (default: HS256/384/512 with `secret`; any jose supports for the key's type otherwise) */
    algorithms: z.array(z.string()).optional(),
    issuer: oneOrMany.optional(),
    audience: oneOrMany.optional(),
    clockToleranceSeconds: z.number().min(0).max(300).default(30),
    requireExpiry: z.boolean().default(true),
    userClaim: z.string().min(1).default('sub'),
    topicsClaim: z.string().min(1).optional(),
    jwks: z
      .object({
        // below this hook's deadline (timeoutMs, 3000): a JWKS that does not answer is a 0x88, not a timed-out call (0x87)
        timeoutMs: z.number().int().positive().max(2500).default(2000),
        cacheMaxAgeMs: z.number().int().positive().default(600_000),
        cooldownMs: z.number().int().nonnegative().default(30_000),
      })
      .prefault({}),
  })
  .refine((c) => [c.jwksUrl, c.publicKey, c.secret].filter((k) => k !== undefined).length <= 1, 'set only one of jwksUrl, publicKey, secret')

type Config = z.output<typeof config>
type Keys = KeyObject | ReturnType<typeof createRemoteJWKSet>

/** the keys of this loaded version (setup makes them: a JWKS keeps its cache between logins) */
let keys: Keys | undefined

export default defineHook({
  name: 'jwt',
  order: 5,
  timeoutMs: 3000,
  config,

  setup({ config, log }) {
    if (config.jwksUrl !== undefined) {
      const { timeoutMs, cacheMaxAgeMs, cooldownMs } = config.jwks
      keys = createRemoteJWKSet(new URL(config.jwksUrl), { timeoutDuration: timeoutMs, cacheMaxAge: cacheMaxAgeMs, cooldownDuration: cooldownMs })
    } else if (config.publicKey !== undefined) keys = createPublicKey(config.publicKey)
    else if (config.secret !== undefined) keys = createSecretKey(Buffer.from(config.secret))
    else log.warn('hooks.jwt sets none of jwksUrl, publicKey, secret: every token is refused (0x88) until it does')
  },

  async authenticate(input, { config, log }) {
    if (input.reauthenticate || input.authenticationMethod !== undefined) return undefined // MQTT 5 enhanced auth: not ours
    const token = config.token === 'password' ? input.password?.toString('utf8') : input.username
    if (token === undefined || !JWT.test(token)) return undefined // no token: another hook may know this client
    if (keys === undefined) return { deny: 'no key to check tokens with', reasonCode: 0x88 }
    let claims: JWTPayload
    try {
      claims = await verify(token, config)
    } catch (err) {
      const code = (err as { code?: unknown }).code
      if (typeof code === 'string' && TOKEN_FAULTS.has(code)) return { deny: `token refused: ${(err as Error).message}`, reasonCode: 0x86 }
      log.warn({ err: { message: (err as Error).message, code } }, 'JWT keys unavailable: login refused with 0x88')
      return { deny: 'token keys unavailable, try again later', reasonCode: 0x88 }
    }
    const name = claims[config.userClaim]
    if (typeof name !== 'string' || name.length === 0) return { deny: `token has no "${config.userClaim}" claim`, reasonCode: 0x86 }
    const topics = config.topicsClaim === undefined ? undefined : topicLists(claims[config.topicsClaim])
    if (topics === null) return { deny: `token claim "${config.topicsClaim}" is not { publish?: string[], subscribe?: string[] }`, reasonCode: 0x86 }
    return { allow: true, user: { id: name, name, jwt: { iss: claims.iss, exp: claims.exp, ...topics } } }
  },

  authorizePublish({ client, topic }) {
    const list = tokenTopics(client)?.publish
    if (list === undefined) return undefined
    return list.some((f) => matchesFilter(f, topic)) ? true : { deny: `the token does not allow publishing to ${topic}` }
  },

  authorizeSubscribe({ client, filter }) {
    const list = tokenTopics(client)?.subscribe
    if (list === undefined) return undefined
    // a shared subscription ($share/<group>/<filter>) is judged by its filter
    const inner = filter.startsWith('$share/') ? filter.slice(filter.indexOf('/', 7) + 1) : filter
    return list.some((f) => covers(f, inner)) ? true : { deny: `the token does not allow subscribing to ${filter}` }
  },
})

function verify(token: string, c: Config): Promise<JWTPayload> {
  const options = {
    issuer: c.issuer,
    audience: c.audience,
    clockTolerance: c.clockToleranceSeconds,
    algorithms: c.algorithms ?? (c.secret !== undefined ? ['HS256', 'HS384', 'HS512'] : undefined),
    requiredClaims: c.requireExpiry ? ['exp'] : [],
  }
  const k = keys!
  // (two calls: jose types a key and a key-finding function apart)
  return (typeof k === 'function' ? jwtVerify(token, k, options) : jwtVerify(token, k, options)).then((r) => r.payload)
}

interface Topics {
  publish?: string[]
  subscribe?: string[]
}

const topicsSchema = z.object({ publish: z.array(z.string()).optional(), subscribe: z.array(z.string()).optional() })

/** The claim's lists ({} when the token has none), or null when it is malformed. */
function topicLists(claim: unknown): Topics | null {
  if (claim === undefined) return {}
  const r = topicsSchema.safeParse(claim)
  if (!r.success) return null
  // a token without a list for an action allows none of it
  return { publish: r.data.publish ?? [], subscribe: r.data.subscribe ?? [] }
}

function tokenTopics(client: ClientInfo): Topics | undefined {
  const user = client.user as { jwt?: Topics } | undefined
  return user?.jwt
}

/** True when every topic the filter `f` matches is matched by `p` ("#" in `f` only under a "#" of `p`). */
function covers(p: string, f: string): boolean {
  const a = p.split('/')
  const b = f.split('/')
  for (let i = 0; i < a.length; i++) {
    if (a[i] === '#') return !(i === 0 && f.startsWith('$'))
    if (i >= b.length || b[i] === '#') return false
    if (a[i] === '+') {
      if (i === 0 && f.startsWith('$')) return false
    } else if (a[i] !== b[i]) return false
  }
  return a.length === b.length
}
