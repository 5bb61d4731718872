// auth.ts — who may connect.
//
// Users come from this hook's config (`hooks.auth` in hookmq.config.json);
// passwords are stored as scrypt hashes, never in clear and never logged.
// Make a hash with (it asks twice, without echoing; `--stdin` reads a line instead):
//
//   hookmq passwd
//
// and put it in the config:
//
//   "hooks": { "auth": { "users": { "alice": { "password": "scrypt:…:…" }, "admin": { "password": "scrypt:…:…" } } } }
//
// A client without a user name is passed on (the next hook, or the default:
// anonymous clients only on loopback listeners). A wrong password is refused
// with "bad user name or password" (MQTT 5 reason 0x86, MQTT 3.1.1 code 4).
import { scrypt, timingSafeEqual } from 'node:crypto'
import { promisify } from 'node:util'
import { defineHook } from 'hookmq'
import { z } from 'zod'

const scryptAsync = promisify(scrypt) as (password: string, salt: Buffer, keylen: number) => Promise<Buffer>

/** scrypt computations running now, and the most at once */
let hashing = 0
const MAX_HASHING = 8

const hash = z.string().regex(/^scrypt:[0-9a-f]+:[0-9a-f]+$/, 'expected "scrypt:<salt hex>:<hash hex>"')

export default defineHook({
  name: 'auth',
  order: 0,
  config: z.object({
    users: z.record(z.string(), z.object({ password: hash })).default({}),
  }),

  async authenticate({ username, password }, { config }) {
    if (username === undefined) return undefined // not ours to decide
    // own keys only: a user name such as "constructor" or "__proto__" is nobody
    const user = Object.hasOwn(config.users, username) ? config.users[username] : undefined
    if (!user || !password) return false
    // scrypt is slow on purpose: a flood of logins would queue past the deadline (and count as this hook's
    // failures); beyond a few at once, answer "server busy" at once instead (MQTT 5 0x89), and the client retries
    if (hashing >= MAX_HASHING) return { deny: 'busy, try again', reasonCode: 0x89 }
    const [, saltHex, hashHex] = user.password.split(':')
    const expected = Buffer.from(hashHex!, 'hex')
    hashing++
    let actual: Buffer
    try {
      actual = await scryptAsync(password.toString(), Buffer.from(saltHex!, 'hex'), expected.length)
    } finally {
      hashing--
    }
    if (!timingSafeEqual(actual, expected)) return false
    // what we attach here is visible to later hooks as client.user; the client's
    // identity (the owner of its session: another user may not resume it) is the
    // user name, since this record has no `id`
    return { allow: true, user: { name: username } }
  },
})
