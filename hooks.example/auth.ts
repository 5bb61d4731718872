// auth.ts — who may connect.
//
// Users come from this hook's config (`hooks.auth` in hookmq.config.json);
// passwords are stored as scrypt hashes, never in clear and never logged.
// Make a hash with:
//
//   node -e "const c=require('crypto'),s=c.randomBytes(16);console.log('scrypt:'+s.toString('hex')+':'+c.scryptSync(process.argv[1],s,32).toString('hex'))" 'the password'
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

const hash = z.string().regex(/^scrypt:[0-9a-f]+:[0-9a-f]+$/, 'expected "scrypt:<salt hex>:<hash hex>"')

export default defineHook({
  name: 'auth',
  order: 0,
  config: z.object({
    users: z.record(z.string(), z.object({ password: hash })).default({}),
  }),

  async authenticate({ username, password }, { config }) {
    if (username === undefined) return undefined // not ours to decide
    const user = config.users[username]
    if (!user || !password) return false
    const [, saltHex, hashHex] = user.password.split(':')
    const expected = Buffer.from(hashHex!, 'hex')
    const actual = await scryptAsync(password.toString(), Buffer.from(saltHex!, 'hex'), expected.length)
    if (!timingSafeEqual(actual, expected)) return false
    // what we attach here is visible to later hooks as client.user; the client's
    // identity (the owner of its session: another user may not resume it) is the
    // user name, since this record has no `id`
    return { allow: true, user: { name: username } }
  },
})
